"""The structures the package mirrors with ctypes have gkp.h's layout: a C
program compiled against include/gkp.h prints every field's offset and each
structure's size, and they must equal the ctypes ones (a field added to
gkp.h without the package following would make the library write past a
Python buffer)."""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess

import pytest
from conftest import SOURCE_ROOT

from gemini_key_pool import _lib

STRUCTS = {
    "gkp_error": _lib.Error, "gkp_options": _lib.Options, "gkp_lease": _lib.Lease,
    "gkp_wait": _lib.Wait, "gkp_usage": _lib.Usage, "gkp_verdict": _lib.Verdict,
    "gkp_task": _lib.Task, "gkp_image": _lib.Image, "gkp_task_result": _lib.TaskResult,
}


def test_ctypes_layouts_match_gkp_h(tmp_path):
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler")
    lines = ["#include <stddef.h>", "#include <stdio.h>", "#include <gkp.h>", "int main(void) {"]
    for cname, py in STRUCTS.items():
        lines.append(f'  printf("{cname} %zu\\n", sizeof({cname}));')
        for field, _ in py._fields_:
            lines.append(f'  printf("{cname}.{field} %zu\\n", offsetof({cname}, {field}));')
    lines += ["  return 0;", "}"]
    (tmp_path / "abi.c").write_text("\n".join(lines) + "\n")
    subprocess.run([cc, "-std=c11", "-Wall", "-Werror", "-I", os.path.join(SOURCE_ROOT, "include"),
                    "-o", str(tmp_path / "abi"), str(tmp_path / "abi.c")], check=True)
    out = subprocess.run([str(tmp_path / "abi")], check=True, stdout=subprocess.PIPE).stdout
    c = dict(line.split() for line in out.decode().splitlines())
    py = {}
    for cname, s in STRUCTS.items():
        py[cname] = str(ctypes.sizeof(s))
        for field, _ in s._fields_:
            py[f"{cname}.{field}"] = str(getattr(s, field).offset)
    assert py == c
