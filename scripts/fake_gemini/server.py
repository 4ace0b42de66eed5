"""The HTTP layer: keep-alive HTTP/1.1, Content-Length bodies, chunked streams, faults.

Endpoints (under both /v1beta/ and /v1/):

    POST models/{m}:generateContent
    POST models/{m}:streamGenerateContent[?alt=sse]   SSE events or one JSON array
    POST models/{m}:countTokens
    GET  models[?pageSize=&pageToken=]
    GET  models/{m}

plus the control API under /_emu/ (see fake_gemini.control). Keys are read from the
``x-goog-api-key`` header or the ``key`` query parameter.
"""

from __future__ import annotations

import json
import socket
import struct
import sys
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from . import errors
from .api import JSON_TYPE, SSE_TYPE, Call, Emulator, Plain, Reset, Stream
from .control import handle_control

MAX_BODY = 20 * 1024 * 1024  # Google's request payload limit


class Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, address: tuple, emulator: Emulator, family: int) -> None:
        self.address_family = family
        super().__init__(address, Handler)
        self.emulator = emulator


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "scaffolding on HTTPServer2"
    sys_version = ""
    timeout = 300  # an idle keep-alive connection is dropped after 5 minutes
    server: Server

    # --- plumbing -----------------------------------------------------------------

    def setup(self) -> None:
        super().setup()
        try:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass

    def log_message(self, format, *args) -> None:  # noqa: A002 - the base class's name
        """Silence the default access log: the request log replaces it."""

    def version_string(self) -> str:
        return self.server_version

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

    def _serve(self) -> None:
        self._started_body = False
        try:
            if self.path.split("?", 1)[0].startswith("/_emu"):
                self._control()
            else:
                self._api()
        except (BrokenPipeError, ConnectionResetError, socket.timeout):
            self.close_connection = True
        except Exception:  # never a traceback to the client
            sys.stderr.write("fake-gemini: internal error\n" + traceback.format_exc())
            self.close_connection = True
            if not self._started_body:
                try:
                    self._send_plain(500, errors.render(errors.error_doc(
                        500, errors.MSG_INTERNAL)), JSON_TYPE)
                except OSError:
                    pass

    def _read_body(self) -> tuple[bytes, errors.ApiError | None]:
        """The request body (Content-Length or chunked), or why it cannot be read."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        length_text = self.headers.get("Content-Length")
        if length_text is None:
            return b"", None
        try:
            length = int(length_text)
            if length < 0:
                raise ValueError
        except ValueError:
            self.close_connection = True
            return b"", errors.bad_request("Invalid Content-Length.")
        if length > MAX_BODY:
            self.close_connection = True  # the unread body makes the connection unusable
            return b"", _too_large()
        body = self.rfile.read(length)
        if len(body) < length:
            raise ConnectionResetError("request body cut short")
        return body, None

    def _read_chunked(self) -> tuple[bytes, errors.ApiError | None]:
        body = bytearray()
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";", 1)[0].strip() or b"x", 16)
            except ValueError:
                self.close_connection = True
                return b"", errors.bad_request("Invalid chunked request body.")
            if size == 0:
                while self.rfile.readline(1024).strip():  # trailers
                    pass
                return bytes(body), None
            if len(body) + size > MAX_BODY:
                self.close_connection = True
                return b"", _too_large()
            body += self.rfile.read(size)
            self.rfile.readline(1024)

    # --- writing ------------------------------------------------------------------

    def _headers(self, status: int, content_type: str, length: int | None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Vary", "Origin, X-Origin, Referer")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("X-Frame-Options", "SAMEORIGIN")
        if length is None:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(length))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self._started_body = True

    def _send_plain(self, status: int, body: bytes, content_type: str) -> None:
        self._headers(status, content_type, len(body))
        self.wfile.write(body)

    def _chunk(self, data: bytes) -> None:
        if data:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def _end_chunks(self) -> None:
        self.wfile.write(b"0\r\n\r\n")

    def _drop(self) -> None:
        """A request a reset released from a gate: close without an answer or a log entry."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _hang_up(self) -> None:
        """Close with a TCP reset: no response, or a body cut off mid-way."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.rfile.close()  # drop the makefile reference so close() really closes
        self.wfile.close()
        self.connection.close()

    def _cut_short(self) -> None:
        """Close the sending side (FIN) before the body is complete."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    # --- the control API ----------------------------------------------------------

    def _control(self) -> None:
        body, problem = self._read_body()
        call = Call(self.command, self.path, {})
        headers = {name.lower(): value for name, value in self.headers.items()}
        if problem is not None:
            status, doc = 400, {"error": str(problem)}
        else:
            status, doc = handle_control(self.server.emulator, self.server.server_address[1],
                                         self.command, call.path, call.query, body, headers)
        self._send_plain(status, (json.dumps(doc, indent=2) + "\n").encode("utf-8"), JSON_TYPE)

    # --- the Gemini API -----------------------------------------------------------

    def _api(self) -> None:
        emu = self.server.emulator
        headers = {name.lower(): value for name, value in self.headers.items()}
        body, problem = self._read_body()
        call = Call(self.command, self.path, headers, body, body_error=problem)
        reply = emu.handle(call)
        try:
            if call.plan.latency_s:
                time.sleep(call.plan.latency_s)
            if call.plan.hold and not emu.gates.wait(call.plan.hold):
                self._drop()
                return
            if isinstance(reply, Reset):
                emu.record(call, None, "reset")
                self._hang_up()
            elif isinstance(reply, Stream):
                self._send_stream(call, reply)
            else:
                self._send_reply(call, reply)
        except OSError:
            if not call.recorded:  # the client went away before the answer was complete
                status = 200 if isinstance(reply, Stream) else getattr(reply, "status", None)
                emu.record(call, status, "client_closed")
            raise

    def _send_reply(self, call: Call, reply: Plain) -> None:
        emu = self.server.emulator
        fault = call.plan.kind if reply.faultable else None
        if fault == "malformed":
            emu.record(call, reply.status, "malformed")
            # Half a JSON document is never valid JSON.
            self._send_plain(reply.status, reply.body[:len(reply.body) // 2], reply.content_type)
        elif fault == "truncate":
            emu.record(call, reply.status, "truncate")
            self._headers(reply.status, reply.content_type, len(reply.body))
            self.wfile.write(reply.body[:len(reply.body) // 2])
            self._cut_short()
        else:
            emu.record(call, reply.status, reply.kind)
            self._send_plain(reply.status, reply.body, reply.content_type)

    def _send_stream(self, call: Call, reply: Stream) -> None:
        """A 200 stream: SSE events `data: <json>\\r\\n\\r\\n`, or one JSON array written
        element by element; faults cut it short, reset it or inject an error."""
        emu = self.server.emulator
        plan = call.plan
        fault = plan.kind if plan.kind in ("reset", "truncate", "malformed", "midstream") \
            else None
        if reply.replay_tail is not None:
            fault = "replay"
        events = [_encode_event(chunk, i, reply.sse) for i, chunk in enumerate(reply.chunks)]
        if fault is None:
            good = len(events)
        elif fault in ("midstream", "replay"):
            good = 1
        else:
            good = min(1, len(events) - 1)
        self._headers(200, SSE_TYPE if reply.sse else JSON_TYPE, None)
        for i in range(good):
            if i and plan.chunk_delay_s:
                time.sleep(plan.chunk_delay_s)
            self._chunk(events[i])
            if i == 0 and plan.hold_stream and not emu.gates.wait(plan.hold_stream):
                self._drop()
                return
        if fault is not None and plan.chunk_delay_s:
            time.sleep(plan.chunk_delay_s)
        emu.record(call, 200, fault or reply.kind)
        if fault == "reset":
            self._hang_up()
            return
        if fault == "truncate":
            event = events[good]
            self._chunk(event[:len(event) // 2])
            self._cut_short()
            return
        if fault == "malformed":
            self._chunk(_malformed_event(reply.sse, good))
        elif fault == "midstream":
            self._chunk(_midstream_error(plan.midstream_code, plan.midstream_form, reply.sse))
        elif fault == "replay":
            tail = reply.replay_tail
            self._chunk(tail if reply.sse else b",\r\n" + tail.rstrip() + b"\n")
        if not reply.sse:
            self._chunk(b"]")
        self._end_chunks()


def _too_large() -> errors.ApiError:
    return errors.ApiError(400, f"Request payload size exceeds the limit: {MAX_BODY} bytes.",
                           "too_large")


def _encode_event(chunk: dict, index: int, sse: bool) -> bytes:
    if sse:
        return b"data: " + json.dumps(chunk, ensure_ascii=False,
                                      separators=(",", ":")).encode("utf-8") + b"\r\n\r\n"
    pretty = json.dumps(chunk, indent=2, ensure_ascii=False).encode("utf-8") + b"\n"
    return (b"[" if index == 0 else b",\r\n") + pretty


def _malformed_event(sse: bool, index: int) -> bytes:
    broken = b'{"candidates": [{"content": {"parts": [{"text": "fake-gemini malformed'
    if sse:
        return b"data: " + broken + b"\r\n\r\n"
    return (b"[" if index == 0 else b",\r\n") + broken + b"\n"


def _midstream_error(code: int, form: str, sse: bool) -> bytes:
    doc = errors.server_error(code).doc
    if not sse:
        return b",\r\n" + json.dumps(doc, indent=2).encode("utf-8") + b"\n"
    if form == "data":
        return b"data: " + json.dumps(doc, separators=(",", ":")).encode("utf-8") + b"\r\n\r\n"
    return errors.render(doc)
