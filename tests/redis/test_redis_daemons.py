#!/usr/bin/env python3
"""Several machines sharing one pool through Redis, simulated with mounts: 3
FUSE daemons (`gemini-pool mount -f`) and 8 `ask` processes, each with its own
XDG_STATE_HOME (so its own jobs.db, spool, lock and log of runs), all with
--state redis://...  The emulator knows the real limits and the pool is told
them; every key allows MAX_INFLIGHT requests at once.  Every prompt is unique,
so the emulator's log (body_sha256) tells which job each request was.
Checked at the emulator: per key never more overlapping requests than
MAX_INFLIGHT, no quota 429, nothing over a limit, exactly one request per
prompt; every job answered (.out present, .json "done", ask exit 0).
One daemon is killed with -9 while its requests are held in flight at the
emulator (a gate): the leases it held stay on the server and expire by themselves
(GEMINI_POOL_LEASE_TTL_MS); it is restarted on the same state directory and mount
point and its unfinished jobs finish, none sent twice.

The 4 projects allow 480 requests a minute together, fewer than the 600 jobs:
the machines must share each minute's budget (the last jobs wait for the
window), so the run takes a little over a minute.
GKP_TEST_DAEMON_JOBS sets the number of jobs (default 600);
GKP_TEST_DAEMONS_SEPARATE=1 gives each machine its own file state instead of
Redis (the checks must then fail: a way to see that they can)."""

import collections
import json
import os
import shutil
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "cli"))
sys.path.insert(0, HERE)
from clilib import BINARY, SLOW, Emu, Pool, T, make_secret  # noqa: E402
from redislib import Redis, need_redis  # noqa: E402

need_redis()
if not os.path.exists("/dev/fuse") or not os.access("/dev/fuse", os.R_OK | os.W_OK):
    print("SKIP: /dev/fuse is missing or not accessible (no FUSE here)", flush=True)
    sys.exit(77)
if os.getuid() != 0 and shutil.which("fusermount3") is None:
    print("SKIP: fusermount3 is not installed (Debian fuse3)", flush=True)
    sys.exit(77)

t = T("redis-daemons")
M = "gemini-3.1-flash-lite-preview"  # the end of the chain: no fallback
DIR = "flash-lite"
N_PROJECTS, KEYS_PER_PROJECT, DAEMONS, ASKERS = 4, 2, 3, 8
MAX_INFLIGHT = 2
JOBS = int(os.environ.get("GKP_TEST_DAEMON_JOBS", "600"))
SEPARATE = os.environ.get("GKP_TEST_DAEMONS_SEPARATE") == "1"
LIMITS = {"rpm": 120, "tpm": 2000000, "rpd": 10000}
TTL_MS = 4000
LATENCY_MS = 150

server = Redis(t)
keys = []
for p in range(1, N_PROJECTS + 1):
    for k in range(KEYS_PER_PROJECT):
        keys.append({"key": make_secret(f"D{p}{k}"), "name": f"k{p}{k}", "project": f"p{p}"})
emu = Emu(t, {"projects": {f"p{p}": {"models": {M: LIMITS}} for p in range(1, N_PROJECTS + 1)},
              "keys": keys, "faults": {"latency_ms": LATENCY_MS}})


def machine(name: str) -> Pool:
    p = Pool(t, emu, [(k["name"], k["key"], {"project": k["project"]}) for k in keys],
             config={"models": {M: LIMITS}, "max_inflight": MAX_INFLIGHT}, name=name)
    if not SEPARATE:
        p.env["GEMINI_POOL_STATE"] = server.url
    p.env["GEMINI_POOL_LEASE_TTL_MS"] = str(TTL_MS)
    return p


class Daemon:
    """A mount of its own machine, restartable on the same state and mount point."""

    def __init__(self, i: int) -> None:
        self.pool = machine(f"daemon{i}")
        self.mnt = os.path.join(self.pool.dir, "mnt")
        os.makedirs(self.mnt)
        self.log = open(os.path.join(self.pool.dir, "daemon.log"), "ab")
        self.proc = None
        t.on_exit(self.stop)
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [BINARY, "mount", self.mnt, "-f", "--state", self.pool.env["GEMINI_POOL_STATE"]],
            env=self.pool.env, stdout=self.log, stderr=self.log, start_new_session=True)
        deadline = time.monotonic() + 30 * SLOW
        while not os.path.exists(os.path.join(self.mnt, "README")):
            if self.proc.poll() is not None:
                with open(self.log.name, "rb") as f:
                    text = f.read().decode("utf-8", "replace")
                if "ermission denied" in text or "not permitted" in text:
                    print("SKIP: mounting is not permitted here", flush=True)
                    sys.exit(77)
                t.require(False, "the daemon starts", text[-2000:])
            if time.monotonic() > deadline:
                t.require(False, "the mount comes up within 30 s")
            time.sleep(0.05)

    def unmount(self) -> None:
        for args in (["-u"], ["-uz"]):
            if subprocess.run(["fusermount3", *args, self.mnt], stderr=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL).returncode == 0:
                return

    def kill9(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self.unmount()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.unmount()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def path(self, name: str) -> str:
        return os.path.join(self.mnt, DIR, name)

    def meta(self, name: str) -> dict:
        try:
            with open(self.path(name + ".json"), encoding="utf-8") as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}

    def status_of(self, name: str) -> str:
        return self.meta(name).get("status", "")


