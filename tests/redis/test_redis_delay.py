#!/usr/bin/env python3
"""The HTTP front on a Redis state one millisecond away (delay_proxy holds
every byte back 1 ms each way), with short leases (GEMINI_POOL_LEASE_TTL_MS
2 s) kept alive by a fast heartbeat (GEMINI_POOL_LEASE_RENEW_MS 400 ms), so
that many heartbeats fall inside every request.

1. Slow streams: 200 streaming requests at once, each answer 64 chunks 100 ms
   apart (the emulator's answers have at most 64 chunks: 6.3 s of stream, 15
   heartbeats).  Every stream is whole, and no client waits between two
   chunks longer than a generous hang guard (the precise figure is
   scripts/bench-http's redis_1ms_max_gap_ms): the state calls must not
   stall the loop that carries every transfer.  2.5 seconds after the
   last stream began, every stream still running still holds a live lease
   on the server: the heartbeat renewed them (without it they expire after
   2 s).  Then the server turns slow (every byte held back 6 s each way)
   until the streams end: the chunks keep coming all the same.
2. Callers: 32 callers send non-streaming requests for RUN seconds
   (GKP_TEST_DELAY_SECONDS, default 30: the daily limits bind after ~20 s,
   then the pool refuses at once, and the heartbeat beats ~75 times: what a
   60 s run would show too).
   Every answer takes 2.5 s upstream, longer than a lease lives unless
   renewed, and each of 8 keys takes MAX_INFLIGHT requests at once.  Midway the
   proxy stops (Redis unreachable) for 4 s, then comes back on the same port.
   Checked at the emulator: no 429 (nothing over a limit), never more than
   MAX_INFLIGHT overlapping requests on a key (no lease lost), no request
   begun while Redis was unreachable (fails closed), requests again after it
   came back; every caller got an answer or a refusal of the pool."""

import asyncio
import collections
import os
import re
import signal
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "http"))
sys.path.insert(0, HERE)
from frontlib import BINARY, SLOW, Emu, Front, Pool, T, http, user  # noqa: E402
from redislib import Redis, need_redis  # noqa: E402

need_redis()
t = T("redis-delay")
M = "gemini-3.1-flash-lite-preview"  # the callers' (the end of the chain: no fallback)
MS = "gemini-2.5-flash"  # the streams'
BIG = {"rpm": 1000, "tpm": 100000000, "rpd": 100000}
N_KEYS = 16  # the streams use all (13 at once each); the callers the first 8
STREAMS = 200
CHUNKS = 64
CHUNK_MS = 100
GAP_GUARD_MS = 5000 * SLOW  # a hang guard, not a measure
TTL_MS, RENEW_MS = 2000, 400
CALLERS = 32
RUN = float(os.environ.get("GKP_TEST_DELAY_SECONDS", "30"))
LATENCY_MS = 2500
MAX_INFLIGHT = 2
# The daily count binds (120 requests in all, ~20 s of the run); a per-minute
# limit would not do here: the emulator counts a request when it answers, 2.5 s
# after the pool counted it, more than the pool's margin on the minute.
LIMITS = {"rpm": 1000, "tpm": 10000000, "rpd": 15}
PROXY = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(BINARY))), "tests", "redis",
                     "delay_proxy")


class Proxy:
    """delay_proxy (delay_proxy.c) in front of the server; stoppable and
    restartable on its port."""

    def __init__(self, to_port: int) -> None:
        self.to_port = to_port
        self.port = 0
        self.proc = None
        t.on_exit(self.stop)
        self.start()

    def start(self) -> None:
        pf = os.path.join(t.dir, "proxy.port")
        if os.path.exists(pf):
            os.unlink(pf)
        self.proc = subprocess.Popen(
            [PROXY, "--listen-port-file", pf, "--to", f"127.0.0.1:{self.to_port}",
             "--delay-ms", "1", "--port", str(self.port)], start_new_session=True)
        deadline = time.monotonic() + 20 * SLOW
        while time.monotonic() < deadline and not os.path.exists(pf) and self.proc.poll() is None:
            time.sleep(0.02)
        t.require(os.path.exists(pf), "the delay proxy runs")
        with open(pf, encoding="ascii") as f:
            self.port = int(f.read())

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


