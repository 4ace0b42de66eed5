#!/usr/bin/env python3
"""A loopback HTTP/1.1 server with declared behaviours, for the client tests.

Started by tests/client/server.c: prints its port on stdout, exits when its
stdin reaches EOF (so it never outlives the test).  Standard library only.

Generic endpoints (any method):
  /hello                 200 "hello"
  /conn                  200, body = the id of the TCP connection (counts connections)
  /conn?sleep_ms=N       the same after N ms
  /stream?n=N&gap_ms=G   chunked: N chunks "chunk i\\n", G ms apart
  /stream_held?id=X      chunked: "chunk 0\\n", then waits until /release?id=X (120 s
                         at most, a hang guard), then "chunk 1\\n" "chunk 2\\n"
  /release?id=X          opens gate X: 200 "released"
  /conn_gate?id=X&n=N    waits until N requests wait at gate X at once (then it stays
                         open), 120 s at most; 200 with the connection id, or 504
  /hang                  reads the request and never answers
  /hang_body             headers (Content-Length 1000), 10 bytes, then silence
  /trickle               chunked, one byte every 100 ms for 30 s
  /reset                 headers (Content-Length 1000), 10 bytes, then a TCP RST
  /close_early           headers (Content-Length 1000), 10 bytes, then a clean close
  /echo                  200, JSON {"method","path","headers","body"}
  /status/N              status N, body "status N"

Gemini emulation, under /v1beta (and /loop/v1beta for a models.list that
never ends); the API key must be in x-goog-api-key and nowhere in the URL:
  POST /v1beta/models/MODEL:streamGenerateContent?alt=sse   (SSE)
  POST /v1beta/models/MODEL:generateContent                 (one JSON object)
  POST /v1beta/models/MODEL:countTokens                     {"totalTokens":42}
  GET  /v1beta/models?pageSize=1000[&pageToken=p2]          two pages
MODEL picks the behaviour: ok, slow, held (slow, but the rest waits 120 s),
midstream-error, data-error, quota,
truncated, nofinish, safety, blocked, image, reset, hang, maxtokens.
"""

import base64
import json
import os
import socket
import struct
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

API_KEY = "test-key-123"
# A 1x1 PNG.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")

QUOTA_BODY = """{
  "error": {
    "code": 429,
    "message": "You exceeded your current quota, please check your plan and billing details.",
    "status": "RESOURCE_EXHAUSTED",
    "details": [
      {
        "@type": "type.googleapis.com/google.rpc.QuotaFailure",
        "violations": [
          {
            "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
            "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
            "quotaDimensions": {"location": "global", "model": "gemini-2.5-flash"},
            "quotaValue": "10"
          }
        ]
      },
      {
        "@type": "type.googleapis.com/google.rpc.RetryInfo",
        "retryDelay": "22s"
      }
    ]
  }
}
"""

# Braces and quotes inside strings, as a test of the bare-JSON scanner.
MIDSTREAM_ERROR = """{
  "error": {
    "code": 500,
    "message": "An internal error has occurred. {not a brace} \\"quoted }\\" \\\\",
    "status": "INTERNAL"
  }
}
"""

conn_counter = 0
conn_lock = threading.Lock()


GATES_LOCK = threading.Condition()
GATES = {}  # name -> {"open": bool, "waiting": int}
GATE_LIMIT_S = 120.0


def gate_wait(name, need=None):
    """Waits until gate `name` is open (or, with `need`, until that many wait at once,
    which opens it); False after GATE_LIMIT_S."""
    deadline = time.monotonic() + GATE_LIMIT_S
    with GATES_LOCK:
        g = GATES.setdefault(name, {"open": False, "waiting": 0})
        g["waiting"] += 1
        if need is not None and g["waiting"] >= need:
            g["open"] = True
            GATES_LOCK.notify_all()
        while not g["open"]:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            GATES_LOCK.wait(left)
        g["waiting"] -= 1
        return g["open"]


def gate_open(name):
    with GATES_LOCK:
        GATES.setdefault(name, {"open": False, "waiting": 0})["open"] = True
        GATES_LOCK.notify_all()


def chunk(data):
    return b"%x\r\n%s\r\n" % (len(data), data)


def response(parts, finish=None, usage=None, version="gemini-test-001"):
    cand = {"content": {"role": "model", "parts": parts}, "index": 0}
    if finish:
        cand["finishReason"] = finish
    r = {"candidates": [cand], "modelVersion": version, "responseId": "resp-1"}
    if usage:
        r["usageMetadata"] = usage
    return r


