#!/usr/bin/env python3
"""A small, strict parser of the Prometheus text exposition format (0.0.4).

Usage: promparse.py FILE  -- exits 0 and prints a summary if FILE is valid; else
prints each problem with its line number and exits 1.

Checks: metric and label names, quoted label values with their escapes, float
values, at most one HELP and TYPE per family, TYPE before the family's samples,
samples grouped by family, no duplicate series, counters not negative, and for
histograms: buckets with an `le` label, cumulative, ending with le="+Inf", whose
count equals _count, and a _sum.
"""
import math
import re
import sys

NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}


def parse_value(s):
    if s in ("+Inf", "Inf"):
        return math.inf
    if s == "-Inf":
        return -math.inf
    if s == "NaN":
        return math.nan
    if not re.fullmatch(r"[-+]?(\d+\.?\d*([eE][-+]?\d+)?|\.\d+([eE][-+]?\d+)?)", s):
        raise ValueError("not a number: %r" % s)
    return float(s)


def parse_labels(s, i):
    """Parses {a="b",...} starting at s[i] == '{'; returns (dict, index after '}')."""
    labels = {}
    i += 1
    while True:
        if s[i] == "}":
            return labels, i + 1
        m = LABEL.match(s, i)
        if not m:
            raise ValueError("bad label name at column %d" % (i + 1))
        name = m.group(0)
        i = m.end()
        if s[i:i + 2] != '="':
            raise ValueError("expected =\" after label %s" % name)
        i += 2
        val = []
        while True:
            c = s[i]
            if c == "\\":
                nxt = s[i + 1]
                if nxt not in ('\\', '"', 'n'):
                    raise ValueError("bad escape \\%s in label %s" % (nxt, name))
                val.append("\n" if nxt == "n" else nxt)
                i += 2
            elif c == '"':
                i += 1
                break
            elif c == "\n":
                raise ValueError("newline in label value")
            else:
                val.append(c)
                i += 1
        if name in labels:
            raise ValueError("duplicate label %s" % name)
        labels[name] = "".join(val)
        if s[i] == ",":
            i += 1
        elif s[i] != "}":
            raise ValueError("expected , or } after label %s" % name)


def family_of(name, types):
    for suffix in ("_bucket", "_sum", "_count"):
        base = name[: -len(suffix)]
        if name.endswith(suffix) and types.get(base) in ("histogram", "summary"):
            return base
    return name


def main(path):
    text = open(path, encoding="utf-8").read()
    errors = []
    helps, types, seen_series = {}, {}, set()
    done_families, current = set(), None
    samples = []
    if text and not text.endswith("\n"):
        errors.append("the last line does not end with a newline")
    for no, line in enumerate(text.split("\n")[:-1] if text.endswith("\n") else text.split("\n"), 1):
        try:
            if line == "":
                continue
            if line.startswith("#"):
                parts = line.split(" ", 3)
                if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                    name = parts[2]
                    if not NAME.fullmatch(name):
                        raise ValueError("bad metric name %r" % name)
                    table = helps if parts[1] == "HELP" else types
                    if name in table:
                        raise ValueError("second %s for %s" % (parts[1], name))
                    if parts[1] == "TYPE":
                        if len(parts) != 4 or parts[3] not in TYPES:
                            raise ValueError("bad TYPE line")
                        if name in done_families or name == current:
                            raise ValueError("TYPE for %s after its samples" % name)
                    table[name] = parts[3] if len(parts) == 4 else ""
                continue
            m = NAME.match(line)
            if not m:
                raise ValueError("bad metric name")
            name, i = m.group(0), m.end()
            labels = {}
            if i < len(line) and line[i] == "{":
                labels, i = parse_labels(line, i)
            if i >= len(line) or line[i] != " ":
                raise ValueError("expected a space before the value")
            fields = line[i + 1:].split(" ")
            if not 1 <= len(fields) <= 2:
                raise ValueError("expected a value and an optional timestamp")
            value = parse_value(fields[0])
            if len(fields) == 2 and not re.fullmatch(r"-?\d+", fields[1]):
                raise ValueError("bad timestamp")
            fam = family_of(name, types)
            if fam != current:
                if fam in done_families:
                    raise ValueError("samples of %s are not together" % fam)
                if current is not None:
                    done_families.add(current)
                current = fam
            key = (name, tuple(sorted(labels.items())))
            if key in seen_series:
                raise ValueError("duplicate series %s%s" % (name, labels))
            seen_series.add(key)
            if types.get(fam) == "counter" and not value >= 0:
                raise ValueError("counter %s is negative" % name)
            samples.append((fam, name, labels, value, no))
        except (ValueError, IndexError) as e:
            errors.append("line %d: %s: %s" % (no, e, line))

    # Histograms.
    for fam, kind in types.items():
        if kind != "histogram":
            continue
        groups = {}
        for f, name, labels, value, no in samples:
            if f != fam:
                continue
            rest = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
            g = groups.setdefault(rest, {"buckets": [], "sum": None, "count": None})
            if name == fam + "_bucket":
                if "le" not in labels:
                    errors.append("line %d: bucket without le" % no)
                    continue
                g["buckets"].append((parse_value(labels["le"]), value))
            elif name == fam + "_sum":
                g["sum"] = value
            elif name == fam + "_count":
                g["count"] = value
            else:
                errors.append("line %d: %s is not part of histogram %s" % (no, name, fam))
        if not groups:
            errors.append("histogram %s has no samples" % fam)
        for rest, g in groups.items():
            b = g["buckets"]
            if not b or b[-1][0] != math.inf:
                errors.append("histogram %s%s: no le=\"+Inf\" bucket last" % (fam, dict(rest)))
                continue
            if any(b[i][0] >= b[i + 1][0] for i in range(len(b) - 1)):
                errors.append("histogram %s: bucket bounds not increasing" % fam)
            if any(b[i][1] > b[i + 1][1] for i in range(len(b) - 1)):
                errors.append("histogram %s: buckets not cumulative" % fam)
            if g["count"] is None or g["count"] != b[-1][1]:
                errors.append("histogram %s: _count differs from the +Inf bucket" % fam)
            if g["sum"] is None:
                errors.append("histogram %s: no _sum" % fam)

    for e in errors:
        print(e)
    families = {s[0] for s in samples}
    print("%d samples in %d families, %d typed; %s" %
          (len(samples), len(families), len(types), "valid" if not errors else "INVALID"))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
