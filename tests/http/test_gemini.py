"""The HTTP front's Gemini REST API against scripts/fake-gemini: bodies passed
through unchanged both ways, the pool's rules over HTTP, bad input."""

from __future__ import annotations

import hashlib
import json
import re
import os
import socket
import time

from frontlib import Emu, Front, Pool, T, generate_url, http, raw_request, sse_events, user
from clilib import ERRORS

t = T("http-gemini")
emu = Emu(t, {"projects": {"p1": {}, "p2": {}},
              "keys": [{"key": "FAKE-KEY-0001", "name": "k1", "project": "p1"},
                       {"key": "FAKE-KEY-0002", "name": "k2", "project": "p2"}]})
pool = Pool(t, emu, [("one", "FAKE-KEY-0001"), ("two", "FAKE-KEY-0002")],
            config={"models": {"gemini-2.5-flash": {"rpm": 100, "tpm": 1000000, "rpd": 1000}}})
front = Front(t, pool, "--max-body", "1000000")
M = "gemini-2.5-flash"

# ---- passthrough: every field kind reaches the emulator byte for byte -----------------
rich = {
    "contents": [
        {"role": "user", "parts": [{"text": "What is the weather in Paris?"}]},
        {"role": "model", "parts": [{"functionCall": {"name": "get_weather",
                                                      "args": {"city": "Paris"}}}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "get_weather",
                                                         "response": {"temp_c": 21}}}]},
        {"role": "user", "parts": [{"text": "And tomorrow? \u00e9\u00e8 \u2603"}]},
    ],
    "systemInstruction": {"parts": [{"text": "Answer briefly."}]},
    "tools": [{"functionDeclarations": [{
        "name": "get_weather", "description": "The weather of a city",
        "parameters": {"type": "OBJECT", "properties": {"city": {"type": "STRING"}},
                       "required": ["city"]}}]}],
    "toolConfig": {"functionCallingConfig": {"mode": "AUTO"}},
    "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT",
                        "threshold": "BLOCK_ONLY_HIGH"}],
    "generationConfig": {"temperature": 0.3, "maxOutputTokens": 300,
                         "responseMimeType": "application/json",
                         "responseSchema": {"type": "OBJECT",
                                            "properties": {"answer": {"type": "STRING"}}}},
}
raw = json.dumps(rich, indent=1, ensure_ascii=False).encode("utf-8")
r = http(generate_url(front, M), raw)
t.check(r.status == 200, "a request with contents, tools, function calling, safety and a "
        "response schema succeeds", r)
t.check(r.headers.get("x-pool-key") in ("one", "two") and r.headers.get("x-pool-model") == M,
        "the answer names its key and model in x-pool-key / x-pool-model", r.headers)
entry = [e for e in emu.log() if e["action"] == "generateContent"][-1]
t.check(entry["body_sha256"] == hashlib.sha256(raw).hexdigest(),
        "the emulator received the caller's body byte for byte", entry)
t.check(entry["key_name"] in ("k1", "k2") and not entry["key_in_url"],
        "the key went in a header, not the URL", entry)

# ---- passthrough: Google's answer (thought parts, a functionCall) comes back as sent -----
answer = {"candidates": [{"content": {"role": "model", "parts": [
    {"text": "Let me think about the weather.", "thought": True},
    {"functionCall": {"name": "get_weather", "args": {"city": "Paris", "day": "tomorrow"}},
     "thoughtSignature": "c2lnbmF0dXJl"}]},
    "finishReason": "STOP", "index": 0,
    "groundingMetadata": {"webSearchQueries": ["paris weather"]}}],
    "usageMetadata": {"promptTokenCount": 40, "candidatesTokenCount": 12,
                      "thoughtsTokenCount": 30, "totalTokenCount": 82},
    "modelVersion": M, "responseId": "replayed-1"}
answer_raw = json.dumps(answer, indent=2).encode("utf-8")
emu.replay(status=200, body=answer_raw.decode(), content_type="application/json",
           model=M, action="generateContent", count=1)
r = http(generate_url(front, M), user("weather?"))
t.check(r.status == 200 and r.body == answer_raw,
        "an answer with thought parts, a functionCall and grounding reaches the caller "
        "unchanged", r)

# A key an upstream echoes (in an answer or in an error) never reaches the caller.
echo = {"candidates": [{"content": {"role": "model", "parts": [
    {"text": "your key is FAKE-KEY-0002, and k1's FAKE-KEY-0001"}]},
    "finishReason": "STOP", "index": 0}]}
