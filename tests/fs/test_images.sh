#!/usr/bin/env bash
# Images: every image of a directory has a name of its own.  Job `x` with two
# images (x.png, x-2.png) and job `x-2` never share a name: the later image
# takes the next free "-<k>" name, its .json lists its images, and all of
# them read back byte for byte, before and after a remount.  The per-job
# image cap (-o max_images) fails the job with an .err that names it.
. "$(dirname "$0")/fs_lib.sh"
fs_setup --keys 2 --big --inflight 4
fs_mount
D=$MNT/image
W=$FS_TMP/work
mkdir -p "$W"

# expected PROMPTFILE I - the emulator's I-th image (from 0) for that prompt.
expected() {
    PYTHONPATH=$GKP_SOURCE_ROOT/scripts python3 -c '
import hashlib, sys
from fake_gemini.answers import make_png
seed = bytes.fromhex(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest()[:12])
i = int(sys.argv[2])
sys.stdout.buffer.write(make_png(bytes(((seed[0] + 37 * i) & 0xFF,)) + seed[1:]))' "$1" "$2"
}

# same FILE PROMPTFILE I - FILE is the emulator's I-th image for that prompt.
same() {
    expected "$2" "$3" >"$W/expected" && cmp -s "$W/expected" "$1"
}

# images JOB - the image names its .json lists, space-separated.
images() {
    python3 -c 'import json, sys; print(" ".join(json.load(open(sys.argv[1]))["images"]))' \
        "$D/$1.json"
}

ask() { # ask NAME COUNT TEXT
    emu_ctl POST faults "{\"scope\":\"global\",\"image_count\":$2}" >/dev/null
    echo "$3" >"$W/$1.prompt"
    cp "$W/$1.prompt" "$D/$1"
    timeout 30 cat "$D/$1.out" >/dev/null
}

ask x 2 "two pictures of x"
ask x-2 1 "one picture of x-2"
ask y-2 1 "one picture of y-2"
say "x: $(images x); x-2: $(images x-2); ls: $(cd "$D" && ls | tr '\n' ' ')"
check "x's images are x.png and x-2.png" test "$(images x)" = "x.png x-2.png"
check "x-2's image takes the next free name, x-2-1.png" test "$(images x-2)" = "x-2-1.png"
check "x.png is x's first image" same "$D/x.png" "$W/x.prompt" 0
check "x-2.png is x's second image" same "$D/x-2.png" "$W/x.prompt" 1
check "x-2-1.png is x-2's image" same "$D/x-2-1.png" "$W/x-2.prompt" 0
check "the two jobs' images differ" bash -c "! cmp -s '$D/x-2.png' '$D/x-2-1.png'"
check "ls lists each image once" \
    test "$(cd "$D" && ls | grep -c '\.png$')" = 4
check "a prompt cannot take an image's name" bash -c "! echo p 2>/dev/null >'$D/x-2-1.png'"

# Across a remount: names and bytes come back from the store, and a new job
# skips names that only the store holds.
fs_umount
fs_mount
check "after a remount x-2-1.png is still x-2's image" same "$D/x-2-1.png" "$W/x-2.prompt" 0
check "... x-2.png still x's second" same "$D/x-2.png" "$W/x.prompt" 1
check "... x.png still x's first" same "$D/x.png" "$W/x.prompt" 0
check "... x's .json lists the same names" test "$(images x)" = "x.png x-2.png"
ask y 2 "two pictures of y"
check "y's second image skips y-2.png, a stored job's" test "$(images y)" = "y.png y-2-1.png"
check "y-2.png is still y-2's image" same "$D/y-2.png" "$W/y-2.prompt" 0
check "y-2-1.png is y's second image" same "$D/y-2-1.png" "$W/y.prompt" 1
check "ls lists each image once after the remount" \
    test "$(cd "$D" && ls | grep '\.png$' | sort | tr '\n' ' ')" = \
    "x-2-1.png x-2.png x.png y-2-1.png y-2.png y.png "

# The per-job image cap: images over it fail the job; nothing is cut silently.
fs_umount
fs_mount -o max_images=10000
emu_ctl POST faults '{"scope":"global","image_count":2,"image_bytes":6000}' >/dev/null
echo "two big pictures" >"$D/big"
timeout 30 cat "$D/big.out" >/dev/null 2>&1
emu_ctl POST faults '{"scope":"global","clear":true}' >/dev/null
check "images over -o max_images fail the job" python3 -c "
import json, sys; sys.exit(json.load(open('$D/big.json'))['status'] != 'failed')"
check "its .err names the cap" grep -q 'cap of 10000 bytes (-o max_images)' "$D/big.err"
emu_ctl POST faults '{"scope":"global","image_count":1,"image_bytes":6000}' >/dev/null
echo "one big picture" >"$D/one"
timeout 30 cat "$D/one.out" >/dev/null 2>&1
emu_ctl POST faults '{"scope":"global","clear":true}' >/dev/null
check "images within the cap are done" python3 -c "
import json, sys; sys.exit(json.load(open('$D/one.json'))['status'] != 'done')"
check "... and kept whole" test "$(wc -c <"$D/one.png")" -ge 6000
fs_done