def prompt(tag: str) -> str:
    return f"unique job {tag}: say something short"


# ---- the run ----------------------------------------------------------------------------------
daemons = [Daemon(i) for i in range(DAEMONS)]
askers = [machine(f"asker{i}") for i in range(ASKERS)]
# Half the jobs through the mounts, half through `ask`.
per_daemon = JOBS // 2 // DAEMONS
ask_jobs = JOBS - per_daemon * DAEMONS
daemon_jobs = {i: [f"d{i}-{j:04d}" for j in range(per_daemon)] for i in range(DAEMONS)}
todo = [f"a-{j:04d}" for j in range(ask_jobs)]
results = []
lock = threading.Lock()


def ask_worker(pool: Pool) -> None:
    while True:
        with lock:
            if not todo:
                return
            tag = todo.pop(0)
        r = pool.ask("--task", prompt(tag), "--model", M, "--max-wait", "120", timeout=180)
        with lock:
            results.append((tag, r))


def live_leases() -> dict:
    """Lease id -> expiry (server ms) of every lease on the server not yet expired,
    and the server's time."""
    now_s, now_us = server.cli("TIME").split()
    now = int(now_s) * 1000 + int(now_us) // 1000
    out = {}
    for zkey in server.cli("--scan", "--pattern", "gkp:*:l:*").split():
        items = server.cli("ZRANGE", zkey, "0", "-1", "WITHSCORES").split()
        for member, score in zip(items[::2], items[1::2]):
            if float(score) > now:
                out[(zkey, member)] = float(score)
    return out


def held() -> int:
    gate = emu.ctl("GET", "/_emu/gates")["gates"].get("kill", {"open": True})
    return 0 if gate["open"] else gate["waiting"]


def wait_for(predicate, limit: float) -> bool:
    """Polls until predicate() holds; False after `limit` s (a hang guard)."""
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


# Daemon 0 is killed with -9 in the middle of its work, at events rather than times:
# a quarter of its jobs answered, then the emulator holds every request at a gate,
# and daemon 0 (alone at work so far) is killed once each lease on the server belongs
# to a request it has in flight, held at the emulator.
victim = daemons[0]
t0 = time.monotonic()
first = per_daemon // 4
for tag in daemon_jobs[0][:first]:
    with open(victim.path(tag), "w", encoding="utf-8") as f:
        f.write(prompt(tag) + "\n")
for tag in daemon_jobs[0][:first]:
    with open(victim.path(tag + ".out"), "rb") as f:  # blocks until answered
        f.read()
done_before_kill = {tag: victim.meta(tag) for tag in daemon_jobs[0][:first]}
n_done = sum(1 for m in done_before_kill.values() if m.get("status") == "done")
emu.faults(scope="global", hold="kill")
for tag in daemon_jobs[0][first:]:
    with open(victim.path(tag), "w", encoding="utf-8") as f:
        f.write(prompt(tag) + "\n")
in_flight = wait_for(lambda: held() >= 1 and len(live_leases()) == held(), 120 * SLOW)
t.check(in_flight, f"daemon 0 has requests in flight, held at the emulator ({held()}, "
        f"{len(live_leases())} leases)")
victim.proc.kill()
killed_wall = time.time()
victim.proc.wait()
killed_at = time.monotonic()
after_kill = live_leases()
victim.unmount()
t.log(f"killed daemon 0 with {n_done}/{per_daemon} jobs done and {held()} requests held at "
      f"the emulator; {len(after_kill)} live leases on the server right after")
# Nobody else has started yet: every lease on the server is the dead daemon's.
dead = set(after_kill)
t.check(dead, f"the killed daemon held leases that stay on the server ({len(dead)})")
emu.faults(scope="global", hold=None)
emu.ctl("POST", "/_emu/gates", {"name": "kill", "open": True})

# The others start while the dead daemon's leases are still on the server.
for i, d in enumerate(daemons[1:], start=1):
    for tag in daemon_jobs[i]:
        with open(d.path(tag), "w", encoding="utf-8") as f:
            f.write(prompt(tag) + "\n")
threads = [threading.Thread(target=ask_worker, args=(p,)) for p in askers]
for th in threads:
    th.start()
freed = wait_for(lambda: not set(live_leases()) & dead, 60 * SLOW)
t.check(freed, f"they expire on the server by themselves ({round(time.monotonic() - killed_at, 1)}"
        f" s after the kill, lease {TTL_MS} ms)")
victim.start()
restarted_wall = time.time()

