#!/usr/bin/env bash
# A mount over many jobs: the daemon's memory does not grow with the number of
# finished jobs (RSS at 2 000 and 20 000 within 12 MB), status/metrics costs the
# same (read time at 20 000 within 2x of that at 200), and a new mount over the
# stored jobs lists them all quickly and reads any of them.  Jobs go to a zero-cost
# upstream (bench_fs upstream) so that 20 000 take seconds.
. "$(dirname "$0")/fs_lib.sh"
BENCH_FS=${BENCH_FS:-$GKP_BUILD_ROOT/bench/bench_fs}
[ -x "$BENCH_FS" ] || fs_skip "no bench_fs helper at $BENCH_FS"
fs_setup --keys 16 --big --inflight 16
N1=200 N2=2000 N3=20000
if [ -n "${GKP_SANITIZED:-}" ]; then
    N1=100 N2=500 N3=2000  # sanitizers keep freed memory: figures are not judged
fi
"$BENCH_FS" upstream --port-file "$FS_TMP/port" --hold-ms 0 &
UP=$!
for _ in $(seq 1 200); do [ -s "$FS_TMP/port" ] && break; sleep 0.01; done
export GOOGLE_GEMINI_BASE_URL=http://127.0.0.1:$(cat "$FS_TMP/port")
trap 'kill $UP 2>/dev/null; fs_cleanup' EXIT
fs_mount
D=$MNT/flash

rss_kb() { awk '$1 == "VmRSS:" {print $2}' "/proc/$FS_PID/status"; }
# The shortest of 50 reads of status/metrics, in microseconds (the least
# disturbed by other work on a loaded machine).
metrics_us() {
    python3 - "$MNT/status/metrics" <<'PY'
import sys, time
ts = []
for _ in range(50):
    t = time.perf_counter()
    with open(sys.argv[1], "rb") as f:
        while f.read(65536):
            pass
    ts.append(time.perf_counter() - t)
print(int(min(ts) * 1e6))
PY
}
run_jobs() { # N PREFIX
    "$BENCH_FS" mount --dir "$D" --n "$1" --threads 16 --prefix "$2" >"$FS_TMP/bench.out" ||
        { cat "$FS_TMP/bench.out"; fail "$1 jobs through the mount"; }
    say "$(cat "$FS_TMP/bench.out")"
}

run_jobs "$N1" a-
m1=$(metrics_us)
run_jobs $((N2 - N1)) b-
sleep 0.5
r2=$(rss_kb)
run_jobs $((N3 - N2)) c-
sleep 0.5
r3=$(rss_kb)
m3=$(metrics_us)
done_n=$(awk '/^gemini_pool_jobs\{status="done"\}/ {print $2}' "$MNT/status/metrics")
say "RSS: $((r2 / 1024)) MB at $N2 finished jobs, $((r3 / 1024)) MB at $N3; status/metrics: ${m1}us at $N1, ${m3}us at $N3"
check "status/metrics counts every finished job ($done_n)" test "$done_n" = "$N3"
check "status/jobs has one line per job" test "$(wc -l <"$MNT/status/jobs")" = "$N3"
if [ -z "${GKP_SANITIZED:-}" ]; then
    check "RSS at $N3 finished jobs is within 12 MB of that at $N2" test $((r3 - r2)) -le $((12 * 1024))
    check "status/metrics at $N3 jobs reads within 2x of its time at $N1" test "$m3" -le $((2 * m1 + 200))
fi
check "an early job's answer reads back" \
    bash -c "grep -q 'quick brown fox' '$D/a-3-1.out' &&
             python3 -c 'import json, sys; sys.exit(json.load(open(sys.argv[1]))[\"status\"] != \"done\")' '$D/a-3-1.json'"

fs_umount
fs_mount
t0=$(date +%s%N)
entries=$(ls "$D" | wc -l)
t1=$(date +%s%N)
ls_ms=$(((t1 - t0) / 1000000))
say "first ls of $N3 stored jobs: $entries entries in ${ls_ms} ms"
check "a new mount lists every stored job (prompt, .out, .json)" test "$entries" = $((3 * N3))
check "and reads any of them" bash -c "grep -q 'quick brown fox' '$D/c-7-10.out'"
check "ls -l shows a stored job" bash -c "ls -l '$D/c-7-10.out' | grep -q ' 58 '"
kill $UP 2>/dev/null
fs_done
