#!/usr/bin/env python3
"""Server trouble in the middle of an answer, through `gemini-pool ask`:
mid-stream 500/503 (bare JSON and `data:` events, and a replayed fixture),
connection resets, truncated and malformed streams, a server that never
answers (stall timeout) and the whole-task --timeout.

- Retried without duplicated text: stdout is exactly the deterministic answer
  of the key that finally served it -- rewound when stdout is a file, or
  continued when the retry begins with the very text already printed.  On a
  pipe a differing retry cannot be taken back: the run then fails in one line
  and the complete answer is in executions.jsonl.
- When every attempt fails: exit 1 and one line on stderr, never a crash."""

import os
import random
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clilib import (ERRORS, SLOW, Emu, Pool, T, answer_of, make_secret,  # noqa: E402
                    one_line_error)

t = T("cli-faults")
M = "gemini-3-flash-preview"
PROJECT = {"k1": "p1", "k2": "p2"}
keys = [{"key": make_secret("F1"), "name": "k1", "project": "p1"},
        {"key": make_secret("F2"), "name": "k2", "project": "p2"},
        # k3 never sends response headers, k4 stops after the first chunk: both
        # wait at an emulator gate nobody opens (start-up faults: they survive
        # /_emu/reset).
        {"key": make_secret("F3"), "name": "k3", "project": "p3",
         "faults": {"hold": "never"}},
        {"key": make_secret("F4"), "name": "k4", "project": "p4",
         "faults": {"hold_stream": "never"}}]
emu = Emu(t, {"projects": {"p1": {}, "p2": {}, "p3": {}, "p4": {}}, "keys": keys})
ids = [("k1", keys[0]["key"]), ("k2", keys[1]["key"])]
n_pools = 0


def new_pool(ids_=ids, config=None):
    global n_pools
    n_pools += 1
    return Pool(t, emu, ids_, name=f"pool{n_pools}", config=config)


class Run:
    """ask with stdout redirected to a regular file that already holds `header`
    (as `{ echo header; gemini-pool ask ...; } > file` does), started now."""

    def __init__(self, pool, task, *args, header=b"", env=None):
        self.path = os.path.join(pool.dir, f"out-{time.monotonic_ns()}.txt")
        self.out = open(self.path, "w+b")
        self.out.write(header)
        self.out.flush()
        e = dict(pool.env)
        e.update(env or {})
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(pool.cmd("ask", "--task", task, *args), stdout=self.out,
                                     stderr=subprocess.PIPE, env=e)
        self.thread = threading.Thread(target=self._wait)
        self.thread.start()

    def _wait(self):
        try:
            _, self.err = self.proc.communicate(timeout=120 * SLOW)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, self.err = self.proc.communicate()
        self.took = time.monotonic() - self.t0

    def result(self):
        self.thread.join()
        self.out.close()
        with open(self.path, "rb") as f:
            return subprocess.CompletedProcess(self.proc.args, self.proc.returncode, f.read(),
                                               self.err)


def ask_to_file(pool, task, header=b"", env=None):
    return Run(pool, task, header=header, env=env).result()


def served(pool, r, task, header=b""):
    """(ok, key): the run succeeded and its output is exactly the answer of the
    key executions.jsonl says served it."""
    ex = pool.executions()[-1]
    key = ex.get("key_id")
    ok = (r.returncode == 0 and ex.get("status") == "done" and key in PROJECT
          and r.stdout == header + answer_of(M, key, PROJECT[key], task).encode())
    return ok, key, ex


def kinds(since=0):
    return [(c["key_name"], c["kind"]) for c in emu.log(since)]


# ---- one bad key among good ones: retried on the other, stdout rewound --------------------
CASES = [
    ("mid-stream 500/503 (bare or data:)", {"p_midstream": 1}, "midstream"),
    ("connection reset mid-body", {"p_reset": 1}, "reset"),
    ("truncated stream", {"p_truncate": 1}, "truncate"),
    ("malformed stream event", {"p_malformed": 1}, "malformed"),
]
for what, fault, kind in CASES:
    emu.reset()
    emu.faults(scope="key", name="k1", **fault)
    pool = new_pool()
    task = f"fault {kind}"
    header = b"a header written before the answer\n"
    r = ask_to_file(pool, task, header=header)
    ok, key, ex = served(pool, r, task, header=header)
    t.check(ok and key == "k2" and r.stderr == b"",
            f"{what} on k1, stdout a file: exactly k2's answer after the header, exit 0",
            (r, ex))
    t.check(kinds() == [("k1", kind), ("k2", "ok")], f"{what}: k1 failed, k2 answered",
            kinds())
    t.check([a["kind"] for a in ex["attempts"]] == ["server", "ok"],
            f"{what}: the attempt is recorded as server trouble", ex["attempts"])

# Both mid-stream forms explicitly, and a replayed fixture body mid-stream.
for form in ("bare", "data"):
    emu.reset()
    emu.faults(scope="key", name="k1", p_midstream=1, midstream_form=form)
    pool = new_pool()
    r = ask_to_file(pool, f"form {form}")
    ok, key, ex = served(pool, r, f"form {form}")
    t.check(ok and key == "k2", f"mid-stream error as {form} JSON: exactly k2's answer", r)
emu.reset()
emu.replay(body_file=os.path.join(ERRORS, "503_model_overloaded.json"), midstream=True,
           key="k1", count=1)
