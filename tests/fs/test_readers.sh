#!/usr/bin/env bash
# 2,000 readers blocked on held answers hold no threads: meanwhile `ls`, `cat
# status/pool` and a new job are served, and the daemon's thread count does not grow.
#
# Keys: key1 starts refused (the emulator's k1 "leaked"), so the first job
# disables it; the emulator holds every answer of key2 and key3 at a gate (until
# this test opens it), and they take the 32 jobs the readers wait for (16 in flight
# each).  Then key1 is repaired and reset: a new job finds it idle and is answered
# while the 32 are still held.  Nothing here is judged by a clock: every wait is for
# an event, with a generous deadline as a hang guard; the latencies are printed as
# figures only.
. "$(dirname "$0")/fs_lib.sh"
fs_setup --keys 3 --big --inflight 16
NREADERS=${FS_READERS:-2000}
NJOBS=32
GUARD=${FS_HANG_GUARD_S:-300}
emu_ctl POST keys '{"name":"k1","state":"leaked"}' >/dev/null
emu_ctl POST faults '{"scope":"key","name":"k2","hold":"slow"}' >/dev/null
emu_ctl POST faults '{"scope":"key","name":"k3","hold":"slow"}' >/dev/null
# Held requests send nothing: the daemon must not give up on them (and retry them on
# key1) while this test, however slow the machine, is still starting its readers.
export GEMINI_POOL_STALL_TIMEOUT=3600
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
held=$(emu_gate_wait slow $NJOBS "$GUARD")
check "the $NJOBS jobs are in flight, held by the emulator ($held)" test "$held" -ge $NJOBS
threads_before=$(threads)

PYTHONPATH=$EMU_ROOT/scripts python3 - "$MNT" "$NREADERS" "$NJOBS" "$FS_PID" "$GUARD" \
    <<'EOF' >"$W/result" 2>&1
import os, signal, subprocess, sys, threading, time
from fake_gemini import ctlclient
mnt, nreaders, njobs, pid, guard = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), \
    sys.argv[4], float(sys.argv[5])
url, token = os.environ["EMU_URL"], os.environ["EMU_TOKEN"]

def metric(name):
    with open(os.path.join(mnt, "status/metrics")) as f:
        for line in f:
            if line.startswith(name + " "):
                return float(line.split()[1])
    return None

def wait_until(predicate):
    deadline = time.monotonic() + guard
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.2)
    return predicate()

def held():
    gate = ctlclient.gate(url, token, "slow")
    return 0 if gate["open"] else gate["waiting"]

# The readers get default signal dispositions from here (SIGTERM ends them even if
# this test was started with it ignored); no preexec_fn, so spawning stays cheap.
signal.signal(signal.SIGINT, signal.SIG_DFL)
signal.signal(signal.SIGTERM, signal.SIG_DFL)
readers = []
t0 = time.monotonic()
for i in range(nreaders):
    path = os.path.join(mnt, "flash", "slow%d.out" % (i % njobs + 1))
    readers.append(subprocess.Popen(["cat", path], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL))
wait_until(lambda: (metric("gemini_pool_blocked_reads") or 0) >= nreaders)
blocked = metric("gemini_pool_blocked_reads") or 0
print("started %d readers in %.1f s; blocked reads in the daemon: %d"
      % (nreaders, time.monotonic() - t0, blocked))
print("RESULT blocked %d" % blocked)
print("RESULT threads_during %d" % len(os.listdir("/proc/%s/task" % pid)))

