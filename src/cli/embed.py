#!/usr/bin/env python3
"""Writes a C file defining `const unsigned char NAME[]` (the input file's bytes, NUL
terminated) and `const size_t NAME_len`: how text files are built into the
gemini-pool binary.  Usage: embed.py INPUT OUTPUT NAME"""

import sys

src, out, name = sys.argv[1:4]
with open(src, "rb") as f:
    data = f.read()
lines = [f"/* Generated from {src.rsplit('/', 1)[-1]} at build time; do not edit. */",
         "#include <stddef.h>", "",
         f"const unsigned char {name}[{len(data) + 1}] = {{"]
for i in range(0, len(data), 16):
    lines.append("  " + ", ".join(f"0x{c:02x}" for c in data[i:i + 16]) + ",")
lines += ["  0x00", "};", f"const size_t {name}_len = {len(data)};", ""]
with open(out, "w", encoding="ascii") as f:
    f.write("\n".join(lines))
