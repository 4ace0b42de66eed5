#!/usr/bin/env python3
"""`gemini-pool ask` streams: with a slow stream (the emulator waits between
chunks) the first bytes reach stdout -- a pipe read by this test -- and the
--output file well before the process exits, in several pieces, and the
pieces make up exactly the answer."""

import os
import select
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clilib import SLOW, Emu, Pool, T, answer_of, make_secret  # noqa: E402

t = T("cli-streaming")
M = "gemini-3-flash-preview"
DELAY_MS, BYTES = 250, 1600  # 16 chunks: about 4 s from first to last
keys = [{"key": make_secret("S1"), "name": "k1", "project": "p1",
         "faults": {"chunk_delay_ms": DELAY_MS, "answer_bytes": BYTES}}]
emu = Emu(t, {"projects": {"p1": {}}, "keys": keys})
pool = Pool(t, emu, [("k1", keys[0]["key"])])
want = answer_of(M, "k1", "p1", "stream to a pipe", BYTES).encode()

# ---- stdout a pipe ----------------------------------------------------------------------
t0 = time.monotonic()
proc = subprocess.Popen(pool.cmd("ask", "--task", "stream to a pipe"), stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE, env=pool.env)
pieces = []  # (seconds since start, bytes)
fd = proc.stdout.fileno()
deadline = t0 + 60 * SLOW
while time.monotonic() < deadline:
    ready, _, _ = select.select([fd], [], [], 1)
    if not ready:
        continue
    data = os.read(fd, 65536)
    if not data:
        break
    pieces.append((time.monotonic() - t0, data))
proc.wait(timeout=30 * SLOW)
end = time.monotonic() - t0
err = proc.stderr.read()
got = b"".join(p for _, p in pieces)
t.check(proc.returncode == 0 and got == want and err == b"",
        "the pipe receives exactly the answer, exit 0", (proc.returncode, got[:200], err))
first = pieces[0][0] if pieces else end
t.check(first < end - 2.0, f"the first bytes arrive {end - first:.1f} s before the process "
        f"exits (first at {first:.1f} s, exit at {end:.1f} s)", [round(s, 2) for s, _ in pieces])
spread = [s for s, _ in pieces if s < end - 1.0]
t.check(len(pieces) >= 8 and len(spread) >= 6,
        f"the answer arrives in many pieces over time ({len(pieces)} reads)",
        [(round(s, 2), len(p)) for s, p in pieces])
t.check(bool(pieces) and want.startswith(pieces[0][1]),
        "the first piece is the beginning of the answer", pieces[:1])

# ---- --output FILE grows while the answer streams --------------------------------------
out = os.path.join(t.dir, "streamed.txt")
t0 = time.monotonic()
proc = subprocess.Popen(pool.cmd("ask", "--task", "stream to a file", "--output", out),
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=pool.env)
sizes = []
while proc.poll() is None and time.monotonic() < t0 + 60 * SLOW:
    try:
        sizes.append((time.monotonic() - t0, os.path.getsize(out)))
    except OSError:
        pass
    time.sleep(0.05)
proc.communicate(timeout=30 * SLOW)
end = time.monotonic() - t0
with open(out, "rb") as f:
    data = f.read()
grow = sorted({size for s, size in sizes if 0 < size < len(data) and s < end - 1.0})
t.check(proc.returncode == 0 and data == answer_of(M, "k1", "p1", "stream to a file",
                                                    BYTES).encode(),
        "--output gets exactly the answer", (proc.returncode, data[:200]))
t.check(len(grow) >= 4, f"--output grows while streaming ({len(grow)} partial sizes seen)",
        sizes[:40])
t.done()
