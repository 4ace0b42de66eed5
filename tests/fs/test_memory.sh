#!/usr/bin/env bash
# The memory ceiling (-o max_memory): prompts, scratch files, answers and
# images held by the mount share one count.  Beyond it writes get ENOSPC and
# an answer that would pass it fails its job with an .err naming the
# ceiling (cat ends with EIO); the mount keeps working and the memory comes
# back when files are removed and jobs are stored.
. "$(dirname "$0")/fs_lib.sh"
fs_setup --keys 2 --big --inflight 4
fs_mount -o max_memory=8M
D=$MNT/flash
W=$FS_TMP/work
mkdir -p "$W"

mem() {
    awk '$1 == "gemini_pool_fs_memory_bytes" {print $2}' "$MNT/status/metrics"
}
say "memory at start: $(mem) bytes"
check "status/metrics shows the ceiling" \
    grep -qx 'gemini_pool_fs_memory_limit_bytes 8388608' "$MNT/status/metrics"

# Four writers of 3 MiB scratch files at once: 12 MiB do not fit in 8.
pids=()
for i in 1 2 3 4; do
    dd if=/dev/zero of="$D/.big$i" bs=64k count=48 2>"$W/dd$i.err" &
    pids+=($!)
done
wait "${pids[@]}"
nospc=0
for i in 1 2 3 4; do
    grep -q 'No space left on device' "$W/dd$i.err" && nospc=$((nospc + 1))
done
total=$(cat "$D"/.big* | wc -c)
say "writers refused with ENOSPC: $nospc; bytes kept: $total; memory: $(mem)"
check "some concurrent big writes get ENOSPC" test "$nospc" -ge 1
check "what was kept stays under the ceiling" test "$total" -le 8388608
check "the accountant stays under the ceiling" test "$(mem)" -le 8388608
( head -c 1000000 /dev/zero | tr '\0' a >"$D/full" ) 2>"$W/full.err"
check "with the memory full, a prompt gets ENOSPC" grep -q 'No space left' "$W/full.err"
check "... and is not submitted" bash -c "sleep 0.2; ! test -e '$D/full.out'"
rm -f "$D/full"

# The mount keeps working, and removing the files gives the memory back.
rm -f "$D"/.big*
say "memory after rm: $(mem)"
big=$(head -c 1100000 /dev/zero | tr '\0' a)
( echo "$big" >"$D/huge" ) 2>"$W/huge.err"
check "a prompt over its own limit (1 MiB) is still EFBIG" grep -q 'File too large' "$W/huge.err"
rm -f "$D/huge"
# A prompt that runs out of room half-way is refused whole: never sent in part.
for i in $(seq 1 16); do # 16 x 512 KiB: the memory is full
    dd if=/dev/zero of="$D/.fill$i" bs=64k count=8 status=none 2>/dev/null
done
rm -f "$D/.fill1"
say "memory before half: $(mem)"
( head -c 1000000 /dev/zero | tr '\0' b >"$D/half" ) 2>"$W/half.err"
say "half: $(wc -c <"$D/half") bytes kept; $(cat "$W/half.err")"
check "a prompt that fills the memory half-way gets ENOSPC" grep -q 'No space left' "$W/half.err"
check "... after part of it was written" test "$(wc -c <"$D/half")" -gt 0
check "... and that part is not submitted" bash -c "sleep 0.2; ! test -e '$D/half.out'"
rm -f "$D"/.fill* "$D/half"
check "the memory comes back when files are removed" test "$(mem)" -lt 1048576
check "a 6 MiB scratch file fits again" dd if=/dev/zero of="$D/.again" bs=64k count=96 status=none
rm -f "$D/.again"
echo "a question after the refusals" >"$D/q"
check "jobs still run" bash -c "timeout 20 cat '$D/q.out' | grep -q '^\[fake-gemini'"
check "ls still works" bash -c "ls '$D' | grep -qx q.out"

# An answer that would pass the ceiling fails its job; it is never cut.
emu_ctl POST faults '{"scope":"global","answer_bytes":12000000}' >/dev/null
echo "a very long answer please" >"$D/long"
timeout 60 cat "$D/long.out" >"$W/long.out" 2>"$W/long.err"
rc=$?
emu_ctl POST faults '{"scope":"global","clear":true}' >/dev/null
say "cat long.out: exit $rc, $(wc -c <"$W/long.out") bytes, stderr: $(cat "$W/long.err")"
check "cat of an answer over the ceiling ends with EIO" \
    bash -c "[ $rc -ne 0 ] && grep -q 'Input/output error' '$W/long.err'"
check "the job reads as failed" python3 -c "
import json, sys; sys.exit(json.load(open('$D/long.json'))['status'] != 'failed')"
check "its .err names the ceiling" grep -q 'ceiling of 8388608 bytes (-o max_memory)' "$D/long.err"
# So does an image that would pass it.
emu_ctl POST faults '{"scope":"global","image_bytes":9000000}' >/dev/null
echo "a very big picture" >"$MNT/image/pic"
timeout 60 cat "$MNT/image/pic.out" >/dev/null 2>&1
emu_ctl POST faults '{"scope":"global","clear":true}' >/dev/null
check "an image over the ceiling fails its job, naming the ceiling" \
    grep -q 'ceiling of 8388608 bytes (-o max_memory)' "$MNT/image/pic.err"
check "... and no image is shown" bash -c "! ls '$MNT/image' | grep -q '^pic.*\.png$'"
echo "a short answer after it" >"$D/short"
check "the next job is done" bash -c "timeout 20 cat '$D/short.out' | grep -q '^\[fake-gemini'"
sleep 0.5
say "memory after the jobs are stored: $(mem)"
check "the memory comes back once the jobs are stored" test "$(mem)" -lt 1048576
fs_done