pool = new_pool()
r = ask_to_file(pool, "replayed midstream")
ok, key, ex = served(pool, r, "replayed midstream")
t.check(ok and key == "k2" and kinds() == [("k1", "replay"), ("k2", "ok")],
        "a replayed 503 fixture mid-stream: exactly k2's answer", (r, kinds()))

# ---- stdout a pipe: the printed part of k1's answer cannot be taken back ------------------
emu.reset()
emu.faults(scope="key", name="k1", p_midstream=1)
pool = new_pool()
r = pool.ask("--task", "piped")
line = one_line_error(r)
first = answer_of(M, "k1", "p1", "piped").encode()
final = answer_of(M, "k2", "p2", "piped")
ex = pool.executions()[-1]
t.check(r.returncode == 1 and line is not None and "retry differed" in line,
        "pipe, differing retry: exit 1 with one line saying so", r)
t.check(0 < len(r.stdout) < len(first) and first.startswith(r.stdout),
        "pipe, differing retry: stdout holds only a prefix of k1's answer (never two joined)",
        r.stdout)
t.check(ex.get("status") == "done" and ex.get("text") == final,
        "pipe, differing retry: the complete answer is in executions.jsonl, as the line says",
        ex)

# ---- one key: the retry goes to the same key, whose answer continues the text ----------------
def seed_for(pattern, p):
    """An emulator --seed whose requests 1, 2, ... draw a fault (True) or not
    (False) for probability p (the emulator's documented derivation)."""
    for s in range(100000):
        if all((random.Random(f"{s}:{i + 1}").random() < p) == want
               for i, want in enumerate(pattern)):
            return s
    raise RuntimeError("no seed")


seed = seed_for([True, False], 0.5)
emu1 = Emu(t, {"projects": {"p1": {}}, "keys": [keys[0]]}, "--seed", str(seed), name="emu1")
for form in ("bare", "data"):
    emu1.reset()  # request numbering starts again at 1: fault, then none
    emu1.faults(scope="key", name="k1", p_midstream=0.5, midstream_form=form)
    pool = Pool(t, emu1, [ids[0]], name=f"single-{form}")
    task = f"continue {form}"
    r = pool.ask("--task", task)
    log = [(c["key_name"], c["kind"]) for c in emu1.log()]
    t.check(log == [("k1", "midstream"), ("k1", "ok")],
            f"one key, mid-stream ({form}): the same key is asked again", log)
    t.check(r.returncode == 0 and r.stdout.decode() == answer_of(M, "k1", "p1", task)
            and r.stderr == b"",
            f"one key, mid-stream ({form}), stdout a pipe: exactly the answer, no text twice",
            r)
emu1.stop()

# ---- a server that never answers: the stall timeout moves on to another key ----------------
# Three runs at once (each needs several seconds of waiting): k3 sends no
# headers, k4 stops after its first chunk, and a run with only k3 and --timeout.
stall = {"GEMINI_POOL_STALL_TIMEOUT": "1"}
emu.reset()
pa = new_pool([("k3", keys[2]["key"]), ids[1]])
pb = new_pool([("k4", keys[3]["key"]), ids[1]])
pc = new_pool([("k3", keys[2]["key"])])
runs = [Run(pa, "stalled", env=stall), Run(pb, "stalled mid-body", env=stall),
        Run(pc, "no patience", "--timeout", "2")]
(ra, rb, rc), took = [run.result() for run in runs], [run.took for run in runs]
ok, key, ex = served(pa, ra, "stalled")
# k3 never answers: a run that did not give up on it would hang until the hang
# guard; how long giving up took is a figure.
t.check(ok and key == "k2",
        f"no response headers from k3: given up (stall timeout), k2 answers ({took[0]:.1f} s)",
        (ra, ex))
t.check(ex["attempts"][0]["kind"] == "server" and ex["attempts"][0]["http_status"] == 0,
        "the stalled attempt counts as server trouble (transport failure)", ex["attempts"])
ok, key, ex = served(pb, rb, "stalled mid-body")
t.check(ok and key == "k2",
        f"k4 stops sending mid-stream: given up, exactly k2's answer ({took[1]:.1f} s)",
        (rb, ex))
# The whole task's --timeout ends a run that would otherwise wait.
line = one_line_error(rc)
t.check(rc.returncode == 1 and line is not None and "timed out" in line,
        f"--timeout 2 with a silent service: one line 'timed out', exit 1 ({took[2]:.1f} s)",
        rc)

# ---- every request fails: a clean error, never a crash --------------------------------------
for what, fault in [("resets", {"p_reset": 1}), ("truncated bodies", {"p_truncate": 1}),
                    ("malformed bodies", {"p_malformed": 1}), ("500s", {"p500": 1}),
                    ("mid-stream errors", {"p_midstream": 1})]:
    emu.reset()
    emu.faults(scope="global", **fault)
    pool = new_pool(config={"fallback": {M: None}})  # one model: 3 attempts, then give up
    r = pool.ask("--task", f"always {what}")
    line = one_line_error(r)
    t.check(r.returncode == 1 and line is not None,
            f"always {what}: exit 1 and one line on stderr", r)
    n = len(emu.log())
    t.check(n == 3, f"always {what}: retried twice and gave up ({n} requests)", kinds())
t.done()
