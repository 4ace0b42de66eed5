#!/usr/bin/env python3
"""A per-day 429 cools the (project, model) until the next midnight in
America/Los_Angeles -- DST included -- whatever its retryDelay says.  The
`gemini-pool` processes run under faketime at fixed instants around the 2026
DST changes; the expected UTC instants are written out by hand."""

import os
import re
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clilib import ERRORS, Emu, Pool, T, make_secret, utc  # noqa: E402

t = T("cli-pacific-midnight")
if shutil.which("faketime") is None:
    print("SKIP: faketime is not installed (Debian package faketime)")
    sys.exit(77)

M = "gemini-3-flash-preview"
keys = [{"key": make_secret("P1"), "name": "k1", "project": "p1"},
        {"key": make_secret("P2"), "name": "k2", "project": "p2"}]
emu = Emu(t, {"projects": {"p1": {}, "p2": {}}, "keys": keys})
# libfaketime is preloaded: an ASan build must not insist on coming first.
ENV = {"TZ": "UTC", "ASAN_OPTIONS": (os.environ.get("ASAN_OPTIONS", "") +
                                     ":verify_asan_link_order=0").lstrip(":")}

# (fake "now" in UTC, the next midnight Pacific in UTC, why)
CASES = [
    ("2026-03-07 23:50:00", "2026-03-08 08:00:00", "Saturday before spring forward: PST"),
    ("2026-03-08 07:59:30", "2026-03-08 08:00:00", "30 s before midnight PST"),
    ("2026-03-08 08:00:30", "2026-03-09 07:00:00", "just after midnight: the 23-hour day"),
    ("2026-03-08 12:00:00", "2026-03-09 07:00:00", "after the change: PDT midnight"),
    ("2026-10-31 23:00:00", "2026-11-01 07:00:00", "Saturday before fall back: PDT"),
    ("2026-11-01 07:30:00", "2026-11-02 08:00:00", "the 25-hour day: PST midnight"),
    ("2026-12-31 23:59:00", "2027-01-01 08:00:00", "new year's eve in UTC"),
]

for now, expect, why in CASES:
    emu.reset()
    # The real body: quotaId ...PerDay..., retryDelay "22s" (which must be ignored).
    emu.replay(body_file=os.path.join(ERRORS, "429_per_day_free_tier.json"), key="k1", count=1)
    pool = Pool(t, emu, [("k1", keys[0]["key"]), ("k2", keys[1]["key"])],
                name=now.replace(" ", "_").replace(":", ""))
    ft = "@" + now
    r = pool.ask("--task", "per day", faketime=ft, env=ENV)
    t.check(r.returncode == 0 and b"key=k2" in r.stdout,
            f"{now}: the task is retried on k2 and succeeds", r)
    st = pool.status(faketime=ft, env=ENV)
    m1 = pool.model(st, "k1", M)
    until = m1.get("cooldown_until", 0)
    t.check(st["generated_at"].startswith(now.replace(" ", "T")[:16]),
            f"{now}: faketime is in effect ({st['generated_at']})", st["generated_at"])
    t.check(m1.get("cooldown_kind") == "rpd" and utc(until) == expect + " UTC",
            f"{now} ({why}): cools until {expect} UTC", f"got {m1.get('cooldown_kind')} "
            f"until {utc(until) if until else 0}")
    t.check(st["next_daily_reset"] == expect.replace(" ", "T") + "Z",
            f"{now}: next_daily_reset is {expect} UTC", st["next_daily_reset"])
    table = pool.run("status", faketime=ft, env=ENV).stdout.decode()
    t.check(re.search(r"^k1 .*rpd until " + re.escape(expect[11:]) + " UTC", table, re.M),
            f"{now}: the status table says 'rpd until {expect[11:]} UTC'", table)
    # One second past that midnight the key is usable again.
    after = f"@{expect[:17]}01"
    st = pool.status(faketime=after, env=ENV)
    t.check(pool.model(st, "k1", M).get("cooldown_until") == 0,
            f"{now}: the cooldown is over at {expect[:17]}01", pool.model(st, "k1", M))

# ---- a limit learned from the 429's quotaValue heals at midnight Pacific -----------------
now, expect = "2026-11-24 12:00:00", "2026-11-25 08:00:00"
ft, after = "@" + now, f"@{expect[:17]}01"
TABLE_RPD = 20  # the built-in table's requests per day for gemini-3-flash-preview


def learned_run(name):
    emu.reset()
    emu.replay(body_file=os.path.join(ERRORS, "429_per_day_free_tier.json"), key="k1", count=1)
    pool = Pool(t, emu, [("k1", keys[0]["key"]), ("k2", keys[1]["key"])], name=name)
    r = pool.ask("--task", "learn", faketime=ft, env=ENV)
    t.check(r.returncode == 0, f"learned ({name}): the task succeeds on k2", r)
    return pool


pool = learned_run("learned-heal")
m1 = pool.model(pool.status(faketime=ft, env=ENV), "k1", M)
t.check(m1.get("rpd_limit") == 250 and m1.get("learned", {}).get("rpd") == {
    "value": 250, "at": now.replace(" ", "T") + "Z", "until": expect.replace(" ", "T") + "Z"},
    "learned: status --json shows rpd 250 learned now, until midnight Pacific", m1)
table = pool.run("status", faketime=ft, env=ENV).stdout.decode()
t.check(re.search(r"^k1 .* 1/250\* ", table, re.M) and "rpd limit 250 learned" in table,
        "learned: the status table marks the learned limit", table)
m1 = pool.model(pool.status(faketime=after, env=ENV), "k1", M)
t.check(m1.get("rpd_limit") == TABLE_RPD and m1.get("learned") == {},
        f"learned: past midnight Pacific the table's {TABLE_RPD} applies again, no reset", m1)
pool = learned_run("learned-reset")
r = pool.run("reset", "all", faketime=ft, env=ENV)
m1 = pool.model(pool.status(faketime=ft, env=ENV), "k1", M)
t.check(r.returncode == 0 and m1.get("rpd_limit") == TABLE_RPD and m1.get("learned") == {},
        "learned: `reset all` restores the table's value at once", m1)

t.done()
