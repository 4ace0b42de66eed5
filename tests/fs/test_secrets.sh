#!/usr/bin/env bash
# API keys never appear in any file of the mount, in the spool, in the logs or in
# the daemon's command line -- after successes, failures, refused keys and restarts.
. "$(dirname "$0")/fs_lib.sh"
fs_setup --keys 3 --big --inflight 2
fs_mount
D=$MNT/flash
W=$FS_TMP/work
mkdir -p "$W"

for i in 1 2 3; do
    echo "an ordinary question $i" >"$D/ok$i"
    timeout 20 cat "$D/ok$i.out" >/dev/null
done
echo "draw a key" >"$MNT/image/pic"
timeout 20 cat "$MNT/image/pic.out" >/dev/null
# Failures: a refused key, a bad request, an exhausted quota.
emu_ctl POST keys '{"name":"k2","state":"leaked"}' >/dev/null
emu_ctl POST replay "{\"body_file\":\"$FS_FIXTURES/429_per_day_free_tier.json\"}" >/dev/null
emu_ctl POST replay "{\"body_file\":\"$FS_FIXTURES/400_api_key_invalid_array_framed.json\"}" >/dev/null
for i in 1 2 3 4; do
    echo "a question that meets trouble $i" >"$D/bad$i"
    timeout 30 cat "$D/bad$i.out" >/dev/null 2>&1
done
emu_ctl POST replay '{"status":400,"body_json":{"error":{"code":400,"message":"Invalid argument.","status":"INVALID_ARGUMENT"}}}' >/dev/null
echo "refused" >"$D/refused"
timeout 30 cat "$D/refused.out" >/dev/null 2>&1
echo reload >"$MNT/ctl"
echo "reset all" >"$MNT/ctl"

# Every file of the mount, read in full (no job is running, so nothing blocks).
check "no job is still running" bash -c "! grep -qE $'\\t(queued|running)\\t' '$MNT/status/jobs'"
timeout 60 grep -r -a -l -e 'FAKE-KEY' "$MNT" >"$W/hits" 2>"$W/grep.err"
check "grep -r over the whole mount finds no key" test ! -s "$W/hits"
# The .out of a failed job ends in EIO by design; nothing else may fail.
check "... and could read every file (failed answers end in EIO)" \
    bash -c "! grep -v '\\.out: Input/output error' '$W/grep.err' | grep -q ."
grep -v '\.out: Input/output error' "$W/grep.err" | head -5
nfiles=$(find "$MNT" -type f | wc -l)
say "grep read $nfiles files of the mount"

# The spool, the state directory and the daemon's log.
timeout 60 grep -r -a -l -e 'FAKE-KEY' "$FS_TMP/state" >"$W/hits2"
check "grep -r over the spool and state directory finds no key" test ! -s "$W/hits2"
check "the daemon's log has no key" bash -c "! grep -q 'FAKE-KEY' '$FS_LOG'"
check "the daemon's command line has no key" bash -c "! tr '\\0' ' ' </proc/$FS_PID/cmdline | grep -q 'FAKE-KEY'"

# And after a restart (the restored files).
fs_umount
fs_mount
timeout 60 grep -r -a -l -e 'FAKE-KEY' "$MNT" "$FS_TMP/state" >"$W/hits3" 2>/dev/null
check "no key anywhere after a restart" test ! -s "$W/hits3"
cat "$W/hits" "$W/hits2" "$W/hits3" 2>/dev/null | head
fs_done
