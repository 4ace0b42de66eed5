"""Callers of the HTTP front: tokens from `clients`, per-client limits, turns
between clients, and the loopback-only rule without clients."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time

from frontlib import BINARY, Emu, Front, Pool, T, generate_url, http, user

t = T("http-callers")
emu = Emu(t, {"projects": {"p1": {}},
              "keys": [{"key": "FAKE-KEY-0001", "name": "k1", "project": "p1"}]})
M = "gemini-2.5-flash"
TOK_A = "tok-alpha-0123456789abcdef"
TOK_B = "tok-bravo-0123456789abcdef"
TOK_C = "tok-charlie-0123456789abcd"
pool = Pool(t, emu, [("one", "FAKE-KEY-0001", {"max_inflight": 1})],
            config={"models": {M: {"rpm": 1000, "tpm": 10000000, "rpd": 10000}},
                    "clients": [{"id": "alpha", "token": "env:TOK_A"},
                                {"id": "bravo", "token": "env:TOK_B"},
                                {"id": "charlie", "token": TOK_C, "rpm": 2}]})
pool.env.update({"TOK_A": TOK_A, "TOK_B": TOK_B})
front = Front(t, pool)
url = generate_url(front, M)

# ---- tokens ------------------------------------------------------------------------
r = http(url, user("no token"))
t.check(r.status == 401 and r.json()["error"]["status"] == "UNAUTHENTICATED",
        "no token: 401 in Gemini's error format", r)
r = http(url, user("wrong"), headers={"x-goog-api-key": "tok-wrong-0123456789abcdef"})
t.check(r.status == 401, "an unknown token: 401", r)
r = http(url, user("gemini key"), headers={"x-goog-api-key": "FAKE-KEY-0001"})
t.check(r.status == 401, "one of the pool's Gemini keys is not a caller token: 401", r)
r = http(url, user("aiza"), headers={"x-goog-api-key": "AIzaSyNOTAREALKEY0123456789abcdefghij"})
t.check(r.status == 401 and "Gemini API key" in r.json()["error"]["message"],
        "a Gemini-shaped key gets a 401 that says what it is", r)
for how, hdrs, query in (("x-goog-api-key", {"x-goog-api-key": TOK_A}, ""),
                         ("Authorization: Bearer", {"Authorization": "Bearer " + TOK_A}, ""),
                         ("?key=", {}, "?key=" + TOK_A)):
    r = http(url + query, user("hello " + how), headers=hdrs)
    t.check(r.status == 200, f"a client token in {how} is accepted", r)
r = http(front.url + "/v1beta/models")
t.check(r.status == 401, "GET /v1beta/models needs a token too", r)

# ---- per-client rpm -------------------------------------------------------------------
codes = [http(url, user(f"charlie {i}"), headers={"x-goog-api-key": TOK_C}) for i in range(3)]
t.check([c.status for c in codes[:2]] == [200, 200] and codes[2].status == 429
        and int(codes[2].headers.get("retry-after", "0")) > 0
        and "charlie" in codes[2].json()["error"]["message"],
        "a client over its own rpm gets 429 with Retry-After", [c.status for c in codes])
r = http(url, user("alpha is not limited by charlie"), headers={"x-goog-api-key": TOK_A})
t.check(r.status == 200, "other clients are not affected by one client's limit", r)

# ---- turns between clients -------------------------------------------------------------
# One key serving one request at a time, each answer ~0.3 s: alpha floods with six
# requests, bravo sends two a moment later.  Served in turn, bravo's first request
# finishes long before alpha's last ones (first come, first served would put both of
# bravo's after all six of alpha's).
emu.faults(scope="all", latency_ms=300)
done = []
lock = threading.Lock()


def ask(who: str, tok: str, i: int) -> None:
    r = http(url, user(f"{who} {i}"), headers={"x-goog-api-key": tok})
    with lock:
        done.append((who, i, r.status))


threads = [threading.Thread(target=ask, args=("alpha", TOK_A, i)) for i in range(6)]
for th in threads:
    th.start()
time.sleep(0.15)
threads += [threading.Thread(target=ask, args=("bravo", TOK_B, i)) for i in range(2)]
for th in threads[6:]:
    th.start()
for th in threads:
    th.join()
emu.faults(scope="all", clear=True)
order = [w for w, _, _ in done]
t.check(all(s == 200 for _, _, s in done), "every flooding request is answered", done)
t.check("bravo" in order[:4] and order.index("bravo") < order.index("alpha", 3) if
        order.count("alpha") >= 4 else False,
        "two clients flooding are served in turn", order)

# ---- usage per client --------------------------------------------------------------------
time.sleep(0.6)
http(front.url + "/v1beta/models", headers={"x-goog-api-key": TOK_A})  # publishes the usage
doc = pool.status()
usage = {c["id"]: c for c in doc.get("http_clients", {}).get("clients", [])}
t.check(usage.get("charlie", {}).get("rejected") == 1 and usage["charlie"].get("rpm") == 2
        and usage.get("alpha", {}).get("today", 0) >= 9,
        "gemini-pool status --json shows each client's usage and limits", usage)

# ---- without clients: loopback or unix socket only --------------------------------------
pool2 = Pool(t, emu, [("one", "FAKE-KEY-0001")], name="noclients")
r = subprocess.run([BINARY, "serve", "--listen", "0.0.0.0:0"], env=pool2.env,
                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=20)
t.check(r.returncode != 0 and b"loopback" in r.stderr and r.stderr.count(b"\n") == 1,
        "without clients, a non-loopback address is refused with one line", r.stderr)
sock = os.path.join(pool2.dir, "front.sock")
f2 = Front(t, pool2, listen="unix:" + sock)
t.check("without tokens" in f2.log() and os.path.exists(sock),
        "without clients it says so at start and serves a unix socket", f2.log())
r = subprocess.run(["curl", "-s", "--unix-socket", sock, "-d", json.dumps(user("over unix")),
                    f"http://x/v1beta/models/{M}:generateContent"],
                   stdout=subprocess.PIPE, timeout=30)
t.check(b"You asked: over unix" in r.stdout, "a request over the unix socket", r.stdout[:300])
t.check(oct(os.stat(sock).st_mode & 0o777) == "0o700" or
        (os.stat(sock).st_mode & 0o077) == 0, "the socket is its owner's only")
rep = front.sanitizer_report()
t.check(rep == "", "no sanitizer report from the daemon (front)", rep)
rep = f2.sanitizer_report()
t.check(rep == "", "no sanitizer report from the daemon (f2)", rep)
t.done()
