#!/usr/bin/env bash
# The mount with its state on Redis: a job is answered, status/pool and
# pool.json name the backend and the server, the spool stays local (in
# $XDG_STATE_HOME/gemini-pool), the counts are in Redis.  Redis killed: a new
# job waits, nothing is sent, status/pool says the server is unreachable and
# since when; Redis back (AOF): the job is answered.
. "$(dirname "$0")/fs_lib.sh"
command -v redis-server >/dev/null || fs_skip "redis-server is not installed (Debian package redis-server)"
fs_setup --keys 2
RDIR=$FS_TMP/redis
mkdir -p "$RDIR"
RPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
RPID=
start_redis() {
    redis-server --port "$RPORT" --bind 127.0.0.1 --dir "$RDIR" --save '' --appendonly yes \
        --daemonize no --logfile "$RDIR/log" &
    RPID=$!
    for _ in $(seq 200); do redis-cli -p "$RPORT" ping >/dev/null 2>&1 && return 0; sleep 0.05; done
    fail "redis-server does not start"
}
start_redis
trap 'kill "$RPID" 2>/dev/null; fs_cleanup' EXIT
export XDG_STATE_HOME=$FS_TMP/xdg
FS_STATE=redis://127.0.0.1:$RPORT/0
export GEMINI_POOL_STATE=$FS_STATE
fs_mount
D=$MNT/flash
sent() { emu_ctl GET log | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))'; }
counted() {
    local a b
    a=$(redis-cli -p "$RPORT" hget 'gkp:{key1}:k:key1' rt)
    b=$(redis-cli -p "$RPORT" hget 'gkp:{key2}:k:key2' rt)
    echo $(( ${a:-0} + ${b:-0} ))
}

echo "hello over redis" >"$D/a"
timeout 30 cat "$D/a.out" >"$FS_TMP/a.out"
check "a job is answered with the state on Redis" test -s "$FS_TMP/a.out"
check "status/pool names the backend and the server" \
    grep -q "^state: redis redis://127.0.0.1:$RPORT/0\$" "$MNT/status/pool"
check "pool.json says the backend is redis" grep -q '"state_backend":[[:space:]]*"redis"' \
    "$MNT/status/pool.json"
check "the job store stays local, in XDG_STATE_HOME" test -e "$XDG_STATE_HOME/gemini-pool/jobs.db"
total=$(counted)
check "the request is counted in Redis ($total)" test "$total" = 1

kill -9 "$RPID"
wait "$RPID" 2>/dev/null
n0=$(sent)
echo "while redis is down" >"$D/b"
# The job tries the state server and finds it down (an event; 120 s is a hang guard).
for _ in $(seq 1 1200); do
    grep -q "^state server 127.0.0.1:$RPORT unreachable since" "$MNT/status/pool" && break
    sleep 0.1
done
check "status/pool says the state server is unreachable and since when" \
    grep -q "^state server 127.0.0.1:$RPORT unreachable since [0-9:]* UTC" "$MNT/status/pool"
check "nothing is sent while Redis is down" test "$(sent)" = "$n0"
check "the job waits" test ! -s "$D/b.err"
start_redis
timeout 60 cat "$D/b.out" >"$FS_TMP/b.out"
check "the job is answered once Redis is back" test -s "$FS_TMP/b.out"
check "and counted with the one before (AOF)" test "$(counted)" = 2
fs_umount
fs_done