emu.replay(status=200, body_json=echo, model=M, action="generateContent", count=1)
r = http(generate_url(front, M), user("echo"))
t.check(r.status == 200 and b"FAKE-KEY" not in r.body and b"your key is" in r.body,
        "a key echoed in an answer is redacted", r)
emu.replay(status=400, body_json={"error": {"code": 400, "status": "INVALID_ARGUMENT",
                                            "message": "bad request for key FAKE-KEY-0001"}},
           model=M, count=1)
r = http(generate_url(front, M), user("echo error"))
t.check(r.status == 400 and b"FAKE-KEY" not in r.body and b"bad request for key" in r.body,
        "a key echoed in an error is redacted", r)

# ---- streaming: SSE and the JSON-array form ---------------------------------------------
r = http(generate_url(front, M, "streamGenerateContent", "?alt=sse"), user("stream me"))
events = sse_events(r.body)
text = "".join(p.get("text", "") for e in events for p in e["candidates"][0]["content"]["parts"])
t.check(r.status == 200 and r.headers.get("content-type", "").startswith("text/event-stream")
        and len(events) >= 2 and "You asked: stream me" in text,
        "streamGenerateContent?alt=sse streams Google's events", r)
t.check(r.headers.get("transfer-encoding") == "chunked", "the stream is chunked", r.headers)
r = http(generate_url(front, M, "streamGenerateContent"), user("stream as array"))
arr = json.loads(r.body) if r.status == 200 else None
t.check(isinstance(arr, list) and len(arr) >= 2 and
        arr[-1]["candidates"][0].get("finishReason") == "STOP",
        "streamGenerateContent without alt=sse answers a JSON array", r)

# ---- countTokens, embeddings, models ------------------------------------------------------


def requests_total(p) -> int:
    doc = p.status()
    return sum(p.model(doc, k["id"], M).get("requests_total", 0) for k in doc["keys"])


before = requests_total(pool)
r = http(generate_url(front, M, "countTokens"), user("count these words"))
t.check(r.status == 200 and r.json().get("totalTokens", 0) > 0, "countTokens", r)
after = requests_total(pool)
t.check(before == after, "countTokens does not spend the model's request quota",
        (before, after))
r = http(generate_url(front, "gemini-embedding-001", "embedContent"),
         {"content": {"parts": [{"text": "embed me"}]}})
t.check(r.status == 200 and len(r.json()["embedding"]["values"]) > 0, "embedContent", r)
r = http(generate_url(front, "gemini-embedding-001", "batchEmbedContents"),
         {"requests": [{"model": "models/gemini-embedding-001",
                        "content": {"parts": [{"text": w}]}} for w in ("a", "b", "c")]})
t.check(r.status == 200 and len(r.json()["embeddings"]) == 3, "batchEmbedContents", r)
r = http(front.url + "/v1beta/models")
names = [m["name"] for m in r.json().get("models", [])] if r.status == 200 else []
t.check(f"models/{M}" in names and "models/gemini-embedding-001" in names,
        "GET /v1beta/models lists the pool's models", r)
r = http(front.url + f"/v1beta/models/{M}")
t.check(r.status == 200 and r.json()["name"] == f"models/{M}", "GET /v1beta/models/{m}", r)

# ---- bad input ------------------------------------------------------------------------
r = http(generate_url(front, M), b'{"contents": [')
t.check(r.status == 400 and r.json()["error"]["status"] == "INVALID_ARGUMENT",
        "malformed JSON: 400 in Gemini's error format", r)
r = http(generate_url(front, "gemini-0-nonexistent"), user("x"))
t.check(r.status == 404 and r.json()["error"]["status"] == "NOT_FOUND",
        "an unknown model: 404 in Gemini's error format", r)
line, _, reply = raw_request(front, b"POST /v1beta/models/" + M.encode() + b":generateContent "
                             b"HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2000000\r\n\r\n")
t.check(" 413 " in line and b'"code":413' in reply, "a body declared over the limit: 413 before "
        "it is sent", reply)
bad_req = {"contents": [{"role": "user", "parts": [{"text": "x"}]}],
           "generationConfig": {"temperature": "hot"}}
emu.replay(status=400, body_json={"error": {"code": 400, "message": "Invalid value at "
                                            "'generation_config.temperature' (TYPE_FLOAT)",
                                            "status": "INVALID_ARGUMENT"}},
           model=M, count=1)
r = http(generate_url(front, M), bad_req)
t.check(r.status == 400 and "generation_config.temperature" in r.json()["error"]["message"],
        "Google's own 400 reaches the caller with Google's message", r)

