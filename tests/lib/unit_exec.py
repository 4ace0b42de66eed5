#!/usr/bin/env python3
"""Runs a systemd unit's ExecStart= line as written, where no systemd runs.

    unit_exec.py UNITFILE [INSTANCE_PATH] [--print]

Applies what the unit says of the environment (Environment=, then
EnvironmentFile=, which wins, as in systemd), expands the specifiers the
project's units use (%f %i %I %E %h %S %%) and the $VAR / ${VAR} references
as systemd does ("$VAR" alone is split into words, "${VAR}" is replaced in
place), drops the prefix characters (- + @ ! :), and execs the command.  User
and sandboxing settings are not applied: the caller runs it as whoever it is.
With --print it prints the argv as JSON instead.
"""

import json
import os
import re
import shlex
import sys


def main(argv):
    unit, rest = argv[1], argv[2:]
    show = "--print" in rest
    rest = [a for a in rest if a != "--print"]
    path = rest[0] if rest else None
    instance = ""
    if path is not None:
        instance = path.strip("/").replace("/", "-")
    home = os.environ.get("HOME", "/root")
    spec = {
        "f": path or "", "i": instance, "I": path or "",
        "E": os.environ.get("XDG_CONFIG_HOME", os.path.join(home, ".config")),
        "S": os.environ.get("XDG_STATE_HOME", os.path.join(home, ".local/state")),
        "h": home, "%": "%",
    }

    def specifiers(text):
        return re.sub(r"%(.)", lambda m: spec[m.group(1)], text)

    env = dict(os.environ)
    files, execstart = [], None
    for line in open(unit, encoding="utf-8"):
        line = line.strip()
        if line.startswith("#") or "=" not in line:
            continue
        name, value = line.split("=", 1)
        if name == "Environment":
            for word in shlex.split(value):
                k, v = word.split("=", 1)
                env[k] = specifiers(v)
        elif name == "EnvironmentFile":
            files.append(specifiers(value))
        elif name == "ExecStart":
            execstart = value
    for f in files:
        optional = f.startswith("-")
        f = f.lstrip("-")
        try:
            text = open(f, encoding="utf-8").read()
        except FileNotFoundError:
            if optional:
                continue
            raise
        for line in text.splitlines():
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                k, v = line.split("=", 1)
                env[k.strip()] = v.strip().strip("\"'")
    if execstart is None:
        sys.exit("unit_exec: %s has no ExecStart=" % unit)
    cmd = []
    for word in shlex.split(specifiers(execstart.lstrip("-+@!:"))):
        whole = re.fullmatch(r"\$([A-Za-z_][A-Za-z0-9_]*)", word)
        if whole:
            cmd.extend(env.get(whole.group(1), "").split())
        else:
            cmd.append(re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}",
                              lambda m: env.get(m.group(1), ""), word))
    if show:
        print(json.dumps(cmd))
        return 0
    os.execvpe(cmd[0], cmd, env)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