# Every daemon job answered.
missing = []
for i, d in enumerate(daemons):
    for tag in daemon_jobs[i]:
        try:
            with open(d.path(tag + ".out"), "rb") as f:  # blocks until answered
                if not f.read():
                    missing.append((tag, "empty .out"))
        except OSError as exc:
            missing.append((tag, str(exc)))
for th in threads:
    th.join()
elapsed = time.monotonic() - t0
t.log(f"{JOBS} jobs ({per_daemon * DAEMONS} in {DAEMONS} mounts, {ask_jobs} by {ASKERS} ask "
      f"processes) in {elapsed:.1f} s")
t.check(not missing, "every mount job has its answer (.out)", missing[:5])
not_done = [(tag, d.status_of(tag)) for i, d in enumerate(daemons) for tag in daemon_jobs[i]
            if d.status_of(tag) != "done"]
t.check(not not_done, "every mount job's .json says done", not_done[:5])
bad = [(tag, r.returncode, r.stderr[-300:]) for tag, r in results if r.returncode != 0]
t.check(len(results) == ask_jobs and not bad, f"every one of the {ask_jobs} ask jobs is answered",
        bad[:5])

# ---- checked at the emulator --------------------------------------------------------------
u = emu.usage()
t.check(u["quota_429_total"] == 0, "no quota 429: the machines shared the counts",
        u["quota_429_total"])
t.check(u["over_limit_total"] == 0, "nothing over a limit at the emulator", u["over_limit_total"])
log = emu.log()
t.check(all(e["status"] == 200 for e in log), "every request at the emulator was answered 200",
        collections.Counter(e["status"] for e in log))
per_body = collections.Counter(e["body_sha256"] for e in log)
first_start = {}
for e in log:
    start = e["ts"] - e["ms"] / 1000
    b = e["body_sha256"]
    first_start[b] = min(first_start.get(b, start), start)
t.check(len(per_body) == JOBS, f"every one of the {JOBS} prompts reached the emulator",
        len(per_body))
# A request in flight when its daemon was killed may have reached the emulator (Google)
# and been answered into a dead socket: that job runs again after the restart (the
# answer was lost with the process).  Nothing else is sent twice: each such prompt
# twice at most, no more of them than the leases the dead daemon held, each first
# sent before the kill.
twice = {b: n for b, n in per_body.items() if n > 1}
t.log(f"prompts sent twice: {len(twice)} (requests in flight at the kill: {len(dead)})")
t.check(all(n == 2 for n in twice.values()) and len(twice) <= len(dead),
        "only the killed daemon's requests in flight were sent again, once",
        (sorted(twice.values()), len(dead)))
t.check(all(first_start[b] < killed_wall for b in twice),
        "each prompt sent twice had been sent before the kill")
second_start = {}
for e in log:
    b = e["body_sha256"]
    start = e["ts"] - e["ms"] / 1000
    if b in twice and start > first_start[b]:
        second_start[b] = start
t.check(all(second_start.get(b, 0) >= restarted_wall - 0.5 for b in twice),
        "and again only by the restarted daemon")
FIELDS = ("status", "key_id", "attempts", "created", "finished")
rerun = [tag for tag, m in done_before_kill.items()
         if {f: m.get(f) for f in FIELDS} != {f: victim.meta(tag).get(f) for f in FIELDS}]
t.check(not rerun, f"the {len(done_before_kill)} jobs it had answered before the kill are "
        "kept, not run again", rerun[:5])
t.check(len(log) == JOBS + len(twice), "otherwise exactly one request per job",
        (len(log), JOBS, len(twice)))
by_key = collections.defaultdict(list)
for e in log:
    by_key[e["key_name"]].append((e["ts"] - e["ms"] / 1000, e["ts"]))
worst = {}
for k, spans in by_key.items():
    events = sorted([(s + 0.001, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    cur = peak = 0
    for _, d in events:
        cur += d
        peak = max(peak, cur)
    worst[k] = peak
t.log(f"most requests at once per key at the emulator: {worst}")
t.check(max(worst.values(), default=0) <= MAX_INFLIGHT,
        f"per key never more than max_inflight={MAX_INFLIGHT} requests at once", worst)
t.check(len(by_key) == len(keys), "every key served", sorted(by_key))
if not SEPARATE:
    st = askers[0].status()
    inflight = sum(k.get("inflight", 0) for k in st["keys"])
    t.check(inflight == 0, "no lease is left behind", inflight)


def clean_exit(d: Daemon):
    """The daemon's exit status after fusermount3 -u (0 = clean; a sanitizer
    report makes it fail) and the end of its log."""
    d.unmount()
    try:
        rc = d.proc.wait(30 * SLOW)
    except subprocess.TimeoutExpired:
        rc = "still running"
    d.log.flush()
    with open(d.log.name, "rb") as f:
        return rc, f.read().decode("utf-8", "replace")[-1500:]


exits = [clean_exit(d) for d in daemons]
t.check(all(rc == 0 for rc, _ in exits), "the 3 daemons exit cleanly when unmounted",
        [e for e in exits if e[0] != 0][:1])
t.done()