# ---- pool rules over HTTP ----------------------------------------------------------------
emu.reset()
with open(os.path.join(ERRORS, "429_per_day_free_tier.json"), encoding="utf-8") as f:
    per_day = json.load(f)["body"]
emu.replay(status=429, body=per_day, key="k1", model=M, count=1)
emu.replay(status=429, body=per_day, key="k2", model=M, count=1)
r1 = http(generate_url(front, M), user("first"))
r2 = http(generate_url(front, M), user("second"))
t.check(r1.status == 200 or r2.status == 200,
        "a per-day 429 on one key: the request succeeds on the other", (r1, r2))
# Both keys now cool until midnight Pacific; pinned, the model cannot fall back.
r = http(generate_url(front, M), user("third"), headers={"x-pool-fallback": "off"})
err = r.json().get("error", {}) if r.body.startswith(b"{") else {}
retry = [d for d in err.get("details", []) if d.get("@type", "").endswith("RetryInfo")]
t.check(r.status == 429 and err.get("status") == "RESOURCE_EXHAUSTED"
        and int(r.headers.get("retry-after", "0")) > 0 and retry,
        "every key exhausted (x-pool-fallback: off): 429 with Retry-After and RetryInfo", r)
r = http(generate_url(front, M), user("fourth"))
t.check(r.status == 200 and r.headers.get("x-pool-model") != M,
        "without the pin the request falls back to the next model", r)

# A stream that breaks after text went out ends with an error event, never joined text.
emu.reset()
emu.faults(scope="all", p_midstream=1, midstream_form="data")
r = http(generate_url(front, M, "streamGenerateContent", "?alt=sse"), user("break me"))
events = sse_events(r.body)
texts = [p.get("text", "") for e in events if "candidates" in e
         for p in e["candidates"][0]["content"]["parts"]]
t.check(r.status == 200 and events and "error" in events[-1],
        "a stream broken after text ends with an error event", r)
t.check("".join(texts).count("[fake-gemini") == 1,
        "and the text of a second attempt is never joined to the first", texts)
emu.faults(scope="all", clear=True)

# A caller that hangs up while its request waits for a key: the job is cancelled,
# and nothing is counted since nothing was sent.
emu.reset()
pool2 = Pool(t, emu, [("solo", "FAKE-KEY-0001")],
             config={"models": {M: {"rpm": 1, "tpm": 1000000, "rpd": 1000}}}, name="pool2")
front2 = Front(t, pool2)
r = http(generate_url(front2, M), user("uses the minute"))
t.check(r.status == 200, "the first request uses the key's only request of the minute", r)
before = len([e for e in emu.log() if e["action"] == "generateContent"])
host, port = front2.url[7:].rsplit(":", 1)
s = socket.create_connection((host, int(port)))
body = json.dumps(user("waits, then its caller leaves")).encode()
s.sendall(b"POST /v1beta/models/" + M.encode() + b":generateContent HTTP/1.1\r\nHost: 127.0.0.1\r\n"
          b"x-pool-fallback: off\r\nContent-Type: application/json\r\nContent-Length: "
          + str(len(body)).encode() + b"\r\n\r\n" + body)
time.sleep(1.0)
s.close()
deadline = time.monotonic() + 10
while time.monotonic() < deadline and not any(" status=499 " in x for x in front2.request_lines()):
    time.sleep(0.1)
lines = front2.request_lines()
t.check(any(" status=499 " in x and "waits" not in x for x in lines),
        "a caller that hangs up while waiting: its job is cancelled at once", lines)
status = pool2.status()
t.check(len([e for e in emu.log() if e["action"] == "generateContent"]) == before,
        "nothing reached Google for it", emu.log()[-1:])
t.check(pool2.model(status, "solo", M).get("requests_total") == 1,
        "and it is not counted against the key", pool2.model(status, "solo", M))

# Each request is one log line with client, model, key, status, latency; no secret.
log = front.log()
t.check(all(re.search(r"client=\S+ \S+ \S+ model=\S+ key=\S+ status=\d+ ms=\d+", x)
            for x in front.request_lines()), "every request is one log line", log[-400:])
t.check("FAKE-KEY" not in log and "FAKE-KEY" not in front2.log(), "no key in the log")
rep = front.sanitizer_report()
t.check(rep == "", "no sanitizer report from the daemon (front)", rep)
rep = front2.sanitizer_report()
t.check(rep == "", "no sanitizer report from the daemon (front2)", rep)
t.done()
