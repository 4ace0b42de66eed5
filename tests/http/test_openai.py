"""The OpenAI-compatible API's translation and errors, checked on the wire
(the openai SDK itself runs in sdk/sdk_test.sh)."""

from __future__ import annotations

import json
import os

from frontlib import Emu, Front, Pool, T, http
from clilib import ERRORS

t = T("http-openai")
emu = Emu(t, {"projects": {"p1": {}},
              "keys": [{"key": "FAKE-KEY-0001", "name": "k1", "project": "p1"}]})
M = "gemini-2.5-flash"
pool = Pool(t, emu, [("one", "FAKE-KEY-0001")],
            config={"models": {M: {"rpm": 1000, "tpm": 10000000, "rpd": 10000}}})
front = Front(t, pool)
chat = front.url + "/v1/chat/completions"


def sse(body: bytes) -> list:
    return [line[6:] for line in body.decode().split("\n") if line.startswith("data: ")]


# Every message kind reaches Google as the Gemini request it stands for: the
# emulator counts the system text and the image (258 tokens) in the prompt.
png = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAAB"
       "JRU5ErkJggg==")
r = http(chat, {"model": M, "messages": [
    {"role": "system", "content": "x" * 400},
    {"role": "user", "content": [{"type": "text", "text": "look"},
                                 {"type": "image_url",
                                  "image_url": {"url": "data:image/png;base64," + png}}]}]})
entry = emu.log()[-1]
t.check(r.status == 200 and entry["prompt_tokens"] >= 100 + 258,
        "system text and an image as a data URL reach Google", (r, entry))
t.check(r.headers.get("x-pool-key") == "one" and r.headers.get("x-pool-model") == M,
        "x-pool-key and x-pool-model on OpenAI answers too", r.headers)

r = http(chat, {"model": M, "messages": [{"role": "user", "content": [
    {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]})
t.check(r.status == 400 and "data URL" in r.json()["error"]["message"]
        and r.json()["error"]["type"] == "invalid_request_error",
        "an image by URL: 400 in OpenAI's format", r)
r = http(chat, b'{"model": ')
t.check(r.status == 400 and "error" in r.json() and "message" in r.json()["error"],
        "malformed JSON: 400 in OpenAI's format", r)

# A streamed completion.
r = http(chat, {"model": M, "stream": True, "messages": [{"role": "user", "content": "hi"}]})
events = sse(r.body)
chunks = [json.loads(e) for e in events if e != "[DONE]"]
text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
t.check(r.status == 200 and events[-1] == "[DONE]" and chunks[0]["choices"][0]["delta"]
        .get("role") == "assistant" and "You asked: hi" in text
        and chunks[-1]["choices"][0]["finish_reason"] == "stop",
        "a streamed completion: role first, text deltas, finish_reason, [DONE]", events[:2])

# Exhausted: 429 in OpenAI's format with Retry-After.
with open(os.path.join(ERRORS, "429_per_day_free_tier.json"), encoding="utf-8") as f:
    per_day = json.load(f)["body"]
emu.replay(status=429, body=per_day, key="k1", model=M, count=1)
r = http(chat, {"model": M, "messages": [{"role": "user", "content": "x"}]},
         headers={"x-pool-fallback": "off"})
t.check(r.status == 429 and r.json()["error"]["code"] == "rate_limit_exceeded"
        and int(r.headers.get("retry-after", "0")) > 0,
        "every key exhausted: 429 in OpenAI's format with Retry-After", r)

# A stream broken after text: an error event, no [DONE], nothing joined.
emu.faults(scope="all", p_midstream=1, midstream_form="data")
r = http(chat, {"model": "gemini-3.1-flash-lite-preview", "stream": True,
                "messages": [{"role": "user", "content": "break"}]})
events = sse(r.body)
t.check(events and "error" in json.loads(events[-1]) and "[DONE]" not in events,
        "a stream broken after text ends with an error event and no [DONE]", events[-2:])
t.check(sum(e.count("[fake-gemini") for e in events) == 1, "and no second attempt's text",
        events)
emu.faults(scope="all", clear=True)

# Embeddings as floats (encoding_format float) and as base64.
r = http(front.url + "/v1/embeddings", {"model": "gemini-embedding-001", "input": "one",
                                        "encoding_format": "float"})
t.check(r.status == 200 and isinstance(r.json()["data"][0]["embedding"], list)
        and r.json()["usage"]["prompt_tokens"] >= 1, "embeddings as floats", r)
r = http(front.url + "/v1/embeddings", {"model": "gemini-embedding-001", "input": ["a", "b"],
                                        "encoding_format": "base64"})
t.check(r.status == 200 and all(isinstance(d["embedding"], str) for d in r.json()["data"]),
        "embeddings as base64", r)
r = http(front.url + "/v1/models/" + M)
t.check(r.status == 200 and r.json()["id"] == M, "GET /v1/models/{id}", r)
rep = front.sanitizer_report()
t.check(rep == "", "no sanitizer report from the daemon (front)", rep)
t.done()
