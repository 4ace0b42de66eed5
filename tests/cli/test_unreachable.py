#!/usr/bin/env python3
"""Nothing sent, nothing counted: with the endpoint unreachable (base_url at a
closed port) `gemini-pool ask` fails with one line naming the endpoint and the
reason, and `status --json` shows no request counted, no key cooling or
disabled, and the endpoint unreachable since the first failure.  An emulator
that comes back while jobs wait lets them finish."""

import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clilib import Emu, Pool, T, make_secret, one_line_error  # noqa: E402

t = T("cli-unreachable")
keys = [{"key": make_secret(f"U{i}"), "name": f"k{i}", "project": f"p{i}"} for i in (1, 2, 3)]
ids = [(k["name"], k["key"]) for k in keys]


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ---- 20 asks against a closed port -------------------------------------------------------
port = closed_port()
url = f"http://127.0.0.1:{port}"
pool = Pool(t, None, ids, config={"base_url": url}, name="closed")
started = time.time()
with ThreadPoolExecutor(max_workers=5) as ex:
    runs = list(ex.map(lambda i: pool.ask("--task", f"offline {i}", "--max-wait", "1"),
                       range(20)))
expect = f"gemini-pool: could not connect to {url}: connection refused"
t.check(all(r.returncode == 1 and one_line_error(r) == expect for r in runs),
        "20 asks: each fails with one line naming the endpoint and the reason",
        next((r for r in runs if one_line_error(r) != expect), None))
t.check(not any(k["key"].encode() in r.stderr + r.stdout for r in runs for k in keys),
        "20 asks: no key in any output", None)
st = pool.status()
t.check(all(m["requests_today"] == 0 and m["requests_last_minute"] == 0
            and m["cooldown_until"] == 0 and m["cooldown_kind"] is None
            for k in st["keys"] for m in k["models"].values()),
        "20 asks: requests_today 0 everywhere, nothing cooling",
        [(k["id"], m) for k in st["keys"] for m in k["models"].values() if m["requests_today"]])
t.check(all(k["state"] == "ready" and k["requests_total"] == 0 and k["last_used"] is None
            and k["disabled_reason"] is None for k in st["keys"]),
        "20 asks: every key ready, never used, none disabled", st["keys"])
ep = st.get("endpoint", {})
t.check(ep.get("unreachable") is True and ep.get("url") == url
        and ep.get("error") == "connection refused" and ep.get("since") is not None
        and ep["since"] >= time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started - 1)),
        "status --json: the endpoint is unreachable, since when and why", ep)
table = pool.run("status").stdout.decode()
t.check(f"endpoint {url} unreachable since " in table and "connection refused" in table,
        "status: the table says the endpoint is unreachable", table)
ex = pool.executions()
t.check(len(ex) == 20 and all(e.get("attempts") and all(
    a.get("kind") == "unreachable" for a in e["attempts"]) for e in ex),
    "executions.jsonl: every attempt is recorded as unreachable",
    ex[-1] if ex else None)

# ---- the emulator comes back while jobs wait ---------------------------------------------
emu = Emu(t, {"projects": {k["project"]: {} for k in keys}, "keys": keys}, name="emu1")
port = emu.port
emu.stop()
pool = Pool(t, emu, ids, name="comeback")
env = dict(pool.env)
procs = [subprocess.Popen(pool.cmd("ask", "--task", f"wait for me {i}", "--max-wait", "60"),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=pool.dir)
         for i in range(3)]
time.sleep(2.5)
st = pool.status()
t.check(st["endpoint"]["unreachable"] is True and all(
    m["requests_today"] == 0 for k in st["keys"] for m in k["models"].values()),
    "while down: the jobs wait, nothing counted", st["endpoint"])
emu2 = Emu(t, {"projects": {k["project"]: {} for k in keys}, "keys": keys}, "--port", str(port),
           name="emu2")
outs = [p.communicate(timeout=60) for p in procs]
t.check(all(p.returncode == 0 and o[0] for p, o in zip(procs, outs)),
        "the emulator came back: every waiting job finishes",
        [(p.returncode, o[1][-300:]) for p, o in zip(procs, outs)])
st = pool.status()
today = sum(m["requests_today"] for k in st["keys"] for m in k["models"].values())
t.check(today == len(emu2.log()) == 3 and st["endpoint"]["unreachable"] is False,
        "after: exactly the 3 requests Google saw are counted; the endpoint is reachable",
        (today, len(emu2.log()), st["endpoint"]))
t.done()
