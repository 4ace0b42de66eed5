#!/usr/bin/env python3
"""A model chain exhausted on every key fails with one line naming when a key
frees up ("... until HH:MM:SS UTC ..."): after per-day 429s on every key and
model of the chain, when the pool's own RPD count says so (nothing sent), when
every request meets server trouble (the line also says what went wrong), and
when every key is invalid (no time: it names the reason)."""

import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clilib import (ERRORS, Emu, Pool, T, make_secret, next_pacific_midnight,  # noqa: E402
                    one_line_error, utc)

t = T("cli-chain-exhausted")
keys = [{"key": make_secret("X1"), "name": "k1", "project": "p1"},
        {"key": make_secret("X2"), "name": "k2", "project": "p2"}]
LITE = "gemini-3.1-flash-lite-preview"
LIMITS = {"rpm": 15, "tpm": 250000, "rpd": 1}
emu = Emu(t, {"projects": {"p1": {"models": {LITE: LIMITS, "gemini-2.5-flash": {}}},
                           "p2": {"models": {LITE: LIMITS, "gemini-2.5-flash": {}}}},
              "keys": keys})
ids = [("k1", keys[0]["key"]), ("k2", keys[1]["key"])]


def until_of(line):
    m = re.search(r"until (\d\d:\d\d:\d\d) UTC", line or "")
    return m.group(1) if m else None


# ---- per-day 429 on every key, on gemini-2.5-flash and its fallback ------------------------
emu.replay(body_file=os.path.join(ERRORS, "429_per_day_free_tier.json"), count=100)
pool = Pool(t, emu, ids, name="perday")
now = time.time()
r = pool.ask("--task", "everything is used up", "--model", "gemini-2.5-flash")
line = one_line_error(r)
midnight = utc(next_pacific_midnight(now))[11:19]
t.check(r.returncode == 1 and r.stdout == b"" and line is not None
        and line.startswith("gemini-pool: all 2 keys exhausted for gemini-2.5-flash")
        and until_of(line) == midnight and line.endswith("(midnight Pacific)"),
        f"per-day everywhere: one line naming {midnight} UTC (midnight Pacific)", r)
log = emu.log()
t.check(sorted((c["key_name"], c["model"]) for c in log) ==
        [("k1", "gemini-2.5-flash"), ("k1", LITE), ("k2", "gemini-2.5-flash"), ("k2", LITE)],
        "per-day everywhere: each key tried once on each model of the chain", log)
since = len(log)
r = pool.ask("--task", "and again", "--model", "gemini-2.5-flash")
t.check(r.returncode == 1 and until_of(one_line_error(r)) == midnight and
        emu.log(since) == [], "a second run fails the same way without sending anything", r)
emu.replay(clear=True)

# ---- the pool's own count: rpd 1 on the last model of the chain --------------------------
pool = Pool(t, emu, ids, name="counted", config={"models": {LITE: LIMITS}})
emu.reset()
now = time.time()
runs = [pool.ask("--task", f"daily {i}", "--model", LITE) for i in range(3)]
t.check([r.returncode for r in runs] == [0, 0, 1], "rpd 1 on 2 keys: two asks succeed, the "
        "third fails", [r.returncode for r in runs])
line = one_line_error(runs[2])
midnight = utc(next_pacific_midnight(now))[11:19]
t.check(line is not None and f"all 2 keys exhausted for {LITE}" in line
        and until_of(line) == midnight and "(midnight Pacific)" in line,
        f"the third names {midnight} UTC (midnight Pacific)", runs[2])
u = emu.usage()
t.check(len(emu.log()) == 2 and u["quota_429_total"] == 0,
        "the pool counted ahead: 2 requests sent, no 429", emu.log())

# ---- server trouble everywhere ----------------------------------------------------------
emu.reset()
emu.faults(scope="global", p503=1)
pool = Pool(t, emu, ids, name="server")
r = pool.ask("--task", "overloaded", "--model", "gemini-2.5-flash")
done = time.time()
line = one_line_error(r)
when = until_of(line)
t.check(r.returncode == 1 and line is not None and "server" in line and "overloaded" in line,
        "503 everywhere: one line saying what went wrong", r)
# A time it names must lie ahead (never the end of a short cooldown that has
# already passed).
t.check(when is None or utc(done)[11:19] <= when or when < "01",
        f"503 everywhere: no time in the past ({when} at {utc(done)[11:19]})", line)
log = emu.log()
t.check(0 < len(log) <= 12 and {c["model"] for c in log} == {"gemini-2.5-flash", LITE},
        "503 everywhere: retried, fell back, gave up (at most 12 requests)",
        [(c["key_name"], c["model"], c["status"]) for c in log])
emu.reset()

# ---- every key invalid --------------------------------------------------------------------
pool = Pool(t, emu, [("k1", make_secret("X3")), ("k2", make_secret("X4"))], name="invalid")
r = pool.ask("--task", "who am I")
line = one_line_error(r)
t.check(r.returncode == 1 and line is not None and "API key not valid" in line,
        "every key invalid: one line with Google's message", r)
t.check(len(emu.log()) == 2, "every key invalid: each tried once", emu.log())

# ---- a prompt no key can take fails at once, saying the size and the limit ----------------
emu.reset()
pool = Pool(t, emu, ids, config={"models": {"gemini-2.5-flash": {"tpm": 300},
                                            LITE: {"rpm": 15, "tpm": 200, "rpd": 500}}},
            name="too-large")
start = time.time()
r = pool.ask("--task", "word " * 2000, "--model", "gemini-2.5-flash", "--max-wait", "60")
line = one_line_error(r)
t.check(r.returncode == 1 and line is not None and time.time() - start < 10
        and re.search(r"prompt is about \d+ input tokens", line) and "is 300" in line,
        "too large for every key: fails at once with the size and the limit", r)
t.check(len(emu.log()) == 0 and all(m["requests_today"] == 0 for k in pool.status()["keys"]
                                    for m in k["models"].values()),
        "too large for every key: nothing sent, nothing counted", emu.log())

# ---- one job penalises at most two keys key-wide ------------------------------------------
emu.reset()
bad = [(f"b{i}", make_secret(f"B{i}")) for i in range(1, 6)]
pool = Pool(t, emu, bad, name="invalid-cap")
r = pool.ask("--task", "who am I")
line = one_line_error(r)
t.check(r.returncode == 1 and line is not None and "API key not valid" in line,
        "five invalid keys: the job fails with Google's message", r)
st = pool.status()
disabled = [k["id"] for k in st["keys"] if k["state"] == "disabled"]
t.check(disabled == ["b1", "b2"] and len(emu.log()) == 2,
        "five invalid keys: one job disables two, sends two requests", (disabled, emu.log()))
t.check(all(k["state"] == "ready" and k["disabled_reason"] is None for k in st["keys"][2:]),
        "five invalid keys: the other three stay ready", st["keys"][2:])
t.done()
