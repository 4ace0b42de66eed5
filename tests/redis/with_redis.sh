#!/usr/bin/env bash
# with_redis.sh [--unix] [--aof] PROGRAM ARGS... - runs PROGRAM against a
# throwaway redis-server (a random loopback port, or a unix socket with
# --unix, in a temporary directory), with GKP_TEST_STATE naming it, and
# stops the server afterwards.  Exits 77 (skip) when redis-server is missing.
set -u
unix=0
aof=no
while [[ $# -gt 0 && $1 == --* ]]; do
  case $1 in
    --unix) unix=1 ;;
    --aof) aof=yes ;;
  esac
  shift
done
if ! command -v redis-server >/dev/null; then
  echo "SKIP: redis-server is not installed (Debian package redis-server)" >&2
  exit 77
fi
dir=$(mktemp -d /tmp/gkp-redis-XXXXXX)
port=0
if [[ $unix == 1 ]]; then
  listen=(--port 0 --unixsocket "$dir/redis.sock" --unixsocketperm 700)
  url="unix://$dir/redis.sock"
else
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  listen=(--port "$port" --bind 127.0.0.1)
  url="redis://127.0.0.1:$port/0"
fi
redis-server --dir "$dir" --save '' --appendonly "$aof" --daemonize no \
  --logfile "$dir/redis.log" "${listen[@]}" &
pid=$!
cleanup() {
  kill "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  rm -rf "$dir"
}
trap cleanup EXIT
for _ in $(seq 100); do
  if [[ $unix == 1 ]]; then
    redis-cli -s "$dir/redis.sock" ping >/dev/null 2>&1 && break
  else
    redis-cli -p "$port" ping >/dev/null 2>&1 && break
  fi
  sleep 0.05
done
export GKP_TEST_STATE="$url" GKP_TEST_REDIS_DIR="$dir" GKP_TEST_REDIS_PORT="$port"
"$@"
