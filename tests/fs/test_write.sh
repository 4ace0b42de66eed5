#!/usr/bin/env bash
# One write, one job: a prompt written through one open file by several processes
# is submitted once, whole, when the process that opened it closes it.
. "$(dirname "$0")/fs_lib.sh"
fs_setup --keys 2 --big --inflight 4
fs_mount
D=$MNT/flash
W=$FS_TMP/work
mkdir -p "$W"

generate_count() {
    emu_ctl GET log | python3 -c '
import json, sys
print(sum(1 for e in json.load(sys.stdin) if "generate" in (e.get("action") or "").lower()))'
}

before=$(generate_count)
{ echo a; sh -c 'echo b'; /bin/echo c; } >"$D/m"
timeout 20 cat "$D/m.out" >"$W/m.out"
sleep 0.3
after=$(generate_count)
printf 'a\nb\nc\n' >"$W/m.prompt"
check "a prompt written by three processes is answered whole" answer_matches "$W/m.prompt" "$W/m.out"
check "... with exactly one request ($before -> $after)" test "$after" -eq $((before + 1))

before=$(generate_count)
( echo one; ( echo two; sleep 0.2 ); date >/dev/null; echo three ) >"$D/n"
timeout 20 cat "$D/n.out" >"$W/n.out"
sleep 0.3
after=$(generate_count)
printf 'one\ntwo\nthree\n' >"$W/n.prompt"
check "a subshell's redirection: answered whole" answer_matches "$W/n.prompt" "$W/n.out"
check "... with exactly one request ($before -> $after)" test "$after" -eq $((before + 1))

echo p >"$D/quick"
check "echo p > a; cat a.out still finds the job at once" bash -c "timeout 20 cat '$D/quick.out' | grep -q ."
fs_done
