#!/usr/bin/env bash
# Bad input is refused where the writer sees it; failed jobs fail loudly and say
# why in .err.
. "$(dirname "$0")/fs_lib.sh"
fs_setup --keys 2 --big --inflight 2
fs_mount
D=$MNT/flash
W=$FS_TMP/work
mkdir -p "$W"

# An oversized prompt: even the shell's builtin echo sees "File too large".
big=$(head -c 1100000 /dev/zero | tr '\0' a)
( echo "$big" >"$D/huge" ) 2>"$W/huge.err"
check "echo of a prompt over 1 MiB fails with 'File too large'" grep -q 'File too large' "$W/huge.err"
check "... and no job was submitted" test ! -e "$D/huge.out"
head -c 2000000 /dev/zero | tr '\0' b >"$W/big"
check "cp of an oversized prompt fails" bash -c "! cp '$W/big' '$D/huge2' 2>/dev/null"
check "... and no job was submitted" test ! -e "$D/huge2.out"
echo "small again" >"$D/huge"
check "the same name takes a prompt within the limit afterwards" \
    bash -c "timeout 20 cat '$D/huge.out' | grep -q sha="

# Refused names and places.
check "an unknown directory: ENOENT" \
    bash -c "(echo x >'$MNT/nosuch/a') 2>&1 | grep -q 'No such file or directory'"
check "writing to status/pool: EACCES" \
    bash -c "(echo x >'$MNT/status/pool') 2>&1 | grep -q 'Permission denied'"
check "creating a file in status/: EACCES" \
    bash -c "(echo x >'$MNT/status/new') 2>&1 | grep -q 'Permission denied'"
check "creating a file at the top: EACCES" \
    bash -c "(echo x >'$MNT/new') 2>&1 | grep -q 'Permission denied'"
check "mkdir: EACCES" bash -c "! mkdir '$MNT/newdir' 2>/dev/null"
echo "fine" >"$D/ok"
timeout 20 cat "$D/ok.out" >/dev/null
check "writing to an output (.out): EACCES" \
    bash -c "(echo x >'$D/ok.out') 2>&1 | grep -q 'Permission denied'"
check "writing to .json: EACCES" bash -c "(echo x >'$D/ok.json') 2>&1 | grep -q 'Permission denied'"
check "creating a name reserved for outputs: EACCES" \
    bash -c "(echo x >'$D/fresh.out') 2>&1 | grep -q 'Permission denied'"
check "ctl: a bad command is EINVAL" \
    bash -c "(echo 'frobnicate' >'$MNT/ctl') 2>&1 | grep -q 'Invalid argument'"
check "ctl: reset of an unknown key is EINVAL" \
    bash -c "(echo 'reset nosuchkey' >'$MNT/ctl') 2>&1 | grep -q 'Invalid argument'"
check "ctl: reload" bash -c "echo reload >'$MNT/ctl'"
check "ctl: reset all" bash -c "echo 'reset all' >'$MNT/ctl'"

# A job Google refuses (a replayed 400 bad request): cat fails, .err says why.
emu_ctl POST replay '{"status":400,"body_json":{"error":{"code":400,"message":"Request contains an invalid argument: the prompt mentions a forbidden topic.","status":"INVALID_ARGUMENT"}}}' >/dev/null
echo "a request Google refuses" >"$D/bad"
timeout 20 cat "$D/bad.out" >"$W/bad.out" 2>"$W/bad.cat"
rc=$?
check "cat of a failed job exits non-zero" test $rc -ne 0
check "... with an I/O error" grep -q 'Input/output error' "$W/bad.cat"
check ".err exists" test -e "$D/bad.err"
say ".err: $(cat "$D/bad.err")"
check ".err gives Google's reason" grep -q 'forbidden topic' "$D/bad.err"
check ".json says failed with the error" bash -c "grep -q '\"status\":[[:space:]]*\"failed\"' '$D/bad.json' && grep -q 'forbidden topic' '$D/bad.json'"
check "ls shows the .err" bash -c "ls '$D' | grep -qx bad.err"
check "a successful job has no .err" test ! -e "$D/ok.err"

# Text that was complete, then the failure: a 400 in the middle of the stream.
emu_ctl POST replay '{"status":400,"midstream":true,"body_json":{"error":{"code":400,"message":"Invalid argument in the middle of the stream.","status":"INVALID_ARGUMENT"}}}' >/dev/null
echo "fails half way" >"$D/half"
timeout 20 cat "$D/half.out" >"$W/half.out" 2>"$W/half.cat"
rc=$?
check "a job that fails mid-stream: cat exits non-zero" test $rc -ne 0
check "... after the text that was complete" grep -q 'fake-gemini replay' "$W/half.out"
check "... and .err says why" grep -q 'middle of the stream' "$D/half.err"

# Every key refused (leaked): the job fails and .err says what to do.
emu_ctl POST keys '{"name":"k1","state":"leaked"}' >/dev/null
emu_ctl POST keys '{"name":"k2","state":"leaked"}' >/dev/null
echo "nobody can answer this" >"$D/nokeys"
timeout 60 cat "$D/nokeys.out" >/dev/null 2>&1
rc=$?
check "all keys refused: cat exits non-zero" test $rc -ne 0
say ".err: $(cat "$D/nokeys.err" 2>/dev/null)"
check "... and .err explains" test -s "$D/nokeys.err"
check "status/pool.json shows the keys disabled" \
    bash -c "grep -c '\"state\":[[:space:]]*\"disabled\"' '$MNT/status/pool.json' | grep -qx 2"
emu_ctl POST keys '{"name":"k1","state":"ok"}' >/dev/null
emu_ctl POST keys '{"name":"k2","state":"ok"}' >/dev/null
echo 'reset all' >"$MNT/ctl"
echo "answerable again" >"$D/again"
check "after reset all, jobs are answered again" \
    bash -c "timeout 20 cat '$D/again.out' | grep -q sha="
fs_done
