#!/usr/bin/env python3
"""Routing (the pool picks the model), end to end with the real command
against the emulator:
- the routing table: typical tasks of each type and complexity give the
  expected first candidate and thinking level; --quality overrides the
  quality inferred from the complexity; the paid-only pro model is skipped
  with its reason;
- `route` sends nothing (the emulator's request log stays empty);
- a model whose requests for the day are used up on every key is skipped
  with the reason, and the next model leads;
- a `routing` entry in keys.json changes the decision; a bad one is one
  clear line naming its place;
- `ask` with neither --model nor --profile routes: --json has route and
  run_id, executions.jsonl records both;
- after 5 `rate` scores favouring one model, the next decision for that
  (task type, complexity) puts it first.
With --redis, the state (and the scores) live on a throwaway redis-server and
the scores given by some processes reorder the decisions of others."""

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "redis"))
from clilib import Emu, Pool, T, make_secret, one_line_error  # noqa: E402

REDIS = "--redis" in sys.argv
if REDIS:
    from redislib import Redis, need_redis  # noqa: E402
    need_redis()
t = T("cli-route-redis" if REDIS else "cli-route")
FLASH, FLASH25, LITE = "gemini-3-flash-preview", "gemini-2.5-flash", "gemini-3.1-flash-lite-preview"
PRO = "gemini-3.1-pro-preview"
keys = [{"key": make_secret("T1"), "name": "k1", "project": "p1"},
        {"key": make_secret("T2"), "name": "k2", "project": "p2"}]
LOW = {"rpm": 15, "tpm": 250000, "rpd": 1}
EMODELS = {FLASH: LOW, FLASH25: {}, LITE: {}, "gemma-3-1b-it": {}}
emu = Emu(t, {"projects": {"p1": {"models": EMODELS}, "p2": {"models": EMODELS}},
              "keys": keys})
ids = [("k1", keys[0]["key"]), ("k2", keys[1]["key"])]
red = Redis(t) if REDIS else None


def pool_of(name, config=None):
    p = Pool(t, emu, ids, config=config, name=name)
    if red is not None:
        p.env["GEMINI_POOL_STATE"] = f"redis://127.0.0.1:{red.port}/{len(name) % 8}"
    return p


def route(pool, task, *extra):
    r = pool.run("route", "--task", task, "--json", *extra)
    if r.returncode != 0:
        t.check(False, f"route --task {task!r} works", r)
        return None
    return json.loads(r.stdout)


def first(doc):
    c = doc["candidates"][0] if doc and doc["candidates"] else {}
    return c.get("model"), c.get("thinking"), c.get("tools")


