#!/usr/bin/env python3
"""Tests of scripts/fake-gemini, the local emulator of the Gemini REST API.

Standard library only. Most tests share one emulator (started on port 0 through
--port-file) and reset it before each test; tests of start-up, signals and command
line flags start their own. Time is moved with the clock control, never slept
through, so the whole suite runs in seconds.

Run: python3 tests/emulator/test_emulator.py [-v] [TestClass.test_name]
"""

from __future__ import annotations

import base64
import concurrent.futures
import glob
import hashlib
import http.client
import json
import math
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import unittest
import zlib
from datetime import datetime, timezone

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.environ.get("GKP_SOURCE_ROOT") or os.path.dirname(os.path.dirname(HERE))
FAKE = os.path.join(ROOT, "scripts", "fake-gemini")
FIXTURES = os.path.join(os.environ.get("GKP_FIXTURES") or os.path.join(ROOT, "tests",
                                                                          "fixtures"),
                        "gemini-errors")
sys.path.insert(0, os.path.join(ROOT, "scripts"))
from fake_gemini import ctlclient  # noqa: E402  (the control API's token)

QUOTA_PREFIX = ("You exceeded your current quota, please check your plan and billing details. "
                "For more information on this error, head to: "
                "https://ai.google.dev/gemini-api/docs/rate-limits. To monitor your current "
                "usage, head to: https://ai.dev/rate-limit. \n")
METRIC_REQ = "generativelanguage.googleapis.com/generate_content_free_tier_requests"
METRIC_TOK = "generativelanguage.googleapis.com/generate_content_free_tier_input_token_count"
RPM_ID = "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"
TPM_ID = "GenerateContentInputTokensPerModelPerMinute-FreeTier"
RPD_ID = "GenerateRequestsPerDayPerProjectPerModel-FreeTier"
T = "type.googleapis.com/google.rpc."

KEYS = {
    "projects": {
        "proj-1": {"models": {"gemini-3-flash-preview": {}, "gemini-2.5-flash": {},
                              "gemini-2.5-flash-image": {}}},
        "proj-tpm": {"models": {"gemini-2.5-flash": {"rpm": 100, "tpm": 1000, "rpd": 1000}}},
        "proj-rpd": {"models": {"gemini-2.5-flash": {"rpm": 100, "tpm": None, "rpd": 3}}},
        "proj-big": {"models": {
            "gemini-2.5-flash": {"rpm": 10000, "tpm": None, "rpd": 100000},
            "gemini-3-flash-preview": {"rpm": 10000, "tpm": None, "rpd": 100000},
            "gemini-2.5-flash-image": {"rpm": 10000, "tpm": None, "rpd": 100000},
            "gemma-3-27b-it": {}}},
    },
    "keys": [
        {"key": "FAKE-KEY-0001", "name": "k1", "project": "proj-1"},
        {"key": "FAKE-KEY-0002", "name": "k2", "project": "proj-1"},
        {"key": "FAKE-KEY-0003", "name": "k3"},
        {"key": "FAKE-KEY-TPM1", "name": "ktpm", "project": "proj-tpm"},
        {"key": "FAKE-KEY-RPD1", "name": "krpd", "project": "proj-rpd"},
        {"key": "FAKE-KEY-BIG1", "name": "kbig", "project": "proj-big"},
        {"key": "FAKE-KEY-BIG2", "name": "kbig2", "project": "proj-big"},
        {"key": "FAKE-KEY-LEAKED", "name": "kleak", "state": "leaked"},
        {"key": "FAKE-KEY-SUSPENDED", "name": "ksusp", "state": "suspended"},
        {"key": "FAKE-KEY-BILLING", "name": "kbill", "state": "billing"},
    ],
}
SECRETS = [k["key"] for k in KEYS["keys"]]
UNKNOWN_KEY = "FAKE-KEY-NOT-IN-FILE-77"
KEY = {k["name"]: k["key"] for k in KEYS["keys"]}

SEEN_BODIES: list = []  # every response body any test received (checked at the end)


def fixture(name: str) -> dict:
    with open(os.path.join(FIXTURES, name), encoding="utf-8") as f:
        return json.load(f)


def body_of(text: str, **extra) -> dict:
    doc = {"contents": [{"role": "user", "parts": [{"text": text}]}]}
    doc.update(extra)
    return doc


