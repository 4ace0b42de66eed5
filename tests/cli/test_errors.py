#!/usr/bin/env python3
"""Every kind of Gemini error, replayed by the emulator from the real bodies in
tests/fixtures/gemini-errors (plus a bad request), through `gemini-pool ask`:
the right rule shows in `gemini-pool status --json` (cooldown_kind,
cooldown_until, disabled state) and the task still succeeds on another key
(invalid key, rpd, tpm, billing, server), falls back to the next model (no free
tier, model not found) or fails with Google's message (bad request).  A key
reported invalid is never used again until `gemini-pool reset`."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clilib import (ERRORS, Emu, Pool, T, answer_of, make_secret,  # noqa: E402
                    next_pacific_midnight, one_line_error)

t = T("cli-error-rules")
M = "gemini-3-flash-preview"
FALLBACK = "gemini-2.5-flash"
keys = [{"key": make_secret("E1"), "name": "k1", "project": "p1"},
        {"key": make_secret("E2"), "name": "k2", "project": "p2"}]
emu = Emu(t, {"projects": {"p1": {}, "p2": {}}, "keys": keys})
PROJECT = {"k1": "p1", "k2": "p2"}


def case(name, replay, task):
    """A fresh pool; k1 (first in config order) answers with `replay` once."""
    emu.reset()
    emu.replay(key="k1", model=M, count=1, **replay)
    pool = Pool(t, emu, [("k1", keys[0]["key"]), ("k2", keys[1]["key"])], name=name)
    before = time.time()
    r = pool.ask("--task", task)
    after = time.time()
    st = pool.status()
    ex = pool.executions()
    return pool, r, st, (ex[-1] if ex else {}), emu.log(), before, after


def answered_by(r, ex, model, task):
    """The run succeeded and printed exactly the deterministic answer of the key
    and model executions.jsonl says served it."""
    key = ex.get("key_id")
    return (r.returncode == 0 and ex.get("model_used") == model and key in PROJECT
            and r.stdout.decode() == answer_of(model, key, PROJECT[key], task))


def fx(name):
    return {"body_file": os.path.join(ERRORS, name)}


def model_entries(st, kid):
    return {m: (v["cooldown_kind"], v["cooldown_until"]) for m, v in
            next(k for k in st["keys"] if k["id"] == kid)["models"].items()}


# ---- 400 API_KEY_INVALID (array-framed) -> disabled, retried on k2 ------------------------
pool, r, st, ex, log, t0, t1 = case("invalid", fx("400_api_key_invalid_array_framed.json"),
                                   "rule invalid")
k1 = pool.key(st, "k1")
t.check(k1["state"] == "disabled" and "API key not valid" in (k1["disabled_reason"] or ""),
        "invalid key: k1 disabled with Google's reason", k1)
t.check(answered_by(r, ex, M, "rule invalid") and ex["key_id"] == "k2",
        "invalid key: the task succeeds on k2, same model", r)
t.check([(c["key_name"], c["status"]) for c in log] == [("k1", 400), ("k2", 200)],
        "invalid key: one request each", log)

# ---- 404 NOT_FOUND -> no penalty, falls back ---------------------------------------------
pool, r, st, ex, log, t0, t1 = case("notfound", fx("404_model_not_found.json"), "rule 404")
m1 = pool.model(st, "k1", M)
t.check(pool.key(st, "k1")["state"] == "ready" and m1["cooldown_until"] == 0
        and m1["cooldown_kind"] is None and pool.key(st, "k1")["cooldown_until"] == 0,
        "model not found: no penalty on k1", (pool.key(st, "k1")["state"], m1))
t.check(answered_by(r, ex, FALLBACK, "rule 404"),
        f"model not found: falls back to {FALLBACK} and succeeds", (r, ex))
t.check([c["model"] for c in log] == [M, FALLBACK], "model not found: no retry of the model",
        log)

# ---- 429 input tokens per minute -> tpm cooldown for retryDelay (26 s) -------------------
pool, r, st, ex, log, t0, t1 = case("tpm", fx("429_input_tokens_per_minute_free_tier.json"),
                                   "rule tpm")
m1 = pool.model(st, "k1", M)
t.check(m1["cooldown_kind"] == "tpm" and t0 + 25 <= m1["cooldown_until"] <= t1 + 27,
        "tpm: (p1, model) cools for the 26 s retryDelay", (m1, t0))
t.check(pool.key(st, "k1")["state"] == "cooling" and pool.key(st, "k1")["disabled_reason"]
        is None and pool.model(st, "k1", FALLBACK).get("cooldown_until", 0) == 0,
        "tpm: only that model cools, the key is not disabled", model_entries(st, "k1"))
t.check(answered_by(r, ex, M, "rule tpm") and ex["key_id"] == "k2",
        "tpm: the task succeeds on k2, same model", (r, ex))

# ---- 429 limit: 0 -> no_free_tier until midnight Pacific, fall back -----------------------
pool, r, st, ex, log, t0, t1 = case("nofree", fx("429_limit_zero_no_free_tier.json"),
                                   "rule nofree")
m1 = pool.model(st, "k1", M)
t.check(m1["cooldown_kind"] == "no_free_tier"
        and m1["cooldown_until"] in (next_pacific_midnight(t0), next_pacific_midnight(t1)),
        "no free tier: (p1, model) marked until the next midnight Pacific", (m1, t0))
t.check(answered_by(r, ex, FALLBACK, "rule nofree"),
        f"no free tier: falls back to {FALLBACK} and succeeds", (r, ex))
t.check([c["model"] for c in log] == [M, FALLBACK], "no free tier: no retry of the model", log)

# ---- 429 per day -> rpd until midnight Pacific (not the 22 s retryDelay) -----------------
pool, r, st, ex, log, t0, t1 = case("rpd", fx("429_per_day_free_tier.json"), "rule rpd")
m1 = pool.model(st, "k1", M)
t.check(m1["cooldown_kind"] == "rpd"
        and m1["cooldown_until"] in (next_pacific_midnight(t0), next_pacific_midnight(t1)),
        "rpd: (p1, model) cools until the next midnight Pacific", (m1, t0))
t.check(m1.get("rpd_limit") == 250, "rpd: the quotaValue (250) is learned as the limit", m1)
t.check(answered_by(r, ex, M, "rule rpd") and ex["key_id"] == "k2",
        "rpd: the task succeeds on k2, same model", (r, ex))

# ---- 429 prepay credits depleted -> billing: the whole key for 2 h ------------------------
pool, r, st, ex, log, t0, t1 = case("billing", fx("429_prepay_credits_depleted.json"),
                                   "rule billing")
k1 = pool.key(st, "k1")
ent = model_entries(st, "k1")
t.check(k1["cooldown_kind"] == "billing" and t0 + 7199 <= k1["cooldown_until"] <= t1 + 7201,
        "billing: the key cools for 2 h", k1)
t.check(len(ent) > 1 and all(kind == "billing" and until == k1["cooldown_until"]
                             for kind, until in ent.values()),
        "billing: the key-wide cooldown shows in every model entry", ent)
t.check(answered_by(r, ex, M, "rule billing") and ex["key_id"] == "k2",
        "billing: the task succeeds on k2, same model", (r, ex))

# ---- 503 overloaded -> server: short cooldown, retry on another key -----------------------
pool, r, st, ex, log, t0, t1 = case("server", fx("503_model_overloaded.json"), "rule server")
m1 = pool.model(st, "k1", M)
t.check(m1["cooldown_kind"] == "server" and t0 < m1["cooldown_until"] <= t1 + 31,
        "server: (p1, model) cools at most 30 s", (m1, t0))
t.check(answered_by(r, ex, M, "rule server") and ex["key_id"] == "k2",
        "server: the task succeeds on k2, same model", (r, ex))

# ---- 400 INVALID_ARGUMENT -> fail with Google's message, no penalty, no retry -------------
BAD = ('Invalid JSON payload received. Unknown name "temprature" at \'generation_config\': '
       'Cannot find field.')
bad = {"status": 400, "body_json": {"error": {
    "code": 400, "message": BAD, "status": "INVALID_ARGUMENT",
    "details": [{"@type": "type.googleapis.com/google.rpc.BadRequest",
                 "fieldViolations": [{"field": "generation_config", "description": BAD}]}]}}}
pool, r, st, ex, log, t0, t1 = case("badrequest", bad, "rule bad request")
line = one_line_error(r)
t.check(r.returncode == 1 and line is not None and BAD in line and r.stdout == b"",
        "bad request: fails with Google's message in one line", r)
t.check(len(log) == 1, "bad request: no retry", log)
k1 = pool.key(st, "k1")
t.check(k1["state"] == "ready" and k1["disabled_reason"] is None
        and all(until == 0 for _, until in model_entries(st, "k1").values()),
        "bad request: no penalty on the key", k1)
t.check(ex.get("status") == "failed" and BAD in (ex.get("error") or ""),
        "bad request: executions.jsonl records the failure", ex)

# ---- per-minute QuotaFailure whose message says "enable billing" -> rpm, not billing ------
RPM_BILLING = {"error": {
    "code": 429, "status": "RESOURCE_EXHAUSTED",
    "message": "Quota exceeded for requests per minute. To raise your limits, enable billing "
               "for your project.",
    "details": [
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{
            "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
            "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
            "quotaValue": "5"}]},
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "21s"}]}}
pool, r, st, ex, log, t0, t1 = case("rpm-billing-words", {"status": 429, "body_json": RPM_BILLING},
                                   "rule rpm billing words")
k1, m1 = pool.key(st, "k1"), pool.model(st, "k1", M)
t.check(k1["cooldown_kind"] is None and k1["state"] != "disabled"
        and m1["cooldown_kind"] == "rpm" and t0 + 20 <= m1["cooldown_until"] <= t1 + 22,
        "per-minute QuotaFailure with billing words: rpm for the 21 s retry delay, not billing",
        (k1["cooldown_kind"], m1))
t.check(answered_by(r, ex, M, "rule rpm billing words") and ex["key_id"] == "k2",
        "per-minute QuotaFailure with billing words: the task succeeds on k2", (r, ex))

# ---- not Google at all: a proxy's HTML 403, an empty 401, a text 500 -> server trouble ----
emu.reset()
PROXY_403 = ("<html><head><title>403 Forbidden</title></head><body><h1>Forbidden</h1>"
             "<p>API key not valid, or billing is not enabled. Contact your proxy admin.</p>"
             "</body></html>")
for status, body, ctype in ((403, PROXY_403, "text/html"), (401, "", "text/plain"),
                            (500, "Internal Server Error", "text/plain")):
    emu.replay(status=status, body=body, content_type=ctype, count=1)
pool = Pool(t, emu, [("k1", keys[0]["key"]), ("k2", keys[1]["key"])], name="not-google")
r = pool.ask("--task", "rule not google")
st = pool.status()
log = emu.log()
t.check([c["status"] for c in log[:3]] == [403, 401, 500],
        "not Google: the proxy's 403, 401 and 500 were answered", log)
t.check(all(k["state"] != "disabled" and k["disabled_reason"] is None
            and k["cooldown_kind"] != "billing" for k in st["keys"]),
        "not Google: no key disabled or billed", st["keys"])
t.check(all(m["cooldown_kind"] in (None, "server") for k in st["keys"]
            for m in k["models"].values()),
        "not Google: treated as server trouble", [pool.model(st, k, M) for k in ("k1", "k2")])
t.check(r.returncode == 0, "not Google: the task still succeeds", r)

# ---- an invalid key is never used again until reset ----------------------------------------
for how, setup in (("leaked (403)", lambda: emu.ctl("POST", "/_emu/keys",
                                                    {"name": "k1", "state": "leaked"})),
                   ("API_KEY_INVALID (400)", lambda: emu.replay(
                       key="k1", count=1000, **fx("400_api_key_invalid_array_framed.json")))):
    emu.reset()
    setup()
    pool = Pool(t, emu, [("k1", keys[0]["key"]), ("k2", keys[1]["key"])],
                name="never-" + how.split()[0])
    results = [pool.ask("--task", f"never {i}", "--model", model) for i, model in
               enumerate([M, M, FALLBACK, "gemma-3-27b-it", M, FALLBACK])]
    pool.run("status")
    t.check(all(r.returncode == 0 for r in results), f"{how}: every ask succeeds on k2",
            next((r for r in results if r.returncode != 0), None))
    used = [c["key_name"] for c in emu.log()]
    t.check(used.count("k1") == 1 and used[0] == "k1",
            f"{how}: k1 was used once, never again", used)
    # A new process must not re-enable it either (the state file remembers).
    t.check(pool.key(pool.status(), "k1")["state"] == "disabled",
            f"{how}: k1 stays disabled in the state file", None)
    emu.reset()  # the service takes the key back...
    r = pool.run("reset", "k1")
    since = len(emu.log())
    r2 = pool.ask("--task", "after reset")
    used = [c["key_name"] for c in emu.log(since)]
    t.check(r.returncode == 0 and r2.returncode == 0 and used == ["k1"],
            f"{how}: after `reset k1` the key is used again (least recently used)", used)

t.done()