def timed(label, fn, rounds=5):
    """Runs fn `rounds` times; each must return within the hang guard.  The times
    are figures (printed), never judged."""
    times, errors = [], []
    for _ in range(rounds):
        box = {}
        def run():
            try:
                fn()
            except Exception as exc:  # reported below
                box["error"] = repr(exc)
        t = time.monotonic()
        th = threading.Thread(target=run, daemon=True)
        th.start()
        th.join(guard)
        if th.is_alive():
            errors.append("still running after %.0f s" % guard)
            break
        times.append(time.monotonic() - t)
        if "error" in box:
            errors.append(box["error"])
    times.sort()
    median = times[len(times) // 2] * 1000 if times else -1
    worst = times[-1] * 1000 if times else -1
    print("RESULT %s %.1f %.1f %s" % (label, median, worst, "ok" if not errors else "failed"))
    for e in errors:
        print("%s: %s" % (label, e))

timed("ls", lambda: os.listdir(os.path.join(mnt, "flash")))
timed("spawn", lambda: subprocess.run(["true"], check=True))  # a baseline
timed("ls_cmd", lambda: subprocess.run(["ls", "-l", os.path.join(mnt, "flash")],
                                        stdout=subprocess.DEVNULL, check=True))
timed("status_pool", lambda: open(os.path.join(mnt, "status/pool")).read())

# Key1 is repaired: a new job gets it while the others are still held.
status, _ = ctlclient.call(url, token, "POST", "/_emu/keys", {"name": "k1", "state": "ok"})
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
    assert "sha=" in text and "key=k1 " in text, text
timed("new_job", new_job)
print("RESULT held_after_new_jobs %d" % held())
def submit_only():
    n[0] += 1
    with open(os.path.join(mnt, "flash", "queued%d" % n[0]), "w") as f:
        f.write("queued behind the held ones\n")
timed("submit", submit_only)

still = sum(1 for r in readers if r.poll() is None)
print("RESULT still_blocked %d" % still)
print("RESULT held_at_end %d" % held())
t = time.monotonic()
for r in readers:
    r.send_signal(signal.SIGTERM)
for r in readers:
    r.wait()
print("RESULT kill_all %.1f" % ((time.monotonic() - t) * 1000))
wait_until(lambda: (metric("gemini_pool_blocked_reads") or 0) == 0)
print("RESULT blocked_after %d" % (metric("gemini_pool_blocked_reads") or 0))
EOF
grep -v '^RESULT' "$W/result"
get() { awk -v k="$1" '$1 == "RESULT" && $2 == k {print $3}' "$W/result"; }
ran() { awk -v k="$1" '$1 == "RESULT" && $2 == k {print $5}' "$W/result"; }
worst() { awk -v k="$1" '$1 == "RESULT" && $2 == k {print $4}' "$W/result"; }
threads_during=$(get threads_during)
say "figures (not judged; medians of 5, worst in brackets): blocked=$(get blocked) ls=$(get ls)ms ($(worst ls)) spawn=$(get spawn)ms ($(worst spawn)) ls-l=$(get ls_cmd)ms ($(worst ls_cmd)) status/pool=$(get status_pool)ms ($(worst status_pool)) new-job=$(get new_job)ms ($(worst new_job)) submit=$(get submit)ms ($(worst submit)) kill-all=$(get kill_all)ms threads=$threads_before->$threads_during"
check "$NREADERS readers are blocked in the daemon" test "$(get blocked)" -ge "$NREADERS"
for k in ls ls_cmd status_pool submit; do
    check "$k is served while they wait" test "$(ran $k)" = ok
done
check "a new job is answered by the repaired key1 while they wait" test "$(ran new_job)" = ok
check "... without waiting for the held ones (still held: $(get held_after_new_jobs))" \
    test "$(get held_after_new_jobs)" -ge $NJOBS
check "the readers were still waiting during the measurements" \
    test "$(get still_blocked)" -ge "$NREADERS"
check "the blocked readers hold no threads ($threads_before -> $threads_during threads)" \
    test "${threads_during:-999999}" -le $((threads_before + 12))
check "every reader ended when killed" test "$(get blocked_after)" -eq 0
emu_gate_open slow
echo "after the storm" >"$MNT/flash-lite/after"
check "the daemon is healthy afterwards" \
    bash -c "timeout $GUARD cat '$MNT/flash-lite/after.out' | grep -q sha="
check "... and the held jobs complete" \
    bash -c "timeout $GUARD cat '$MNT/flash/slow1.out' | grep -q sha="
fs_done