def utc(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()


class Response:
    def __init__(self, status, headers, raw, error=None):
        self.status = status
        self.headers = headers
        self.raw = raw
        self.error = error
        SEEN_BODIES.append(raw)

    @property
    def text(self) -> str:
        return self.raw.decode("utf-8")

    def json(self):
        return json.loads(self.raw)

    def header(self, name):
        return self.headers.get(name.lower())


class Emulator:
    """One fake-gemini process with its own keys file, port file and log."""

    def __init__(self, keys=None, args=(), wait=True):
        self.dir = tempfile.mkdtemp(prefix="fake-gemini-test.")
        self.keys_path = os.path.join(self.dir, "keys.json")
        with open(self.keys_path, "w", encoding="utf-8") as f:
            json.dump(keys if keys is not None else KEYS, f)
        self.port_file = os.path.join(self.dir, "port")
        self.log_path = os.path.join(self.dir, "requests.jsonl")
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(
            [FAKE, "--port", "0", "--keys", self.keys_path, "--port-file", self.port_file,
             "--log", self.log_path, "--quiet", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.port = None
        self.startup_s = None
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if os.path.exists(self.port_file):
                with open(self.port_file) as f:
                    text = f.read()
                self.startup_s = time.monotonic() - self.t0
                self.port = int(text)
                self.token = ctlclient.read_token(self.port_file)
                return
            if self.proc.poll() is not None:
                raise RuntimeError("fake-gemini exited: " + self.proc.stderr.read().decode())
            time.sleep(0.005)
        raise RuntimeError("fake-gemini did not start")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        self.proc.stderr.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # --- HTTP ---------------------------------------------------------------------

    def request(self, method, path, body=None, headers=None, key=None, conn=None,
                token=True):
        """One request; a control request (/_emu/) carries the token unless `token`
        is False."""
        hdrs = {"User-Agent": "emulator-test"}
        if key is not None:
            hdrs["x-goog-api-key"] = key
        if token and path.startswith("/_emu"):
            hdrs[ctlclient.TOKEN_HEADER] = self.token
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
            hdrs["Content-Type"] = "application/json"
        hdrs.update(headers or {})
        own = conn is None
        conn = conn or http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            conn.request(method, path, body=body, headers=hdrs)
            resp = conn.getresponse()
            headers = {k.lower(): v for k, v in resp.getheaders()}
            try:
                raw = resp.read()
                error = None
            except http.client.IncompleteRead as exc:
                raw, error = exc.partial, exc
            except (ConnectionError, OSError) as exc:
                raw, error = b"", exc
            return Response(resp.status, headers, raw, error)
        finally:
            if own:
                conn.close()

    def generate(self, model, body, key=KEY["kbig"], version="v1beta", **kw):
        return self.request("POST", f"/{version}/models/{model}:generateContent", body,
                            key=key, **kw)

    def stream(self, model, body, key=KEY["kbig"], sse=True, **kw):
        query = "?alt=sse" if sse else ""
        return self.request("POST", f"/v1beta/models/{model}:streamGenerateContent{query}",
                            body, key=key, **kw)

    def ctl(self, method, path, doc=None):
        resp = self.request(method, "/_emu/" + path, doc if doc is not None else
                            ({} if method == "POST" else None))
        if resp.status != 200:
            raise AssertionError(f"control {method} {path}: {resp.status} {resp.text}")
        return resp.json()

    def log(self):
        return self.ctl("GET", "log")

    def set_clock(self, unix_time):
        return self.ctl("POST", "clock", {"now": unix_time})


EMU: Emulator | None = None


def gate(name):
    """The emulator's count of a gate (all zero before a request reaches it)."""
    return EMU.ctl("GET", "gates")["gates"].get(name, {"open": False, "waiting": 0,
                                                       "passed": 0})


def wait_for(predicate, limit=120.0):
    """Poll `predicate` until it is true; False after `limit` seconds (a hang guard)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def setUpModule():
    global EMU
    EMU = Emulator()


def tearDownModule():
    # The secrets never left the emulator, in any body or log line of any test.
    with open(EMU.log_path, encoding="utf-8") as f:
        log_text = f.read()
    EMU.stop()
    everything = b"".join(SEEN_BODIES).decode("utf-8", "replace") + log_text
    for secret in SECRETS + [UNKNOWN_KEY]:
        if secret in everything:
            raise AssertionError(f"a key leaked into a response body or the log: {secret}")


class EmuTest(unittest.TestCase):
    def setUp(self):
        EMU.ctl("POST", "reset", {"clock": True})

    # --- shared checks ----------------------------------------------------------

    def assert_error(self, resp, code, status, message=None):
        self.assertEqual(resp.status, code, resp.text)
        self.assertTrue(resp.header("content-type").startswith("application/json"))
        self.assertTrue(resp.text.endswith("\n"), "error bodies end with a newline")
        self.assertIn('\n  "error": {\n    "code"', resp.text, "two-space pretty printing")
        doc = resp.json()
        if isinstance(doc, list):
            doc = doc[0]
        err = doc["error"]
        self.assertEqual(err["code"], code)
        self.assertEqual(err["status"], status)
        if message is not None:
            self.assertEqual(err["message"], message)
        return err

    def answer_text(self, doc):
        return "".join(p.get("text", "") for p in doc["candidates"][0]["content"]["parts"]
                       if not p.get("thought"))

    def sse_events(self, resp):
        """The JSON documents of an SSE body; every event must end with \\r\\n\\r\\n."""
        self.assertTrue(resp.raw.endswith(b"\r\n\r\n"), resp.raw[-40:])
        events = resp.raw.split(b"\r\n\r\n")
        self.assertEqual(events[-1], b"")
        docs = []
        for event in events[:-1]:
            self.assertTrue(event.startswith(b"data: "), event[:40])
            self.assertNotIn(b"\n", event)
            docs.append(json.loads(event[6:]))
        return docs

    def last_log(self):
        return EMU.log()[-1]


# =====================================================================================
class TestStartup(unittest.TestCase):
    def test_starts_prints_banner_writes_port_file(self):
        emu = Emulator()
        try:
            # A guard against a start-up that hangs, not a timing: the machine may be loaded.
            self.assertLess(emu.startup_s, 15.0, "start-up does not hang")
            line = emu.proc.stdout.readline().decode()
            self.assertEqual(line, f"fake-gemini listening on http://127.0.0.1:{emu.port}\n")
            with open(emu.port_file) as f:
                self.assertRegex(f.read(), r"^\d+\n$")
            self.assertEqual([p for p in os.listdir(emu.dir) if ".tmp" in p], [])
            health = emu.ctl("GET", "health")
            self.assertTrue(health["ok"])
            self.assertEqual(health["port"], emu.port)
        finally:
            emu.stop()

    def test_sigterm_and_sigint_exit_cleanly(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            emu = Emulator()
            try:
                emu.generate("gemini-2.5-flash", body_of("hi"))
                emu.proc.send_signal(sig)
                self.assertEqual(emu.proc.wait(5), 0)
                self.assertNotIn(b"Traceback", emu.proc.stderr.read())
            finally:
                emu.stop()

    def test_refuses_non_loopback_host(self):
        for host in ("0.0.0.0", "192.168.1.10", "example.com", "::"):
            with tempfile.TemporaryDirectory() as d:
                keys = os.path.join(d, "keys.json")
                with open(keys, "w") as f:
                    json.dump(KEYS, f)
                proc = subprocess.run([FAKE, "--port", "0", "--keys", keys, "--host", host],
                                      capture_output=True, timeout=10)
                self.assertEqual(proc.returncode, 2, host)
                self.assertIn(b"refusing to listen", proc.stderr)

    def test_bad_keys_files_get_one_clear_line(self):
        cases = [
            ('{"keys": [', "invalid JSON at line 1"),
            ('{"keys": []}', "keys: must be a non-empty array"),
            ('{"keys": [{"key": "A"}, {"key": "A"}]}', "duplicate key"),
            ('{"keys": [{"key": "A", "state": "weird"}]}', "keys[0].state"),
            ('{"keys": [{"key": "A"}], "projects": {"p": {"models": {"m": {"rpx": 1}}}}}',
             "unknown field"),
        ]
        for text, expected in cases:
            with tempfile.TemporaryDirectory() as d:
                keys = os.path.join(d, "keys.json")
                with open(keys, "w") as f:
                    f.write(text)
                proc = subprocess.run([FAKE, "--port", "0", "--keys", keys],
                                      capture_output=True, timeout=10)
                self.assertEqual(proc.returncode, 2, text)
                err = proc.stderr.decode()
                self.assertIn(expected, err)
                self.assertIn(keys, err)
                self.assertEqual(len(err.strip().splitlines()), 1, err)

    def test_help_documents_keys_file_and_control_api(self):
        proc = subprocess.run([FAKE, "--help"], capture_output=True, timeout=10)
        self.assertEqual(proc.returncode, 0)
        for word in (b'"projects"', b'"keys"', b"leaked", b"/_emu/faults", b"/_emu/replay",
                     b"--p-midstream", b"--port-file"):
            self.assertIn(word, proc.stdout)


# =====================================================================================
class TestGenerate(EmuTest):
    def test_generate_content_shape(self):
        resp = EMU.generate("gemini-2.5-flash", body_of("Tell me about pools"))
        self.assertEqual(resp.status, 200)
        self.assertEqual(resp.header("content-type"), "application/json; charset=UTF-8")
        self.assertEqual(int(resp.header("content-length")), len(resp.raw))
        self.assertTrue(resp.text.startswith('{\n  "candidates": ['))
        doc = resp.json()
        cand = doc["candidates"][0]
        self.assertEqual(cand["finishReason"], "STOP")
        self.assertEqual(cand["index"], 0)
        self.assertEqual(cand["content"]["role"], "model")
        text = self.answer_text(doc)
        self.assertTrue(text.startswith("[fake-gemini model=gemini-2.5-flash key=kbig "
                                        "project=proj-big sha="), text)
        self.assertIn("You asked: Tell me about pools", text)
        self.assertGreater(len(text.encode()), 200)
        self.assertEqual(doc["modelVersion"], "gemini-2.5-flash")
        self.assertRegex(doc["responseId"], r"^[A-Za-z0-9_-]{10,}$")
        usage = doc["usageMetadata"]
        self.assertEqual(usage["promptTokenCount"], math.ceil(len("Tell me about pools") / 4))
        self.assertEqual(usage["candidatesTokenCount"], math.ceil(len(text.encode()) / 4))
        self.assertEqual(usage["totalTokenCount"],
                         usage["promptTokenCount"] + usage["candidatesTokenCount"])

    def test_answers_are_deterministic_and_name_the_key(self):
        prompt = "What   is\n\tthe answer?"
        a = EMU.generate("gemini-2.5-flash", body_of(prompt), key=KEY["kbig"]).json()
        b = EMU.generate("gemini-2.5-flash", body_of(prompt), key=KEY["kbig"]).json()
        c = EMU.generate("gemini-2.5-flash", body_of(prompt), key=KEY["kbig2"]).json()
        d = EMU.generate("gemini-2.5-flash", body_of(prompt + "!"), key=KEY["kbig"]).json()
        self.assertEqual(self.answer_text(a), self.answer_text(b))
        self.assertIn("You asked: What is the answer?", self.answer_text(a))
        self.assertIn("key=kbig2 ", self.answer_text(c))
        self.assertEqual(self.answer_text(a).split("\n")[0].replace("key=kbig ", "key=kbig2 "),
                         self.answer_text(c).split("\n")[0])
        sha = hashlib.sha256(prompt.encode()).hexdigest()[:12]
        self.assertIn(f"sha={sha}]", self.answer_text(a))
        self.assertNotEqual(self.answer_text(a), self.answer_text(d))
        self.assertNotEqual(a["responseId"], b["responseId"])

    def test_key_in_query_works_and_is_redacted_in_log(self):
        resp = EMU.request("POST", f"/v1beta/models/gemini-2.5-flash:generateContent?"
                                   f"key={KEY['kbig']}&foo=bar", body_of("hi"))
        self.assertEqual(resp.status, 200)
        entry = self.last_log()
        self.assertEqual(entry["path"],
                         "/v1beta/models/gemini-2.5-flash:generateContent?key=REDACTED&foo=bar")
        self.assertTrue(entry["key_in_url"])
        self.assertEqual(entry["key_name"], "kbig")
        EMU.generate("gemini-2.5-flash", body_of("hi"))
        entry = self.last_log()
        self.assertFalse(entry["key_in_url"])
        self.assertEqual(entry["path"], "/v1beta/models/gemini-2.5-flash:generateContent")

    def test_v1_prefix(self):
        resp = EMU.generate("gemini-2.5-flash", body_of("hi"), version="v1")
        self.assertEqual(resp.status, 200)
        resp = EMU.request("GET", "/v1/models/gemini-2.5-flash", key=KEY["kbig"])
        self.assertEqual(resp.json()["name"], "models/gemini-2.5-flash")
        resp = EMU.generate("no-such-model", body_of("hi"), version="v1")
        self.assertIn("for API version v1,", resp.json()["error"]["message"])

    def test_keep_alive_serves_many_requests_on_one_connection(self):
        conn = http.client.HTTPConnection("127.0.0.1", EMU.port, timeout=10)
        try:
            for i in range(5):
                resp = EMU.generate("gemini-2.5-flash", body_of(f"n{i}"), conn=conn)
                self.assertEqual(resp.status, 200)
                resp = EMU.stream("gemini-2.5-flash", body_of(f"s{i}"), conn=conn)
                self.assertEqual(resp.header("transfer-encoding"), "chunked")
                resp = EMU.generate("gemini-9", body_of("x"), conn=conn)
                self.assertEqual(resp.status, 404)
        finally:
            conn.close()

    def test_system_instruction_tools_and_image_input_are_acknowledged(self):
        png = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"x" * 92).decode()
        doc = {"contents": [{"role": "user", "parts": [
            {"text": "describe this"}, {"inlineData": {"mimeType": "image/png", "data": png}}]}],
            "systemInstruction": {"parts": [{"text": "You are a terse assistant who " * 5}]},
            "tools": [{"googleSearch": {}}, {"codeExecution": {}},
                      {"functionDeclarations": [{"name": "get_weather"}]}]}
        resp = EMU.generate("gemini-2.5-flash", doc)
        text = self.answer_text(resp.json())
        self.assertIn('system="' + ("You are a terse assistant who " * 5)[:60].strip()[:60],
                      text)
        self.assertIn("tools=googleSearch,codeExecution,function:get_weather", text)
        self.assertIn("I see an image of 100 bytes, mime image/png.", text)
        sys_bytes = len(("You are a terse assistant who " * 5).encode())
        usage = resp.json()["usageMetadata"]
        self.assertEqual(usage["promptTokenCount"],
                         math.ceil((len("describe this") + sys_bytes) / 4) + 258)
        # snake_case spellings are accepted too
        doc2 = {"contents": [{"parts": [{"text": "a"}, {"inline_data": {"mime_type": "image/jpeg",
                                                                         "data": png}}]}],
                "system_instruction": {"parts": [{"text": "short"}]}}
        text2 = self.answer_text(EMU.generate("gemini-2.5-flash", doc2).json())
        self.assertIn("mime image/jpeg", text2)
        self.assertIn('system="short"', text2)

    def test_thought_summary_parts(self):
        cfg = {"generationConfig": {"thinkingConfig": {"includeThoughts": True,
                                                       "thinkingLevel": "LOW"}}}
        doc = EMU.generate("gemini-3-flash-preview", body_of("think", **cfg)).json()
        parts = doc["candidates"][0]["content"]["parts"]
        self.assertTrue(parts[0]["thought"])
        self.assertIn("LOW", parts[0]["text"])
        self.assertNotIn("thought", parts[1])
        self.assertGreater(doc["usageMetadata"]["thoughtsTokenCount"], 0)
        chunks = self.sse_events(EMU.stream("gemini-3-flash-preview", body_of("think", **cfg)))
        self.assertEqual(chunks[0]["candidates"][0]["content"]["parts"],
                         [parts[0]])
        self.assertTrue(all("thought" not in p for c in chunks[1:]
                            for p in c["candidates"][0]["content"]["parts"]))
        plain = EMU.generate("gemini-3-flash-preview", body_of("think")).json()
        self.assertFalse(any(p.get("thought") for p in
                             plain["candidates"][0]["content"]["parts"]))
        both = {"generationConfig": {"thinkingConfig": {"thinkingLevel": "LOW",
                                                        "thinkingBudget": 100}}}
        self.assert_error(EMU.generate("gemini-2.5-flash", body_of("x", **both)), 400,
                          "INVALID_ARGUMENT")

    def test_image_model_returns_valid_png(self):
        resp = EMU.generate("gemini-2.5-flash-image", body_of("draw a cat"))
        parts = resp.json()["candidates"][0]["content"]["parts"]
        images = [p["inlineData"] for p in parts if "inlineData" in p]
        self.assertEqual(len(images), 1)
        self.assertEqual(images[0]["mimeType"], "image/png")
        png = base64.b64decode(images[0]["data"])
        check_png(self, png)
        other = EMU.generate("gemini-2.5-flash-image", body_of("draw a dog")).json()
        other_png = [p for p in other["candidates"][0]["content"]["parts"] if "inlineData" in p]
        self.assertNotEqual(other_png[0]["inlineData"]["data"], images[0]["data"])
        again = EMU.generate("gemini-2.5-flash-image", body_of("draw a cat")).json()
        self.assertEqual(again["candidates"][0]["content"]["parts"], parts)
        chunks = self.sse_events(EMU.stream("gemini-2.5-flash-image", body_of("draw a cat")))
        streamed = [p for c in chunks for p in c["candidates"][0]["content"].get("parts", [])
                    if "inlineData" in p]
        self.assertEqual(streamed[0]["inlineData"]["data"], images[0]["data"])

    def test_blocked_prompt_and_safety_finish(self):
        doc = EMU.generate("gemini-2.5-flash", body_of("please FAKE-BLOCK this")).json()
        self.assertNotIn("candidates", doc)
        self.assertEqual(doc["promptFeedback"]["blockReason"], "SAFETY")
        self.assertIn("modelVersion", doc)
        self.assertEqual(self.last_log()["kind"], "blocked")
        doc = EMU.generate("gemini-2.5-flash", body_of("FAKE-SAFETY please")).json()
        cand = doc["candidates"][0]
        self.assertEqual(cand["finishReason"], "SAFETY")
        self.assertNotIn("content", cand)
        self.assertEqual(self.last_log()["kind"], "safety")
        chunks = self.sse_events(EMU.stream("gemini-2.5-flash", body_of("FAKE-BLOCK")))
        self.assertEqual(len(chunks), 1)
        self.assertEqual(chunks[0]["promptFeedback"]["blockReason"], "SAFETY")

    def test_max_output_tokens_cuts_the_answer(self):
        cfg = {"generationConfig": {"maxOutputTokens": 10}}
        doc = EMU.generate("gemini-2.5-flash", body_of("long", **cfg)).json()
        self.assertEqual(doc["candidates"][0]["finishReason"], "MAX_TOKENS")
        self.assertLessEqual(len(self.answer_text(doc).encode()), 40)

    def test_answer_bytes(self):
        EMU.ctl("POST", "faults", {"scope": "global", "answer_bytes": 20000})
        text = self.answer_text(EMU.generate("gemini-2.5-flash", body_of("big")).json())
        self.assertEqual(len(text.encode()), 20000)
        chunks = self.sse_events(EMU.stream("gemini-2.5-flash", body_of("big")))
        self.assertGreater(len(chunks), 10)
        self.assertEqual("".join(self.answer_text(c) for c in chunks), text)

    def test_image_count_and_bytes(self):
        EMU.ctl("POST", "faults", {"scope": "global", "image_count": 3, "image_bytes": 5000})
        parts = EMU.generate("gemini-2.5-flash-image",
                             body_of("draw three")).json()["candidates"][0]["content"]["parts"]
        pngs = [base64.b64decode(p["inlineData"]["data"]) for p in parts if "inlineData" in p]
        self.assertEqual(len(pngs), 3)
        self.assertEqual(len(set(pngs)), 3)
        self.assertTrue(all(len(p) >= 5000 and p.startswith(b"\x89PNG") for p in pngs))
        chunks = self.sse_events(EMU.stream("gemini-2.5-flash-image", body_of("draw three")))
        streamed = [base64.b64decode(p["inlineData"]["data"]) for c in chunks
                    for p in c["candidates"][0]["content"].get("parts", []) if "inlineData" in p]
        self.assertEqual(streamed, pngs)
        bad = EMU.request("POST", "/_emu/faults", {"scope": "global", "image_count": 0})
        self.assertEqual(bad.status, 400)

    def test_prompt_echo_is_scrubbed_of_keys(self):
        text = self.answer_text(EMU.generate(
            "gemini-2.5-flash", body_of(f"my key is {KEY['k1']} ok")).json())
        self.assertIn("my key is REDACTED ok", text)


# =====================================================================================
class TestTokens(EmuTest):
    def count(self, doc, model="gemini-2.5-flash"):
        resp = EMU.request("POST", f"/v1beta/models/{model}:countTokens", doc, key=KEY["k1"])
        self.assertEqual(resp.status, 200, resp.text)
        return resp.json()

    def test_count_tokens_matches_usage_metadata(self):
        for text in ("a", "abcd", "abcde", "héllo wörld ✓" * 7, "x" * 4001):
            counted = self.count(body_of(text))
            expected = max(1, math.ceil(len(text.encode()) / 4))
            self.assertEqual(counted, {"totalTokens": expected, "promptTokensDetails": [
                {"modality": "TEXT", "tokenCount": expected}]})
            usage = EMU.generate("gemini-2.5-flash", body_of(text)).json()["usageMetadata"]
            self.assertEqual(usage["promptTokenCount"], expected)
            self.assertEqual(self.last_log()["prompt_tokens"], expected)

    def test_count_tokens_images_and_generate_content_request_form(self):
        img = {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(b"1234").decode()}}
        doc = {"contents": [{"parts": [{"text": "abcdefgh"}, img, img]}]}
        counted = self.count(doc)
        self.assertEqual(counted["totalTokens"], 2 + 2 * 258)
        self.assertEqual(counted["promptTokensDetails"],
                         [{"modality": "TEXT", "tokenCount": 2},
                          {"modality": "IMAGE", "tokenCount": 516}])
        wrapped = {"generateContentRequest": {"model": "models/gemini-2.5-flash",
                                              "contents": doc["contents"],
                                              "systemInstruction": {"parts": [{"text": "1234"}]}}}
        self.assertEqual(self.count(wrapped)["totalTokens"], 3 + 516)

    def test_count_tokens_is_free_and_works_without_free_tier(self):
        for _ in range(8):
            self.count(body_of("x"), model="gemini-3-flash-preview")
        self.assertEqual(self.count(body_of("x"), model="gemini-3.1-pro-preview")["totalTokens"],
                         1)
        usage = EMU.ctl("GET", "usage")["projects"]["proj-1"]["gemini-3-flash-preview"]
        self.assertEqual(usage["requests_last_minute"], 0)


# =====================================================================================
class TestStreaming(EmuTest):
    def test_sse_framing(self):
        resp = EMU.stream("gemini-2.5-flash", body_of("stream me"))
        self.assertEqual(resp.status, 200)
        self.assertEqual(resp.header("content-type"), "text/event-stream")
        self.assertEqual(resp.header("transfer-encoding"), "chunked")
        self.assertIsNone(resp.header("content-length"))
        self.assertNotIn(b"[DONE]", resp.raw)
        chunks = self.sse_events(resp)
        self.assertGreaterEqual(len(chunks), 3)
        ids = {c["responseId"] for c in chunks}
        self.assertEqual(len(ids), 1)
        self.assertTrue(all(c["modelVersion"] == "gemini-2.5-flash" for c in chunks))
        reasons = [c["candidates"][0].get("finishReason") for c in chunks]
        self.assertEqual(reasons[-1], "STOP")
        self.assertEqual(reasons[:-1], [None] * (len(chunks) - 1))
        totals = [c["usageMetadata"]["candidatesTokenCount"] for c in chunks]
        self.assertEqual(totals, sorted(totals))
        self.assertTrue(all(c["usageMetadata"]["promptTokenCount"] == 3 for c in chunks))

    def test_stream_text_equals_generate_text(self):
        plain = self.answer_text(EMU.generate("gemini-2.5-flash", body_of("same")).json())
        chunks = self.sse_events(EMU.stream("gemini-2.5-flash", body_of("same")))
        pieces = [self.answer_text(c) for c in chunks]
        self.assertTrue(all(pieces))
        self.assertEqual("".join(pieces), plain)
        final = chunks[-1]["usageMetadata"]["candidatesTokenCount"]
        self.assertEqual(final, math.ceil(len(plain.encode()) / 4))

    def test_array_framing_without_alt_sse(self):
        resp = EMU.stream("gemini-2.5-flash", body_of("array"), sse=False)
        self.assertEqual(resp.status, 200)
        self.assertTrue(resp.header("content-type").startswith("application/json"))
        self.assertEqual(resp.header("transfer-encoding"), "chunked")
        self.assertTrue(resp.raw.startswith(b"[{\n"))
        self.assertTrue(resp.raw.endswith(b"}\n]"))
        self.assertIn(b"}\n,\r\n{", resp.raw)
        chunks = resp.json()
        self.assertIsInstance(chunks, list)
        self.assertGreaterEqual(len(chunks), 3)
        plain = self.answer_text(EMU.generate("gemini-2.5-flash", body_of("array")).json())
        self.assertEqual("".join(self.answer_text(c) for c in chunks), plain)
        self.assertTrue(self.last_log()["stream"] is False)
        log = EMU.log()
        self.assertEqual((log[0]["stream"], log[0]["sse"]), (True, False))

    def test_stream_errors_before_the_stream(self):
        resp = EMU.stream("gemini-2.5-flash", body_of("x"), key=UNKNOWN_KEY, sse=False)
        self.assertTrue(resp.raw.startswith(b"[{\n") and resp.raw.endswith(b"}\n]\n"))
        expected = json.loads(fixture("400_api_key_invalid_array_framed.json")["body"])
        self.assertEqual(resp.json(), expected)
        self.assertEqual(resp.raw, fixture("400_api_key_invalid_array_framed.json")["body"]
                         .encode())
        resp = EMU.stream("gemini-2.5-flash", body_of("x"), key=UNKNOWN_KEY, sse=True)
        self.assertEqual(resp.json(), expected[0])


# =====================================================================================
class TestModels(EmuTest):
    def test_list_pages_until_no_next_page_token(self):
        everything = EMU.request("GET", "/v1beta/models?pageSize=1000", key=KEY["k1"]).json()
        self.assertNotIn("nextPageToken", everything)
        names = [m["name"] for m in everything["models"]]
        for wanted in ("gemini-3.1-pro-preview", "gemini-3-flash-preview", "gemini-2.5-flash",
                       "gemini-3.1-flash-lite-preview", "gemma-3-1b-it", "gemma-3-4b-it",
                       "gemma-3-12b-it", "gemma-3-27b-it", "gemini-2.5-flash-image"):
            self.assertIn(f"models/{wanted}", names)
        seen, token, pages = [], None, 0
        while True:
            path = "/v1beta/models?pageSize=3" + (f"&pageToken={token}" if token else "")
            resp = EMU.request("GET", path, key=KEY["k1"])
            self.assertEqual(resp.status, 200)
            page = resp.json()
            pages += 1
            self.assertLessEqual(len(page["models"]), 3)
            seen += [m["name"] for m in page["models"]]
            token = page.get("nextPageToken")
            if token is None:
                self.assertNotIn("nextPageToken", page)
                break
            self.assertTrue(token)
            self.assertLess(pages, 50)
        self.assertEqual(seen, names)
        self.assertEqual(pages, math.ceil(len(names) / 3))
        default = EMU.request("GET", "/v1beta/models", key=KEY["k1"]).json()
        self.assertEqual([m["name"] for m in default["models"]], names)

    def test_bad_page_token_and_size(self):
        self.assert_error(EMU.request("GET", "/v1beta/models?pageToken=garbage!", key=KEY["k1"]),
                          400, "INVALID_ARGUMENT")
        self.assert_error(EMU.request("GET", "/v1beta/models?pageSize=abc", key=KEY["k1"]),
                          400, "INVALID_ARGUMENT")

    def test_get_model(self):
        model = EMU.request("GET", "/v1beta/models/gemini-3-flash-preview", key=KEY["k1"]).json()
        self.assertEqual(model["name"], "models/gemini-3-flash-preview")
        for field in ("displayName", "inputTokenLimit", "outputTokenLimit",
                      "supportedGenerationMethods", "thinking"):
            self.assertIn(field, model)
        self.assertIn("generateContent", model["supportedGenerationMethods"])
        self.assertTrue(model["thinking"])
        gemma = EMU.request("GET", "/v1beta/models/gemma-3-27b-it", key=KEY["k1"]).json()
        self.assertFalse(gemma["thinking"])
        resp = EMU.request("GET", "/v1beta/models/gemini-0-nope", key=KEY["k1"])
        self.assert_error(resp, 404, "NOT_FOUND")

    def test_list_needs_a_valid_key(self):
        self.assert_error(EMU.request("GET", "/v1beta/models"), 403, "PERMISSION_DENIED")
        self.assert_error(EMU.request("GET", "/v1beta/models", key=UNKNOWN_KEY), 400,
                          "INVALID_ARGUMENT")
        self.assert_error(EMU.request("GET", "/v1beta/models", key=KEY["kleak"]), 403,
                          "PERMISSION_DENIED")


# =====================================================================================
class TestKeysAndErrors(EmuTest):
    def test_missing_key(self):
        resp = EMU.generate("gemini-2.5-flash", body_of("x"), key=None)
        self.assert_error(resp, 403, "PERMISSION_DENIED",
                          "Method doesn't allow unregistered callers (callers without "
                          "established identity). Please use API Key or other form of API "
                          "consumer identity to call this API.")
        self.assertEqual(self.last_log()["kind"], "unregistered")

    def test_invalid_key_matches_the_real_body(self):
        resp = EMU.generate("gemini-2.5-flash", body_of("x"), key=UNKNOWN_KEY)
        err = self.assert_error(resp, 400, "INVALID_ARGUMENT",
                                "API key not valid. Please pass a valid API key.")
        real = json.loads(fixture("400_api_key_invalid_array_framed.json")["body"])[0]
        self.assertEqual(resp.json(), real)
        self.assertEqual(err["details"][0]["reason"], "API_KEY_INVALID")
        entry = self.last_log()
        self.assertEqual((entry["kind"], entry["key_name"]), ("invalid_key", None))

    def test_leaked_suspended_billing(self):
        self.assert_error(EMU.generate("gemini-2.5-flash", body_of("x"), key=KEY["kleak"]),
                          403, "PERMISSION_DENIED",
                          "Your API key was reported as leaked. Please use another API key.")
        resp = EMU.generate("gemini-2.5-flash", body_of("x"), key=KEY["ksusp"])
        self.assert_error(resp, 403, "PERMISSION_DENIED",
                          "Permission denied: Consumer 'api_key:ksusp' has been suspended.")
        self.assertNotIn(KEY["ksusp"], resp.text)
        resp = EMU.generate("gemini-2.5-flash", body_of("x"), key=KEY["kbill"])
        self.assertEqual(resp.status, 429)
        self.assertEqual(resp.json(), json.loads(fixture("429_prepay_credits_depleted.json")
                                                 ["body"]))
        kinds = [e["kind"] for e in EMU.log()]
        self.assertEqual(kinds, ["leaked", "suspended", "billing"])

    def test_key_state_can_change_at_run_time(self):
        EMU.ctl("POST", "keys", {"name": "kbig", "state": "leaked"})
        self.assertEqual(EMU.generate("gemini-2.5-flash", body_of("x")).status, 403)
        EMU.ctl("POST", "reset")
        self.assertEqual(EMU.generate("gemini-2.5-flash", body_of("x")).status, 200)

    def test_unknown_model_404_exact_message(self):
        resp = EMU.generate("gemini-2.0-flash-live-001", body_of("x"), key=KEY["k1"])
        self.assertEqual(resp.status, 404)
        self.assertEqual(resp.raw, fixture("404_model_not_found.json")["body"].encode())
        resp = EMU.generate("gemini-embedding-001", body_of("x"), key=KEY["k1"])
        self.assertIn("is not supported for generateContent", resp.json()["error"]["message"])
        resp = EMU.request("POST", "/v1beta/models/gemini-2.5-flash:embedContent", body_of("x"),
                           key=KEY["k1"])
        self.assert_error(resp, 404, "NOT_FOUND")

    def test_limit_zero_for_models_without_free_tier(self):
        # gemini-3.1-pro-preview has rpm 0 in the table; proj-1 lacks gemma-3-27b-it.
        for model, key in (("gemini-3.1-pro-preview", KEY["k3"]), ("gemma-3-27b-it", KEY["k1"])):
            resp = EMU.generate(model, body_of("x"), key=key)
            err = self.assert_error(resp, 429, "RESOURCE_EXHAUSTED")
            self.assertTrue(err["message"].startswith(QUOTA_PREFIX))
            self.assertIn(f"* Quota exceeded for metric: {METRIC_REQ}, limit: 0, model: {model}\n",
                          err["message"])
            self.assertIn(f"* Quota exceeded for metric: {METRIC_TOK}, limit: 0, model: {model}\n",
                          err["message"])
            self.assertRegex(err["message"], r"\nPlease retry in \d+(\.\d+)?s\.$")
            types = [d["@type"] for d in err["details"]]
            self.assertEqual(types, [T + "Help", T + "QuotaFailure", T + "RetryInfo"])
            violations = err["details"][1]["violations"]
            self.assertEqual({v["quotaId"] for v in violations}, {RPM_ID, TPM_ID, RPD_ID})
            for v in violations:
                self.assertNotIn("quotaValue", v)
                self.assertEqual(v["quotaDimensions"], {"location": "global", "model": model})
            self.assertRegex(err["details"][2]["retryDelay"], r"^\d+s$")
            self.assertEqual(self.last_log()["kind"], "no_free_tier")
        real = json.loads(fixture("429_limit_zero_no_free_tier.json")["body"])["error"]
        self.assertEqual([d["@type"] for d in real["details"]], types)

    def test_bad_requests_get_google_style_400s(self):
        cases = [
            (b'{"contents": [', "Invalid JSON payload received. Unexpected token."),
            (b"\xff\xfe", "Invalid JSON payload received."),
            (b"[]", "Invalid JSON payload received. Root element must be a message."),
            (b"{}", "* GenerateContentRequest.contents: contents is not specified\n"),
            (b'{"contents": []}', "contents is not specified"),
            (b'{"contents": [{"parts": []}]}', "contents.parts must not be empty"),
            (b'{"contents": "hi"}', "Invalid JSON payload received. Invalid value at 'contents'"),
            (b'{"contents": [{"parts": [{"text": 5}]}]}',
             "Invalid value at 'contents[0].parts[0].text' (TYPE_STRING), 5"),
            (b'{"contents": [{"parts": [{"text": "x"}]}], "generation_config": 3}',
             "Invalid value at 'generation_config'"),
            (b'{"contents": [{"parts": [{"text": "x"}]}], "bogus": 1}',
             'Invalid JSON payload received. Unknown name "bogus": Cannot find field.'),
            (b'{"contents": [{"role": "robot", "parts": [{"text": "x"}]}]}',
             "Please use a valid role: user, model."),
            (b'{"contents": [{"parts": [{"inlineData": {"mimeType": "image/png", '
             b'"data": "!!!"}}]}]}', "Base64 decoding failed"),
            (b'{"contents": [{"parts": [{"text": "x"}]}], "generationConfig": '
             b'{"maxOutputTokens": "many"}}', "max_output_tokens"),
            (b'{"contents": [{"parts": [{}]}]}', "* GenerateContentRequest.contents[0].parts[0]"
             ".data: required oneof field 'data' must have one initialized field\n"),
            (b'{"contents": [{"parts": [{"text": "\\ud800"}]}]}', "lone UTF-16 surrogate"),
            (b"[" * 100000, "Invalid JSON payload received."),
            (b"{\n", "Invalid JSON payload received. Unexpected token."),
        ]
        for raw, message in cases:
            resp = EMU.generate("gemini-2.5-flash", raw, key=KEY["k1"],
                                headers={"Content-Type": "application/json"})
            err = self.assert_error(resp, 400, "INVALID_ARGUMENT")
            self.assertIn(message, err["message"], raw)
            self.assertNotIn("Traceback", resp.text)
            self.assertEqual(self.last_log()["kind"], "bad_request")
        usage = EMU.ctl("GET", "usage")["projects"]["proj-1"]["gemini-2.5-flash"]
        self.assertEqual(usage["requests_last_minute"], 0)

    def test_oversized_body_is_refused_without_reading_it(self):
        with socket.create_connection(("127.0.0.1", EMU.port), timeout=5) as s:
            s.sendall(b"POST /v1beta/models/gemini-2.5-flash:generateContent HTTP/1.1\r\n"
                      b"Host: x\r\nContent-Type: application/json\r\n"
                      b"Content-Length: 999999999\r\n\r\n{")
            data = b""
            while True:
                piece = s.recv(65536)
                if not piece:
                    break
                data += piece
        SEEN_BODIES.append(data)
        self.assertTrue(data.startswith(b"HTTP/1.1 400"), data[:40])
        self.assertIn(b"Request payload size exceeds the limit: 20971520 bytes.", data)

    def test_unknown_urls_get_googles_html_404(self):
        resp = EMU.request("GET", "/v1beta/files", key=KEY["k1"])
        self.assertEqual(resp.status, 404)
        self.assertTrue(resp.header("content-type").startswith("text/html"))
        self.assertIn(b"That\xe2\x80\x99s an error.", resp.raw)
        resp = EMU.request("GET", "/v1beta/models/gemini-2.5-flash:generateContent",
                           key=KEY["k1"])
        self.assertEqual(resp.status, 404)
        resp = EMU.request("DELETE", "/v1beta/models", key=KEY["k1"])
        self.assertEqual(resp.status, 404)

    def test_chunked_request_bodies_are_read(self):
        with socket.create_connection(("127.0.0.1", EMU.port), timeout=5) as s:
            body = json.dumps(body_of("chunked")).encode()
            s.sendall(b"POST /v1beta/models/gemini-2.5-flash:generateContent HTTP/1.1\r\n"
                      b"Host: x\r\nx-goog-api-key: " + KEY["kbig"].encode() +
                      b"\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n" +
                      b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
            data = b""
            while True:
                piece = s.recv(65536)
                if not piece:
                    break
                data += piece
        SEEN_BODIES.append(data)
        self.assertTrue(data.startswith(b"HTTP/1.1 200"), data[:200])
        self.assertIn(b"You asked: chunked", data)


# =====================================================================================
class TestQuota(EmuTest):
    def quota_error(self, resp, model, kind_id, limit):
        err = self.assert_error(resp, 429, "RESOURCE_EXHAUSTED")
        types = [d["@type"] for d in err["details"]]
        self.assertEqual(types, [T + "QuotaFailure", T + "Help", T + "RetryInfo"])
        violation = err["details"][0]["violations"][0]
        self.assertEqual(violation["quotaId"], kind_id)
        self.assertEqual(violation["quotaValue"], str(limit))
        self.assertEqual(violation["quotaDimensions"], {"location": "global", "model": model})
        self.assertEqual(violation["quotaMetric"], METRIC_TOK if kind_id == TPM_ID else METRIC_REQ)
        self.assertTrue(err["message"].startswith(QUOTA_PREFIX))
        metric = METRIC_TOK if kind_id == TPM_ID else METRIC_REQ
        self.assertIn(f"* Quota exceeded for metric: {metric}, limit: {limit}, model: {model}\n",
                      err["message"])
        match = re.search(r"\nPlease retry in (\d+(?:\.\d+)?)s\.$", err["message"])
        self.assertIsNotNone(match, err["message"])
        retry = err["details"][2]["retryDelay"]
        self.assertRegex(retry, r"^\d+s$")
        return float(match.group(1)), int(retry[:-1])

    def test_rpm_is_per_project_and_rolling(self):
        model = "gemini-3-flash-preview"  # 5 RPM in proj-1, shared by k1 and k2
        t0 = utc("2026-06-15T19:00:00")
        EMU.set_clock(t0)
        for i in range(3):
            self.assertEqual(EMU.generate(model, body_of(f"a{i}"), key=KEY["k1"]).status, 200)
        EMU.set_clock(t0 + 20)
        for i in range(2):
            self.assertEqual(EMU.generate(model, body_of(f"b{i}"), key=KEY["k2"]).status, 200)
        resp = EMU.generate(model, body_of("over"), key=KEY["k2"])
        precise, whole = self.quota_error(resp, model, RPM_ID, 5)
        self.assertAlmostEqual(precise, 40.0, delta=1.0)
        self.assertEqual(whole, int(precise))
        self.assertEqual(self.last_log()["kind"], "rpm")
        # another project is not affected
        self.assertEqual(EMU.generate(model, body_of("x"), key=KEY["k3"]).status, 200)
        # the 429 did not count; the first three requests leave the window after 60 s
        EMU.set_clock(t0 + 61)
        for i in range(3):
            self.assertEqual(EMU.generate(model, body_of(f"c{i}"), key=KEY["k1"]).status, 200)
        self.assertEqual(EMU.generate(model, body_of("d"), key=KEY["k1"]).status, 429)
        usage = EMU.ctl("GET", "usage")["projects"]["proj-1"][model]
        self.assertEqual(usage["requests_last_minute"], 5)
        self.assertEqual(usage["quota_429"], 2)
        self.assertEqual(usage["over_limit"], 0)
        self.assertEqual(usage["limits"], {"rpm": 5, "tpm": 250000, "rpd": 20})

    def test_input_tpm(self):
        model = "gemini-2.5-flash"  # proj-tpm: 1000 input tokens per minute
        t0 = utc("2026-06-15T19:00:00")
        EMU.set_clock(t0)
        self.assertEqual(EMU.generate(model, body_of("x" * 2000), key=KEY["ktpm"]).status, 200)
        EMU.set_clock(t0 + 30)
        self.assertEqual(EMU.generate(model, body_of("y" * 1600), key=KEY["ktpm"]).status, 200)
        resp = EMU.generate(model, body_of("z" * 404), key=KEY["ktpm"])  # 101 tokens: too many
        precise, _ = self.quota_error(resp, model, TPM_ID, 1000)
        self.assertAlmostEqual(precise, 30.0, delta=1.0)
        self.assertEqual(self.last_log()["kind"], "tpm")
        self.assertEqual(EMU.generate(model, body_of("z" * 400), key=KEY["ktpm"]).status, 200)
        usage = EMU.ctl("GET", "usage")["projects"]["proj-tpm"][model]
        self.assertEqual(usage["tokens_last_minute"], 1000)
        self.assertEqual(usage["over_limit"], 0)

    def test_rpd_resets_at_midnight_pacific(self):
        model = "gemini-2.5-flash"  # proj-rpd: 3 a day
        noon_pdt = utc("2026-06-15T19:00:00")  # 12:00 PDT
        EMU.set_clock(noon_pdt)
        for i in range(3):
            self.assertEqual(EMU.generate(model, body_of(f"r{i}"), key=KEY["krpd"]).status, 200)
        resp = EMU.generate(model, body_of("r3"), key=KEY["krpd"])
        precise, short = self.quota_error(resp, model, RPD_ID, 3)
        self.assertAlmostEqual(precise, 12 * 3600, delta=2)
        self.assertLessEqual(short, 60, "like Google, a short retryDelay even for daily limits")
        self.assertEqual(self.last_log()["kind"], "rpd")
        EMU.set_clock(utc("2026-06-16T06:59:58"))  # 23:59:58 PDT: still the same day
        self.assertEqual(EMU.generate(model, body_of("r4"), key=KEY["krpd"]).status, 429)
        EMU.set_clock(utc("2026-06-16T07:00:01"))  # 00:00:01 PDT
        self.assertEqual(EMU.generate(model, body_of("r5"), key=KEY["krpd"]).status, 200)
        usage = EMU.ctl("GET", "usage")["projects"]["proj-rpd"][model]
        self.assertEqual(usage["requests_today"], 1)

    def test_rpd_across_spring_forward(self):
        # 2026-03-08 is 23 hours long in Los Angeles: it starts at 08:00Z (PST) and the
        # next midnight is 07:00Z on 03-09 (PDT).
        model = "gemini-2.5-flash"
        EMU.set_clock(utc("2026-03-08T08:00:30"))  # 00:00:30 PST
        EMU.generate(model, body_of("early"), key=KEY["krpd"])
        EMU.set_clock(utc("2026-03-09T06:59:00"))  # 23:59:00 PDT
        for i in range(2):
            self.assertEqual(EMU.generate(model, body_of(f"s{i}"), key=KEY["krpd"]).status, 200)
        precise, _ = self.quota_error(EMU.generate(model, body_of("s"), key=KEY["krpd"]),
                                      model, RPD_ID, 3)
        self.assertAlmostEqual(precise, 60, delta=2)
        EMU.set_clock(utc("2026-03-09T07:00:02"))
        self.assertEqual(EMU.generate(model, body_of("new day"), key=KEY["krpd"]).status, 200)

    def test_rpd_across_fall_back(self):
        # 2026-11-01 is 25 hours long: 07:00Z (PDT) to 08:00Z on 11-02 (PST).
        model = "gemini-2.5-flash"
        EMU.set_clock(utc("2026-11-02T07:30:00"))  # 23:30 PST on 11-01
        for i in range(3):
            self.assertEqual(EMU.generate(model, body_of(f"f{i}"), key=KEY["krpd"]).status, 200)
        precise, _ = self.quota_error(EMU.generate(model, body_of("f"), key=KEY["krpd"]),
                                      model, RPD_ID, 3)
        self.assertAlmostEqual(precise, 1800, delta=2)
        EMU.set_clock(utc("2026-11-02T07:59:58"))
        self.assertEqual(EMU.generate(model, body_of("still"), key=KEY["krpd"]).status, 429)
        EMU.set_clock(utc("2026-11-02T08:00:01"))
        self.assertEqual(EMU.generate(model, body_of("new day"), key=KEY["krpd"]).status, 200)

    def test_rejected_requests_do_not_count(self):
        model = "gemini-3-flash-preview"
        t0 = utc("2026-06-15T19:00:00")
        EMU.set_clock(t0)
        for i in range(5):
            EMU.generate(model, body_of(f"{i}"), key=KEY["k1"])
        for _ in range(10):
            self.assertEqual(EMU.generate(model, body_of("x"), key=KEY["k1"]).status, 429)
        EMU.set_clock(t0 + 60.5)
        for i in range(5):
            self.assertEqual(EMU.generate(model, body_of(f"again{i}"), key=KEY["k1"]).status,
                             200)
        usage = EMU.ctl("GET", "usage")["projects"]["proj-1"][model]
        self.assertEqual((usage["requests_today"], usage["quota_429"]), (10, 10))

    def test_concurrent_requests_never_exceed_the_limit(self):
        model = "gemini-3-flash-preview"
        EMU.set_clock(utc("2026-06-15T19:00:00"))

        def one(i):
            return EMU.generate(model, body_of(f"c{i}"), key=KEY["k1" if i % 2 else "k2"]).status

        with concurrent.futures.ThreadPoolExecutor(20) as pool:
            statuses = list(pool.map(one, range(20)))
        self.assertEqual(statuses.count(200), 5)
        self.assertEqual(statuses.count(429), 15)
        usage = EMU.ctl("GET", "usage")
        self.assertEqual(usage["over_limit_total"], 0)
        self.assertEqual(usage["projects"]["proj-1"][model]["quota_429"], 15)

    def test_stream_requests_count_too(self):
        model = "gemini-3-flash-preview"
        EMU.set_clock(utc("2026-06-15T19:00:00"))
        for i in range(5):
            self.assertEqual(EMU.stream(model, body_of(f"s{i}"), key=KEY["k1"]).status, 200)
        resp = EMU.stream(model, body_of("s"), key=KEY["k1"])
        self.quota_error(resp, model, RPM_ID, 5)
        resp = EMU.stream(model, body_of("s"), key=KEY["k1"], sse=False)
        self.assertTrue(resp.raw.startswith(b"[{"))
        self.assertEqual(resp.json()[0]["error"]["code"], 429)


# =====================================================================================
class TestFaults(EmuTest):
    def fault(self, **fields):
        EMU.ctl("POST", "faults", {"scope": "global", **fields})

    def test_latency_and_chunk_delay(self):
        self.fault(latency_ms=250)
        t = time.monotonic()
        self.assertEqual(EMU.generate("gemini-2.5-flash", body_of("x")).status, 200)
        self.assertGreaterEqual(time.monotonic() - t, 0.25)
        self.fault(latency_ms=0, chunk_delay_ms=80)
        t = time.monotonic()
        chunks = self.sse_events(EMU.stream("gemini-2.5-flash", body_of("slow")))
        self.assertGreaterEqual(time.monotonic() - t, 0.08 * (len(chunks) - 1))

    def test_gates_hold_requests_until_opened(self):
        self.fault(hold="g1")
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            held = [pool.submit(EMU.generate, "gemini-2.5-flash", body_of(f"held {i}"))
                    for i in range(2)]
            self.assertTrue(wait_for(lambda: gate("g1")["waiting"] == 2))
            self.assertFalse(any(f.done() for f in held))
            self.assertEqual(EMU.log(), [], "nothing is answered while the gate is closed")
            doc = EMU.ctl("POST", "gates", {"name": "g1", "open": True})
            self.assertTrue(doc["gates"]["g1"]["open"])
            self.assertEqual([f.result(timeout=60).status for f in held], [200, 200])
        self.assertEqual(gate("g1"), {"open": True, "waiting": 0, "passed": 2})
        # An open gate lets later requests through; closing it holds them again.
        self.assertEqual(EMU.generate("gemini-2.5-flash", body_of("open")).status, 200)
        EMU.ctl("POST", "gates", {"name": "g1", "open": False})
        self.fault(hold=None, hold_stream="g2")
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            conn = http.client.HTTPConnection("127.0.0.1", EMU.port, timeout=60)
            body = json.dumps(body_of("a stream held after its first chunk")).encode()
            conn.request("POST", "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
                         "?alt=sse", body, {"x-goog-api-key": KEY["kbig"],
                                            "Content-Type": "application/json"})
            resp = conn.getresponse()
            self.assertEqual(resp.status, 200)
            first = resp.read1(65536)
            self.assertIn(b"data: ", first)
            self.assertTrue(wait_for(lambda: gate("g2")["waiting"] == 1))
            rest = pool.submit(resp.read)
            EMU.ctl("POST", "gates", {"name": "g2", "open": True})
            self.assertTrue(rest.result(timeout=60).strip())
            conn.close()
        # A reset drops the waiting requests: closed unanswered, in no log.
        self.fault(hold_stream=None, hold="g3")
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            held = pool.submit(EMU.generate, "gemini-2.5-flash", body_of("reset"))
            self.assertTrue(wait_for(lambda: gate("g3")["waiting"] == 1))
            EMU.ctl("POST", "reset")
            with self.assertRaises((http.client.HTTPException, OSError)):
                held.result(timeout=60)
        self.assertEqual(EMU.log(), [])
        self.assertEqual(gate("g3"), {"open": False, "waiting": 0, "passed": 0})
        for bad in ({"name": "", "open": True}, {"name": "x y", "open": True},
                    {"name": "g", "open": 1}):
            self.assertEqual(EMU.request("POST", "/_emu/gates", bad).status, 400, bad)
        self.assertEqual(EMU.request("POST", "/_emu/faults", {"hold": 3}).status, 400)

    def test_client_leaving_mid_stream_is_logged(self):
        self.fault(chunk_delay_ms=50)
        with socket.create_connection(("127.0.0.1", EMU.port), timeout=5) as s:
            body = json.dumps(body_of("bye")).encode()
            s.sendall(b"POST /v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse "
                      b"HTTP/1.1\r\nHost: x\r\nx-goog-api-key: " + KEY["kbig"].encode() +
                      b"\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            SEEN_BODIES.append(s.recv(65536))
        wait_for(EMU.log)
        self.assertEqual(self.last_log()["kind"], "client_closed")

    def test_server_errors(self):
        for field, code, status in (("p500", 500, "INTERNAL"), ("p503", 503, "UNAVAILABLE"),
                                    ("p504", 504, "DEADLINE_EXCEEDED")):
            EMU.ctl("POST", "faults", {"scope": "global", "clear": True, field: 1})
            resp = EMU.generate("gemini-3-flash-preview", body_of("x"), key=KEY["k1"])
            self.assert_error(resp, code, status)
            self.assertEqual(self.last_log()["kind"], f"fault_{code}")
            if code == 503:
                self.assertEqual(resp.raw, fixture("503_model_overloaded.json")["body"].encode())
        usage = EMU.ctl("GET", "usage")["projects"]["proj-1"]["gemini-3-flash-preview"]
        self.assertEqual(usage["requests_last_minute"], 0, "server errors do not use quota")

    def test_reset_plain_and_stream(self):
        self.fault(p_reset=1)
        resp = None
        with self.assertRaises((ConnectionError, http.client.HTTPException)):
            resp = EMU.generate("gemini-2.5-flash", body_of("x"))
        self.assertIsNone(resp)
        self.assertEqual((self.last_log()["kind"], self.last_log()["status"]), ("reset", None))
        resp = EMU.stream("gemini-2.5-flash", body_of("x"))
        self.assertEqual(resp.status, 200)
        self.assertIsNotNone(resp.error)
        self.assertTrue(resp.raw == b"" or resp.raw.startswith(b"data: "))
        self.assertEqual(self.last_log()["kind"], "reset")

    def test_truncate_plain_and_stream(self):
        self.fault(p_truncate=1)
        resp = EMU.generate("gemini-2.5-flash", body_of("x"))
        self.assertEqual(resp.status, 200)
        self.assertIsInstance(resp.error, http.client.IncompleteRead)
        self.assertLess(len(resp.raw), int(resp.header("content-length")))
        self.assertEqual(self.last_log()["kind"], "truncate")
        resp = EMU.stream("gemini-2.5-flash", body_of("x"))
        self.assertIsNotNone(resp.error)
        self.assertTrue(resp.raw.startswith(b"data: "))
        self.assertFalse(resp.raw.endswith(b"\r\n\r\n"), "stops mid-event")
        with socket.create_connection(("127.0.0.1", EMU.port), timeout=5) as s:
            body = json.dumps(body_of("raw")).encode()
            s.sendall(b"POST /v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse "
                      b"HTTP/1.1\r\nHost: x\r\nx-goog-api-key: " + KEY["kbig"].encode() +
                      b"\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            data = b""
            while True:
                piece = s.recv(65536)
                if not piece:
                    break
                data += piece
        SEEN_BODIES.append(data)
        self.assertNotIn(b"\r\n0\r\n\r\n", data, "no terminating chunk")

    def test_malformed(self):
        self.fault(p_malformed=1)
        resp = EMU.generate("gemini-2.5-flash", body_of("x"))
        self.assertEqual(resp.status, 200)
        self.assertIsNone(resp.error)
        with self.assertRaises(ValueError):
            json.loads(resp.raw)
        self.assertEqual(self.last_log()["kind"], "malformed")
        resp = EMU.stream("gemini-2.5-flash", body_of("x"))
        self.assertTrue(resp.raw.endswith(b"\r\n\r\n"))
        events = resp.raw.split(b"\r\n\r\n")[:-1]
        json.loads(events[0][6:])
        with self.assertRaises(ValueError):
            json.loads(events[-1][6:])

    def test_midstream_forms(self):
        self.fault(p_midstream=1, midstream_form="bare")
        resp = EMU.stream("gemini-2.5-flash", body_of("x"))
        self.assertEqual(resp.status, 200)
        first, _, rest = resp.raw.partition(b"\r\n\r\n")
        self.assertEqual(json.loads(first[6:])["candidates"][0]["content"]["parts"][0]["text"][:12],
                         "[fake-gemini")
        self.assertTrue(rest.startswith(b'{\n  "error": {'), rest[:30])
        self.assertIn(json.loads(rest)["error"]["code"], (500, 503))
        self.assertEqual(self.last_log()["kind"], "midstream")
        self.fault(midstream_form="data")
        resp = EMU.stream("gemini-2.5-flash", body_of("x"))
        events = self.sse_events(resp)
        self.assertEqual(len(events), 2)
        self.assertIn(events[1]["error"]["status"], ("INTERNAL", "UNAVAILABLE"))
        resp = EMU.stream("gemini-2.5-flash", body_of("x"), sse=False)
        doc = resp.json()
        self.assertIn("candidates", doc[0])
        self.assertIn("error", doc[1])
        # plain requests are untouched by p_midstream
        self.assertEqual(EMU.generate("gemini-2.5-flash", body_of("x")).status, 200)
        self.assertEqual(self.last_log()["kind"], "ok")

    def test_random_midstream_form_uses_both(self):
        self.fault(p_midstream=1)
        forms = set()
        for i in range(12):
            rest = EMU.stream("gemini-2.5-flash", body_of(f"{i}")).raw.partition(b"\r\n\r\n")[2]
            forms.add("data" if rest.startswith(b"data: ") else "bare")
        self.assertEqual(forms, {"data", "bare"})

    def test_scopes(self):
        EMU.ctl("POST", "faults", {"scope": "key", "name": "kbig2", "p503": 1})
        self.assertEqual(EMU.generate("gemini-2.5-flash", body_of("x"), key=KEY["kbig"]).status,
                         200)
        self.assertEqual(EMU.generate("gemini-2.5-flash", body_of("x"), key=KEY["kbig2"]).status,
                         503)
        EMU.ctl("POST", "faults", {"scope": "project", "name": "proj-1", "p500": 1})
        self.assertEqual(EMU.generate("gemini-2.5-flash", body_of("x"), key=KEY["k2"]).status,
                         500)
        EMU.ctl("POST", "faults", {"scope": "key", "name": "k1", "p500": 0})
        self.assertEqual(EMU.generate("gemini-2.5-flash", body_of("x"), key=KEY["k1"]).status,
                         200, "a key's fields win over its project's")
        EMU.ctl("POST", "faults", {"scope": "global", "p504": 1})
        self.assertEqual(EMU.generate("gemini-2.5-flash", body_of("x"), key=KEY["k3"]).status,
                         504)
        EMU.ctl("POST", "faults", {"scope": "global", "clear": True})
        self.assertEqual(EMU.generate("gemini-2.5-flash", body_of("x"), key=KEY["k3"]).status,
                         200)
        EMU.ctl("POST", "faults", {"scope": "all", "clear": True})
        self.assertEqual(EMU.generate("gemini-2.5-flash", body_of("x"), key=KEY["kbig2"]).status,
                         200)
        bad = EMU.request("POST", "/_emu/faults", {"scope": "global", "p_typo": 1})
        self.assertEqual(bad.status, 400)
        bad = EMU.request("POST", "/_emu/faults", {"scope": "key", "name": "nobody", "p500": 1})
        self.assertEqual(bad.status, 400)
        bad = EMU.request("POST", "/_emu/faults", {"scope": "global", "p500": 2})
        self.assertEqual(bad.status, 400)

    def test_seeded_draws_are_reproducible(self):
        def run(emu):
            emu.ctl("POST", "faults", {"scope": "global", "p500": 0.5})
            return [emu.generate("gemini-2.5-flash", body_of(f"{i}")).status for i in range(24)]

        first = run(EMU)
        EMU.ctl("POST", "reset")
        self.assertEqual(run(EMU), first)
        self.assertIn(500, first)
        self.assertIn(200, first)
        other = Emulator(args=("--seed", "0"))
        try:
            self.assertEqual(run(other), first)
        finally:
            other.stop()
        other = Emulator(args=("--seed", "12345"))
        try:
            self.assertNotEqual(run(other), first)
        finally:
            other.stop()

    def test_command_line_fault_flags(self):
        emu = Emulator(args=("--p503", "1", "--latency-ms", "10"))
        try:
            self.assertEqual(emu.generate("gemini-2.5-flash", body_of("x")).status, 503)
            self.assertEqual(emu.ctl("GET", "faults")["global"], {"p503": 1.0,
                                                                 "latency_ms": 10.0})
            emu.ctl("POST", "faults", {"scope": "global", "clear": True})
            self.assertEqual(emu.generate("gemini-2.5-flash", body_of("x")).status, 200)
            emu.ctl("POST", "reset")  # back to the start-up faults
            self.assertEqual(emu.generate("gemini-2.5-flash", body_of("x")).status, 503)
        finally:
            emu.stop()

    def test_faults_apply_to_other_endpoints(self):
        self.fault(p503=1)
        self.assertEqual(EMU.request("GET", "/v1beta/models", key=KEY["k1"]).status, 503)
        self.assertEqual(EMU.request("POST", "/v1beta/models/gemini-2.5-flash:countTokens",
                                     body_of("x"), key=KEY["k1"]).status, 503)
        # but never hide authentication errors
        self.assertEqual(EMU.generate("gemini-2.5-flash", body_of("x"), key=UNKNOWN_KEY).status,
                         400)


# =====================================================================================
class TestReplay(EmuTest):
    def test_every_fixture_replays_byte_for_byte(self):
        files = sorted(glob.glob(os.path.join(FIXTURES, "*.json")))
        self.assertGreaterEqual(len(files), 7)
        for path in files:
            fx = fixture(os.path.basename(path))
            EMU.ctl("POST", "replay", {"body_file": path})
            resp = EMU.generate("gemini-2.5-flash", body_of("x"), key=KEY["k1"])
            self.assertEqual(resp.status, fx["http_status"], path)
            self.assertEqual(resp.raw, fx["body"].encode("utf-8"), path)
            self.assertEqual(self.last_log()["kind"], "replay")
            # the queue is empty again
            self.assertEqual(EMU.generate("gemini-2.5-flash", body_of("x"),
                                          key=KEY["k1"]).status, 200)
        usage = EMU.ctl("GET", "usage")["projects"]["proj-1"]["gemini-2.5-flash"]
        self.assertEqual(usage["requests_last_minute"], len(files), "replays use no quota")

    def test_fixture_by_name_body_and_filters(self):
        EMU.ctl("POST", "replay", {"body_file": "503_model_overloaded.json",
                                   "key": "k2", "count": 2})
        EMU.ctl("POST", "replay", {"status": 418, "body": "teapot", "model": "gemma-3-27b-it",
                                   "content_type": "text/plain"})
        self.assertEqual(EMU.generate("gemini-2.5-flash", body_of("x"), key=KEY["k1"]).status,
                         200)
        self.assertEqual(EMU.generate("gemini-2.5-flash", body_of("x"), key=KEY["k2"]).status,
                         503)
        self.assertEqual(len(EMU.ctl("GET", "replay")["queue"]), 2)
        self.assertEqual(EMU.stream("gemini-2.5-flash", body_of("x"), key=KEY["k2"]).status, 503)
        self.assertEqual(EMU.generate("gemini-2.5-flash", body_of("x"), key=KEY["k2"]).status,
                         200)
        resp = EMU.generate("gemma-3-27b-it", body_of("x"), key=KEY["kbig"])
        self.assertEqual((resp.status, resp.raw, resp.header("content-type")),
                         (418, b"teapot", "text/plain"))
        self.assertEqual(EMU.ctl("GET", "replay")["queue"], [])
        EMU.ctl("POST", "replay", {"status": 500, "body_json": {"error": {"code": 500}}})
        resp = EMU.generate("gemini-2.5-flash", body_of("x"))
        self.assertEqual(resp.raw, b'{\n  "error": {\n    "code": 500\n  }\n}\n')

    def test_midstream_replay(self):
        fx = fixture("429_per_day_free_tier.json")
        EMU.ctl("POST", "replay", {"body": fx["body"], "status": 429, "midstream": True})
        # a plain request does not consume a mid-stream replay
        self.assertEqual(EMU.generate("gemini-2.5-flash", body_of("x")).status, 200)
        resp = EMU.stream("gemini-2.5-flash", body_of("x"))
        self.assertEqual(resp.status, 200)
        first, _, rest = resp.raw.partition(b"\r\n\r\n")
        self.assertIn("candidates", json.loads(first[6:]))
        self.assertEqual(rest, fx["body"].encode())
        EMU.ctl("POST", "replay", {"body": fx["body"], "status": 429, "midstream": True})
        doc = EMU.stream("gemini-2.5-flash", body_of("x"), sse=False).json()
        self.assertEqual(doc[1], json.loads(fx["body"]))

    def test_bad_replay_requests(self):
        for spec in ({"body": "x"}, {"status": 200}, {"status": 500, "body": "x", "body_file": "y"},
                     {"body_file": "/no/such/file.json"}, {"status": 99, "body": "x"},
                     {"status": 500, "body": "x", "count": 0}, {"status": 500, "body": "x",
                                                                 "nope": 1}):
            resp = EMU.request("POST", "/_emu/replay", spec)
            self.assertEqual(resp.status, 400, spec)
            self.assertIn("error", resp.json())


# =====================================================================================
class TestConcurrency(EmuTest):
    def test_fifty_parallel_requests(self):
        def one(i):
            key = KEY["kbig" if i % 2 else "kbig2"]
            if i % 3 == 0:
                resp = EMU.stream("gemini-2.5-flash", body_of(f"parallel {i}"), key=key)
                text = "".join(self.answer_text(c) for c in self.sse_events(resp))
            else:
                resp = EMU.generate("gemini-2.5-flash", body_of(f"parallel {i}"), key=key)
                text = self.answer_text(resp.json())
            return i, resp.status, text

        # All fifty wait at a gate at once (served concurrently), then go together.
        EMU.ctl("POST", "faults", {"scope": "global", "hold": "fifty"})
        with concurrent.futures.ThreadPoolExecutor(50) as pool:
            futures = [pool.submit(one, i) for i in range(50)]
            waiting = wait_for(lambda: gate("fifty")["waiting"] >= 50)
            EMU.ctl("POST", "gates", {"name": "fifty", "open": True})
            results = [f.result(timeout=120) for f in futures]
        self.assertTrue(waiting, "fifty requests wait at the gate at the same time")
        for i, status, text in results:
            self.assertEqual(status, 200)
            self.assertIn(f"You asked: parallel {i}", text)
            self.assertIn("key=kbig " if i % 2 else "key=kbig2 ", text)
        self.assertEqual(len(EMU.log()), 50)
        self.assertEqual(EMU.ctl("GET", "usage")["over_limit_total"], 0)


# =====================================================================================
class TestControl(EmuTest):
    def test_clock(self):
        view = EMU.ctl("POST", "clock", {"offset_s": 3600})
        self.assertEqual(view["offset_s"], 3600)
        self.assertAlmostEqual(view["now"], time.time() + 3600, delta=2)
        view = EMU.ctl("POST", "clock", {"advance_s": 60})
        self.assertEqual(view["offset_s"], 3660)
        view = EMU.set_clock(utc("2026-01-01T08:00:00"))
        self.assertTrue(view["now_pacific"].startswith("2026-01-01T00:00"))
        self.assertEqual(EMU.request("POST", "/_emu/clock", {"offset_s": "x"}).status, 400)
        EMU.generate("gemini-2.5-flash", body_of("x"))
        self.assertAlmostEqual(self.last_log()["ts"], utc("2026-01-01T08:00:00"), delta=2)

    def test_reset_and_usage_shape(self):
        EMU.generate("gemini-3-flash-preview", body_of("x" * 40), key=KEY["k1"])
        usage = EMU.ctl("GET", "usage")
        entry = usage["projects"]["proj-1"]["gemini-3-flash-preview"]
        self.assertEqual({k: entry[k] for k in ("requests_last_minute", "tokens_last_minute",
                                                "requests_today", "quota_429", "over_limit")},
                         {"requests_last_minute": 1, "tokens_last_minute": 10,
                          "requests_today": 1, "quota_429": 0, "over_limit": 0})
        self.assertIn("gemini-3.1-pro-preview", usage["projects"]["k3"])
        self.assertEqual(len(EMU.log()), 1)
        EMU.ctl("POST", "replay", {"status": 500, "body": "x"})
        EMU.ctl("POST", "faults", {"scope": "global", "p500": 1})
        EMU.ctl("POST", "reset")
        self.assertEqual(EMU.log(), [])
        self.assertEqual(EMU.ctl("GET", "replay")["queue"], [])
        self.assertEqual(EMU.ctl("GET", "faults")["global"], {})
        entry = EMU.ctl("GET", "usage")["projects"]["proj-1"]["gemini-3-flash-preview"]
        self.assertEqual(entry["requests_today"], 0)

    def test_log_fields_and_since(self):
        EMU.generate("gemini-2.5-flash", body_of("x"),
                     headers={"x-goog-api-client": "gkp/0.1", "User-Agent": "tester/1"})
        EMU.stream("gemini-2.5-flash", body_of("x"))
        log = EMU.log()
        self.assertEqual(len(log), 2)
        first = log[0]
        for field in ("ts", "method", "path", "key_name", "project", "model", "action", "status",
                      "kind", "prompt_tokens", "stream", "sse", "user_agent",
                      "x_goog_api_client"):
            self.assertIn(field, first)
        self.assertEqual((first["method"], first["model"], first["action"], first["status"],
                          first["kind"], first["user_agent"], first["x_goog_api_client"]),
                         ("POST", "gemini-2.5-flash", "generateContent", 200, "ok", "tester/1",
                          "gkp/0.1"))
        self.assertEqual((log[1]["action"], log[1]["stream"], log[1]["sse"]),
                         ("streamGenerateContent", True, True))
        self.assertEqual(EMU.request("GET", "/_emu/log?since=1").json(), log[1:])
        with open(EMU.log_path, encoding="utf-8") as f:
            lines = [json.loads(line) for line in f]
        self.assertEqual(lines[-2:], log)
        self.assertEqual(EMU.request("GET", "/_emu/nothing").status, 404)
        self.assertEqual(EMU.request("POST", "/_emu/faults", b"{nope").status, 400)


# =====================================================================================
class TestSecrets(EmuTest):
    def test_keys_never_appear_in_logs_or_bodies(self):
        bodies = []
        for secret in SECRETS + [UNKNOWN_KEY]:
            for path in (f"/v1beta/models/gemini-2.5-flash:generateContent?key={secret}",
                         f"/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse&"
                         f"key={secret}",
                         f"/v1beta/models?key={secret}",
                         f"/v1beta/models/{secret}:generateContent?key={secret}",
                         f"/v1beta/{secret}?key={secret}"):
                resp = EMU.request("POST" if "Content" in path else "GET", path,
                                   body_of(f"echo {secret}", systemInstruction={
                                       "parts": [{"text": secret}]},
                                       tools=[{secret: {}}]) if "Content" in path else None,
                                   headers={"User-Agent": f"ua {secret}",
                                            "x-goog-api-client": secret})
                bodies.append(resp.raw)
        text = b"".join(bodies).decode("utf-8", "replace")
        text += json.dumps(EMU.log()) + json.dumps(EMU.ctl("GET", "usage"))
        text += json.dumps(EMU.ctl("GET", "keys")) + json.dumps(EMU.ctl("GET", "health"))
        with open(EMU.log_path, encoding="utf-8") as f:
            text += f.read()
        for secret in SECRETS + [UNKNOWN_KEY]:
            self.assertNotIn(secret, text)
        self.assertIn("key=REDACTED", text)


# =====================================================================================
def check_png(test: unittest.TestCase, png: bytes) -> None:
    """Signature, chunk CRCs, IHDR and the IDAT size of a PNG."""
    test.assertEqual(png[:8], b"\x89PNG\r\n\x1a\n")
    pos, chunks = 8, []
    while pos < len(png):
        length, tag = struct.unpack(">I4s", png[pos:pos + 8])
        data = png[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", png[pos + 8 + length:pos + 12 + length])
        test.assertEqual(crc, zlib.crc32(tag + data) & 0xFFFFFFFF, tag)
        chunks.append((tag, data))
        pos += 12 + length
    test.assertEqual(pos, len(png))
    test.assertEqual(chunks[0][0], b"IHDR")
    test.assertEqual(chunks[-1], (b"IEND", b""))
    width, height, depth, color, comp, filt, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    test.assertGreater(width, 0)
    test.assertEqual((depth, comp, filt, interlace), (8, 0, 0, 0))
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[color]
    raw = zlib.decompress(b"".join(d for t, d in chunks if t == b"IDAT"))
    test.assertEqual(len(raw), height * (1 + width * channels))


if __name__ == "__main__":
    unittest.main(verbosity=int(os.environ.get("VERBOSE", "1")) + 1)
