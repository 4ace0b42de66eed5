#!/usr/bin/env python3
"""Images through `gemini-pool ask`: generation (--model gemini-2.5-flash-image
--image-output F) writes a valid PNG -- signature, IHDR, every chunk's CRC and
the pixel data checked with zlib -- and understanding (--image-file x.png)
sends the file inline: the request counts its tokens and the answer
acknowledges an image of exactly its size."""

import json
import os
import struct
import sys
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clilib import Emu, Pool, T, make_secret, one_line_error  # noqa: E402

t = T("cli-images")
IMG = "gemini-2.5-flash-image"
keys = [{"key": make_secret("I1"), "name": "k1", "project": "p1"}]
emu = Emu(t, {"projects": {"p1": {}}, "keys": keys})
pool = Pool(t, emu, [("k1", keys[0]["key"])])


def chunk(tag, data):
    return struct.pack(">I", len(data)) + tag + data + struct.pack(
        ">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def check_png(data):
    """Returns (width, height) of a valid 8-bit RGB/RGBA PNG, or raises."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "PNG signature"
    pos, chunks = 8, []
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        tag, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        (crc,) = struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])
        assert len(body) == n, f"chunk {tag!r} cut short"
        assert zlib.crc32(tag + body) & 0xFFFFFFFF == crc, f"CRC of {tag!r}"
        chunks.append((tag, body))
        pos += 12 + n
    assert chunks[0][0] == b"IHDR" and len(chunks[0][1]) == 13, "IHDR first"
    assert chunks[-1][0] == b"IEND", "IEND last"
    w, h, depth, color, _, _, _ = struct.unpack(">IIBBBBB", chunks[0][1])
    raw = zlib.decompress(b"".join(b for tag, b in chunks if tag == b"IDAT"))
    channels = {2: 3, 6: 4}[color]
    assert depth == 8 and len(raw) == h * (1 + w * channels), "pixel data size"
    return w, h


# ---- generation -----------------------------------------------------------------------
out = os.path.join(t.dir, "generated.png")
r = pool.ask("--task", "draw a lighthouse", "--model", IMG, "--image-output", out)
t.check(r.returncode == 0 and b"model=" + IMG.encode() in r.stdout,
        "image generation succeeds with the model's text", r)
t.check(os.path.exists(out) and f"image written to {out}".encode() in r.stderr,
        "the image is written to --image-output and the path is named", r)
try:
    with open(out, "rb") as f:
        size = check_png(f.read())
    t.check(size[0] > 0 and size[1] > 0, f"--image-output is a valid PNG {size[0]}x{size[1]} "
            "(signature, IHDR, CRCs, pixel data)")
except (AssertionError, OSError, KeyError, zlib.error, struct.error) as exc:
    t.check(False, "--image-output is a valid PNG", exc)
log = emu.log()
t.check(log[-1]["model"] == IMG and log[-1]["status"] == 200, "one request to the image model",
        log)

r = pool.ask("--task", "draw a lighthouse", "--model", IMG, "--json",
             "--image-output", os.path.join(t.dir, "j.png"))
doc = json.loads(r.stdout or b"{}")
t.check(r.returncode == 0 and doc.get("images") == [os.path.join(t.dir, "j.png")],
        "--json lists the image file", r)

bad = os.path.join(t.dir, "no-such-dir", "x.png")
r = pool.ask("--task", "draw", "--model", IMG, "--image-output", bad)
t.check(r.returncode == 1 and b"cannot write image" in r.stderr,
        "an image that cannot be written fails the run (it used to exit 0)", r)

# ---- understanding ----------------------------------------------------------------------
raw = b"".join(b"\x00" + b"".join(bytes((x * 20 % 256, y * 20 % 256, 99)) for x in range(5))
               for y in range(6))
png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 5, 6, 8, 2, 0, 0, 0))
       + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
src = os.path.join(t.dir, "input.png")
with open(src, "wb") as f:
    f.write(png)
since = len(emu.log())
task = "what is in this picture"
r = pool.ask("--task", task, "--image-file", src)
t.check(r.returncode == 0 and
        f"I see an image of {len(png)} bytes, mime image/png.".encode() in r.stdout,
        f"the answer acknowledges an image of {len(png)} bytes (sent inline)", r)
calls = emu.log(since)
want_tokens = -(-len(task.encode()) // 4) + 258
t.check(len(calls) == 1 and calls[0]["prompt_tokens"] == want_tokens,
        f"the request carried the image: {want_tokens} prompt tokens (text + 258)", calls)
st = pool.status()
t.check(any(m.get("input_tokens_last_minute", 0) >= 258 for m in
            pool.key(st, "k1")["models"].values()),
        "the pool counted the image's tokens", None)

r = pool.ask("--task", "and this?", "--image-file", os.path.join(t.dir, "missing.png"))
t.check(r.returncode == 2 and one_line_error(r) is not None and b"missing.png" in r.stderr,
        "a missing --image-file: one line, exit 2", r)
t.done()