pool = pool_of("table")
if not REDIS:
    # ---- the routing table --------------------------------------------------------------
    table = [
        ("fix typo in this sentence: teh cat", "micro", "low", "gemma-3-1b-it", None, []),
        ("intent analysis: which of these tools fits?", "intent", "low", FLASH, "minimal", []),
        ("generate image of a lighthouse at dusk", "image", "low", "gemini-2.5-flash-image",
         None, []),
        ("Tell me the latest news on the Rust language and its editions", "current_research",
         "medium", FLASH, "medium", ["google_search"]),
        ("write a bash script that lists the ten largest files", "tool_use", "low", FLASH,
         "minimal", ["code_execution"]),
        ("summarize this paragraph", "general", "low", LITE, "minimal", []),
        ("explain how a TCP handshake works, step by step please", "general", "medium", FLASH,
         "medium", []),
        ("refactor this module so that it has no global state", "general", "high", FLASH, "high",
         []),
        ("a deep analysis of the strategic options for our company", "general", "research",
         FLASH, "high", []),
    ]
    for task, ttype, cx, model, thinking, tools in table:
        d = route(pool, task)
        got = (d or {}).get("task_type"), (d or {}).get("complexity"), *first(d)
        t.check(got == (ttype, cx, model, thinking, tools),
                f"{task[:40]!r}: {ttype}/{cx} -> {model} thinking {thinking} tools {tools}",
                got)
    d = route(pool, "a deep analysis of the strategic options for our company")
    t.check(d is not None and d["quality"] == "research" and not d["quality_given"] and
            {"model": PRO, "reason": "no_free_tier"}.items() <=
            (d["skipped"][0] if d["skipped"] else {}).items(),
            "research: the paid-only pro model is skipped as no_free_tier", d)
    d = route(pool, "summarize this paragraph", "--quality", "production")
    t.check(d is not None and d["quality"] == "production" and d["quality_given"] and
            first(d)[:2] == (FLASH, "high"),
            "--quality production overrides the inferred draft: flash, thinking high", d)
    d = route(pool, "summarize this paragraph", "--quality", "research")
    t.check(d is not None and first(d)[:2] == (FLASH, "high") and
            [s["model"] for s in d["skipped"]] == [PRO],
            "--quality research: pro skipped, flash with high thinking first", d)
    r = pool.run("route", "--task", "x", "--quality", "best")
    line = one_line_error(r)
    t.check(r.returncode == 2 and line is not None and "unknown quality 'best'" in line,
            "an unknown --quality is one line", r)
    r = pool.run("route", "--task", "summarize this paragraph")
    t.check(r.returncode == 0 and b"1. " + LITE.encode() in r.stdout,
            "route without --json prints the candidates in order", r)
    t.check(emu.log() == [], "route sends nothing: the emulator's log is empty", emu.log())

    # ---- a routing override, and a bad one ---------------------------------------------
    over = pool_of("override", {"routing": {"types": {"legal": {
        "words": ["contract"], "models": [FLASH25], "thinking": "low"}}}})
    d = route(over, "review this contract for risky clauses")
    t.check(d is not None and d["task_type"] == "legal" and first(d)[:2] == (FLASH25, "low"),
            "a routing type from keys.json wins: legal -> gemini-2.5-flash, thinking low", d)
    d = route(pool, "review this contract for risky clauses")
    t.check(d is not None and d["task_type"] == "general" and first(d)[0] == FLASH,
            "without the override the same task is general -> flash", d)
    over = pool_of("override2", {"routing": {"quality": {"draft": {"models": [FLASH25]}}}})
    d = route(over, "summarize this paragraph")
    t.check(d is not None and first(d)[0] == FLASH25, "a quality override changes the model", d)
    bad = pool_of("bad", {"routing": {"types": {"legal": {
        "words": ["contract"], "models": ["gemini-9-ultra"]}}}})
    r = bad.run("route", "--task", "review this contract")
    line = one_line_error(r)
    t.check(r.returncode != 0 and line is not None and
            "routing.types.legal.models[0]" in line and "gemini-9-ultra" in line and
            "not a known model" in line, "a bad routing model is one line naming its place", r)
    bad = pool_of("bad2", {"routing": {"types": {"legal": {"word": ["contract"]}}}})
    r = bad.run("route", "--task", "review this contract")
    line = one_line_error(r)
    t.check(r.returncode != 0 and line is not None and "routing.types.legal" in line and
            "unknown field \"word\"" in line, "a misspelt routing field is one line", r)
    bad = pool_of("bad3", {"profiles": {"quick": {"route": "auto", "quality": "fast"}}})
    r = bad.run("route", "--task", "x")
    line = one_line_error(r)
    t.check(r.returncode != 0 and line is not None and "profiles.quick.quality" in line,
            "a bad profile quality is one line", r)

# ---- ask with no model routes ----------------------------------------------------------
r = pool.ask("--task", "summarize this paragraph: routing is fun", "--json", routed=True)
doc = json.loads(r.stdout) if r.returncode == 0 else {}
t.check(r.returncode == 0 and doc.get("model_used") == LITE and doc.get("model_requested") ==
        "auto" and doc.get("route", {}).get("candidates", [{}])[0].get("model") == LITE and
        str(doc.get("run_id", "")).startswith("r"),
        "ask without --model routes: --json names route, model_used and run_id", r)
if REDIS:
    with open(os.path.join(pool.env["XDG_STATE_HOME"], "gemini-pool", "executions.jsonl"),
              encoding="utf-8") as f:
        ex = [json.loads(line) for line in f if line.strip()]
