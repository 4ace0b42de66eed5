#!/usr/bin/env python3
"""gemini-pool's command line: --help, --version, bad options and bad
configurations (one line on stderr, exit 2), `keys check` (ok / INVALID per
key, invalid ones disabled and no longer used), `reset KEY` / `reset all`, the
human `status` table with cooldowns, --output / --json / --task -, and
executions.jsonl."""

import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clilib import (ERRORS, Emu, Pool, T, answer_of, make_secret,  # noqa: E402
                    one_line_error)

t = T("cli-basics")
M = "gemini-3-flash-preview"
keys = [{"key": make_secret("B1"), "name": "k1", "project": "p1"},
        {"key": make_secret("B2"), "name": "k2", "project": "p2", "state": "leaked"},
        {"key": make_secret("B3"), "name": "k3", "project": "p3"}]
emu = Emu(t, {"projects": {"p1": {}, "p2": {}, "p3": {}}, "keys": keys})
unknown = make_secret("B4")  # a key the service has never heard of: API_KEY_INVALID
pool = Pool(t, emu, [("k1", keys[0]["key"]), ("k2", keys[1]["key"]),
                     ("k3", keys[2]["key"]), ("k4", unknown)])

# ---- --help, --version --------------------------------------------------------------
for args in (["--help"], ["-h"], ["ask", "--help"], ["status", "--help"], ["keys", "--help"],
             ["reset", "--help"]):
    r = pool.run(*args)
    t.check(r.returncode == 0 and b"usage:" in r.stdout and b"gemini-pool ask" in r.stdout
            and r.stderr == b"", f"{' '.join(args)}: usage on stdout, exit 0", r)
r = pool.run("--version")
t.check(r.returncode == 0 and re.fullmatch(rb"gemini-pool \d+\.\d+\.\d+\n", r.stdout),
        "--version prints 'gemini-pool X.Y.Z'", r)
r = pool.run()
t.check(r.returncode == 2 and b"usage:" in r.stderr and r.stdout == b"",
        "no command: usage on stderr, exit 2", r)

# ---- bad options: one line, exit 2, nothing sent ---------------------------------------
bad = [
    (["bogus"], "unknown command"),
    (["ask"], "--task"),
    (["ask", "--task"], "--task needs a value"),
    (["ask", "--task", "x", "--bogus"], "unknown option '--bogus'"),
    (["ask", "--task", "x", "--quality", "best"], "--quality"),
    (["ask", "--task", "x", "--max-wait", "soon"], "--max-wait"),
    (["ask", "--task", "x", "--timeout", "-5"], "--timeout"),
    (["ask", "--task", "x", "--model", "gemini-9-ultra"], "unknown model 'gemini-9-ultra'"),
    (["ask", "--task", "x", "--profile", "nope"], "unknown profile 'nope'"),
    (["ask", "--task", "x", "--thinking", "deep"], "thinking level"),
    (["ask", "--task", "x", "--context-file", "/nonexistent/ctx"], "/nonexistent/ctx"),
    (["ask", "--task", "x", "--image-file", pool.config_file], "not a PNG"),
    (["ask", "--task", ""], "empty"),
    (["status", "--bogus"], "--bogus"),
    (["reset", "k1", "k2"], "unexpected argument 'k2'"),
    (["reset", "nokey"], "unknown key id 'nokey'"),
    (["keys"], "check"),
    (["keys", "list"], "check"),
]
before = len(emu.log())
for args, words in bad:
    r = pool.run(*args)
    line = one_line_error(r)
    t.check(r.returncode == 2 and line is not None and words in line and r.stdout == b"",
            f"{' '.join(args)!r}: one-line error naming {words!r}, exit 2", r)
t.check(len(emu.log()) == before, "bad options send no request",
        emu.log(before))

# ---- bad configurations: the file, the place and the fix; exit 2 ----------------------
def config_case(name, text, words, env=None):
    path = os.path.join(t.dir, name)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(path, 0o600)
    for cmd in (["ask", "--task", "x"], ["status"], ["keys", "check"], ["reset", "all"]):
        r = pool.run(*cmd, "--config", path, env=env)
        line = one_line_error(r)
        ok = r.returncode == 2 and line is not None and r.stdout == b""
        ok = ok and all(w in line for w in words)
        t.check(ok, f"config {name} ({cmd[0]}): one line with {words}, exit 2", r)


config_case("syntax.json", '{"providers": {"gemini": {"keys": [\n  {"id": "a",}\n]}}}\n',
            ["syntax.json", "line 2"])
config_case("dup.json", json.dumps({"providers": {"gemini": {"keys": [
    {"id": "a", "api_key": "env:GKP_TEST_KEY_1"},
    {"id": "a", "api_key": "env:GKP_TEST_KEY_2"}]}}}), ["dup.json", "duplicate", '"a"'])
config_case("empty.json", json.dumps({"providers": {"gemini": {"keys": []}}}),
            ["empty.json", "empty"])
config_case("novar.json", json.dumps({"providers": {"gemini": {"keys": [
    {"id": "a", "api_key": "env:GKP_TEST_UNSET_VARIABLE"}]}}}),
    ["novar.json", "GKP_TEST_UNSET_VARIABLE"])
config_case("fallback.json", json.dumps({"providers": {"gemini": {"keys": [
    {"id": "a", "api_key": "env:GKP_TEST_KEY_1"}]}},
    "fallback": {M: "gemini-does-not-exist"}}), ["fallback.json", "gemini-does-not-exist"])