USAGE = {"promptTokenCount": 7, "candidatesTokenCount": 3, "thoughtsTokenCount": 5,
         "totalTokenCount": 15}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        global conn_counter
        super().setup()
        with conn_lock:
            conn_counter += 1
            self.conn_id = conn_counter

    def log_message(self, fmt, *args):
        pass

    # -- helpers --

    def read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def send_plain(self, status, body, ctype="text/plain"):
        if isinstance(body, str):
            body = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Conn-Id", str(self.conn_id))
        self.end_headers()
        self.wfile.write(body)

    def start_chunked(self, ctype="text/plain", status=200):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def end_chunked(self):
        self.wfile.write(b"0\r\n\r\n")

    def rst(self):
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        self.close_connection = True

    def partial_then(self, how):
        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.end_headers()
        self.wfile.write(b"0123456789")
        self.wfile.flush()
        time.sleep(0.2)
        if how == "reset":
            self.rst()
        elif how == "close":
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
        else:
            time.sleep(30)
            self.close_connection = True

    # -- dispatch --

    def do_GET(self):
        self.dispatch()

    def do_POST(self):
        self.dispatch()

    def do_PUT(self):
        self.dispatch()

    def dispatch(self):
        body = self.read_body()
        url = urllib.parse.urlsplit(self.path)
        q = urllib.parse.parse_qs(url.query)
        path = url.path
        if "/v1beta/" in path:
            return self.gemini(path, q, body)
        if path == "/hello":
            return self.send_plain(200, "hello")
        if path == "/conn":
            ms = int(q.get("sleep_ms", ["0"])[0])
            if ms:
                time.sleep(ms / 1000.0)
            return self.send_plain(200, str(self.conn_id))
        if path == "/stream":
            n = int(q.get("n", ["3"])[0])
            gap = int(q.get("gap_ms", ["0"])[0]) / 1000.0
            self.start_chunked()
            for i in range(n):
                if i:
                    time.sleep(gap)
                self.wfile.write(chunk(b"chunk %d\n" % i))
            return self.end_chunked()
        if path == "/stream_held":
            self.start_chunked()
            self.wfile.write(chunk(b"chunk 0\n"))
            self.wfile.flush()
            gate_wait(q.get("id", [""])[0])
            for i in (1, 2):
                self.wfile.write(chunk(b"chunk %d\n" % i))
            return self.end_chunked()
        if path == "/release":
            gate_open(q.get("id", [""])[0])
            return self.send_plain(200, "released")
        if path == "/conn_gate":
            ok = gate_wait(q.get("id", [""])[0], int(q.get("n", ["1"])[0]))
            return self.send_plain(200 if ok else 504, str(self.conn_id))
        if path == "/hang":
            time.sleep(30)
            self.close_connection = True
            return
        if path == "/hang_body":
            return self.partial_then("hang")
        if path == "/trickle":
            self.start_chunked()
            for _ in range(300):
                self.wfile.write(chunk(b"."))
                time.sleep(0.1)
            return self.end_chunked()
        if path == "/reset":
            return self.partial_then("reset")
        if path == "/close_early":
            return self.partial_then("close")
        if path == "/echo":
            doc = {"method": self.command, "path": self.path,
                   "headers": {k.lower(): v for k, v in self.headers.items()},
                   "body": body.decode("utf-8", "replace")}
            return self.send_plain(200, json.dumps(doc), "application/json")
        if path.startswith("/status/"):
            code = int(path.split("/")[2])
            return self.send_plain(code, "status %d" % code)
        return self.send_plain(404, "no such test endpoint")

    # -- Gemini --

    def gemini_error(self, status, code_name, message):
        body = json.dumps({"error": {"code": status, "message": message, "status": code_name}},
                          indent=2) + "\n"
        self.send_plain(status, body, "application/json")

    def gemini(self, path, q, body):
        key = self.headers.get("x-goog-api-key")
        if API_KEY in self.path or "key=" in self.path:
            return self.gemini_error(400, "INVALID_ARGUMENT", "the API key is in the URL")
        if key != API_KEY:
            return self.gemini_error(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.")
        if self.headers.get("Content-Type") != "application/json":
            return self.gemini_error(400, "INVALID_ARGUMENT", "wrong content type")
        if not (self.headers.get("User-Agent") or "").startswith("gemini-key-pool/"):
            return self.gemini_error(400, "INVALID_ARGUMENT", "wrong user agent")
        looping = path.startswith("/loop/")
        if looping:
            path = path[len("/loop"):]
        if path == "/v1beta/models":
            return self.models_list(q, looping)
        rest = path[len("/v1beta/models/"):]
        if ":" not in rest:
            return self.gemini_error(404, "NOT_FOUND", "no method")
        model, method = rest.split(":", 1)
        if method == "countTokens":
            json.loads(body)
            return self.send_plain(200, json.dumps({"totalTokens": 42}), "application/json")
        if method == "generateContent":
            return self.generate(model, body, stream=False)
        if method == "streamGenerateContent":
            if q.get("alt") != ["sse"]:
                return self.gemini_error(400, "INVALID_ARGUMENT", "expected alt=sse")
            return self.generate(model, body, stream=True)
        return self.gemini_error(404, "NOT_FOUND", "unknown method")

    def models_list(self, q, looping):
        if q.get("pageSize") != ["1000"]:
            return self.gemini_error(400, "INVALID_ARGUMENT", "expected pageSize=1000")
        token = q.get("pageToken", [None])[0]
        if looping:
            doc = {"models": [{"name": "models/m"}], "nextPageToken": "same"}
        elif token is None:
            doc = {"models": [
                {"name": "models/gemini-2.5-flash", "displayName": "Gemini 2.5 Flash",
                 "inputTokenLimit": 1048576, "outputTokenLimit": 65536,
                 "supportedGenerationMethods": ["generateContent", "countTokens"],
                 "thinking": True},
                {"name": "models/embedding-001", "displayName": "Embedding",
                 "supportedGenerationMethods": ["embedContent"]}],
                "nextPageToken": "p2/+="}
        elif token == "p2/+=":
            doc = {"models": [{"name": "models/gemini-3-pro-preview",
                               "supportedGenerationMethods": ["generateContent"]}]}
        else:
            return self.gemini_error(400, "INVALID_ARGUMENT", "bad page token")
        return self.send_plain(200, json.dumps(doc), "application/json")

    def generate(self, model, body, stream):
        req = json.loads(body)
        assert req["contents"][0]["role"] == "user"
        if model == "quota":
            return self.send_plain(429, QUOTA_BODY, "application/json")
        if model == "hang":
            time.sleep(30)
            self.close_connection = True
            return
        chunks = self.plan(model)
        if not stream:
            merged = {"candidates": [{"content": {"role": "model", "parts": []}}]}
            for c in chunks:
                if isinstance(c, dict) and "candidates" in c:
                    merged["candidates"][0]["content"]["parts"] += c["candidates"][0]["content"]["parts"]
                    if "finishReason" in c["candidates"][0]:
                        merged["candidates"][0]["finishReason"] = c["candidates"][0]["finishReason"]
                if isinstance(c, dict):
                    for k in ("usageMetadata", "modelVersion", "responseId", "promptFeedback"):
                        if k in c:
                            merged[k] = c[k]
            return self.send_plain(200, json.dumps(merged), "application/json")
        self.start_chunked("text/event-stream")
        for c in chunks:
            if isinstance(c, float):
                time.sleep(c)
            elif isinstance(c, bytes):
                if c == b"RESET":
                    return self.rst()
                self.wfile.write(chunk(c))
            else:
                self.wfile.write(chunk(b"data: " + json.dumps(c).encode() + b"\r\n\r\n"))
        self.end_chunked()

    def plan(self, model):
        t = lambda s: {"text": s}
        if model in ("ok", "slow", "held"):
            p = [response([{"text": "Let me think.", "thought": True}]),
                 response([t("Hello")], usage=dict(USAGE, candidatesTokenCount=1)),
                 response([t(" world")], finish="STOP", usage=USAGE)]
            if model == "slow":
                p.insert(2, 1.0)
            if model == "held":
                p.insert(2, GATE_LIMIT_S)
            return p
        if model == "maxtokens":
            return [response([t("cut")], finish="MAX_TOKENS", usage=USAGE)]
        if model == "midstream-error":
            return [response([t("partial")]), MIDSTREAM_ERROR.encode()]
        if model == "data-error":
            return [response([t("partial")]),
                    {"error": {"code": 503, "message": "The model is overloaded.",
                               "status": "UNAVAILABLE"}}]
        if model == "truncated":
            return [response([t("partial")]), b'data: {"candidates": [{"content": {"par']
        if model == "nofinish":
            return [response([t("no end")])]
        if model == "safety":
            return [response([t("Some")]), response([], finish="SAFETY")]
        if model == "blocked":
            return [{"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},
                     "usageMetadata": {"promptTokenCount": 4, "totalTokenCount": 4},
                     "modelVersion": "gemini-test-001"}]
        if model == "image":
            return [response([t("Here:"), {"inlineData": {"mimeType": "image/png",
                                                         "data": base64.b64encode(PNG).decode()}}],
                             finish="STOP", usage=USAGE)]
        if model == "reset":
            return [response([t("partial")]), 0.2, b"RESET"]
        return [response([t("unknown model " + model)], finish="STOP")]


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        # Clients hang up on purpose (cancellation, timeouts): stay quiet.
        if not isinstance(sys.exc_info()[1], (ConnectionError, OSError)):
            super().handle_error(request, client_address)


def main():
    srv = Server(("127.0.0.1", 0), Handler)
    print(srv.server_address[1], flush=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        sys.stdin.read()  # EOF: the test is over (or died)
    finally:
        os._exit(0)


if __name__ == "__main__":
    main()
