#!/usr/bin/env python3
"""Several machines sharing one pool through Redis, simulated: 8 workers, each
with its own state directory (its own log of runs), run `gemini-pool ask`
processes one after another, all naming the same Redis (a single server, or
with --cluster a 3-master Redis Cluster).  The emulator knows the real limits
and the pool is told them, with RPM tight enough that the processes must
share the minute's budget.  Checked at the emulator: every job answered, no
quota 429, nothing over a limit, and never two requests at once on one key
(max_inflight 1; each logged request's [start, end] per key never overlaps).
Then a holder is killed with -9 in the middle of a request: its lease frees
on the server by itself (GEMINI_POOL_LEASE_TTL_MS, 4 s here) and the key
serves again."""

import collections
import json
import os
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "cli"))
sys.path.insert(0, HERE)
from clilib import SLOW, Emu, Pool, T, make_secret  # noqa: E402
from redislib import Cluster, Redis, need_redis  # noqa: E402

need_redis()
cluster = "--cluster" in sys.argv
t = T("redis-multi-cluster" if cluster else "redis-multi")
M = "gemini-3.1-flash-lite-preview"  # the end of the chain: no fallback
N_PROJECTS, KEYS_PER_PROJECT, WORKERS = 4, 2, 8
# Over the 4 projects' 120 RPM, so that the processes must share the minute;
# on a cluster fewer (the routing is what is tested there).
JOBS = int(os.environ.get("GKP_TEST_REDIS_JOBS", "100" if cluster else "160"))
LIMITS = {"rpm": 30, "tpm": 250000, "rpd": 1000}
TTL_MS = 4000

server = Cluster(t) if cluster else Redis(t)
keys = []
for p in range(1, N_PROJECTS + 1):
    for k in range(KEYS_PER_PROJECT):
        keys.append({"key": make_secret(f"M{p}{k}"), "name": f"k{p}{k}", "project": f"p{p}"})
emu = Emu(t, {"projects": {f"p{p}": {"models": {M: LIMITS}} for p in range(1, N_PROJECTS + 1)},
              "keys": keys, "faults": {"latency_ms": 30}})


def worker_pool(i: int) -> Pool:
    p = Pool(t, emu, [(k["name"], k["key"], {"project": k["project"]}) for k in keys],
             config={"models": {M: LIMITS}}, name=f"machine{i}")
    p.env["GEMINI_POOL_STATE"] = server.url
    p.env["GEMINI_POOL_LEASE_TTL_MS"] = str(TTL_MS)
    return p


pools = [worker_pool(i) for i in range(WORKERS)]
results = []
lock = threading.Lock()
todo = list(range(JOBS))


def work(pool: Pool) -> None:
    while True:
        with lock:
            if not todo:
                return
            j = todo.pop(0)
        r = pool.ask("--task", f"job {j}", "--model", M, "--max-wait", "120", timeout=180)
        with lock:
            results.append((j, r))


t0 = time.monotonic()
threads = [threading.Thread(target=work, args=(p,)) for p in pools]
for th in threads:
    th.start()
for th in threads:
    th.join()
t.log(f"{JOBS} jobs by {WORKERS} processes at a time in {time.monotonic() - t0:.1f} s")

bad = [(j, r.returncode, r.stderr[-300:]) for j, r in results if r.returncode != 0]
t.check(len(results) == JOBS and not bad, f"every one of {JOBS} jobs is answered", bad[:5])
u = emu.usage()
t.check(u["quota_429_total"] == 0, "no quota 429: the machines shared the counts",
        u["quota_429_total"])
t.check(u["over_limit_total"] == 0, "nothing over a limit at the emulator", u["over_limit_total"])
log = emu.log()
t.check(len(log) == JOBS and all(e["status"] == 200 for e in log),
        "exactly one request per job reached the emulator", len(log))
by_key = collections.defaultdict(list)
for e in log:
    by_key[e["key_name"]].append((e["ts"] - e["ms"] / 1000, e["ts"]))
overlaps = []
for k, spans in by_key.items():
    spans.sort()
    for (s1, e1), (s2, e2) in zip(spans, spans[1:]):
        if s2 < e1 - 0.001:
            overlaps.append((k, s1, e1, s2, e2))
t.check(not overlaps, "never two requests at once on one key (max_inflight 1)", overlaps[:5])
t.check(len(by_key) == len(keys), "every key served", sorted(by_key))
per_worker = [len([line for line in open(os.path.join(p.env["XDG_STATE_HOME"], "gemini-pool",
                                                        "executions.jsonl"))])
              for p in pools
              if os.path.exists(os.path.join(p.env["XDG_STATE_HOME"], "gemini-pool",
                                             "executions.jsonl"))]
t.check(sum(per_worker) == JOBS, "each machine logged its own runs", per_worker)
st = pools[0].status()
per_project = {k["project"]: k["models"].get(M, {}).get("requests_total", 0) for k in st["keys"]}
t.check(sum(per_project.values()) == JOBS, "the shared status counts every request once",
        per_project)
inflight = sum(k.get("inflight", 0) for k in st["keys"])
t.check(inflight == 0, "no lease is left behind", inflight)

if cluster:
    sizes = [int(n.cli("DBSIZE").strip() or 0) for n in server.nodes]
    t.check(sum(1 for n in sizes if n > 0) >= 2,
            f"the records are spread over the cluster's masters ({sizes})", sizes)

# ---- a holder killed with -9 -----------------------------------------------------------------
one = Pool(t, emu, [(keys[0]["name"], keys[0]["key"], {"project": "p1"})],
           config={"models": {M: {"rpm": 0 + 1000, "tpm": 250000, "rpd": 1000}}}, name="one")
one.env["GEMINI_POOL_STATE"] = server.url
one.env["GEMINI_POOL_LEASE_TTL_MS"] = str(TTL_MS)
emu.faults(latency_ms=20000)
proc = subprocess.Popen(one.cmd("ask", "--task", "killed", "--model", M), env=one.env,
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
deadline = time.monotonic() + 10 * SLOW


def held() -> int:
    d = one.status()
    return one.key(d, keys[0]["name"]).get("inflight", 0)


while held() == 0 and time.monotonic() < deadline:
    time.sleep(0.1)
t.check(held() == 1, "the request holds its key")
proc.kill()
proc.wait()
killed_at = time.monotonic()
t.check(held() == 1, "killed with -9: the lease is still on the server")
while held() != 0 and time.monotonic() - killed_at < 120:  # a hang guard
    time.sleep(0.2)
freed = time.monotonic() - killed_at
t.check(held() == 0,
        f"the dead holder's lease freed on the server by its expiry ({freed:.1f} s, lease "
        f"{TTL_MS} ms)")
emu.faults(latency_ms=0)
r = one.ask("--task", "after the kill", "--model", M, "--max-wait", "5")
t.check(r.returncode == 0, "the key serves again", r)
t.done()
