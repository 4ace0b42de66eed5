#!/usr/bin/env python3
"""`gemini-pool ask` streams: the emulator holds the stream after its first chunk
(a gate this test opens), and meanwhile the first bytes reach stdout -- a pipe
read by this test -- and the --output file; once the rest comes, the pieces make
up exactly the answer.  No clock is judged: waits are for events, with hang guards."""

import os
import select
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clilib import SLOW, Emu, Pool, T, answer_of, make_secret  # noqa: E402

t = T("cli-streaming")
M = "gemini-3-flash-preview"
BYTES = 1600  # 16 chunks
keys = [{"key": make_secret("S1"), "name": "k1", "project": "p1",
         "faults": {"answer_bytes": BYTES}}]
emu = Emu(t, {"projects": {"p1": {}}, "keys": keys})
pool = Pool(t, emu, [("k1", keys[0]["key"])])
want = answer_of(M, "k1", "p1", "stream to a pipe", BYTES).encode()

GUARD = 120 * SLOW  # every wait's hang guard


def held(name: str) -> int:
    gate = emu.ctl("GET", "/_emu/gates")["gates"].get(name, {"open": True})
    return 0 if gate["open"] else gate["waiting"]


def wait_for(predicate) -> bool:
    deadline = time.monotonic() + GUARD
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


# ---- stdout a pipe ----------------------------------------------------------------------
emu.faults(scope="key", name="k1", hold_stream="pipe")
proc = subprocess.Popen(pool.cmd("ask", "--task", "stream to a pipe"), stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE, env=pool.env)
fd = proc.stdout.fileno()
pieces = []
ready, _, _ = select.select([fd], [], [], GUARD)
first = os.read(fd, 65536) if ready else b""
pieces.append(first)
rest_held = held("pipe")
running = proc.poll() is None
emu.ctl("POST", "/_emu/gates", {"name": "pipe", "open": True})
while True:
    ready, _, _ = select.select([fd], [], [], GUARD)
    if not ready:
        break
    data = os.read(fd, 65536)
    if not data:
        break
    pieces.append(data)
try:
    proc.wait(timeout=GUARD)
except subprocess.TimeoutExpired:
    proc.kill()
    proc.wait()
err = proc.stderr.read()
got = b"".join(pieces)
t.check(proc.returncode == 0 and got == want and err == b"",
        "the pipe receives exactly the answer, exit 0", (proc.returncode, got[:200], err))
t.check(first and rest_held == 1 and running,
        f"the first bytes ({len(first)}) arrive while the rest of the answer is still held "
        f"and the process runs", (len(first), rest_held, running))
t.check(want.startswith(first) and len(first) < len(want),
        "the first piece is the beginning of the answer", first[:80])
t.log(f"the answer came in {len(pieces)} reads")

# ---- --output FILE grows while the answer streams --------------------------------------
out = os.path.join(t.dir, "streamed.txt")
emu.faults(scope="key", name="k1", hold_stream="file")
proc = subprocess.Popen(pool.cmd("ask", "--task", "stream to a file", "--output", out),
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=pool.env)


def partial() -> int:
    try:
        return os.path.getsize(out)
    except OSError:
        return 0


grew = wait_for(lambda: partial() > 0 or proc.poll() is not None)
size_held, rest_held = partial(), held("file")
emu.ctl("POST", "/_emu/gates", {"name": "file", "open": True})
try:
    proc.communicate(timeout=GUARD)
except subprocess.TimeoutExpired:
    proc.kill()
    proc.communicate()
with open(out, "rb") as f:
    data = f.read()
full = answer_of(M, "k1", "p1", "stream to a file", BYTES).encode()
t.check(proc.returncode == 0 and data == full, "--output gets exactly the answer",
        (proc.returncode, data[:200]))
t.check(grew and 0 < size_held < len(full) and rest_held == 1,
        f"--output grows while streaming ({size_held} of {len(full)} bytes while the rest "
        f"was held)", (size_held, rest_held))
t.done()