else:
    ex = pool.executions()
t.check(ex and ex[-1].get("run_id") == doc.get("run_id") and ex[-1].get("route") == doc.get("route")
        and ex[-1].get("task_type") == "general" and ex[-1].get("complexity") == "low",
        "executions.jsonl records the run id and the route", ex[-1:] if ex else ex)
r = pool.ask("--task", "summarize this", "--model", FLASH25, "--json")
doc2 = json.loads(r.stdout) if r.returncode == 0 else {}
t.check(r.returncode == 0 and doc2.get("route") is None and doc2.get("model_used") == FLASH25,
        "ask --model names its model: no route", r)

# ---- per-day quota used up on every key: skipped ----------------------------------------
rpd = pool_of("rpd", {"models": {FLASH: LOW}})
for i in range(2):
    r = rpd.ask("--task", f"use up the day {i}", "--model", FLASH)
    t.check(r.returncode == 0, f"request {i + 1} of the day on {FLASH}", r)
d = route(rpd, "explain how a TCP handshake works, step by step please")
skipped = {s["model"]: s for s in (d or {}).get("skipped", [])}
t.check(d is not None and FLASH in skipped and skipped[FLASH]["reason"] == "rpd_exhausted" and
        "midnight Pacific" in skipped[FLASH]["detail"] and first(d)[:2] == (FLASH25, "medium"),
        "flash with its day used up on both keys is skipped (rpd_exhausted); 2.5-flash leads", d)
since = len(emu.log())
r = rpd.ask("--task", "explain how a TCP handshake works, step by step please", "--json",
            routed=True)
doc = json.loads(r.stdout) if r.returncode == 0 else {}
t.check(r.returncode == 0 and doc.get("model_used") == FLASH25 and
        all(c["model"] != FLASH for c in emu.log(since)),
        "the routed ask goes to 2.5-flash without trying the exhausted model", r)

# ---- rate: five scores favouring one model reorder the decision -------------------------
TASK = "explain the difference between a process and a thread"
d = route(pool, TASK)
t.check(d is not None and (d["task_type"], d["complexity"]) == ("general", "medium") and
        first(d)[0] == FLASH and not d["scored"], "before scores: flash first", d)
runs = []
for i in range(5):
    r = pool.ask("--task", f"{TASK} ({i})", "--model", FLASH25, "--json")
    runs.append(json.loads(r.stdout)["run_id"] if r.returncode == 0 else None)
for i, rid in enumerate(runs[:4]):
    r = pool.run("rate", rid or "none", "5")
    t.check(r.returncode == 0, f"rate run {i + 1} 5", r)
d = route(pool, TASK)
t.check(d is not None and first(d)[0] == FLASH and not d["scored"],
        "four scores are not enough to reorder", d)
r = pool.run("rate", runs[4] or "none", "5")
t.check(r.returncode == 0 and FLASH25.encode() in r.stdout, "the fifth score", r)
d = route(pool, TASK)
t.check(d is not None and d["scored"] and first(d)[0] == FLASH25 and
        [c["model"] for c in d["candidates"]] == [FLASH25, FLASH, LITE],
        "after 5 scores of 5 for 2.5-flash it leads, unscored models follow (3)", d)
if REDIS:
    other = Pool(t, emu, ids, name="elsewhere")
    other.env["GEMINI_POOL_STATE"] = pool.env["GEMINI_POOL_STATE"]
    d = route(other, TASK)
    t.check(d is not None and d["scored"] and first(d)[0] == FLASH25,
            "another pool on the same Redis (its own config and local files) sees the scores", d)
d = route(pool, "summarize this paragraph")
t.check(d is not None and not d["scored"] and first(d)[0] == LITE,
        "another (task type, complexity) is not reordered", d)
for bad_args, what in ((["r0000000000000000", "3"], "an unknown run id"),
                       ([runs[0] or "x", "6"], "a score of 6"),
                       ([runs[0] or "x"], "a missing score")):
    r = pool.run("rate", *bad_args)
    t.check(r.returncode != 0 and one_line_error(r) is not None, f"rate: {what} is one line", r)
t.done()
