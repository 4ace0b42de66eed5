"""The callers' counts live with the pool's state, not in a front's memory:
two fronts on one state (a state file, then one Redis) share a client's rpd,
a restart keeps it, and `gemini-pool status` shows it.  Where they are kept
no link is followed: a symbolic link planted (by another user, when the test
runs as root) where the daemon writes is refused, and the file it points at
is left as it was; nothing is written in the working directory."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "redis"))
from frontlib import Emu, Front, Pool, T, generate_url, http, user  # noqa: E402
from redislib import Redis  # noqa: E402

t = T("http-shared-counts")
emu = Emu(t, {"projects": {"p1": {}},
              "keys": [{"key": "FAKE-KEY-0001", "name": "k1", "project": "p1"}]})
M = "gemini-2.5-flash"
TOK = "tok-shared-0123456789abcdef"
CONFIG = {"models": {M: {"rpm": 1000, "tpm": 10000000, "rpd": 10000}},
          "clients": [{"id": "ci", "token": TOK, "rpd": 3}]}


def as_other_user(*argv: str) -> None:
    """Runs argv as `nobody` when root (setpriv), else as ourselves."""
    if os.geteuid() == 0 and shutil.which("setpriv"):
        nobody = pwd.getpwnam("nobody")
        argv = ("setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}",
                "--clear-groups", *argv)
    subprocess.run(argv, check=True)


def ask(front: Front) -> int:
    return http(generate_url(front, M), user("count me"), headers={"x-goog-api-key": TOK}).status


def client_usage(pool: Pool) -> dict:
    doc = pool.status()
    return {c["id"]: c for c in doc.get("http_clients", {}).get("clients", [])}.get("ci", {})


def shared(pool: Pool, what: str, plant=None) -> None:
    a, b = Front(t, pool), Front(t, pool)
    if plant is not None:
        plant(a, b)
    codes = [ask(a), ask(b), ask(a), ask(b)]
    t.check(codes == [200, 200, 200, 429],
            f"{what}: two fronts share a client's rpd of 3 (the 4th request, on either, 429)",
            codes)
    u = client_usage(pool)
    t.check(u.get("today") == 3 and u.get("rejected") == 1 and u.get("requests") == 3,
            f"{what}: gemini-pool status shows the client's usage from the state", u)
    a.stop()
    b.stop()
    c = Front(t, pool)
    t.check(ask(c) == 429, f"{what}: a restarted front still counts the day's requests")
    c.stop()


# ---- a state file -------------------------------------------------------------------------
pool = Pool(t, emu, [("one", "FAKE-KEY-0001")], config=CONFIG, name="file")
shared(pool, "state file")
side = pool.state_file + ".clients"
t.check(os.path.exists(side) and (os.stat(side).st_mode & 0o077) == 0,
        "the counts are in a file beside the state file that only its owner may read",
        oct(os.stat(side).st_mode) if os.path.exists(side) else None)

# A link planted where the counts are kept: refused, never followed.
pool2 = Pool(t, emu, [("one", "FAKE-KEY-0001")], config=CONFIG, name="planted")
victim = os.path.join(t.dir, "victim")
with open(victim, "w", encoding="utf-8") as f:
    f.write("precious\n")
os.chmod(victim, 0o600)
statedir = os.path.dirname(pool2.state_file)
os.chmod(t.dir, 0o711)
os.chmod(pool2.dir, 0o711)
os.chmod(statedir, 0o777)  # the neighbour may plant, for this one step
as_other_user("ln", "-s", victim, pool2.state_file + ".clients")
os.chmod(statedir, 0o700)
front = Front(t, pool2)
# What the front once wrote its usage through: a temporary name made of its pid.
os.chmod(statedir, 0o777)
as_other_user("ln", "-s", victim, os.path.join(statedir, f"http-clients.json.{front.proc.pid}.tmp"))
os.chmod(statedir, 0o700)
code = ask(front)
t.check(code == 503, "a request whose counts would go through a planted link: 503", code)
t.check("symbolic link" in front.log(), "the log says the link is refused", front.log()[-600:])
with open(victim, encoding="utf-8") as f:
    t.check(f.read() == "precious\n", "the file the link points at is untouched")
t.check(os.path.islink(pool2.state_file + ".clients"), "the link is left where it was")
front.stop()

# ---- Redis ----------------------------------------------------------------------------------
if shutil.which("redis-server") is not None:
    red = Redis(t)
    pool3 = Pool(t, emu, [("one", "FAKE-KEY-0001")], config=CONFIG, name="redis")
    pool3.env["GEMINI_POOL_STATE"] = red.url
    # The working directory is one every user may write to; before, the front
    # wrote its usage under it ("redis:/host:port/..."), and a neighbour's
    # link there sent the write anywhere.
    os.chmod(pool3.dir, 0o1777)
    planted = os.path.join(pool3.dir, "redis:", f"127.0.0.1:{red.port}")
    as_other_user("mkdir", "-p", planted)
    as_other_user("ln", "-s", victim, os.path.join(planted, "http-clients.json"))

    def plant(*fronts):
        for fr in fronts:
            as_other_user("ln", "-s", victim,
                          os.path.join(planted, f"http-clients.json.{fr.proc.pid}.tmp"))
    shared(pool3, "Redis", plant)
    with open(victim, encoding="utf-8") as f:
        t.check(f.read() == "precious\n", "Redis: nothing written through a planted link")
    left = sorted(os.listdir(pool3.dir))
    t.check(not any(n.endswith(".tmp") for n in left) and
            all(os.path.islink(os.path.join(planted, n)) for n in os.listdir(planted)),
            "Redis: the front writes nothing in its working directory", left)
else:
    t.log("redis-server not installed: the Redis half skipped")
t.done()
