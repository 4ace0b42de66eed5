#!/usr/bin/env bash
# Durability: finished answers (text, metadata, images) survive an unmount and a
# kill -9; jobs that had not finished run again at the next start; the pool's
# counts survive too.
. "$(dirname "$0")/fs_lib.sh"
fs_setup --keys 2 --big --inflight 8
fs_mount
D=$MNT/flash
W=$FS_TMP/work
mkdir -p "$W"

counts() {
    python3 -c '
import json, sys
doc = json.load(open(sys.argv[1]))
print(" ".join("%s=%d" % (k["id"], k["requests_total"]) for k in doc["keys"]))' "$MNT/status/pool.json"
}

# Finished jobs, one with an image.
for i in 1 2 3 4 5; do
    echo "durable question $i" >"$D/d$i"
done
echo "draw a small square" >"$MNT/image/pic"
for i in 1 2 3 4 5; do
    timeout 20 cat "$D/d$i.out" >"$W/d$i.before"
done
timeout 20 cat "$MNT/image/pic.out" >/dev/null
check "the image job made pic.png" test -s "$MNT/image/pic.png"
cp "$MNT/image/pic.png" "$W/pic.before"
check "pic.png is a PNG" bash -c "head -c 8 '$W/pic.before' | od -An -c | grep -q 'P   N   G'"
cp "$D/d1.json" "$W/d1.json.before"
# Jobs that will not have finished when the daemon stops: their requests wait at
# an emulator gate that is never opened.
emu_ctl POST faults '{"scope":"global","hold":"pending"}' >/dev/null
for i in 1 2 3; do
    echo "pending question $i" >"$D/p$i"
done
check "three requests are in flight" emu_gate_wait pending 3
counts_before=$(counts)
say "counts before: $counts_before"

# 1. A clean unmount and a new mount.
fs_umount
check "the daemon exits cleanly on fusermount3 -u" test $? -eq 0
check "the mount is gone" bash -c "! grep -q ' $MNT ' /proc/mounts"
emu_ctl POST faults '{"scope":"global","clear":true}' >/dev/null
fs_mount
ok=1
for i in 1 2 3 4 5; do
    cmp -s "$W/d$i.before" "$D/d$i.out" || { ok=0; say "d$i differs: $(wc -c <"$W/d$i.before") vs $(wc -c <"$D/d$i.out") bytes"; diff <(cat "$W/d$i.before") <(cat "$D/d$i.out") | head -5; }
done
check "finished answers are back after an unmount" test $ok = 1
check "their prompts are back" test "$(cat "$D/d3")" = "durable question 3"
check "their metadata is back" bash -c "python3 -c '
import json, sys
a, b = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
keys = (\"status\", \"model_used\", \"key_id\", \"attempts\", \"tokens_in\", \"tokens_out\",
        \"latency_ms\", \"created\", \"finished\")
sys.exit(0 if all(a[k] == b[k] for k in keys) else 1)' '$W/d1.json.before' '$D/d1.json'"
check "the image is back" cmp -s "$W/pic.before" "$MNT/image/pic.png"
ok=1
for i in 1 2 3; do
    timeout 30 cat "$D/p$i.out" >"$W/p$i.out" 2>/dev/null || ok=0
    printf 'pending question %d\n' "$i" >"$W/p$i.prompt"
    answer_matches "$W/p$i.prompt" "$W/p$i.out" || ok=0
done
check "jobs that were running at the unmount ran again" test $ok = 1
counts_after=$(counts)
say "counts after: $counts_after"
check "the pool's counts survived (and grew by the re-run jobs)" python3 -c "
b = dict(x.split('=') for x in '$counts_before'.split())
a = dict(x.split('=') for x in '$counts_after'.split())
import sys; sys.exit(0 if all(int(a[k]) >= int(b[k]) for k in b) and sum(map(int, a.values())) >= sum(map(int, b.values())) + 3 else 1)"

# 2. kill -9 in the middle of things.
for i in 6 7; do
    echo "durable question $i" >"$D/d$i"
    timeout 20 cat "$D/d$i.out" >"$W/d$i.before"
done
emu_ctl POST faults '{"scope":"global","hold":"pending2"}' >/dev/null
for i in 4 5; do
    echo "pending question $i" >"$D/p$i"
done
check "two requests are in flight" emu_gate_wait pending2 2
counts_before=$(counts)
fs_kill9
emu_ctl POST faults '{"scope":"global","clear":true}' >/dev/null
fs_mount
ok=1
for i in 1 2 3 4 5 6 7; do
    cmp -s "$W/d$i.before" "$D/d$i.out" || { ok=0; say "d$i differs: $(wc -c <"$W/d$i.before") vs $(wc -c <"$D/d$i.out") bytes"; diff <(cat "$W/d$i.before") <(cat "$D/d$i.out") | head -5; }
done
check "finished answers are back after kill -9" test $ok = 1
ok=1
for i in 4 5; do
    timeout 30 cat "$D/p$i.out" >"$W/p$i.out" 2>/dev/null || ok=0
    printf 'pending question %d\n' "$i" >"$W/p$i.prompt"
    answer_matches "$W/p$i.prompt" "$W/p$i.out" || ok=0
done
check "jobs that were running at the kill -9 ran again" test $ok = 1
counts_after=$(counts)
say "counts before kill -9: $counts_before; after: $counts_after"
check "the pool's counts survived kill -9" python3 -c "
b = dict(x.split('=') for x in '$counts_before'.split())
a = dict(x.split('=') for x in '$counts_after'.split())
import sys; sys.exit(0 if all(int(a[k]) >= int(b[k]) for k in b) else 1)"

# Prompts of finished jobs are kept on disk only; they read and edit as ever.
check "a finished job's prompt reads back after a restart" test "$(cat "$D/d4")" = "durable question 4"
echo "and a follow-up" >>"$D/d4"
timeout 20 cat "$D/d4.out" >"$W/d4.new"
printf 'durable question 4\nand a follow-up\n' >"$W/d4.prompt"
check "appending to it submits the whole new prompt" answer_matches "$W/d4.prompt" "$W/d4.new"
rm "$D/d5.out"
check "removing a job's output keeps its prompt" test "$(cat "$D/d5")" = "durable question 5"
echo "fresh in this mount" >"$D/f1"
timeout 20 cat "$D/f1.out" >/dev/null
sleep 0.3
sed -i 's/fresh/edited/' "$D/f1"
check "a prompt put on disk after its job read and edits with sed -i" \
    test "$(cat "$D/f1")" = "edited in this mount"
timeout 20 cat "$D/f1.out" >"$W/f1.out"
printf 'edited in this mount\n' >"$W/f1.prompt"
check "... and the edit was submitted" answer_matches "$W/f1.prompt" "$W/f1.out"

# 3. rm forgets a job for good: it does not come back.
rm "$D/d7"
fs_umount
fs_mount
check "a removed job stays removed after a restart" test ! -e "$D/d7.out"
check "a prompt whose output was removed is not resubmitted" test ! -e "$D/d5.out"
check "the edited prompt and its answer are back" \
    bash -c "[ \"\$(cat '$D/f1')\" = 'edited in this mount' ] && cmp -s '$W/f1.out' '$D/f1.out'"
check "and the others are still there" test -s "$D/d6.out"
fs_done
