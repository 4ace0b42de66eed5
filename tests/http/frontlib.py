"""Helpers for the tests of the HTTP front (`gemini-pool serve`) against
scripts/fake-gemini.  Builds on tests/cli/clilib.py (T, Emu, Pool).

    from frontlib import Front, http
    front = Front(t, pool, "--max-body", "1000000")     # started, stopped at exit
    r = http(front.url + "/v1beta/models/gemini-2.5-flash:generateContent", body)
    r.status, r.headers["x-pool-key"], r.json()
"""

from __future__ import annotations

import http.client as httpclient
import json
import os
import re
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "cli"))
from clilib import BINARY, SLOW, Emu, Pool, T  # noqa: E402,F401


class Reply:
    def __init__(self, status: int, headers: dict, body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"HTTP {self.status} {self.headers} {self.body[:600]!r}"


def http(url: str, body=None, headers: dict | None = None, method: str | None = None,
         timeout: float = 60) -> Reply:
    """One request (no proxies, no redirects).  body: bytes, str or a JSON value."""
    m = re.match(r"http://([^/]+)(/.*)", url)
    host, path = m.group(1), m.group(2)
    if body is not None and not isinstance(body, (bytes, str)):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode("utf-8")
    conn = httpclient.HTTPConnection(host, timeout=timeout * SLOW)
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    conn.request(method or ("POST" if body is not None else "GET"), path, body=body, headers=h)
    resp = conn.getresponse()
    data = resp.read()
    hdrs = {k.lower(): v for k, v in resp.getheaders()}
    conn.close()
    return Reply(resp.status, hdrs, data)


def sse_events(body: bytes) -> list:
    """The data of each server-sent event, parsed as JSON."""
    out = []
    for block in re.split(rb"\r?\n\r?\n", body):
        data = [line[5:].lstrip() for line in block.splitlines() if line.startswith(b"data:")]
        if data:
            out.append(json.loads(b"\n".join(data)))
    return out


class Front:
    """`gemini-pool serve` over a Pool, on a free loopback port; its stderr
    (the request log) in self.log_file."""

    def __init__(self, t: T, pool: Pool, *args: str, listen: str = "127.0.0.1:0",
                 env: dict | None = None) -> None:
        self.t = t
        self.pool = pool
        self.log_file = os.path.join(pool.dir, "serve.log")
        e = dict(pool.env)
        e.update(env or {})
        self.err = open(self.log_file, "wb")
        self.proc = subprocess.Popen([BINARY, "serve", "--listen", listen, *args],
                                     stdout=subprocess.DEVNULL, stderr=self.err, env=e,
                                     cwd=pool.dir, start_new_session=True)
        t.on_exit(self.stop)
        deadline = time.monotonic() + 15 * SLOW
        while time.monotonic() < deadline:
            m = re.search(r"serving the Gemini API on (\S+)", self.log())
            if m:
                self.address = m.group(1)
                self.url = self.address if self.address.startswith("http") else None
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        self.stop()
        t.require(False, "gemini-pool serve starts", self.log())

    def log(self) -> str:
        with open(self.log_file, encoding="utf-8", errors="replace") as f:
            return f.read()

    def request_lines(self) -> list:
        return [line for line in self.log().splitlines() if " http: client=" in line]

    def rss_kb(self) -> int:
        with open(f"/proc/{self.proc.pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return -1

    def threads(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/task"))

    def sanitizer_report(self) -> str:
        """Stops the daemon and returns what a sanitizer said in its log ("" if
        nothing): leaks show up only at exit."""
        self.stop()
        m = re.search(r"(ERROR: (AddressSanitizer|LeakSanitizer|ThreadSanitizer)|"
                      r"WARNING: ThreadSanitizer|runtime error:).*", self.log(), re.S)
        return m.group(0)[:3000] if m else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10 * SLOW)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if not self.err.closed:
            self.err.close()


def generate_url(front: Front, model: str = "gemini-2.5-flash", action: str = "generateContent",
                 query: str = "") -> str:
    return f"{front.url}/v1beta/models/{model}:{action}{query}"


def user(text: str) -> dict:
    return {"contents": [{"role": "user", "parts": [{"text": text}]}]}


def raw_request(front: Front, head: bytes, body_chunks=(), timeout: float = 20) -> tuple:
    """Sends `head` (request line and headers) then body chunks on one socket, as far
    as the server lets it, and returns (status line, bytes sent of the body, the
    whole reply).  For refusals that come before the body."""
    host, port = front.url[7:].rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=timeout * SLOW)
    s.sendall(head)
    sent = 0
    try:
        for chunk in body_chunks:
            s.sendall(chunk)
            sent += len(chunk)
    except OSError:
        pass
    reply = b""
    try:
        while True:
            data = s.recv(65536)
            if not data:
                break
            reply += data
            if b"\r\n\r\n" in reply and b'"}}' in reply:
                break
    except OSError:
        pass
    s.close()
    return reply.split(b"\r\n", 1)[0].decode("latin-1"), sent, reply