server = Redis(t)
proxy = Proxy(server.port)
keys = [{"key": f"FAKE-DELAY-KEY-{i:02d}", "name": f"k{i}", "project": f"p{i}"}
        for i in range(1, N_KEYS + 1)]
emu = Emu(t, {"projects": {f"p{i}": {"models": {M: LIMITS, MS: BIG}}
                           for i in range(1, N_KEYS + 1)},
              "keys": keys})


def front_for(nkeys: int, max_inflight: int, name: str) -> Front:
    pool = Pool(t, emu, [(k["name"], k["key"], {"project": k["project"]}) for k in keys[:nkeys]],
                config={"models": {M: LIMITS, MS: BIG}, "max_inflight": max_inflight}, name=name)
    pool.env["GEMINI_POOL_STATE"] = proxy.url
    pool.env["GEMINI_POOL_LEASE_TTL_MS"] = str(TTL_MS)
    pool.env["GEMINI_POOL_LEASE_RENEW_MS"] = str(RENEW_MS)
    return Front(t, pool)


COUNT_LIVE = """local t = redis.call('TIME'); local now = t[1] * 1000 + math.floor(t[2] / 1000)
local n = 0
for _, k in ipairs(redis.call('KEYS', 'gkp:*:l:*')) do
  n = n + redis.call('ZCOUNT', k, '(' .. now, '+inf') end
return n"""


def live_leases() -> int:
    """Leases on the server not yet expired (by the server's clock), in one step."""
    return int(server.cli("EVAL", COUNT_LIVE, "0").strip())


# ---- 1. slow streams --------------------------------------------------------------------

emu.faults(scope="global", chunk_delay_ms=CHUNK_MS, answer_bytes=CHUNKS * 100)
front = front_for(N_KEYS, 13, "streams")
host, port = front.url[7:].rsplit(":", 1)


class Stream:
    def __init__(self) -> None:
        self.times = []
        self.done = False
        self.status = b""
        self.finished = False


