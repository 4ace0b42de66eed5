#!/usr/bin/env python3
"""200 `gemini-pool ask` processes at once against 8 emulator keys, all on one
state file.  Each project allows 20 requests a day on the model (known to the
pool through keys.json's `models`), so 160 runs succeed and 40 fail with the
reason; none hangs, no request is ever over a limit (the emulator's self-check
over_limit) and none is answered 429: the processes share the counts and
reservations through the state file."""

import collections
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clilib import SLOW, Emu, Pool, T, answer_of, make_secret, one_line_error  # noqa: E402

t = T("cli-concurrency")
M = "gemini-3.1-flash-lite-preview"   # the end of the chain: no fallback
N_KEYS, N_RUNS, RPD = 8, 200, 20
LIMITS = {"rpm": 30, "tpm": 250000, "rpd": RPD}
keys = [{"key": make_secret(f"C{i}"), "name": f"k{i}", "project": f"p{i}"}
        for i in range(1, N_KEYS + 1)]
emu = Emu(t, {"projects": {f"p{i}": {"models": {M: LIMITS}} for i in range(1, N_KEYS + 1)},
              "keys": keys, "faults": {"latency_ms": 20, "chunk_delay_ms": 5}})
pool = Pool(t, emu, [(k["name"], k["key"]) for k in keys], config={"models": {M: LIMITS}})

t0 = time.monotonic()
procs = []
for i in range(N_RUNS):
    procs.append(subprocess.Popen(pool.cmd("ask", "--task", f"job {i}", "--model", M),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  env=pool.env))
results, hung = [], 0
deadline = time.monotonic() + 150 * SLOW
for p in procs:
    try:
        out, err = p.communicate(timeout=max(1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        hung += 1
        p.kill()
        out, err = p.communicate()
    results.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
took = time.monotonic() - t0
t.log(f"{N_RUNS} runs finished in {took:.1f} s")
t.check(hung == 0, f"no run hangs ({hung} killed)")

codes = collections.Counter(r.returncode for r in results)
t.check(set(codes) <= {0, 1}, f"every run exits 0 or 1 ({dict(codes)})", codes)
t.check(codes[0] == N_KEYS * RPD, f"{N_KEYS * RPD} runs succeed (the day's quota of 8 keys)",
        codes)
failed = [r for r in results if r.returncode != 0]
reasons = collections.Counter(one_line_error(r) or f"<not one line: {r.stderr!r}>"
                              for r in failed)
t.check(all(line.startswith(f"gemini-pool: all {N_KEYS} keys exhausted for {M}") and
            "(midnight Pacific)" in line for line in reasons),
        "every other run fails with one line naming when a key frees up", reasons)

# Every success printed exactly the answer of the key executions.jsonl names.
ex = {e["task_preview"]: e for e in pool.executions()}
t.check(len(ex) == N_RUNS, "executions.jsonl has a line for every run (one shared state dir)",
        len(ex))
wrong = []
for i, r in enumerate(results):
    e = ex.get(f"job {i}", {})
    key = e.get("key_id")
    if r.returncode == 0 and (e.get("status") != "done" or key is None or r.stdout.decode()
                              != answer_of(M, key, "p" + key[1:], f"job {i}")):
        wrong.append((i, key, r.stdout[:80]))
t.check(not wrong, "every success printed exactly its key's answer", wrong[:5])

u = emu.usage()
t.check(u["over_limit_total"] == 0, "the emulator saw no request over a limit (over_limit 0)",
        u["over_limit_total"])
t.check(u["quota_429_total"] == 0, "no quota 429: the pool knew the limits", u["quota_429_total"])
per_project = {p: u["projects"][p][M]["requests_today"] for p in u["projects"]}
t.check(all(n == RPD for n in per_project.values()), f"each project served exactly {RPD}",
        per_project)
log = emu.log()
t.check(len(log) == N_KEYS * RPD and all(c["status"] == 200 for c in log),
        f"{N_KEYS * RPD} requests sent, all answered 200", collections.Counter(
            (c["status"], c["kind"]) for c in log))

st = pool.status()
today = {k["id"]: pool.model(st, k["id"], M).get("requests_today") for k in st["keys"]}
t.check(all(n == RPD for n in today.values()), "the shared state file counted every request",
        today)
t.check(all(k["inflight"] == 0 for k in st["keys"]), "no reservation is left behind",
        [(k["id"], k["inflight"]) for k in st["keys"]])
t.done()
