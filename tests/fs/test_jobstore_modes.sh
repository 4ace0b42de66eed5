#!/usr/bin/env bash
# The job store holds every prompt and answer: jobs.db, jobs.db-wal and
# jobs.db-shm are 0600 whatever the umask (here 022, under which SQLite makes
# them 0644), one left readable by an older version is made private, and a
# state directory others can list is refused with one line naming the fix.
. "$(dirname "$0")/fs_lib.sh"
fs_setup --keys 1
umask 022
STATE_DIR=$(dirname "$FS_STATE")
DB=$STATE_DIR/jobs.db
mode() { stat -c %a "$1" 2>/dev/null; }

fs_mount
echo "a secret question" >"$MNT/flash/q1"
timeout 30 cat "$MNT/flash/q1.out" >/dev/null
check "jobs.db is 0600 under umask 022" test "$(mode "$DB")" = 600
check "jobs.db-wal is 0600" test "$(mode "$DB-wal")" = 600
check "jobs.db-shm is 0600" test "$(mode "$DB-shm")" = 600
if [ "$(id -u)" -eq 0 ] && command -v setpriv >/dev/null; then
    chmod 755 "$FS_TMP"
    check "another user cannot read the job store" \
        bash -c "! setpriv --reuid 65534 --regid 65534 --clear-groups cat '$DB' >/dev/null 2>&1"
fi
fs_umount

# A store an older version left 0644: made private at the next mount.
chmod 644 "$DB"
fs_mount
check "a jobs.db left 0644 is made 0600 at mount" test "$(mode "$DB")" = 600
check "... and its answers are still there" test -s "$MNT/flash/q1.out"
fs_umount

# A state directory that others can list is refused.
chmod 755 "$STATE_DIR"
out=$("$GEMINI_POOL" mount "$MNT" -f --config "$FS_KEYS_JSON" --state "$FS_STATE" 2>&1 </dev/null)
rc=$?
check "a state directory readable by others is refused" test $rc -ne 0
check "... with one line naming the fix" \
    bash -c "[ \$(printf '%s\n' \"\$1\" | wc -l) = 1 ] && printf '%s' \"\$1\" | grep -q 'chmod 700'" _ "$out"
check "... and nothing mounted" bash -c "! grep -q ' $MNT ' /proc/mounts"
chmod 700 "$STATE_DIR"
fs_done
