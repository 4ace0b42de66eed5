"""An upstream that echoes a key, whole or with a character changed, gets no run of 8
characters of any configured key into anything stored or shown: the state file,
executions.jsonl, the spool, the daemon's log, .err, status files, stderr.
"""

from __future__ import annotations

import json
import os
import sqlite3
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from seclib import SLOW, Emu, Pool, T, key_runs, make_secret, scan_runs, scan_tree  # noqa: E402

t = T("security-redaction")
k1, k2 = make_secret("REDONE"), make_secret("REDTWO")


def altered(key: str) -> str:
    mid = len(key) // 2
    return key[:mid] + ("x" if key[mid] != "x" else "y") + key[mid + 1:]


emu = Emu(t, {"keys": [{"key": k1, "name": "k1", "project": "p1"},
                       {"key": k2, "name": "k2", "project": "p2"}]})
pool = Pool(t, emu, [("k1", k1), ("k2", k2)])
runs = key_runs([k1, k2])


def echoing_errors() -> None:
    emu.replay(status=400, key="k1", body_json={"error": {
        "code": 400, "status": "INVALID_ARGUMENT",
        "message": f"API key not valid. Please pass a valid API key: {altered(k1)}",
        "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                     "reason": "API_KEY_INVALID", "domain": "googleapis.com"}]}})
    emu.replay(status=400, key="k2", body_json={"error": {
        "code": 400, "status": "INVALID_ARGUMENT",
        "message": f"Request contains an invalid argument near '{altered(k2)}' ({k1[3:20]})"}})


# ---- the command ---------------------------------------------------------------------
echoing_errors()
r = pool.ask("--task", "hello", "--model", "gemini-2.5-flash")
t.check(r.returncode == 1, "the job fails with the upstream's messages", r)
t.check(b"invalid argument" in r.stderr, "... and says why", r)
seen = scan_runs(r.stdout + r.stderr, runs)
t.check(not seen, "no run of 8 characters of a key on stdout or stderr", seen)
r = pool.run("status", "--json")
seen = scan_runs(r.stdout + r.stderr, runs)
t.check(r.returncode == 0 and b"API key not valid" in r.stdout and not seen,
        "status shows the stored errors without any run of a key", (seen, r.stdout[:400]))
found = scan_tree(os.path.dirname(pool.state_file), runs)
t.check(not found, "none in the state file nor executions.jsonl", found)
with open(pool.state_file, "rb") as f:
    t.check(b"API key not valid" in f.read(), "(the state file does keep the error)")

# ---- the daemon -----------------------------------------------------------------------
if not os.path.exists("/dev/fuse") or shutil.which("fusermount3") is None:
    print("SKIP: the daemon's part needs /dev/fuse and fusermount3")
    t.done()
pool.run("reset", "all")
emu.reset()
echoing_errors()
mnt = os.path.join(t.dir, "mnt")
os.makedirs(mnt)
log_path = os.path.join(t.dir, "daemon.log")
log = open(log_path, "wb")
daemon = subprocess.Popen(pool.cmd("mount", mnt, "-f"), env=pool.env, stdout=log,
                          stderr=subprocess.STDOUT)
t.on_exit(lambda: subprocess.run(["fusermount3", "-u", "-z", mnt], stderr=subprocess.DEVNULL))
deadline = time.monotonic() + 20 * SLOW
while time.monotonic() < deadline and not os.path.exists(os.path.join(mnt, "README")):
    time.sleep(0.05)
t.require(os.path.exists(os.path.join(mnt, "README")), "the daemon mounts")
with open(os.path.join(mnt, "flash-2.5", "job"), "w") as f:
    f.write("hello")
try:
    with open(os.path.join(mnt, "flash-2.5", "job.out"), "rb") as f:
        f.read()
except OSError:
    pass
with open(os.path.join(mnt, "flash-2.5", "job.err"), "rb") as f:
    err = f.read()
shown = err
for name in ("status/pool", "status/pool.json", "status/jobs", "status/metrics",
             "flash-2.5/job.json", "status/keys/k1", "status/keys/k2"):
    try:
        with open(os.path.join(mnt, name), "rb") as f:
            shown += f.read()
    except OSError:
        pass
t.check(b"invalid argument" in err, "job.err says why", err[:300])
seen = scan_runs(shown, runs)
t.check(not seen, "no run of a key in .err, the job's metadata or status/", seen)
subprocess.run(["fusermount3", "-u", mnt])
daemon.wait(timeout=30)
log.close()
jobs_db = os.path.join(os.path.dirname(pool.state_file), "jobs.db")
stored = sqlite3.connect(jobs_db).execute(
    "SELECT count(*) FROM jobs WHERE profile = 'flash-2.5' AND name = 'job' AND meta IS NOT NULL"
).fetchone()[0]
t.check(stored == 1, "the job is kept in the job store", stored)
found = scan_tree(os.path.dirname(pool.state_file), runs)
with open(log_path, "rb") as f:
    found += [("daemon log", r) for r in scan_runs(f.read(), runs)]
t.check(not found, "no run of a key in the job store, the state file or the daemon's log", found)
t.done()
