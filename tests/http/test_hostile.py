"""The HTTP front against hostile callers: a crafted OpenAI body does not stall
other callers, held bodies stay under --max-memory, web pages cannot use a
front without `clients`, log lines cannot be forged, fallback keeps a caller
to its models, every request of a keep-alive connection has a header
deadline, and a doubled Content-Length is refused."""

from __future__ import annotations

import json
import os
import socket
import threading
import time

from frontlib import SLOW, Emu, Front, Pool, T, generate_url, http, user
from clilib import BINARY, ERRORS

t = T("http-hostile")
emu = Emu(t, {"projects": {"p1": {}, "p2": {}},
              "keys": [{"key": "FAKE-KEY-0001", "name": "k1", "project": "p1"},
                       {"key": "FAKE-KEY-0002", "name": "k2", "project": "p2"}]})
M = "gemini-2.5-flash"
BIG = {"rpm": 1000, "tpm": 1000000000, "rpd": 100000}
with open(BINARY, "rb") as f:
    exe = f.read()
ASAN = b"__asan_init" in exe
TSAN = b"__tsan_init" in exe
del exe
env = {}
if ASAN:  # freed bodies would sit in ASan's quarantine, counted in RSS
    env["ASAN_OPTIONS"] = os.environ.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=4"
pool = Pool(t, emu, [("one", "FAKE-KEY-0001"), ("two", "FAKE-KEY-0002")],
            config={"models": {M: BIG}})
front = Front(t, pool, "--max-memory", "80M", "--header-timeout", "2", "--idle-timeout", "30",
              env=env)
host, port = front.url[7:].rsplit(":", 1)
port = int(port)


def connect() -> socket.socket:
    return socket.create_connection((host, port), timeout=30 * SLOW)


