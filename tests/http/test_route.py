"""Model "auto" on the HTTP front: the pool picks the model on both APIs, says
which and why in x-pool-route (and x-pool-model), streams too, and refuses
"auto" where nothing can be routed (embeddings)."""

from __future__ import annotations

import json

from frontlib import Emu, Front, Pool, T, generate_url, http, sse_events, user

t = T("http-route")
LITE, FLASH = "gemini-3.1-flash-lite-preview", "gemini-3-flash-preview"
MODELS = {LITE: {}, FLASH: {}, "gemini-2.5-flash": {}}
emu = Emu(t, {"projects": {"p1": {"models": MODELS}, "p2": {"models": MODELS}},
              "keys": [{"key": "FAKE-KEY-0001", "name": "k1", "project": "p1"},
                       {"key": "FAKE-KEY-0002", "name": "k2", "project": "p2"}]})
pool = Pool(t, emu, [("one", "FAKE-KEY-0001"), ("two", "FAKE-KEY-0002")])
front = Front(t, pool)


def route_header(r) -> dict:
    """x-pool-route "type=T; complexity=C; quality=Q; models=A,B" as a dict."""
    out = {}
    for part in (r.headers.get("x-pool-route") or "").split(";"):
        if "=" in part:
            k, v = part.strip().split("=", 1)
            out[k] = v
    return out


# ---- Gemini REST: /v1beta/models/auto:generateContent -----------------------------------
r = http(generate_url(front, "auto"), json.dumps(user("summarize this paragraph")).encode())
h = route_header(r)
t.check(r.status == 200 and r.headers.get("x-pool-model") == LITE and
        (h.get("type"), h.get("complexity"), h.get("quality")) == ("general", "low", "draft") and
        h.get("models", "").split(",")[0] == LITE,
        "Gemini API, model auto: a short summary goes to flash-lite, x-pool-route says why", r)
sent = [e for e in emu.log() if e["action"] == "generateContent"]
t.check(sent and sent[-1]["model"] == LITE, "the emulator got the request on flash-lite", sent)

r = http(generate_url(front, "auto"),
         json.dumps(user("refactor this module so that it has no global state")).encode())
h = route_header(r)
t.check(r.status == 200 and r.headers.get("x-pool-model") == FLASH and
        (h.get("complexity"), h.get("quality")) == ("high", "production"),
        "Gemini API, model auto: a refactoring goes to flash (production)", r)

r = http(generate_url(front, "auto", "streamGenerateContent", "?alt=sse"),
         json.dumps(user("summarize this paragraph, streamed")).encode())
h = route_header(r)
t.check(r.status == 200 and sse_events(r.body) and h.get("models", "").startswith(LITE) and
        r.headers.get("x-pool-model") == LITE, "Gemini API, model auto, streamed: routed too", r)

r = http(generate_url(front, "auto", "embedContent"),
         json.dumps({"content": {"parts": [{"text": "x"}]}}).encode())
t.check(r.status == 404, "embedContent on auto is refused (nothing to route)", r)

# ---- OpenAI: "model": "auto" --------------------------------------------------------------
chat = front.url + "/v1/chat/completions"
r = http(chat, json.dumps({"model": "auto", "messages": [
    {"role": "user", "content": "summarize this paragraph for me"}]}).encode())
h = route_header(r)
doc = r.json() if r.status == 200 else {}
t.check(r.status == 200 and h.get("models", "").startswith(LITE) and
        r.headers.get("x-pool-model") == LITE and doc.get("choices"),
        "OpenAI API, model auto: routed, x-pool-route set", r)
r = http(chat, json.dumps({"model": "auto", "stream": True, "messages": [
    {"role": "user", "content": "refactor this module so that it has no global state"}]}).encode())
h = route_header(r)
t.check(r.status == 200 and h.get("quality") == "production" and
        r.headers.get("x-pool-model") == FLASH, "OpenAI API, model auto, streamed: routed", r)

# ---- a named model has no x-pool-route ----------------------------------------------------
r = http(generate_url(front, LITE), json.dumps(user("hello")).encode())
t.check(r.status == 200 and "x-pool-route" not in r.headers,
        "a request naming its model has no x-pool-route", r.headers)
t.done()
