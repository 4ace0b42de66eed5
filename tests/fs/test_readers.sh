#!/usr/bin/env bash
# 2,000 readers blocked on slow answers hold no threads: meanwhile `ls`, `cat
# status/pool` and a new job stay responsive, and the daemon's thread count does
# not grow.
#
# Keys: key1 starts refused (the emulator's k1 "leaked"), so the first job
# disables it; key2 and key3 are slow (60 s before any answer) and take the 32
# jobs the readers wait for (16 in flight each).  Then key1 is repaired and
# reset: a new job finds it idle and is answered at once.
. "$(dirname "$0")/fs_lib.sh"
fs_setup --keys 3 --big --inflight 16
NREADERS=${FS_READERS:-2000}
NJOBS=32
emu_ctl POST keys '{"name":"k1","state":"leaked"}' >/dev/null
emu_ctl POST faults '{"scope":"key","name":"k2","latency_ms":60000}' >/dev/null
emu_ctl POST faults '{"scope":"key","name":"k3","latency_ms":60000}' >/dev/null
fs_mount
W=$FS_TMP/work
mkdir -p "$W"
ulimit -n 65536 2>/dev/null || true

threads() {
    ls "/proc/$FS_PID/task" | wc -l
}

for i in $(seq 1 $NJOBS); do
    echo "slow job $i" >"$MNT/flash/slow$i"
done
threads_before=$(threads)

python3 - "$MNT" "$NREADERS" "$NJOBS" "$EMU_URL" "$W" <<'EOF' >"$W/result" 2>&1
import json, os, signal, subprocess, sys, time, urllib.request
mnt, nreaders, njobs, emu, w = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]

def metric(name):
    with open(os.path.join(mnt, "status/metrics")) as f:
        for line in f:
            if line.startswith(name + " "):
                return float(line.split()[1])
    return None

def default_signals():
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)

readers = []
t0 = time.monotonic()
for i in range(nreaders):
    path = os.path.join(mnt, "flash", "slow%d.out" % (i % njobs + 1))
    readers.append(subprocess.Popen(["cat", path], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, preexec_fn=default_signals))
deadline = time.monotonic() + 120
blocked = 0
while time.monotonic() < deadline:
    blocked = metric("gemini_pool_blocked_reads") or 0
    if blocked >= nreaders:
        break
    time.sleep(0.2)
print("started %d readers in %.1f s; blocked reads in the daemon: %d"
      % (nreaders, time.monotonic() - t0, blocked))
print("RESULT blocked %d" % blocked)

def timed(label, fn, rounds=5):
    # The median is judged (one scheduler hiccup on a loaded 2-core machine
    # must not fail the run); the worst is printed beside it.
    times = []
    for _ in range(rounds):
        t = time.monotonic()
        fn()
        times.append(time.monotonic() - t)
    times.sort()
    print("RESULT %s %.1f %.1f" % (label, times[len(times) // 2] * 1000, times[-1] * 1000))

timed("ls", lambda: os.listdir(os.path.join(mnt, "flash")))
timed("spawn", lambda: subprocess.run(["true"], check=True))  # a baseline, not judged
timed("ls_cmd", lambda: subprocess.run(["ls", "-l", os.path.join(mnt, "flash")],
                                        stdout=subprocess.DEVNULL, check=True))
timed("status_pool", lambda: open(os.path.join(mnt, "status/pool")).read())

# Key1 is repaired: a new job gets it while the others still wait.
sys.path.insert(0, os.path.join(os.environ["EMU_ROOT"], "scripts"))
from fake_gemini import ctlclient
status, _ = ctlclient.call(emu, os.environ["EMU_TOKEN"], "POST", "/_emu/keys",
                           {"name": "k1", "state": "ok"})
assert status == 200, status
with open(os.path.join(mnt, "ctl"), "w") as f:
    f.write("reset key1\n")
n = [0]
def new_job():
    n[0] += 1
    name = os.path.join(mnt, "flash-lite", "fresh%d" % n[0])
    with open(name, "w") as f:
        f.write("a new question %d\n" % n[0])
    with open(name + ".out") as f:
        text = f.read()
    assert "sha=" in text, text
timed("new_job", new_job)
def submit_only():
    n[0] += 1
    with open(os.path.join(mnt, "flash", "queued%d" % n[0]), "w") as f:
        f.write("queued behind the slow ones\n")
timed("submit", submit_only)

still = sum(1 for r in readers if r.poll() is None)
print("RESULT still_blocked %d" % still)
t = time.monotonic()
for r in readers:
    r.send_signal(signal.SIGTERM)
for r in readers:
    r.wait()
print("RESULT kill_all %.1f" % ((time.monotonic() - t) * 1000))
time.sleep(0.5)
print("RESULT blocked_after %d" % (metric("gemini_pool_blocked_reads") or 0))
EOF
cat "$W/result" | grep -v '^RESULT'
get() { awk -v k="$1" '$1 == "RESULT" && $2 == k {print $3}' "$W/result"; }
threads_during=$(threads)
say "figures: blocked=$(get blocked) ls=$(get ls)ms spawn=$(get spawn)ms ls-l=$(get ls_cmd)ms status/pool=$(get status_pool)ms new-job=$(get new_job)ms submit=$(get submit)ms kill-all=$(get kill_all)ms threads=$threads_before->$threads_during"
check "$NREADERS readers are blocked in the daemon" test "$(get blocked)" -ge "$NREADERS"
check "they were still waiting during the measurements" test "$(get still_blocked)" -ge "$NREADERS"
# Served while the readers wait: each finished long before the slow keys'
# first answer (60 s), whose threads it would otherwise have waited for.  The
# figures are printed above; the bound is a hang guard, not a latency.
for k in ls ls_cmd status_pool new_job submit; do
    worst=$(awk -v k="$k" '$1 == "RESULT" && $2 == k {print $4}' "$W/result")
    check "$k is served while the readers wait (worst $worst ms; hang guard 30 s)" \
        python3 -c "import sys; sys.exit(0 if '$worst' and float('$worst') < 30000 else 1)"
done
check "the blocked readers hold no threads ($threads_before -> $threads_during threads)" \
    test "$threads_during" -le $((threads_before + 12))
check "every reader ended when killed" test "$(get blocked_after)" -eq 0
echo "after the storm" >"$MNT/flash-lite/after"
check "the daemon is healthy afterwards" bash -c "timeout 20 cat '$MNT/flash-lite/after.out' | grep -q sha="
fs_done
