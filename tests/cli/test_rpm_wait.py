#!/usr/bin/env python3
"""RPM exhaustion waits rather than failing: one project whose model allows 2
requests a minute, in the emulator and in keys.json's `models`.  Two asks use
the minute; the third waits until the first leaves the 60 s window and then
succeeds on the same key -- and the service never answers 429.

To keep the test short the first two asks run 52 s in the past (faketime for
gemini-pool, the emulator's clock offset for the service), so the third waits
about 8 s.  Without faketime it waits the whole minute."""

import os
import re
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clilib import Emu, Pool, T, answer_of, make_secret, one_line_error, utc  # noqa: E402

t = T("cli-rpm-wait")
M = "gemini-3-flash-preview"
LIMITS = {"rpm": 2, "tpm": 250000, "rpd": 100}
keys = [{"key": make_secret("R1"), "name": "k1", "project": "p1"}]
emu = Emu(t, {"projects": {"p1": {"models": {M: LIMITS, "gemini-2.5-flash": {}}}},
              "keys": keys})
pool = Pool(t, emu, [("k1", keys[0]["key"])],
            config={"models": {M: LIMITS}, "fallback": {M: None}})

back = 52 if shutil.which("faketime") else 0
env = {"ASAN_OPTIONS": (os.environ.get("ASAN_OPTIONS", "") +
                        ":verify_asan_link_order=0").lstrip(":")}
emu.ctl("POST", "/_emu/clock", {"offset_s": -back})
for i in range(2):
    r = pool.ask("--task", f"minute {i}", faketime=f"-{back}s" if back else None, env=env)
    t.check(r.returncode == 0 and r.stdout.decode() == answer_of(M, "k1", "p1", f"minute {i}"),
            f"ask {i + 1} of 2 in the minute succeeds", r)
emu.ctl("POST", "/_emu/clock", {"offset_s": 0})

st = pool.status()
m = pool.model(st, "k1", M)
t.check(m.get("requests_last_minute") == 2 and m.get("rpm_limit") == 2,
        "status: 2/2 requests in the last minute", m)

t0 = time.monotonic()
r = pool.ask("--task", "third")
took = time.monotonic() - t0
t.check(r.returncode == 0 and r.stdout.decode() == answer_of(M, "k1", "p1", "third"),
        "the third ask waits for the minute and succeeds on the same key and model", r)
t.check(took >= 60 - back - 2,
        f"it waited for the window rather than going early ({took:.1f} s, the window "
        f"frees in about {60 - back} s)", took)
ex = pool.executions()[-1]
t.check(len(ex.get("attempts", [])) == 1, "one request: the pool waited instead of trying",
        ex)

log = emu.log()
u = emu.usage()
t.check([c["status"] for c in log] == [200, 200, 200], "the service saw 3 requests, all 200",
        log)
t.check(u["quota_429_total"] == 0 and u["over_limit_total"] == 0,
        "no 429 and no request over the limit in the emulator's usage",
        {k: u[k] for k in ("quota_429_total", "over_limit_total")})

# With no time to wait (--max-wait 0) the same situation fails at once, naming
# when the key frees up (60 s after the oldest request in the window), and
# sends nothing.
r = pool.ask("--task", "fill")
third_ts = next(c["ts"] for c in emu.log() if c["status"] == 200 and c["seq"] == 3)
since = len(emu.log())
r = pool.ask("--task", "impatient", "--max-wait", "0")
line = one_line_error(r) or ""
m = re.search(r"until (\d\d:\d\d:\d\d) UTC", line)
want = {utc(third_ts + 60 + d)[11:19] for d in (-1, 0, 1)}
t.check(r.returncode == 1 and "all 1 keys exhausted for " + M in line and m
        and m.group(1) in want, f"--max-wait 0: fails at once naming when the key frees up "
        f"(one of {sorted(want)})", r)
t.check(emu.log(since) == [], "--max-wait 0: nothing sent", emu.log(since))
t.check(emu.usage()["quota_429_total"] == 0, "still no 429", emu.usage()["quota_429_total"])
t.done()
