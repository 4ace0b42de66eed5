"""The HTTP front under hostile or heavy load: slow headers dropped, huge bodies
refused without being kept, thousands of streams and idle connections held by a
few threads in bounded memory.  Upstream: bench_fs's zero-cost server."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import socket
import subprocess
import time

from frontlib import SLOW, Front, Pool, T, raw_request
from clilib import BINARY, BUILD_ROOT

t = T("http-robust")
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

UPSTREAM = os.path.join(BUILD_ROOT, "bench", "bench_fs")
port_file = os.path.join(t.dir, "up.port")
up = subprocess.Popen([UPSTREAM, "upstream", "--port-file", port_file, "--hold-ms", "1000"],
                      stdout=subprocess.DEVNULL, start_new_session=True)
t.on_exit(lambda: (up.terminate(), up.wait()))
deadline = time.monotonic() + 10
while not os.path.exists(port_file) and time.monotonic() < deadline:
    time.sleep(0.02)
with open(port_file, encoding="ascii") as f:
    up_url = f"http://127.0.0.1:{int(f.read())}"

M = "gemini-3-flash-preview"
NKEYS = 32
keys = [(f"k{i:02d}", f"BENCH-KEY-{i:04d}") for i in range(NKEYS)]
free = {"rpm": None, "tpm": None, "rpd": None}


class Upstream:
    url = up_url


pool = Pool(t, Upstream, keys, config={"max_inflight": 16, "models": {M: free}})
front = Front(t, pool, "--max-body", "1000000", "--header-timeout", "2", "--idle-timeout", "30")
host, port = front.url[7:].rsplit(":", 1)
port = int(port)

# ---- slowloris: headers trickled slower than the header deadline are dropped -------------
s = socket.create_connection((host, port))
s.sendall(b"POST /v1beta/models/" + M.encode() + b":generateContent HTTP/1.1\r\nHost: 127.0.0.1\r\n")
started = time.monotonic()
closed_after = None
s.settimeout(0.5)
# The server must hang up while the headers are still coming (one line every 0.5 s,
# never ending); trickling for up to 120 s is a hang guard, not the deadline judged.
i = 0
while time.monotonic() - started < 120 * SLOW:
    i += 1
    try:
        s.sendall(f"X-Slow-{i}: {'y' * 10}\r\n".encode())
        data = s.recv(100)
        if data == b"":
            closed_after = time.monotonic() - started
            break
    except socket.timeout:
        continue
    except OSError:
        closed_after = time.monotonic() - started
        break
s.close()
t.check(closed_after is not None,
        f"a client trickling its headers is dropped at the header deadline (2 s; dropped "
        f"after {closed_after if closed_after is None else round(closed_after, 1)} s)")

# ---- huge bodies --------------------------------------------------------------------------
rss0 = front.rss_kb()
line, _, reply = raw_request(front, b"POST /v1beta/models/" + M.encode() + b":generateContent "
                             b"HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000000\r\n\r\n")
t.check(" 413 " in line, "a 100 MB body (Content-Length) is refused with 413 before it is sent",
        reply[:300])


def chunks():
    block = b"%x\r\n" % (1 << 20) + b"x" * (1 << 20) + b"\r\n"
    for _ in range(100):
        yield block
    yield b"0\r\n\r\n"


line, sent, reply = raw_request(front, b"POST /v1beta/models/" + M.encode() + b":generateContent"
                                b" HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n",
                                chunks())
t.check(" 413 " in line, "a 100 MB chunked body is refused with 413", (line, sent))
t.check(front.rss_kb() - rss0 < 16 * 1024,
        "without keeping it: the daemon's memory grew by less than 16 MB",
        (rss0, front.rss_kb()))

# ---- 2,000 concurrent streams ---------------------------------------------------------------
# On a front with a generous header deadline: on a loaded machine 2,000 clients
# connecting at once may take seconds to send their headers, and being dropped at
# the 2 s deadline above is not what this part checks.
front2 = Front(t, Pool(t, Upstream, keys, config={"max_inflight": 16, "models": {M: free}},
                       name="idle"), "--header-timeout", "120", "--idle-timeout", "120")
h2, p2 = front2.url[7:].rsplit(":", 1)
N = 2000
body = json.dumps({"contents": [{"role": "user", "parts": [{"text": "stream"}]}]}).encode()
req = (b"POST /v1beta/models/" + M.encode() + b":streamGenerateContent?alt=sse HTTP/1.1\r\n"
       b"Host: 127.0.0.1\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: "
       + str(len(body)).encode() + b"\r\n\r\n" + body)
threads_seen = []


async def one() -> bytes:
    r, w = await asyncio.open_connection(h2, int(p2))
    w.write(req)
    await w.drain()
    data = await r.read()
    w.close()
    return data


async def sample() -> None:
    while True:
        threads_seen.append(front2.threads())
        await asyncio.sleep(0.2)


async def many() -> list:
    sampler = asyncio.ensure_future(sample())
    out = await asyncio.gather(*(one() for _ in range(N)), return_exceptions=True)
    sampler.cancel()
    return out


idle_threads = front2.threads()
t0 = time.monotonic()
results = asyncio.run(many())
ok = sum(1 for r in results if isinstance(r, bytes) and r.startswith(b"HTTP/1.1 200")
         and b"bench answer" in r and r.endswith(b"0\r\n\r\n"))
t.check(ok == N, f"{N} concurrent streaming requests are all answered "
        f"({time.monotonic() - t0:.1f} s)", [r for r in results if not isinstance(r, bytes)
                                             or not r.startswith(b"HTTP/1.1 200")][:3])
t.check(max(threads_seen) <= idle_threads + 2,
        f"with bounded threads (idle {idle_threads}, at most {max(threads_seen)})",
        threads_seen)

# ---- 10,000 idle connections -----------------------------------------------------------------
NIDLE = min(10000, hard - 500)
rss_before = front2.rss_kb()
socks = []
for _ in range(NIDLE):
    c = socket.socket()
    c.setblocking(False)
    c.connect_ex((h2, int(p2)))
    socks.append(c)
deadline = time.monotonic() + 120 * SLOW  # a hang guard
while time.monotonic() < deadline:
    fds = len(os.listdir(f"/proc/{front2.proc.pid}/fd"))
    if fds >= NIDLE:
        break
    time.sleep(0.2)
time.sleep(0.5)
rss = front2.rss_kb()
t.check(fds >= NIDLE, f"{NIDLE} idle connections are held open", fds)
with open(BINARY, "rb") as f:
    TSAN = b"__tsan_init" in f.read()
# ThreadSanitizer's shadow memory multiplies every allocation: the bound is for
# normal builds (ASan's quarantine included).
t.check(rss - rss_before < (512 if TSAN else 64) * 1024,
        f"in bounded memory: {(rss - rss_before) / 1024:.1f} MB for {NIDLE} connections",
        (rss_before, rss))
t.check(front2.threads() <= idle_threads + 1, "and no thread per connection", front2.threads())
t.log(f"idle connections: {NIDLE}, RSS {rss_before // 1024} -> {rss // 1024} MB")
for c in socks:
    c.close()
rep = front.sanitizer_report()
t.check(rep == "", "no sanitizer report from the daemon (front)", rep)
rep = front2.sanitizer_report()
t.check(rep == "", "no sanitizer report from the daemon (front2)", rep)
t.done()
