#!/usr/bin/env python3
"""`gemini-pool` with its state on Redis, end to end against the emulator and
throwaway redis-servers:
- ask, status and the log of runs work with --state/$GEMINI_POOL_STATE/the
  config's "state" naming Redis; the password comes from .env (env:NAME) and
  never shows in output, status or errors;
- bad input (an unreachable URL, a wrong password, a server that is not Redis,
  an unknown scheme) is one clear line and nothing is sent to Google;
- Redis killed mid-run (AOF on): no request is sent while it is down, the job
  waits and finishes once it is back, its counts survived; down for longer
  than the job's max_wait: the job fails naming the server and since when;
- two processes whose clocks are 90 s apart (faketime) agree on the RPM
  window and on the Pacific day, because time comes from the server."""

import json
import os
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "cli"))
sys.path.insert(0, HERE)
from clilib import ERRORS, Emu, Pool, T, make_secret, one_line_error  # noqa: E402
from redislib import Redis, free_port, need_redis  # noqa: E402

need_redis()
t = T("redis-cli")
M = "gemini-2.5-flash"
keys = [{"key": make_secret("R1"), "name": "k1", "project": "p1"},
        {"key": make_secret("R2"), "name": "k2", "project": "p2"},
        {"key": make_secret("R3"), "name": "k3", "project": "p3"}]
emu = Emu(t, {"projects": {"p1": {}, "p2": {}, "p3": {}}, "keys": keys})
PW = "s3cret-" + make_secret("PW")[-12:]
red = Redis(t, aof=True, password=PW)


def pool_on(url, name, nkeys=2, config=None, dotenv=None):
    p = Pool(t, emu, [(k["name"], k["key"]) for k in keys[:nkeys]], config=config, name=name)
    p.env["GEMINI_POOL_STATE"] = url
    if dotenv:
        with open(os.path.join(p.dir, ".env"), "w", encoding="utf-8") as f:
            f.write(dotenv)
        os.chmod(os.path.join(p.dir, ".env"), 0o600)
    return p


URL = f"redis://:env:GKP_REDIS_PW@127.0.0.1:{red.port}/0"

# ---- the basics ------------------------------------------------------------------------------
pool = pool_on(URL, "basic", dotenv=f"GKP_REDIS_PW={PW}\n")
r = pool.ask("--task", "hello redis")
t.check(r.returncode == 0 and r.stdout, "ask answers with the state on Redis", r)
st = pool.run("status", "--json")
t.check(st.returncode == 0, "status --json works on Redis", st)
doc = json.loads(st.stdout) if st.returncode == 0 else {}
t.check(doc.get("state_backend") == "redis", "status says the backend is redis",
        doc.get("state_backend"))
t.check(doc.get("state_file") == f"redis://127.0.0.1:{red.port}/0",
        "status names the server without the password", doc.get("state_file"))
total = sum(m.get("requests_total", 0) for k in doc.get("keys", []) for m in k["models"].values())
t.check(total == 1, "the request is counted in Redis", total)
text = pool.run("status")
t.check(PW not in (st.stdout + text.stdout + text.stderr).decode(),
        "the password appears in no status output")
ex = os.path.join(pool.env["XDG_STATE_HOME"], "gemini-pool", "executions.jsonl")
t.check(os.path.exists(ex), "the log of runs is kept in the local state directory", ex)
# The local state directory beside a Redis state is checked like a state file's:
# one another user could write to is not used for the log of runs.
if os.geteuid() == 0:
    local = os.path.join(pool.env["XDG_STATE_HOME"], "gemini-pool")
    os.chmod(local, 0o777)
    os.chown(local, 65534, 65534)
    os.unlink(ex)
    r = pool.ask("--task", "hello again")
    t.check(r.returncode == 0 and not os.path.exists(ex),
            "a local state directory owned by another user is not written to", r)
    t.check(b"owned by nobody" in r.stderr and b"executions.jsonl" in r.stderr,
            "... and the warning says whose it is", r.stderr)
    os.chown(local, 0, 0)
    os.chmod(local, 0o700)
dump = red.cli("--no-raw", "KEYS", "*")
t.check("gkp:{k1}:k:k1" in dump, "the records carry the project's hash tag", dump[:300])

