#!/usr/bin/env python3
"""A hostile or impersonated Redis server (tests/redis/fake_redis.py) answers
CLUSTER SLOTS, TIME, redirections, scripts and hashes with replies out of
shape or out of range: `gemini-pool status` and `ask` fail closed with one
line (never a crash, never a sanitizer report), and a server's text is shown
without its control characters.  A literal password on the command line is
warned about (the env: form suggested) and never printed.  Fields a state
server holds reach `status` without their terminal escapes."""

import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "cli"))
sys.path.insert(0, HERE)
from clilib import Pool, T, make_secret  # noqa: E402

t = T("redis-hostile")
FAKE = os.path.join(HERE, "fake_redis.py")


def fake(scenario: str):
    port_file = os.path.join(t.dir, f"{scenario}.port")
    p = subprocess.Popen([sys.executable, FAKE, port_file, scenario], start_new_session=True)
    t.on_exit(lambda: (p.kill(), p.wait()))
    deadline = time.monotonic() + 30
    while not os.path.exists(port_file) and time.monotonic() < deadline:
        time.sleep(0.02)
    t.require(os.path.exists(port_file), f"the fake Redis server starts ({scenario})")
    with open(port_file, encoding="ascii") as f:
        return int(f.read())


def crashed(r) -> bool:
    err = r.stderr.decode("utf-8", "replace")
    return r.returncode < 0 or r.returncode >= 128 or "Sanitizer" in err or \
        "runtime error" in err


def one_line(r) -> str:
    lines = [ln for ln in r.stderr.decode("utf-8", "replace").splitlines()
             if ln.strip() and "warning:" not in ln]
    return lines[0] if len(lines) == 1 else ""


pool = Pool(t, None, [("k1", make_secret("H1"))])
pool.env["GOOGLE_GEMINI_BASE_URL"] = "http://127.0.0.1:9"  # nothing may be sent anyway

# Each: (scenario, what the one line says).
cases = [
    ("slots-huge", "CLUSTER SLOTS answer is malformed"),
    ("slots-negative", "CLUSTER SLOTS answer is malformed"),
    ("slots-types", "CLUSTER SLOTS answer is malformed"),
    ("slots-short", "CLUSTER SLOTS answer is malformed"),
    ("time-ints", "TIME answer is malformed"),
    ("time-short", "TIME answer is malformed"),
    ("time-junk", "TIME answer is malformed"),
    ("moved-junk", "malformed redirection"),
    ("moved-port", "malformed redirection"),
    ("ask-slot", "malformed redirection"),
]
for scenario, says in cases:
    port = fake(scenario)
    for cmd in (["status", "--json"], ["ask", "--task", "hi", "--max-wait", "2"]):
        r = pool.run(*cmd, "--state", f"redis://127.0.0.1:{port}/0", timeout=60)
        line = one_line(r)
        t.check(not crashed(r) and r.returncode != 0 and says in line,
                f"{scenario}: {cmd[0]} fails closed with one line ({says})",
                (r.returncode, r.stderr.decode("utf-8", "replace")[-1500:]))

# Script and hash replies out of shape: no crash; reserve's answer out of
# range is refused, not used as an index.
port = fake("script-index")
r = pool.run("ask", "--task", "hi", "--max-wait", "2", "--state",
             f"redis://127.0.0.1:{port}/0", timeout=60)
t.check(not crashed(r) and r.returncode != 0 and "out of range" in r.stderr.decode(),
        "script-index: reserve's key index beyond what was offered is refused", r)
for scenario in ("script-types", "hash-types"):
    port = fake(scenario)
    for cmd in (["status", "--json"], ["status"], ["ask", "--task", "hi", "--max-wait", "2"]):
        r = pool.run(*cmd, "--state", f"redis://127.0.0.1:{port}/0", timeout=60)
        t.check(not crashed(r), f"{scenario}: {' '.join(cmd[:2])} does not crash",
                (r.returncode, r.stderr.decode("utf-8", "replace")[-1500:]))
port = fake("script-error-escape")
r = pool.run("ask", "--task", "hi", "--max-wait", "2", "--state",
             f"redis://127.0.0.1:{port}/0", timeout=60)
t.check(not crashed(r) and r.returncode != 0 and b"boom" in r.stderr and
        b"\x1b" not in r.stderr and b"\x07" not in r.stderr,
        "a script error's text is shown without its control characters", r.stderr[-600:])

# The control: a well-formed server of the same kind works.
port = fake("fine")
r = pool.run("status", "--json", "--state", f"redis://127.0.0.1:{port}/0", timeout=60)
t.check(r.returncode == 0 and not crashed(r), "fine: a well-formed fake server is used", r)

# ---- passwords --------------------------------------------------------------------------
PW = "hunter2/with#odd@chars"
r = pool.run("status", "--state", f"redis://:{PW}@127.0.0.1:{port}/0", timeout=60)
err = r.stderr.decode("utf-8", "replace")
t.check("literal Redis password" in err and "env:NAME" in err,
        "a literal password in --state is warned about, the env: form suggested", err)
t.check(PW not in err and "hunter2" not in err and "odd" not in err,
        "the password (with '/', '#' and '@' in it) is printed nowhere", err)
r = pool.run("status", "--state", f"redis://:env:GKP_PW@127.0.0.1:{port}/0", timeout=60,
             env={"GKP_PW": PW})
t.check("literal Redis password" not in r.stderr.decode(), "the env: form is not warned about",
        r.stderr)
dead = pool.run("status", "--state", f"redis://:{PW}@127.0.0.1:1/0", timeout=60)
err = dead.stderr.decode("utf-8", "replace")
t.check(dead.returncode != 0 and PW not in err and "hunter2" not in err and
        "127.0.0.1:1" in err, "an unreachable server's message names it without the password",
        err)

# ---- hostile data in a real server: status shows no terminal escape --------------------
if shutil.which("redis-server") is not None:
    from redislib import Redis  # noqa: E402
    red = Redis(t, name="data")
    pool.env["GEMINI_POOL_STATE"] = red.url
    doc = pool.status()
    project = doc["keys"][0]["project"]
    evil = "bad\x1b]0;pwned\x07\x1b[2J\xc2\x9b31m"
    subprocess.run(["redis-cli", "-p", str(red.port), "HSET", f"gkp:{{{project}}}:k:k1",
                    "dis", "1", "dreason", evil], check=True, stdout=subprocess.DEVNULL)
    r = pool.run("status")
    t.check(r.returncode == 0 and b"bad" in r.stdout and b"\x1b" not in r.stdout and
            b"\x07" not in r.stdout and b"\xc2\x9b" not in r.stdout,
            "status prints a state server's field without its terminal escapes", r.stdout[-800:])
    r = pool.run("status", "--json")
    t.check(r.returncode == 0 and b"\x1b" not in r.stdout and b"\x07" not in r.stdout,
            "status --json escapes them", r.stdout[-400:])
else:
    t.log("redis-server not installed: the hostile data check skipped")
t.done()
