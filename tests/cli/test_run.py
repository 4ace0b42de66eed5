"""scripts/run with the demo pool: the banner names the binary and gives one
`export` line that points the CLI at the demo pool (checked by running
`gemini-pool status` and `ask` with it); and `scripts/run | tee log` ended
like Ctrl-C after the reader of its stdout is gone leaves no daemon, no
mount, no emulator and no demo keys.  Skipped (77) without /dev/fuse."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time

from clilib import BINARY, SLOW, T

if not os.path.exists("/dev/fuse") or not os.access("/dev/fuse", os.R_OK | os.W_OK):
    print("SKIP: /dev/fuse is missing or not accessible (scripts/run mounts)", flush=True)
    sys.exit(77)

t = T("cli-run")
ROOT = os.environ.get("GKP_SOURCE_ROOT", os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("GKP_BUILD_ROOT", os.path.dirname(os.path.dirname(os.path.dirname(BINARY))))
env = {k: v for k, v in os.environ.items()
       if not k.startswith(("GEMINI_POOL", "GOOGLE_GEMINI", "XDG_"))}
env.update({"GKP_RUN_SKIP_INSTALL": "1", "GKP_BUILD_DIR": BUILD, "TMPDIR": t.dir,
            "HOME": t.dir, "XDG_CONFIG_HOME": os.path.join(t.dir, "config")})


def procs_mentioning(text: str) -> list:
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if text.encode() in f.read():
                    out.append(int(pid))
        except OSError:
            pass
    return out


def mounted(path: str) -> bool:
    with open("/proc/mounts", encoding="utf-8") as f:
        return any(line.split()[1] == path for line in f)


def start(name: str):
    mnt = os.path.join(t.dir, name)
    log = os.path.join(t.dir, name + ".log")
    # Like a terminal: `scripts/run MNT | tee LOG`, one process group.
    p = subprocess.Popen(["bash", "-c", f"{shlex.quote(ROOT)}/scripts/run {shlex.quote(mnt)} "
                          f"| tee {shlex.quote(log)} >/dev/null"], env=env, cwd=t.dir,
                         start_new_session=True)
    t.on_exit(lambda: subprocess.run(["fusermount3", "-uz", mnt], stderr=subprocess.DEVNULL))
    deadline = time.monotonic() + 300 * SLOW
    text = ""
    while time.monotonic() < deadline and p.poll() is None:
        text = open(log, encoding="utf-8", errors="replace").read() if os.path.exists(log) else ""
        if "Press Ctrl-C here to unmount" in text:
            break
        time.sleep(0.1)
    t.require("Press Ctrl-C here to unmount" in text, f"{name}: scripts/run mounts the demo pool",
              text[-2000:])
    return p, mnt, text


def gone_after(pattern_pids, mnt, tmp, what):
    deadline = time.monotonic() + 60 * SLOW  # a hang guard
    while time.monotonic() < deadline:
        if not procs_mentioning(mnt) and not mounted(mnt) and not os.path.exists(tmp):
            break
        time.sleep(0.1)
    t.check(not procs_mentioning(mnt), f"{what}: no daemon left", procs_mentioning(mnt))
    t.check(not mounted(mnt), f"{what}: nothing left mounted")
    t.check(not os.path.exists(tmp), f"{what}: the demo keys (.env) are removed", tmp)
    t.check(not [p for p in pattern_pids if os.path.exists(f"/proc/{p}")],
            f"{what}: the emulator is stopped")


# ---- the banner, then Ctrl-C with the reader of stdout gone first --------------------------
p, mnt, text = start("a")
t.check(f"The command is {BINARY}" in text or re.search(r"The command is \S+/gemini-pool", text),
        "the banner names the binary's path", text[-1500:])
lines = [ln.strip() for ln in text.splitlines() if ln.strip().startswith("export ")]
t.check(len(lines) == 1, "the banner has one export line", lines)
exports = {}
for word in shlex.split(lines[0])[1:] if lines else []:
    k, _, v = word.partition("=")
    exports[k] = v.replace("$PATH", os.environ.get("PATH", ""))
tmp = os.path.dirname(exports.get("GEMINI_POOL_CONFIG", "/nonexistent/x"))
cli_env = dict(env)
cli_env.update(exports)


def cli(*args):
    try:
        return subprocess.run(["gemini-pool", *args], env=cli_env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=60 * SLOW)
    except FileNotFoundError as exc:
        return subprocess.CompletedProcess(args, 127, b"", str(exc).encode())


r = cli("status", "--json")
t.check(r.returncode == 0 and b"demo-1" in r.stdout,
        "with the export line, `gemini-pool status` (found on PATH) reads the demo pool", r)
r = cli("ask", "--task", "hello demo")
t.check(r.returncode == 0 and r.stdout, "... and `ask` is answered by the demo pool", r)
if not lines:  # the demo directory, as the old banner did not say it
    found = [d for d in os.listdir(t.dir) if d.startswith("gemini-pool-demo.")]
    tmp = os.path.join(t.dir, found[0]) if found else tmp
emu = procs_mentioning(os.path.join(tmp, "emu-keys.json"))
t.check(len(emu) == 1, "the emulator runs", emu)

# The reader of the pipe dies first (as tee does on Ctrl-C), then the script gets SIGINT.
tees = [pid for pid in procs_mentioning("tee") if os.getpgid(pid) == p.pid]
for pid in tees:
    os.kill(pid, signal.SIGKILL)
time.sleep(0.5)
os.killpg(p.pid, signal.SIGINT)
try:
    p.wait(timeout=120 * SLOW)
except subprocess.TimeoutExpired:
    p.kill()
gone_after(emu, mnt, tmp, "Ctrl-C with stdout closed")

# ---- the same, everyone at once (a real Ctrl-C) ----------------------------------------------
p, mnt, text = start("b")
lines = [ln.strip() for ln in text.splitlines() if ln.strip().startswith("export ")]
tmp = os.path.dirname(dict(w.partition("=")[::2] for w in shlex.split(lines[0])[1:])
                      .get("GEMINI_POOL_CONFIG", "/x/x")) if lines else "/nonexistent"
if not lines:
    found = [d for d in os.listdir(t.dir) if d.startswith("gemini-pool-demo.")]
    tmp = os.path.join(t.dir, found[-1]) if found else tmp
emu = procs_mentioning(os.path.join(tmp, "emu-keys.json"))
os.killpg(p.pid, signal.SIGINT)
try:
    p.wait(timeout=120 * SLOW)
except subprocess.TimeoutExpired:
    p.kill()
gone_after(emu, mnt, tmp, "Ctrl-C to the whole pipeline")

# ---- global options before the command ----------------------------------------------------
r = subprocess.run([BINARY, "--state", os.path.join(t.dir, "st", "state.db"), "--config",
                    os.path.join(ROOT, "keys.json.example"), "status"], env=env,
                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60 * SLOW)
err = r.stderr.decode()
t.check("unknown command" not in err and "GEMINI_KEY_PROJECT_1" in err,
        "--state and --config before the command are taken as the command's", err)
r = subprocess.run([BINARY, "--state"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                   timeout=60)
t.check(r.returncode == 2 and r.stderr.decode().strip() == "gemini-pool: --state needs a value",
        "a global option without its value: one line", r.stderr)
t.done()
