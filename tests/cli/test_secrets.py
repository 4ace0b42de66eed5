#!/usr/bin/env python3
"""No API key string ever appears in what gemini-pool writes: stdout and
stderr of every command (successes, every kind of failure, keys check, status,
reset), the state file and everything else in the state directory (e.g.
executions.jsonl), or the URLs of its requests (the key travels only in the
x-goog-api-key header: the emulator's log never shows `?key=` nor a key it had
to scrub)."""

import glob
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clilib import ERRORS, Emu, Pool, T, make_secret  # noqa: E402

t = T("cli-secrets")
keys = [{"key": make_secret("K1"), "name": "k1", "project": "p1"},
        {"key": make_secret("K2"), "name": "k2", "project": "p2"},
        {"key": make_secret("K3"), "name": "k3", "project": "p3", "state": "leaked"}]
unknown = make_secret("K4")
secrets_ = [k["key"] for k in keys] + [unknown]
emu = Emu(t, {"projects": {"p1": {}, "p2": {}, "p3": {}}, "keys": keys})
pool = Pool(t, emu, [("k1", keys[0]["key"]), ("k2", keys[1]["key"]), ("k3", keys[2]["key"]),
                     ("k4", unknown)])
outputs = []


def run(*args, **kw):
    t0 = time.monotonic()
    r = pool.run(*args, **kw)
    t.log(f"{' '.join(args)[:70]}: exit {r.returncode} in {time.monotonic() - t0:.1f} s")
    outputs.append((" ".join(args), r))
    return r


# Successes and every kind of failure, so that every message path runs.
run("ask", "--task", "hello")
run("ask", "--task", "hello", "--json")
for fx in sorted(os.listdir(ERRORS)):
    if fx.endswith(".json"):
        emu.replay(body_file=os.path.join(ERRORS, fx), count=1, key="k1")
        run("ask", "--task", f"replay {fx}", "--max-wait", "2")
        run("reset", "k1")
        run("status")
emu.faults(scope="global", p_midstream=0.5, p_reset=0.2, p_malformed=0.2)
for i in range(4):
    run("ask", "--task", f"faults {i}", "--model", "gemini-2.5-flash", "--max-wait", "2")
emu.faults(scope="all", clear=True)
run("ask", "--task", "draw", "--model", "gemini-2.5-flash-image",
    "--image-output", os.path.join(t.dir, "img.png"))
run("keys", "check")
run("status")
run("status", "--json")
run("reset", "all")
run("ask", "--task", "after reset", "--timeout", "20", "--model", "gemma-3-27b-it")

t.check(len(emu.log()) >= 15, f"the commands talked to the service ({len(emu.log())} requests)")

# ---- stdout / stderr -------------------------------------------------------------------------
def leaks(data: bytes, where: str):
    found = []
    for s in secrets_:
        # The whole key, or its middle: only "AIza..." + the last 4 may be shown.
        for needle in (s, s[4:-4]):
            if needle.encode() in data:
                found.append((where, s[-6:]))
    return found


t.check(leaks(b"x" + secrets_[0].encode() + b"y", "self-test") != [],
        "the scan finds a key where there is one")
found = []
for cmd, r in outputs:
    found += leaks(r.stdout, f"stdout of {cmd[:60]}")
    found += leaks(r.stderr, f"stderr of {cmd[:60]}")
t.check(not found, f"no key in the stdout/stderr of {len(outputs)} commands", found)

# ---- the state directory -----------------------------------------------------------------------
state_dir = os.path.dirname(pool.state_file)
files = [p for p in glob.glob(os.path.join(state_dir, "**"), recursive=True) if os.path.isfile(p)]
found = []
for path in files:
    with open(path, "rb") as f:
        data = f.read()
    found += leaks(data, os.path.relpath(path, state_dir))
names = sorted(os.path.relpath(p, state_dir) for p in files)
t.check("executions.jsonl" in names and os.path.basename(pool.state_file) in names,
        f"the state directory holds the state file and executions.jsonl ({names})")
t.check(not found, f"no key in any file of the state directory ({len(files)} files)", found)
with open(os.path.join(state_dir, "executions.jsonl"), "rb") as f:
    n = sum(1 for _ in f)
t.check(n >= 10, f"executions.jsonl has a line per ask ({n})")

# ---- the requests' URLs ------------------------------------------------------------------
log = emu.log()
bad = [c for c in log if c["key_in_url"] or "REDACTED" in (c["path"] or "")
       or "key=" in (c["path"] or "")]
t.check(not bad, "no request carried a key in its URL (emulator log: key_in_url, REDACTED)",
        bad[:3])
with open(emu.log_file, "rb") as f:
    raw = f.read()
t.check(not leaks(raw, "emulator log"), "the emulator's log file holds no key")
t.check(all(c["user_agent"] and "REDACTED" not in c["user_agent"] for c in log),
        "no key in any header the emulator logs", {c["user_agent"] for c in log})
t.done()
