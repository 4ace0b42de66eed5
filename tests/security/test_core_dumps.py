"""Keys stay out of core dumps.

gemini-pool (the command and the daemon) is started with `ulimit -c unlimited` and
killed with SIGSEGV: no core file appears (RLIMIT_CORE is 0 in /proc/PID/limits, and
the process is not dumpable).  In the running daemon, every copy of a key (read from
.env, so not in the environment) lies on pages marked MADV_DONTDUMP ("dd" in
/proc/PID/smaps), which a core dump never contains.
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from seclib import BINARY, SLOW, Emu, Pool, T, make_secret  # noqa: E402

with open(BINARY, "rb") as f:
    if b"__asan_init" in f.read():
        # A sanitizer catches the SIGSEGV itself and maps terabytes of shadow memory.
        print("SKIP: core dumps are checked in the normal build, not under sanitizers")
        sys.exit(77)
t = T("security-core")
with open("/proc/sys/kernel/core_pattern") as f:
    pattern = f.read().strip()
core_files_visible = not pattern.startswith("|") and "/" not in pattern


def unlimited_core() -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    os.setsid()


def core_limit(pid: int) -> str | None:
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max core file size"):
                return " ".join(line.split()[4:6])
    return None


def crash_and_look(proc: subprocess.Popen, what: str, cwd: str) -> None:
    """Kills proc with SIGSEGV and looks for a core file where it would be written:
    its working directory (`cwd` where /proc does not say; the daemon's is / by
    then)."""
    try:
        cwd = os.readlink(f"/proc/{proc.pid}/cwd")
    except OSError:
        pass
    before = {n for n in os.listdir(cwd) if n.startswith("core")}
    limit = core_limit(proc.pid)
    t.check(limit == "0 0", f"{what}: RLIMIT_CORE is 0 ({limit!r})")
    os.kill(proc.pid, signal.SIGSEGV)
    proc.wait(timeout=30)
    t.check(proc.returncode == -signal.SIGSEGV, f"{what}: died of SIGSEGV ({proc.returncode})")
    time.sleep(0.3)
    cores = sorted({n for n in os.listdir(cwd) if n.startswith("core")} - before)
    for name in cores:  # never leave one behind, it holds keys
        os.unlink(os.path.join(cwd, name))
    if core_files_visible:
        t.check(not cores, f"{what}: no core file in its directory ({cwd})", cores)
    else:
        print(f"(core_pattern is {pattern!r}: the core file itself cannot be looked for)")


# The emulator answers after 30 s, so that the command is busy when it is killed.
emu = Emu(t, {"keys": [{"key": "FAKE-SEC-CORE-1", "name": "k1", "project": "p1"}]},
          "--latency-ms", "30000")
pool = Pool(t, emu, [("k1", "FAKE-SEC-CORE-1")])

# ---- the command ------------------------------------------------------------------
cwd = os.path.join(t.dir, "ask-cwd")
os.makedirs(cwd)
proc = subprocess.Popen(pool.cmd("ask", "--task", "hello"), cwd=cwd, env=pool.env,
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                        preexec_fn=unlimited_core)
time.sleep(1.5 * SLOW)
t.check(proc.poll() is None, "gemini-pool ask is waiting for its answer")
crash_and_look(proc, "ask", cwd)

# ---- the daemon ---------------------------------------------------------------------
if not os.path.exists("/dev/fuse") or shutil.which("fusermount3") is None:
    print("SKIP: the daemon's part needs /dev/fuse and fusermount3")
    t.done()
secret = make_secret("CORE")
conf = os.path.join(t.dir, "conf")
os.makedirs(conf, mode=0o700)
with open(os.path.join(conf, "keys.json"), "w") as f:
    f.write('{"providers": {"gemini": {"keys": [{"id": "c", "api_key": "env:GKP_CORE_KEY"}]}}}')
with open(os.path.join(conf, ".env"), "w") as f:
    f.write(f"GKP_CORE_KEY={secret}\n")
os.chmod(os.path.join(conf, ".env"), 0o600)
mnt = os.path.join(t.dir, "mnt")
cwd = os.path.join(t.dir, "daemon-cwd")
os.makedirs(mnt)
os.makedirs(cwd)
env = {k: v for k, v in pool.env.items() if not k.startswith("GKP_TEST_KEY")}
daemon = subprocess.Popen(pool.cmd("mount", mnt, "-f", "--config",
                                   os.path.join(conf, "keys.json"), "--state",
                                   os.path.join(t.dir, "dstate", "state.db")),
                          cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, preexec_fn=unlimited_core)
t.on_exit(lambda: subprocess.run(["fusermount3", "-u", "-z", mnt], stderr=subprocess.DEVNULL))
deadline = time.monotonic() + 20 * SLOW
while time.monotonic() < deadline and not os.path.exists(os.path.join(mnt, "README")):
    time.sleep(0.05)
t.require(os.path.exists(os.path.join(mnt, "README")), "the daemon mounts")

# Where the key is in the daemon's memory, and whether those pages are dumped.
try:
    hits, plain = 0, []
    with open(f"/proc/{daemon.pid}/smaps") as f:
        smaps = f.read()
    regions = re.findall(r"^([0-9a-f]+)-([0-9a-f]+) (\S+)[^\n]*\n(?:(?![0-9a-f]+-)[^\n]*\n)*?"
                         r"VmFlags: ([^\n]*)", smaps, re.M)
    with open(f"/proc/{daemon.pid}/mem", "rb", buffering=0) as mem:
        for lo, hi, perms, flags in regions:
            if "r" not in perms:
                continue
            try:
                mem.seek(int(lo, 16))
                data = mem.read(int(hi, 16) - int(lo, 16))
            except (OSError, ValueError, OverflowError):
                continue
            n = data.count(secret.encode())
            hits += n
            if n and " dd" not in " " + flags:
                plain.append((lo, hi, flags))
    t.check(hits >= 1, f"the daemon holds the key ({hits} copies found)")
    t.check(not plain, "every copy lies on MADV_DONTDUMP pages", plain)
except PermissionError as exc:
    print(f"(cannot read the daemon's memory here: {exc}; that part is skipped)")

crash_and_look(daemon, "the daemon", "/")
t.done()