r = pool.run("status", "--config", os.path.join(t.dir, "missing.json"))
t.check(r.returncode == 2 and one_line_error(r) is not None and b"missing.json" in r.stderr,
        "a missing --config file: one line naming it, exit 2", r)

# ---- keys check ---------------------------------------------------------------------
since = len(emu.log())
r = pool.run("keys", "check")
lines = dict(re.findall(r"^(\S+)\s+(.*)$", r.stdout.decode(), re.M))
t.check(r.returncode == 1 and lines.get("k1", "").startswith("ok")
        and lines.get("k3", "").startswith("ok")
        and lines.get("k2", "").startswith("INVALID") and "leaked" in lines.get("k2", "")
        and lines.get("k4", "").startswith("INVALID") and "not valid" in lines.get("k4", ""),
        "keys check: ok / INVALID per key, exit 1 when some are invalid", r)
calls = emu.log(since)
t.check(sorted(c["key_name"] or "?" for c in calls) == ["?", "k1", "k2", "k3"]
        and all(c["action"] == "list" for c in calls), "keys check makes one models.list per key",
        calls)
st = pool.status()
t.check(len(emu.log()) == 4, "keys check was the first use of the keys", emu.log())
t.check(pool.key(st, "k2")["state"] == "disabled" and "leaked" in
        (pool.key(st, "k2")["disabled_reason"] or "")
        and pool.key(st, "k4")["state"] == "disabled"
        and pool.key(st, "k1")["state"] == "ready", "keys check disables the invalid keys",
        [(k["id"], k["state"], k["disabled_reason"]) for k in st["keys"]])

# ---- ask: stdout, --output, --json, --task -, executions.jsonl ---------------------------
since = len(emu.log())
# Without --model the pool routes: a short task goes to flash-lite.
ROUTED = "gemini-3.1-flash-lite-preview"
r = pool.ask("--task", "basics one", routed=True)
t.check(r.returncode == 0 and r.stdout.decode() == answer_of(ROUTED, "k1", "p1", "basics one")
        and r.stderr == b"", "ask prints exactly the answer of the first key (k1)", r)
out = os.path.join(t.dir, "answer.txt")
r = pool.ask("--task", "basics two", "--output", out)
with open(out, encoding="utf-8") as f:
    got = f.read()
t.check(r.returncode == 0 and r.stdout == b"" and got.startswith("[fake-gemini model=")
        and "You asked: basics two" in got, "--output FILE gets the answer, stdout nothing", r)
r = pool.ask("--task", "-", "--json", input=b"basics from stdin", routed=True)
try:
    doc = json.loads(r.stdout)
except ValueError:
    doc = {}
t.check(r.returncode == 0 and doc.get("status") == "done" and doc.get("model_used") == ROUTED
        and "You asked: basics from stdin" in doc.get("text", "")
        and doc.get("attempts", [{}])[-1].get("kind") == "ok",
        "--task - --json: the task from stdin, a JSON result", r)
used = {c["key_name"] for c in emu.log(since)}
t.check(used == {"k1", "k3"}, "keys disabled by keys check are not used by ask", used)
ex = pool.executions()
t.check(len(ex) == 3 and [e.get("status") for e in ex] == ["done"] * 3
        and ex[0].get("task_preview") == "basics one" and ex[0].get("key_id") == "k1",
        "executions.jsonl has one line per ask", ex)

# ---- status table shows cooldowns and disabled keys ---------------------------------------
emu.replay(body_file=os.path.join(ERRORS, "429_per_day_free_tier.json"), key="k1", count=1)
emu.replay(body_file=os.path.join(ERRORS, "503_model_overloaded.json"), key="k3", count=1)
r = pool.ask("--task", "cooling", "--model", "gemini-2.5-flash")
r = pool.run("status")
table = r.stdout.decode()
row1 = [ln for ln in table.splitlines() if ln.startswith("k1 ") and "gemini-2.5-flash " in ln]
t.check(r.returncode == 0 and table.startswith("KEY") and len(row1) == 1
        and re.search(r"rpd until \d\d:\d\d:\d\d UTC \(\d+h\d\dm\)", row1[0]),
        "status: the per-day cooldown of k1 on gemini-2.5-flash with its end", table)
t.check("k2 is disabled: " in table and "gemini-pool reset k2" in table,
        "status: a disabled key with its reason and the fix", table)
t.check(re.search(r"^next daily reset: \S+Z \(midnight Pacific\)$", table, re.M),
        "status: the next daily reset", table)

# ---- reset KEY, reset all ---------------------------------------------------------------
r = pool.run("reset", "k1")
st = pool.status()
m1 = pool.model(st, "k1", "gemini-2.5-flash")
t.check(r.returncode == 0 and m1.get("cooldown_until") == 0
        and m1.get("requests_today", 0) >= 1 and pool.key(st, "k2")["state"] == "disabled",
        "reset k1: its cooldown cleared, counts kept, other keys untouched", (r, m1))
r = pool.run("reset", "all")
st = pool.status()
t.check(r.returncode == 0 and all(k["state"] in ("ready", "cooling") and
                                  k["disabled_reason"] is None for k in st["keys"])
        and all(m["cooldown_until"] == 0 for k in st["keys"] for m in k["models"].values()),
        "reset all: every key enabled, every cooldown cleared",
        [(k["id"], k["state"]) for k in st["keys"]])
emu.ctl("POST", "/_emu/keys", {"name": "k2", "state": "ok"})
since = len(emu.log())
for i in range(3):
    pool.ask("--task", f"after reset {i}", "--model", "gemma-3-27b-it")
used = [c["key_name"] for c in emu.log(since)]
t.check("k2" in used, "after reset all the disabled key k2 is used again", used)

t.done()
