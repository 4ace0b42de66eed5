#!/usr/bin/env bash
# The job store: a spool directory of the release before it is imported with every
# answer intact and then removed; a result is synced before its reader sees EOF, so
# a kill -9 right after loses nothing and re-runs nothing; fsync() on a prompt waits
# for the commit; -o keep=DURATION removes old jobs from the listing and the disk.
. "$(dirname "$0")/fs_lib.sh"
fs_setup --keys 2 --big --inflight 8
W=$FS_TMP/work
mkdir -p "$W" "$FS_TMP/state"
DB=$FS_TMP/state/jobs.db

# generate_count - how many generate requests the emulator has seen.
generate_count() {
    emu_ctl GET log | python3 -c '
import json, sys
print(sum(1 for e in json.load(sys.stdin) if "generate" in (e.get("action") or "").lower()))'
}

# rows SQL - a query's answer from the store (python3's own sqlite3).
rows() {
    python3 -c 'import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute(sys.argv[2]).fetchone()[0])' "$DB" "$1"
}

# 1. Migration of a spool written by the release before the store.
tar -C "$FS_TMP" -xzf "$GKP_SOURCE_ROOT/tests/fixtures/spool-v1.tar.gz"
X=$FS_TMP/expected
fs_mount
D=$MNT/flash
ok=1
for n in k1 k2 k3; do
    cmp -s "$X/flash.$n.out" "$D/$n.out" || { ok=0; say "$n.out differs"; }
    # (through cat: cmp -s trusts st_size, which a generated file does not know)
    cat "$D/$n.json" | cmp -s "$X/flash.$n.json" - || { ok=0; say "$n.json differs"; diff "$X/flash.$n.json" <(cat "$D/$n.json") | head; }
    [ "$(cat "$D/$n")" = "$(printf 'kept question %s\nsecond line' "${n#k}")" ] || { ok=0; say "prompt $n differs"; }
done
check "imported answers, metadata and prompts are intact" test $ok = 1
check "the imported image is intact" cmp -s "$X/image.pic.png" "$MNT/image/pic.png"
check "the imported image job's text is intact" cmp -s "$X/image.pic.out" "$MNT/image/pic.out"
check "the imported failure keeps its .err" bash -c "cat '$D/bad.err' | cmp -s '$X/flash.bad.err' -"
check "... and its .out still ends with an error" bash -c "! cat '$D/bad.out' >/dev/null 2>&1"
timeout 30 cat "$D/pend.out" >"$W/pend.out" 2>/dev/null
printf 'a pending question\n' >"$W/pend.prompt"
check "the imported unfinished job ran" answer_matches "$W/pend.prompt" "$W/pend.out"
check "the spool directory is gone" test ! -e "$FS_TMP/state/spool"
check "the store holds the imported jobs" test "$(rows 'SELECT count(*) FROM jobs')" -ge 6
fs_umount
fs_mount
check "imported answers are still there after a restart" cmp -s "$X/flash.k2.out" "$D/k2.out"

# One daemon per state: a second mount on the same state refuses, mounts nothing.
MNT2=$FS_TMP/mnt2
mkdir -p "$MNT2"
"$GEMINI_POOL" mount "$MNT2" -f --config "$FS_KEYS_JSON" --state "$FS_STATE" >"$W/second.log" 2>&1 &
P2=$!
second_rc=0
for _ in $(seq 1 100); do kill -0 $P2 2>/dev/null || break; sleep 0.1; done
if kill -0 $P2 2>/dev/null; then
    fusermount3 -u "$MNT2" 2>/dev/null
    second_rc=running
fi
wait $P2 || second_rc=$?
say "second mount: $(cat "$W/second.log") (exit $second_rc)"
check "a second mount on the same state exits non-zero" \
    bash -c "[ '$second_rc' != 0 ] && [ '$second_rc' != running ]"
check "... saying who serves it" \
    grep -qF "state $FS_STATE is already served by pid $FS_PID at $MNT" "$W/second.log"
check "... and mounts nothing" bash -c "! grep -q ' $MNT2 ' /proc/mounts"

# 2. The result is synced before the reader's EOF.  A slow stream puts the last
# text well before the end, so the order of syncs and reads is clear (strace
# stamps a call when it starts: a sync's start is before the EOF's return).
emu_ctl POST faults '{"scope":"global","chunk_delay_ms":150}' >/dev/null
strace -f -ttt -qq -e trace=fsync,fdatasync -p "$FS_PID" -o "$W/daemon.trace" &
STRACE=$!
sleep 0.5
echo "a durable question" >"$D/dur"
strace -ttt -T -qq -e trace=read -o "$W/reader.trace" cat "$D/dur.out" >"$W/dur.out"
sleep 0.3
kill "$STRACE" 2>/dev/null
wait "$STRACE" 2>/dev/null
emu_ctl POST faults '{"scope":"global","clear":true}' >/dev/null
check "the reader got the answer" test -s "$W/dur.out"
check "the result was synced after the last text and before the reader's EOF" python3 - "$W/daemon.trace" "$W/reader.trace" <<'PY'
import re, sys
syncs = [float(m.group(1)) for line in open(sys.argv[1])
         if (m := re.match(r"\s*\d+\s+(\d+\.\d+) f(data)?sync\(\d+\)\s+= 0", line))]
# A read's entry time plus its duration (-T): when cat had the bytes or the EOF.
reads = [(float(m.group(1)) + float(m.group(4)), int(m.group(3))) for line in open(sys.argv[2])
         if (m := re.match(r"(\d+\.\d+) read\((\d+),.*= (-?\d+) <(\d+\.\d+)>", line))
         and m.group(2) == "3"]
eof = [t for t, n in reads if n == 0][-1:]  # the answer's EOF is cat's last read
data = [t for t, n in reads if n > 0 and eof and t < eof[0]]
print("syncs:", syncs, "last data read:", data[-1:], "eof:", eof)
sys.exit(0 if data and eof and any(data[-1] < s < eof[0] for s in syncs) else 1)
PY

# 3. kill -9 right after the reader's EOF: nothing lost, nothing re-run.
before=$(generate_count)
echo "a question answered just before a crash" >"$D/crash"
timeout 20 cat "$D/crash.out" >"$W/crash.out"
fs_kill9
fs_mount
sleep 1
check "kill -9 right after EOF: the answer is back" cmp -s "$W/crash.out" "$D/crash.out"
after=$(generate_count)
check "kill -9 right after EOF: the job did not run again ($before -> $after requests)" \
    test "$after" -eq $((before + 1))

# 4. fsync() on a prompt returns once it is in the store.
python3 - "$D/synced" <<'PY'
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
os.write(fd, b"a synced question\n")
os.close(fd)
fd = os.open(sys.argv[1], os.O_RDONLY)
os.fsync(fd)
os.close(fd)
PY
check "after fsync() the prompt's row is in the store" \
    test "$(rows "SELECT count(*) FROM jobs WHERE name = 'synced'")" = 1

# 5. Retention: a mount with -o keep=1s removes jobs finished 2 s ago.
timeout 20 cat "$D/synced.out" >/dev/null
fs_umount
n_before=$(rows 'SELECT count(*) FROM jobs WHERE finished_ms IS NOT NULL')
sleep 2
fs_mount -o keep=1s
check "before: the store held finished jobs ($n_before)" test "$n_before" -ge 5
check "keep=1s: old jobs are gone from the listing" bash -c "! ls '$D' | grep -q -e '^k1' -e '^crash'"
check "keep=1s: old jobs are gone from the store" \
    test "$(rows 'SELECT count(*) FROM jobs WHERE finished_ms IS NOT NULL')" = 0
check "keep=1s: and their images" test "$(rows 'SELECT count(*) FROM images')" = 0
# ... and while mounted: a job finished now goes too (waited for, with a
# generous hang guard: the retention pass runs on its own clock).
echo "a short-lived question" >"$D/brief"
timeout 20 cat "$D/brief.out" >/dev/null
check "a fresh job is listed" test -e "$D/brief.out"
gone=0
for _ in $(seq 1 1200); do
    [ -e "$D/brief.out" ] || { gone=1; break; }
    sleep 0.1
done
check "keep=1s while mounted: it is removed (hang guard 120 s)" test $gone = 1
fs_done
