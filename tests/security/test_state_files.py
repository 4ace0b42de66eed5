"""The state file, the spool, the logs: in a directory of the user's own, and never
written through a link or into a file someone planted.

- a state directory another user owns (and can write) is refused, naming the directory,
  its owner, its mode and the fix; so is one inside a directory another user can write;
- a symbolic link at the state file, at executions.jsonl, at a spooled prompt, at the
  name the spool's temporary files had, or at the daemon's log is never followed: the
  file it points to stays untouched.
"""

from __future__ import annotations

import os
import sqlite3
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from seclib import BINARY, SLOW, Emu, Pool, T, one_line_error  # noqa: E402

t = T("security-state")
emu = Emu(t, {"keys": [{"key": "FAKE-SEC-STATE-1", "name": "k1", "project": "p1"}]})
pool = Pool(t, emu, [("k1", "FAKE-SEC-STATE-1")])
VICTIM_TEXT = b"the victim's file, which nothing may change\n"


def victim(name: str) -> str:
    path = os.path.join(t.dir, name)
    with open(path, "wb") as f:
        f.write(VICTIM_TEXT)
    return path


def untouched(path: str) -> bool:
    with open(path, "rb") as f:
        return f.read() == VICTIM_TEXT


# ---- directories of another user -------------------------------------------------
if os.geteuid() == 0:
    shared = os.path.join(t.dir, "shared")
    os.makedirs(shared)
    os.chown(shared, 65534, 65534)
    os.chmod(shared, 0o777)
    r = pool.run("status", "--state", os.path.join(shared, "state.db"))
    line = one_line_error(r)
    t.check(r.returncode != 0 and line is not None and shared in line and "nobody" in line
            and "0777" in line and "chmod 700" in line,
            "a state directory owned by nobody, mode 0777: refused, naming owner, mode, fix", r)
    t.check(os.listdir(shared) == [], "... and nothing was created in it", os.listdir(shared))
    mine = os.path.join(shared, "mine")
    os.makedirs(mine)
    os.chmod(shared, 0o775)  # not sticky: nobody could rename "mine" away
    r = pool.run("status", "--state", os.path.join(mine, "state.db"))
    line = one_line_error(r)
    t.check(r.returncode != 0 and line is not None and shared in line,
            "a state directory inside a directory another user can write: refused", r)
    os.chown(shared, 0, 0)
    os.chmod(shared, 0o1777)  # root's and sticky, like /tmp: fine as a parent
    r = pool.run("status", "--state", os.path.join(mine, "state.db"))
    t.check(r.returncode == 0, "... fine under a sticky one like /tmp", r)
else:
    print("(not root: the tests with a directory of another user are skipped)")

group_writable = os.path.join(t.dir, "gw")
os.makedirs(group_writable)
os.chmod(group_writable, 0o770)
r = pool.run("status", "--state", os.path.join(group_writable, "state.db"))
line = one_line_error(r)
t.check(r.returncode != 0 and line is not None and "0770" in line,
        "a group-writable state directory: refused", r)

# ---- a link at the state file ----------------------------------------------------
target = victim("victim-state")
linkdir = os.path.join(t.dir, "linked")
os.makedirs(linkdir, mode=0o700)
os.symlink(target, os.path.join(linkdir, "state.db"))
r = pool.run("status", "--state", os.path.join(linkdir, "state.db"))
line = one_line_error(r)
t.check(r.returncode != 0 and line is not None and "symbolic link" in line,
        "a symbolic link at the state file: refused", r)
t.check(untouched(target), "... its target untouched")

# ---- a link at executions.jsonl ------------------------------------------------------
target = victim("victim-executions")
os.symlink(target, os.path.join(os.path.dirname(pool.state_file), "executions.jsonl"))
r = pool.ask("--task", "hello")
t.check(r.returncode == 0, "ask works with a link planted at executions.jsonl", r)
t.check(untouched(target), "... and the link's target is untouched")

# ---- the daemon: spool and log -----------------------------------------------------
if not os.path.exists("/dev/fuse") or shutil.which("fusermount3") is None:
    print("SKIP: the mount tests need /dev/fuse and fusermount3")
    t.done()

state_dir = os.path.dirname(pool.state_file)
spool_flash = os.path.join(state_dir, "spool", "flash")
os.makedirs(spool_flash, mode=0o700)
os.chmod(os.path.join(state_dir, "spool"), 0o700)
prompt_target = victim("victim-prompt")
log_target = victim("victim-log")
os.symlink(prompt_target, os.path.join(spool_flash, "planted.prompt"))
os.symlink(log_target, os.path.join(state_dir, "mount.log"))
mnt = os.path.join(t.dir, "mnt")
os.makedirs(mnt)
r = subprocess.run(pool.cmd("mount", mnt, "--config", pool.config_file, "--state",
                            pool.state_file), env=pool.env, stdout=subprocess.PIPE,
                   stderr=subprocess.PIPE, timeout=60)
mounted = False
deadline = time.monotonic() + 20 * SLOW
while time.monotonic() < deadline:
    if os.path.exists(os.path.join(mnt, "README")):
        mounted = True
        break
    time.sleep(0.05)
t.on_exit(lambda: subprocess.run(["fusermount3", "-u", "-z", mnt], stderr=subprocess.DEVNULL))
t.check(untouched(log_target), "the daemon does not write its log through a planted link", r)
if not mounted:
    t.check(False, "the daemon mounts (in the background)", r)
    t.done()

with open(os.path.join(mnt, "flash", "answer"), "w") as f:
    f.write("an answer that must not land in the planted file")
with open(os.path.join(mnt, "flash", "answer.out"), "rb") as f:
    answer = f.read()
t.check(b"fake-gemini" in answer, "a job runs", answer[:200])
try:
    with open(os.path.join(mnt, "flash", "planted"), "w") as f:
        f.write("a prompt that must not land in the planted file")
    with open(os.path.join(mnt, "flash", "planted.out"), "rb") as f:
        f.read()
except OSError:
    pass  # refusing the job is fine; writing through the link is not
subprocess.run(["fusermount3", "-u", mnt])
deadline = time.monotonic() + 10 * SLOW
while time.monotonic() < deadline and os.path.exists(os.path.join(mnt, "README")):
    time.sleep(0.05)
stored = sqlite3.connect(os.path.join(state_dir, "jobs.db")).execute(
    "SELECT count(*) FROM jobs WHERE name = 'answer' AND meta IS NOT NULL").fetchone()[0]
t.check(stored == 1, "the answer is kept in the job store", stored)
t.check(untouched(prompt_target), "a link at an old spooled prompt's name: untouched (not imported)")
t.check(not os.path.exists(os.path.join(state_dir, "spool")), "the old spool is removed")

# ---- a link at the job store ----------------------------------------------------------
db_target = victim("victim-jobs-db")
state2 = os.path.join(t.dir, "state2")
os.makedirs(state2, mode=0o700)
os.symlink(db_target, os.path.join(state2, "jobs.db"))
mnt2 = os.path.join(t.dir, "mnt2")
os.makedirs(mnt2)
r = subprocess.run(pool.cmd("mount", mnt2, "-f", "--config", pool.config_file, "--state",
                            os.path.join(state2, "state.db")), env=pool.env,
                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
subprocess.run(["fusermount3", "-u", "-z", mnt2], stderr=subprocess.DEVNULL)
t.check(r.returncode != 0, "a mount whose jobs.db is a planted link refuses to serve", r)
t.check(untouched(db_target), "... and the link's target is untouched")
t.done()
