#!/usr/bin/env bash
# One write, one job: a prompt written through one open file by several processes
# is submitted once, whole, when the process that opened it closes it.  Every
# generated file reads with head, tail (-f), less, grep and wc -c.  Caps are
# failures: an answer over -o max_answer fails with a clear .err, and cat ends EIO.
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
# head, tail, less, grep and wc -c work on every generated file, without errors.
emu_ctl POST replay '{"status":400,"body_json":{"error":{"code":400,"message":"Refused.","status":"INVALID_ARGUMENT"}}}' >/dev/null
echo "refuse this" >"$D/bad"
timeout 20 cat "$D/bad.out" >/dev/null 2>&1
echo "draw a square" >"$MNT/image/pic"
timeout 20 cat "$MNT/image/pic.out" >/dev/null
ok=1
for f in "$D/m.out" "$D/m.json" "$D/bad.err" "$MNT/image/pic.png" "$MNT/README" "$MNT/status/pool" \
    "$MNT/status/pool.json" "$MNT/status/metrics" "$MNT/status/jobs" "$MNT/status/keys/key1"; do
    full=$(cat "$f" | wc -c)
    errs=$( { head -n 1 "$f" >/dev/null; tail -n 2 "$f" >/dev/null; grep -c . "$f" >/dev/null;
              less "$f" </dev/null >/dev/null; } 2>&1)
    wc=$(wc -c <"$f" 2>&1)
    if [ -n "$errs" ] || [ "$wc" != "$full" ]; then
        ok=0
        say "${f#"$MNT"/}: wc -c says $wc of $full bytes; errors: $errs"
    fi
done
check "head, tail, grep, less and wc -c work on every generated file" test $ok = 1
emu_ctl POST faults '{"scope":"global","chunk_delay_ms":200}' >/dev/null
echo "a slow answer" >"$D/slow"
check "head -n 1 on a running .out prints its first line" \
    bash -c "head -n 1 '$D/slow.out' 2>&1 | grep -q '^\[fake-gemini'"
echo "another slow answer" >"$D/slow2"
timeout 2 tail -f "$D/slow2.out" >"$W/tailf.out" 2>"$W/tailf.err"
emu_ctl POST faults '{"scope":"global","clear":true}' >/dev/null
check "tail -f on a running .out follows it" \
    bash -c "grep -q '^\[fake-gemini' '$W/tailf.out' && ! [ -s '$W/tailf.err' ]"

# An answer over the cap fails the job; it is never a cut answer read as done.
fs_umount
fs_mount -o max_answer=1000
emu_ctl POST faults '{"scope":"global","answer_bytes":5000}' >/dev/null
echo "a long answer please" >"$D/long"
timeout 20 cat "$D/long.out" >"$W/long.out" 2>"$W/long.err"
rc=$?
emu_ctl POST faults '{"scope":"global","clear":true}' >/dev/null
say "cat long.out: exit $rc, $(wc -c <"$W/long.out") bytes, stderr: $(cat "$W/long.err")"
check "cat of an answer over the cap fails with EIO" \
    bash -c "[ $rc -ne 0 ] && grep -q 'Input/output error' '$W/long.err'"
check "... after no more than the cap" test "$(wc -c <"$W/long.out")" -le 1000
check "the job reads as failed" python3 -c "
import json, sys; sys.exit(json.load(open('$D/long.json'))['status'] != 'failed')"
check "its .err names the cap" grep -q 'cap of 1000 bytes on answers' "$D/long.err"
echo "a short answer please" >"$D/short"
check "an answer within the cap is done" bash -c "timeout 20 cat '$D/short.out' >/dev/null"
fs_done