def read_reply(s: socket.socket) -> bytes:
    """One whole reply with a Content-Length (b"" if the server closed)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(rest) < length:
        chunk = s.recv(65536)
        if not chunk:
            break
        rest += chunk
    return head + b"\r\n\r\n" + rest


def raw(head: bytes, body: bytes = b"") -> bytes:
    s = connect()
    s.sendall(head + body)
    reply = read_reply(s)
    s.close()
    return reply


# ---- a crafted tool history does not stall other callers ---------------------------------
# Every tool message names the last of ~14,000 tool calls: looked up by a scan of every
# earlier call, it took seconds of the only polling thread.
n_calls, n_tools = 14000, 10400
calls = [{"id": f"c{i}", "function": {"name": "f"}} for i in range(n_calls)]
msgs = [{"role": "user", "content": "go"},
        {"role": "assistant", "content": None, "tool_calls": calls}]
msgs += [{"role": "tool", "tool_call_id": f"c{n_calls - 1}", "content": "x"}
         for _ in range(n_tools)]
crafted = json.dumps({"model": M, "messages": msgs}, separators=(",", ":")).encode()
t.log(f"crafted OpenAI body: {len(crafted)} bytes")
bad = connect()
bad.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: "
            + str(len(crafted)).encode() + b"\r\n\r\n" + crafted)
time.sleep(0.3)  # the body is in: before, the polling thread was translating it now
t0 = time.monotonic()
r = http(front.url + "/v1/models", timeout=120)
waited = time.monotonic() - t0
t.check(r.status == 200 and waited < 3 * SLOW,
        "another caller's GET /v1/models is answered at once while a 1 MB crafted tool "
        f"history is translated ({waited:.2f} s; hang guard 3 s)", r)
bad.settimeout(60 * SLOW)
reply = read_reply(bad)
bad.close()
t.check(reply.startswith(b"HTTP/1.1 200"), "and the crafted request itself is served",
        reply[:300])

# ---- held bodies stay under --max-memory ------------------------------------------------
# One key at a time and a slow answer: requests wait in the runner with their bodies.
# Eight 24 MiB bodies against an 80 MiB ceiling: three fit, the others get 503.


def rss_kb(field: str) -> int:
    with open(f"/proc/{front.proc.pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


emu.faults(scope="all", latency_ms=2500)
huge = json.dumps(user("a" * (24 << 20))).encode()
rss0 = rss_kb("VmRSS")
try:
    with open(f"/proc/{front.proc.pid}/clear_refs", "w", encoding="ascii") as f:
        f.write("5")  # VmHWM starts again from now
except OSError:
    pass
results = []
lock = threading.Lock()


def post_huge() -> None:
    try:
        s = connect()
        s.settimeout(120 * SLOW)
        s.sendall(b"POST /v1beta/models/" + M.encode() + b":generateContent HTTP/1.1\r\n"
                  b"Host: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: "
                  + str(len(huge)).encode() + b"\r\n\r\n" + huge)
        reply = read_reply(s)
        s.close()
    except OSError as e:
        reply = repr(e).encode()
    with lock:
        results.append(reply)


threads = [threading.Thread(target=post_huge) for _ in range(8)]
for th in threads:
    th.start()
for th in threads:
    th.join(300 * SLOW)
peak = rss_kb("VmHWM")
emu.faults(scope="all", clear=True)
# Those let in reach the emulator (which refuses a body that large with 400).
refused = [x for x in results if x.startswith(b"HTTP/1.1 503")]
served = [x for x in results if x.startswith(b"HTTP/1.1 ") and b"x-pool-key: " in x]
t.check(len(results) == 8 and len(refused) >= 4 and len(refused) + len(served) == 8,
        f"8 held 24 MiB bodies over an 80 MiB ceiling: {len(served)} sent on, "
        f"{len(refused)} refused with 503", [x[:200] for x in results])
t.check(all(b"retry-after: " in x.lower() and b'"status":"UNAVAILABLE"' in x for x in refused),
        "the 503s carry Retry-After and a Gemini-format error", [x[:400] for x in refused[:1]])
if not TSAN:
    t.check(peak - rss0 < (80 + 40) * 1024,
            f"the daemon's memory stayed under the ceiling: +{(peak - rss0) / 1024:.0f} MB at "
            "its peak (ceiling 80 MB, 40 MB for everything else)", (rss0, peak))
r = http(front.url + "/v1/models")
t.check(r.status == 200 and front.proc.poll() is None, "and the daemon stays up", r)

# ---- without clients, web pages cannot use the front ---------------------------------------
body = user("from a page")
r = http(generate_url(front, M), body, headers={"Origin": "http://evil.example"})
t.check(r.status == 403 and r.json()["error"]["status"] == "PERMISSION_DENIED",
        "a foreign Origin is refused (403, Gemini's format)", r)
r = http(front.url + "/v1/chat/completions",
         {"model": M, "messages": [{"role": "user", "content": "hi"}]},
         headers={"Origin": "null"})
t.check(r.status == 403 and "error" in r.json() and "type" in r.json()["error"],
        "Origin: null is refused too (403, OpenAI's format)", r)
r = http(front.url + "/v1/models", headers={"Host": "evil.example:" + str(port)})
t.check(r.status == 403, "a foreign Host (DNS rebinding) is refused", r)
for ctype in ("text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded",
              "multipart/form-data; boundary=x"):
    r = http(generate_url(front, M), body, headers={"Content-Type": ctype})
    t.check(r.status == 415, f"a {ctype} body (a browser's simple request) is refused", r)
r = http(generate_url(front, M), body, headers={"Origin": f"http://127.0.0.1:{port}",
                                                "Host": f"localhost:{port}"})
t.check(r.status == 200, "a loopback Origin and Host are served", r)

# ---- log lines cannot be forged --------------------------------------------------------
reply = raw(b"GET /v1beta/models/x%0d%0agemini-pool:%20http:%20client=forged%0a HTTP/1.1\r\n"
            b"Host: 127.0.0.1\r\nConnection: close\r\n\r\n")
t.check(reply.startswith(b"HTTP/1.1 404"), "a path with CR/LF is answered 404", reply[:200])
deadline = time.monotonic() + 10 * SLOW
while time.monotonic() < deadline and "forged" not in front.log():
    time.sleep(0.05)
lines = front.log().splitlines()
t.check(not any(x.startswith("gemini-pool: http: client=forged") for x in lines)
        and any("\\r\\ngemini-pool: http: client=forged" in x for x in lines),
        "CR/LF from the path are escaped in the log, never a line of their own",
        [x for x in lines if "forged" in x])

# ---- a doubled Content-Length ------------------------------------------------------------
one = json.dumps(user("twice")).encode()
reply = raw(b"POST /v1beta/models/" + M.encode() + b":generateContent HTTP/1.1\r\n"
            b"Host: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: "
            + str(len(one)).encode() + b"\r\nContent-Length: " + str(len(one) + 7).encode()
            + b"\r\n\r\n", one + b"GET / H")
t.check(reply.startswith(b"HTTP/1.1 400") and b"connection: close" in reply.lower(),
        "two different Content-Lengths: 400, and the connection is closed", reply[:300])
reply = raw(b"POST /v1beta/models/" + M.encode() + b":generateContent HTTP/1.1\r\n"
            b"Host: 127.0.0.1\r\nContent-Type: application/json\r\nConnection: close\r\n"
            b"Content-Length: " + str(len(one)).encode() + b"\r\nContent-Length: "
            + str(len(one)).encode() + b"\r\n\r\n", one)
t.check(reply.startswith(b"HTTP/1.1 200"), "the same Content-Length twice is accepted",
        reply[:300])

# ---- header deadline on every request of a keep-alive connection -------------------------
s = connect()
one = json.dumps(user("first of two")).encode()
s.sendall(b"POST /v1beta/models/" + M.encode() + b":generateContent HTTP/1.1\r\n"
          b"Host: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: "
          + str(len(one)).encode() + b"\r\n\r\n" + one)
first = read_reply(s)
t.check(first.startswith(b"HTTP/1.1 200") and b"connection: close" not in first.lower(),
        "a keep-alive connection's first request", first[:300])
s.sendall(b"POST /v1beta/models/" + M.encode() + b":generateContent HTTP/1.1\r\n"
          b"Host: 127.0.0.1\r\n")
started = time.monotonic()
closed_after = None
s.settimeout(0.5)
while time.monotonic() - started < 25 * SLOW:
    try:
        s.sendall(b"X-Slow: yyyyyyyyyy\r\n")
        if s.recv(100) == b"":
            closed_after = time.monotonic() - started
            break
    except socket.timeout:
        continue
    except OSError:
        closed_after = time.monotonic() - started
        break
s.close()
t.check(closed_after is not None,
        "its second request trickling headers is dropped at the header deadline "
        f"(2 s; after {closed_after} s; hang guard {25 * SLOW:.0f} s)", closed_after)
s = connect()
try:
    for i in range(3):
        s.sendall(b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        reply = read_reply(s)
        if i < 2:
            time.sleep(0.5)
except OSError as e:
    reply = repr(e).encode()
t.check(reply.startswith(b"HTTP/1.1 200"), "a prompt keep-alive connection serves request after "
        "request", reply[:100])
s.close()

# ---- fallback keeps a caller to its models --------------------------------------------
TOK_N = "tok-narrow-0123456789abcdef"
TOK_W = "tok-wide-0123456789abcdefgh"
pool2 = Pool(t, emu, [("one", "FAKE-KEY-0001"), ("two", "FAKE-KEY-0002")],
             config={"models": {M: BIG},
                     "clients": [{"id": "narrow", "token": TOK_N, "profiles": [M]},
                                 {"id": "wide", "token": TOK_W}]}, name="pool2")
front2 = Front(t, pool2, env=env)
emu.reset()
with open(os.path.join(ERRORS, "429_per_day_free_tier.json"), encoding="utf-8") as f:
    per_day = json.load(f)["body"]
emu.replay(status=429, body=per_day, key="k1", model=M, count=1)
emu.replay(status=429, body=per_day, key="k2", model=M, count=1)
for i in range(2):  # both keys learn the model's day is spent
    http(generate_url(front2, M), user(f"spend {i}"), headers={"x-goog-api-key": TOK_W,
                                                             "x-pool-fallback": "off"})
r = http(generate_url(front2, M), user("narrow asks"), headers={"x-goog-api-key": TOK_N})
t.check(r.status == 429 and r.headers.get("x-pool-model") in (None, M),
        f"a client allowed only {M} is not served by another model through fallback", r)
r = http(front2.url + "/v1/chat/completions",
         {"model": M, "messages": [{"role": "user", "content": "narrow asks openai"}]},
         headers={"Authorization": "Bearer " + TOK_N})
t.check(r.status == 429, "nor through the OpenAI API", r)
r = http(generate_url(front2, M), user("wide asks"), headers={"x-goog-api-key": TOK_W})
t.check(r.status == 200 and r.headers.get("x-pool-model") not in (None, M),
        "a client without a model list still falls back", r)
r = http(generate_url(front2, M), user("page"), headers={"x-goog-api-key": TOK_W,
                                                        "Origin": "http://elsewhere.example",
                                                        "Host": "pool.example"})
t.check(r.status != 403, "with clients, Origin and Host are not the boundary: the token is", r)

for fr in (front, front2):
    rep = fr.sanitizer_report()
    t.check(rep == "", "no sanitizer report from the daemon", rep)
t.done()
