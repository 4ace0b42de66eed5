#!/usr/bin/env bash
# Privacy: a job's outputs carry its prompt's owner and permissions (umask 077 ->
# 0600 outputs), so with -o allow_other another user cannot read a private answer;
# status/ is private unless -o status_public; a name with a newline or an escape
# code cannot forge a line of status/jobs or reach the terminal.
. "$(dirname "$0")/fs_lib.sh"
[ "$(id -u)" -eq 0 ] || fs_skip "needs root (to read the mount as another user with setpriv)"
command -v setpriv >/dev/null || fs_skip "setpriv is not installed"
fs_setup --keys 2 --big --inflight 4
chmod 755 "$FS_TMP"  # so that another user can reach the mount at all
fs_mount -o allow_other
D=$MNT/flash
as_nobody() { setpriv --reuid 65534 --regid 65534 --clear-groups "$@"; }

(umask 077; echo "a private question" >"$D/s")
echo "a public question" >"$D/p"
timeout 20 cat "$D/s.out" "$D/p.out" >/dev/null
check "a prompt written with umask 077 is 0600" test "$(stat -c %a "$D/s")" = 600
check "... and so are its outputs" \
    bash -c "[ \$(stat -c %a '$D/s.out') = 600 ] && [ \$(stat -c %a '$D/s.json') = 600 ]"
check "another user cannot read the private answer" \
    bash -c "! setpriv --reuid 65534 --regid 65534 --clear-groups cat '$D/s.out' >/dev/null 2>&1"
check "... nor its metadata" bash -c "! setpriv --reuid 65534 --regid 65534 --clear-groups cat '$D/s.json' >/dev/null 2>&1"
check "another user reads a 0644 prompt's answer" bash -c "setpriv --reuid 65534 --regid 65534 --clear-groups cat '$D/p.out' >/dev/null"
chmod 600 "$D/p"
check "chmod 600 on the prompt makes its answer private" \
    bash -c "! setpriv --reuid 65534 --regid 65534 --clear-groups cat '$D/p.out' >/dev/null 2>&1"
check "status/ is private to the mounting user" \
    bash -c "! setpriv --reuid 65534 --regid 65534 --clear-groups cat '$MNT/status/jobs' >/dev/null 2>&1"
check "... who reads it" bash -c "cat '$MNT/status/jobs' >/dev/null"

# Names with control characters.
evil=$'x\nforged\tdone\t-\t-\t0ms\t0\t-\t-'
esc=$'red\e[31mtext'
echo "q1" >"$D/$evil"
echo "q2" >"$D/$esc"
timeout 20 cat "$D/$evil.out" "$D/$esc.out" >/dev/null
check "a name with a newline forges no line of status/jobs" \
    bash -c "! grep -q '^forged' '$MNT/status/jobs' && grep -qF 'flash/x\\nforged\\tdone' '$MNT/status/jobs'"
check "an escape code in a name never reaches status/jobs" \
    bash -c "! grep -q \$'\\e' '$MNT/status/jobs' && grep -qF 'red\\x1b[31mtext' '$MNT/status/jobs'"
check "... nor the log" bash -c "! grep -q \$'\\e' '$FS_LOG'"
check ".json escapes them as JSON does" python3 -c "
import json, sys; sys.exit(json.load(open(sys.argv[1]))['name'] != sys.argv[2])" "$D/$esc.json" "$esc"
fs_umount
fs_mount -o allow_other,status_public
check "after a restart the private answer is still 0600" test "$(stat -c %a "$D/s.out")" = 600
check "... and the chmod'ed one too" test "$(stat -c %a "$D/p.out")" = 600
check "with -o status_public another user reads status/" bash -c "setpriv --reuid 65534 --regid 65534 --clear-groups cat '$MNT/status/pool' >/dev/null"
fs_done
