#!/usr/bin/env python3
"""The module graph of docs/ARCHITECTURE.md holds for the sources.

Reads the table between "<!-- module-graph: begin -->" and "<!-- module-graph:
end -->": one row per folder of src/, naming the folders whose headers it may
include ("fs (fs/fs_mount.h only)" restricts an edge to the headers named).
Fails, with one line per offence, when
- a source includes a header of a folder its row does not allow, or a header
  the restriction does not name;
- a row allows a folder no source of it includes any more (the table is
  stale);
- a folder of src/ has no row, or a row names no folder;
- include/gkp.h includes anything of src/.
"""
import os
import re
import sys

root = os.environ.get("GKP_SOURCE_ROOT") or os.path.join(os.path.dirname(__file__), "..", "..")
doc_path = os.path.join(root, "docs", "ARCHITECTURE.md")
src = os.path.join(root, "src")
problems = []


def read_graph():
    text = open(doc_path, encoding="utf-8").read()
    m = re.search(r"<!-- module-graph: begin -->(.*?)<!-- module-graph: end -->", text, re.S)
    if m is None:
        sys.exit("module-graph: %s has no module-graph table" % doc_path)
    graph = {}
    for line in m.group(1).splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 2 or cells[0] in ("folder", "") or set(cells[0]) <= set("-: "):
            continue
        allowed = {}
        for item in filter(None, (i.strip() for i in cells[1].split(","))):
            if item == "-":
                continue
            im = re.fullmatch(r"([a-z]+)(?:\s*\(([^)]*) only\))?", item)
            if im is None:
                sys.exit("module-graph: %s: cannot read '%s' in the row of %s" %
                         (doc_path, item, cells[0]))
            only = im.group(2)
            allowed[im.group(1)] = set(only.split()) if only else None
        graph[cells[0]] = allowed
    return graph


def includes(folder):
    """(file, header) for every quoted include of a source of src/folder."""
    d = os.path.join(src, folder)
    for name in sorted(os.listdir(d)):
        if not name.endswith((".c", ".h")):
            continue
        path = os.path.join(d, name)
        for n, line in enumerate(open(path, encoding="utf-8"), 1):
            m = re.match(r'\s*#\s*include\s+"([^"]+)"', line)
            if m:
                yield "src/%s/%s:%d" % (folder, name, n), m.group(1)


graph = read_graph()
folders = sorted(f for f in os.listdir(src) if os.path.isdir(os.path.join(src, f)))
for f in folders:
    if f not in graph:
        problems.append("src/%s has no row in the module graph of docs/ARCHITECTURE.md" % f)
for f in graph:
    if f not in folders:
        problems.append("docs/ARCHITECTURE.md: the module graph names '%s', not a folder of src/" % f)

for f in folders:
    allowed = graph.get(f, {})
    used = set()
    for where, header in includes(f):
        if "/" not in header:
            if header != "gkp.h":
                problems.append("%s: includes \"%s\"; name the folder (\"part/%s\")" %
                                (where, header, header))
            continue
        part = header.split("/", 1)[0]
        if part == f:
            continue
        if part not in allowed:
            problems.append("%s: %s includes \"%s\", but the module graph in "
                            "docs/ARCHITECTURE.md does not let %s use %s" %
                            (where, f, header, f, part))
            continue
        if allowed[part] is not None and header not in allowed[part]:
            problems.append("%s: %s may include only %s of %s, not \"%s\"" %
                            (where, f, ", ".join(sorted(allowed[part])), part, header))
            continue
        used.add(part)
    for part in sorted(set(allowed) - used):
        problems.append("docs/ARCHITECTURE.md: the module graph lets %s include %s, "
                        "which it no longer does; remove the edge" % (f, part))

for n, line in enumerate(open(os.path.join(root, "include", "gkp.h"), encoding="utf-8"), 1):
    if re.match(r'\s*#\s*include\s+"', line):
        problems.append("include/gkp.h:%d: the public header includes a private one" % n)

for p in problems:
    print("module-graph: " + p, file=sys.stderr)
if problems:
    sys.exit(1)
print("module-graph: %d folders, every include allowed by docs/ARCHITECTURE.md" % len(folders))