# The config's "state" field, and --state, name Redis the same way.
cfgpool = pool_on("", "cfgstate", config={"state": URL}, dotenv=f"GKP_REDIS_PW={PW}\n")
del cfgpool.env["GEMINI_POOL_STATE"]
r = cfgpool.ask("--task", "via config")
doc2 = cfgpool.status()
t.check(r.returncode == 0 and doc2.get("state_backend") == "redis",
        "the config's \"state\" selects Redis", r)

# ---- bad input -------------------------------------------------------------------------------
before = len(emu.log())


class NotRedis(threading.Thread):
    """A server on the port that answers like a web server."""

    def __init__(self):
        super().__init__(daemon=True)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]

    def run(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            try:
                c.recv(4096)
                c.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            except OSError:
                pass
            c.close()


nr = NotRedis()
nr.start()
closed = free_port()
cases = [
    ("an unreachable server", f"redis://127.0.0.1:{closed}/0", {},
     f"state server 127.0.0.1:{closed} unreachable"),
    ("a wrong password", f"redis://:wrong-{PW}@127.0.0.1:{red.port}/0", {},
     "refused the user name or password"),
    ("no password for a server that wants one", f"redis://127.0.0.1:{red.port}/0", {},
     "wants a password"),
    ("a password variable that is not set", f"redis://:env:GKP_NOPE@127.0.0.1:{red.port}/0", {},
     "the password variable GKP_NOPE is not set"),
    ("a server that is not Redis", f"redis://127.0.0.1:{nr.port}/0", {},
     "does not speak the Redis protocol"),
    ("an unknown scheme", "rediss://127.0.0.1:6379/0", {}, "unknown scheme 'rediss://'"),
]
for what, url, env, words in cases:
    p = pool_on(url, "bad-" + what.replace(" ", "-"))
    r = p.ask("--task", "never sent", timeout=30)  # a hang guard: it answers at once
    line = one_line_error(r)
    t.check(r.returncode != 0 and line is not None and words in line,
            f"{what}: one clear line ({line})", r)
    t.check(r.returncode != -999, f"{what}: the answer comes without waiting")
    t.check(PW not in (r.stderr + r.stdout).decode(), f"{what}: the password is not shown")
t.check(len(emu.log()) == before, "nothing was sent to Google for bad state URLs",
        len(emu.log()) - before)

# ---- Redis down mid-run ------------------------------------------------------------------------
with open(os.path.join(ERRORS, "429_input_tokens_per_minute_free_tier.json"),
          encoding="utf-8") as f:
    body = json.load(f)["body"].replace('"26s"', '"5s"')


def run_through_outage(name, max_wait, restart_after):
    """One key; its first answer is a 429 asking for 5 s; Redis goes down 1 s
    in and comes back `restart_after` s later (None: never)."""
    emu.reset()
    red.cli("FLUSHALL")
    p = pool_on(URL, name, nkeys=1, dotenv=f"GKP_REDIS_PW={PW}\n")
    emu.replay(status=429, body=body, key="k1", model=M, count=1)
    proc = subprocess.Popen(p.cmd("ask", "--task", f"outage {name}", "--model", M,
                                  "--max-wait", str(max_wait)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=p.env)
    deadline = time.monotonic() + 10
    while not emu.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1)
    down_at = time.time()
    red.kill()
    up_at = None
    if restart_after is not None:
        time.sleep(restart_after)
        up_at = time.time()
        red.start()
    out, err = proc.communicate(timeout=120)
    if restart_after is None:
        red.start()
    return p, subprocess.CompletedProcess(proc.args, proc.returncode, out, err), down_at, up_at


p, r, down_at, up_at = run_through_outage("outage", 60, 8)
log = emu.log()
t.check(r.returncode == 0 and r.stdout, "the job finishes after Redis comes back", r)
during = [e for e in log if down_at <= e["ts"] - e["ms"] / 1000 <= up_at]
t.check(not during, "no request was sent while Redis was down", during)
t.check([e["status"] for e in log] == [429, 200], "one 429, then one answer",
        [e["status"] for e in log])
st = p.status()
m = p.model(st, "k1", M)
t.check(m.get("requests_total") == 2, "the counts survived the restart (AOF)", m)
u = emu.usage()
t.check(u["over_limit_total"] == 0, "no request over a limit", u["over_limit_total"])

p, r, down_at, _ = run_through_outage("outage-long", 8, None)
line = one_line_error(r)
t.check(r.returncode != 0 and line is not None and
        f"state server 127.0.0.1:{red.port} unreachable since" in line,
        f"down past max_wait: the job fails naming the server and since when ({line})", r)
t.check(len(emu.log()) == 1, "only the first request was sent", len(emu.log()))

# ---- state copy: file -> Redis -> file ---------------------------------------------------------
emu.reset()
red.cli("FLUSHALL")
fp = pool_on("", "copy", nkeys=3, dotenv=f"GKP_REDIS_PW={PW}\n")
fp.env["GEMINI_POOL_STATE"] = fp.state_file
emu.replay(body_file=os.path.join(ERRORS, "400_api_key_invalid_array_framed.json"), key="k1",
           model=M, count=1)
emu.replay(body_file=os.path.join(ERRORS, "429_per_day_free_tier.json"), key="k2", model=M,
           count=1)
r = fp.ask("--task", "before the move", "--model", M)
t.check(r.returncode == 0, "a job on the file state (k1 disabled, k2 cooled, k3 answers)", r)


def summary(doc):
    out = {}
    for k in doc["keys"]:
        m = k["models"].get(M, {})
        out[k["id"]] = (k.get("state"), k.get("disabled_reason"), m.get("requests_total"),
                        m.get("requests_today"), m.get("cooldown_kind"),
                        m.get("cooldown_until"))
    return out


src = summary(fp.status())
t.log(f"file state: {src}")
r = fp.run("state", "copy", fp.state_file, URL)
t.check(r.returncode == 0 and PW not in (r.stdout + r.stderr).decode(),
        "state copy FILE URL works and does not show the password", r)
fp.env["GEMINI_POOL_STATE"] = URL
on_redis = summary(fp.status())
t.check(on_redis == src, "Redis now holds the same counts, cooldowns and disabled keys",
        (src, on_redis))
back = os.path.join(fp.dir, "state", "back.db")
r = fp.run("state", "copy", URL, back)
fp.env["GEMINI_POOL_STATE"] = back
t.check(r.returncode == 0 and summary(fp.status()) == src,
        "and back to a new state file, unchanged", r)
r = fp.run("state", "copy", fp.state_file)
t.check(r.returncode == 2 and one_line_error(r) is not None, "state copy needs FROM and TO", r)

# ---- clocks 90 s apart -------------------------------------------------------------------------
if subprocess.run(["which", "faketime"], stdout=subprocess.DEVNULL).returncode == 0:
    LITE = "gemini-3.1-flash-lite-preview"  # the end of the chain: no fallback
    # libfaketime is preloaded: an ASan build must not insist on coming first.
    FT = {"ASAN_OPTIONS": (os.environ.get("ASAN_OPTIONS", "") +
                           ":verify_asan_link_order=0").lstrip(":")}
    emu.reset()
    red.cli("FLUSHALL")
    lim = {"models": {LITE: {"rpm": 2, "tpm": 250000, "rpd": 1000}}}
    p = pool_on(URL, "skew", nkeys=1, config=lim, dotenv=f"GKP_REDIS_PW={PW}\n")
    a = p.ask("--task", "ahead", "--model", LITE, faketime="+90s", env=FT)
    b = p.ask("--task", "behind", "--model", LITE, faketime="-90s", env=FT)
    t.check(a.returncode == 0 and b.returncode == 0, "two processes 90 s apart both ask", (a, b))
    c = p.ask("--task", "third", "--model", LITE, "--max-wait", "2", faketime="+90s", env=FT)
    t.check(c.returncode != 0, "a third within the server's minute is held back (RPM 2)", c)
    t.check(len(emu.log()) == 2, "only two requests reached the emulator", len(emu.log()))
    late = p.run("status", "--json", faketime="+1d", env=FT)
    doc = json.loads(late.stdout) if late.returncode == 0 else {}
    mm = p.model(doc, "k1", LITE) if doc else {}
    t.check(mm.get("requests_today") == 2,
            "a process a day ahead still sees today's count (the server's Pacific day)", mm)
else:
    print("skip: faketime is not installed", flush=True)

t.done()
