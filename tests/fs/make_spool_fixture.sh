#!/usr/bin/env bash
# Writes tests/fixtures/spool-v1.tar.gz: a spool directory as the release before
# the job store wrote it (spool/<profile>/<name>.{prompt,result,img<N>}), with
# the answers read through that release's mount in expected/.  Run with a build
# of that release: GKP_BUILD_ROOT=/path/to/old/build tests/fs/make_spool_fixture.sh
. "$(dirname "$0")/fs_lib.sh"
fs_setup --keys 2 --big --inflight 8
fs_mount
D=$MNT/flash
X=$FS_TMP/expected
mkdir -p "$X"
for i in 1 2 3; do
    printf 'kept question %d\nsecond line\n' "$i" >"$D/k$i"
    timeout 20 cat "$D/k$i.out" >"$X/flash.k$i.out"
done
echo "draw a small square" >"$MNT/image/pic"
timeout 20 cat "$MNT/image/pic.out" >"$X/image.pic.out"
cp "$MNT/image/pic.png" "$X/image.pic.png"
emu_ctl POST replay '{"status":400,"body_json":{"error":{"code":400,"message":"Request contains an invalid argument.","status":"INVALID_ARGUMENT"}}}' >/dev/null
echo "a refused question" >"$D/bad"
timeout 20 cat "$D/bad.out" >/dev/null 2>&1
cp "$D/bad.err" "$X/flash.bad.err"
for n in k1 k2 k3 bad; do cp "$D/$n.json" "$X/flash.$n.json"; done
emu_ctl POST faults '{"scope":"global","latency_ms":30000}' >/dev/null
echo "a pending question" >"$D/pend"
sleep 0.5
fs_umount
out=$GKP_SOURCE_ROOT/tests/fixtures/spool-v1.tar.gz
tar -C "$FS_TMP" -czf "$out" --owner=0 --group=0 --sort=name state/spool expected
tar -tzvf "$out"