async def one_stream(i: int, s: Stream) -> None:
    body = ('{"contents":[{"role":"user","parts":[{"text":"slow stream %d"}]}]}' % i).encode()
    head = (f"POST /v1beta/models/{MS}:streamGenerateContent?alt=sse HTTP/1.1\r\n"
            f"Host: 127.0.0.1\r\nContent-Type: application/json\r\nConnection: close\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    r, w = await asyncio.open_connection(host, int(port))
    w.write(head + body)
    await w.drain()
    buf = b""
    seen = 0
    while True:
        data = await r.read(65536)
        if not data:
            break
        buf += data
        n = buf.count(b"data: ")
        now = time.monotonic()
        s.times += [now] * (n - seen)
        seen = n
    s.status = buf.split(b"\r\n", 1)[0]
    s.ended = time.monotonic()
    s.finished = b'"finishReason"' in buf
    s.done = True
    w.close()


streams = [Stream() for _ in range(STREAMS)]
midway = {}


async def run_streams() -> None:
    tasks = [asyncio.ensure_future(one_stream(i, s)) for i, s in enumerate(streams)]
    deadline = time.monotonic() + 60 * SLOW
    while time.monotonic() < deadline and not all(s.times or s.done for s in streams):
        await asyncio.sleep(0.05)
    await asyncio.sleep(TTL_MS / 1000 + 0.5)  # longer than a lease lives unless renewed
    leases = await asyncio.get_running_loop().run_in_executor(None, live_leases)
    # The streams still far from their end after the count held their
    # leases during it (one near its end may have released its lease before
    # its client saw the last chunk).
    midway["running"] = sum(1 for s in streams if not s.done and len(s.times) < CHUNKS - 8)
    midway["leases"] = leases
    proxy.proc.send_signal(signal.SIGUSR1)  # a slow server from now on
    midway["slow_from"] = time.monotonic()
    await asyncio.wait_for(asyncio.gather(*tasks), 120 * SLOW)
    proxy.proc.send_signal(signal.SIGUSR2)


asyncio.run(run_streams())
gaps = [max((b - a for a, b in zip(s.times, s.times[1:])), default=0) * 1000 for s in streams]
slow_chunks = sum(1 for s in streams for x in s.times if x > midway["slow_from"] + 0.5)
whole = [s for s in streams
         if s.status.startswith(b"HTTP/1.1 200") and s.finished and len(s.times) >= CHUNKS - 4]
t.log(f"streams: {len(whole)} whole; largest gap between chunks {max(gaps):.0f} ms "
      f"(the emulator's own: {CHUNK_MS} ms); midway {midway}")
t.check(len(whole) == STREAMS, f"all {STREAMS} streams came whole (about {CHUNKS} chunks each)",
        collections.Counter((s.status, s.finished, len(s.times)) for s in streams).most_common(5))
t.check(slow_chunks > 0, f"chunks arrived while the server was slow ({slow_chunks})")
t.check(max(gaps) < GAP_GUARD_MS, f"no client waited {GAP_GUARD_MS:.0f} ms between two chunks",
        f"{max(gaps):.0f} ms")
t.check(midway.get("running", 0) > 0 and midway["leases"] >= midway["running"],
        "2.5 s after the last stream began, every stream far from its end still holds a live lease "
        "(the heartbeat renewed them)", midway)
front.stop()

# ---- 2. 32 callers, Redis lost midway ------------------------------------------------------

emu.faults(scope="global", chunk_delay_ms=None, answer_bytes=None, latency_ms=LATENCY_MS)
log_start = len(emu.log())
front = front_for(8, MAX_INFLIGHT, "callers")
results = []
results_mu = threading.Lock()
stop_at = time.monotonic() + RUN


def caller(c: int) -> None:
    n = 0
    while time.monotonic() < stop_at:
        n += 1
        try:
            r = http(f"{front.url}/v1beta/models/{M}:generateContent",
                     user(f"caller {c} request {n}"), timeout=180)
            out = (r.status, r.body[:300])
        except OSError as exc:
            out = (-1, str(exc).encode())
        with results_mu:
            results.append(out)


threads = [threading.Thread(target=caller, args=(c,)) for c in range(CALLERS)]
for th in threads:
    th.start()
time.sleep(RUN / 2)
proxy.stop()
down_at = time.time()
time.sleep(4)
up_at = time.time()
proxy.start()
for th in threads:
    th.join(300 * SLOW)
t.check(not any(th.is_alive() for th in threads), "every caller finished")

entries = [e for e in emu.log()[log_start:] if e.get("action") == "generateContent"]
spans = collections.defaultdict(list)
for e in entries:
    spans[e["key_name"]].append((e["ts"] - e["ms"] / 1000, e["ts"]))


def most_overlapping(s: list) -> int:
    events = sorted([(a, 1) for a, _ in s] + [(b - 0.05, -1) for _, b in s],
                    key=lambda x: (x[0], x[1]))
    cur = top = 0
    for _, d in events:
        cur += d
        top = max(top, cur)
    return top


statuses = collections.Counter(st for st, _ in results)
refusals = [b for st, b in results if st != 200]
t.log(f"callers: {len(results)} requests, statuses {dict(statuses)}; emulator saw "
      f"{len(entries)}, statuses {dict(collections.Counter(e['status'] for e in entries))}")
t.check(statuses.get(200, 0) > 0, "callers got answers")
t.check(all(re.search(rb"key|unreachable|exhausted|wait", b) for b in refusals),
        "every other reply is a refusal of the pool", refusals[:3])
t.check(not any(e["status"] == 429 for e in entries), "no request over a limit (no 429)")
over = {k: most_overlapping(s) for k, s in spans.items()}
t.check(all(v <= MAX_INFLIGHT for v in over.values()),
        f"never more than {MAX_INFLIGHT} requests at once on a key (no lease lost)", over)
begun_down = [e for e in entries if down_at + 0.5 < e["ts"] - e["ms"] / 1000 < up_at]
t.check(not begun_down, "no request began while Redis was unreachable",
        begun_down[:3])
t.check(any(e["ts"] - e["ms"] / 1000 > up_at for e in entries),
        "requests go out again once Redis is back")
t.done()
