#!/usr/bin/env python3
"""Processes in different pid namespaces share one key (max_inflight 1) through
one state file: `gemini-pool ask` on the host and inside `unshare --pid --fork`
(each in a namespace of its own).  Checked at the emulator's request log, not
by trusting the engine: the requests on the key never overlap in time.  Then
a holder on the host is killed mid-request: a process in another namespace
cannot judge its pid, so the key frees when the lease expires -- within the
lease lifetime (60 s), not never and not at once.  Needs root (unshare)."""

import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clilib import SLOW, Emu, Pool, T, make_secret  # noqa: E402

if os.geteuid() != 0 or subprocess.run(["unshare", "--pid", "--fork", "true"],
                                       capture_output=True).returncode != 0:
    print("SKIP: needs root and unshare --pid (new pid namespaces)")
    sys.exit(77)

t = T("cli-pidns")
M = "gemini-2.5-flash"
LEASE_S = 60
secret = make_secret("NS1")
emu = Emu(t, {"projects": {"p1": {"models": {M: {"rpm": 1000, "tpm": 10000000, "rpd": 100000}}}},
              "keys": [{"key": secret, "name": "k1", "project": "p1"}],
              "faults": {"latency_ms": 700}})
pool = Pool(t, emu, [("k1", secret)], config={"max_inflight": 1})


def ask(task, in_ns, extra=()):
    argv = pool.cmd("ask", "--task", task, "--model", M, "--max-wait", "300", *extra)
    if in_ns:
        argv = ["unshare", "--pid", "--fork", *argv]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=pool.env,
                            cwd=pool.dir)


def intervals():
    """(start, end, seq) of every request that reached the key."""
    out = []
    for e in emu.log():
        if e.get("key_name") == "k1" and e.get("action"):
            out.append((e["ts"] - e["ms"] / 1000.0, e["ts"], e["seq"]))
    return sorted(out)


# Part 1: six runs at once, three on the host and three in namespaces.
procs = [ask(f"shared {i}", in_ns=i % 2 == 1) for i in range(6)]
codes = []
for p in procs:
    try:
        p.communicate(timeout=120 * SLOW)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
    codes.append(p.returncode)
t.check(codes == [0] * 6, f"every run succeeds ({codes})")
iv = intervals()
t.check(len(iv) == 6, f"six requests reached the key ({len(iv)})", iv)
overlaps = [(a, b) for a, b in zip(iv, iv[1:]) if b[0] < a[1] - 0.005]
t.check(not overlaps, "no two requests were ever in flight on the key at once", overlaps)

# Part 2: a holder on the host is killed mid-request.
emu.faults(scope="global", latency_ms=30000)
holder = ask("held", in_ns=False)
deadline = time.monotonic() + 20 * SLOW
while time.monotonic() < deadline:
    doc = pool.status()
    if pool.key(doc, "k1")["inflight"] == 1:
        break
    time.sleep(0.1)
t.check(pool.key(pool.status(), "k1")["inflight"] == 1, "the holder has the key")
holder.kill()
holder.communicate()
killed_at = time.monotonic()
emu.faults(scope="global", latency_ms=100)
waiter = ask("after the kill", in_ns=True)
try:
    waiter.communicate(timeout=(LEASE_S + 60) * SLOW)
except subprocess.TimeoutExpired:
    waiter.kill()
    waiter.communicate()
took = time.monotonic() - killed_at
t.check(waiter.returncode == 0, "the run in another namespace gets the key after the kill")
t.log(f"the key freed {took:.1f} s after its holder was killed")
t.done()
