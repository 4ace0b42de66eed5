#!/usr/bin/env python3
"""A hostile Redis server for the tests: speaks RESP on a loopback port and
answers enough of the protocol for gemini-pool to connect, but answers one
kind of command (named by the scenario) with a reply out of shape or out of
range.  Writes its port to PORT_FILE once listening.

    fake_redis.py PORT_FILE SCENARIO

Scenarios: slots-huge, slots-negative, slots-types, slots-short, time-ints,
time-short, time-junk, moved-junk, moved-port, ask-slot, script-index,
script-types, script-error-escape, hash-types, fine (a well-formed cluster of
one node: the control)."""

from __future__ import annotations

import hashlib
import socket
import sys
import threading
import time


def bulk(s) -> bytes:
    if s is None:
        return b"$-1\r\n"
    if isinstance(s, str):
        s = s.encode()
    return b"$%d\r\n%s\r\n" % (len(s), s)


def enc(v) -> bytes:
    """Python value -> RESP: int, str/bytes (bulk), None (nil), list (array),
    ("+", text) status, ("-", text) error."""
    if isinstance(v, tuple):
        return v[0].encode() + v[1].encode("latin-1") + b"\r\n"
    if isinstance(v, bool):
        return b":%d\r\n" % int(v)
    if isinstance(v, int):
        return b":%d\r\n" % v
    if isinstance(v, list):
        return b"*%d\r\n" % len(v) + b"".join(enc(x) for x in v)
    return bulk(v)


def read_cmd(f):
    line = f.readline()
    if not line:
        return None
    if not line.startswith(b"*"):
        return line.split()
    n = int(line[1:])
    out = []
    for _ in range(n):
        ln = int(f.readline()[1:])
        out.append(f.read(ln + 2)[:-2])
    return out


class Fake:
    def __init__(self, scenario: str, port: int) -> None:
        self.s = scenario
        self.port = port
        self.strings: dict = {}

    def cluster(self) -> bool:
        return self.s.startswith(("slots", "moved", "ask", "fine"))

    def answer(self, cmd: list):
        name = cmd[0].decode().upper()
        sub = cmd[1].decode().upper() if len(cmd) > 1 else ""
        s = self.s
        if name in ("PING",):
            return ("+", "PONG")
        if name in ("SELECT", "AUTH", "ASKING"):
            return ("+", "OK")
        if name == "INFO":
            return "# Cluster\r\ncluster_enabled:%d\r\n" % (1 if self.cluster() else 0)
        if name == "CLUSTER" and sub == "SLOTS":
            me = ["127.0.0.1", self.port, "id0"]
            if s == "slots-huge":
                return [[0, 4000000, me]]
            if s == "slots-negative":
                return [[-5, 10, me]]
            if s == "slots-types":
                return [["0", "16383", [7, "port"]]]
            if s == "slots-short":
                return [[0, 16383, ["127.0.0.1"]]]
            return [[0, 16383, me]]
        if name == "SCRIPT" and sub == "LOAD":
            return hashlib.sha1(cmd[2]).hexdigest()
        if name == "TIME":
            now = time.time()
            if s == "time-ints":
                return [int(now), 0]
            if s == "time-short":
                return [str(int(now))]
            if s == "time-junk":
                return ["12abc", "-5"]
            return [str(int(now)), str(int(now * 1e6) % 1000000)]
        if s == "moved-junk" and name not in ("CLUSTER", "INFO"):
            return ("-", "MOVED 4000000 127.0.0.1")
        if s == "moved-port" and name not in ("CLUSTER", "INFO"):
            return ("-", "MOVED 12 127.0.0.1:99999")
        if s == "ask-slot" and name not in ("CLUSTER", "INFO"):
            return ("-", "ASK -3 127.0.0.1:%d" % self.port)
        if name == "EVALSHA":
            if s == "script-error-escape":
                return ("-", "ERR boom \x1b]0;pwned\x07\x1b[2J")
            if s == "script-index":
                return [1, 7, 0, int(time.time() * 1000), 999, 0]
            if s == "script-types":
                return [["x"], None, ["y", ["z"]], "now", [1], [[]]]
            nk = int(cmd[2])
            if nk == 1 and len(cmd) == 6:  # a compare-and-set of a string
                key, old, new = cmd[3], cmd[4], cmd[5]
                if self.strings.get(key, b"") != old:
                    return 0
                self.strings[key] = new
                return 1
            return [0, 0, -1, int(time.time() * 1000), 0, 0]
        if name == "GET":
            return self.strings.get(cmd[1])
        if name in ("HGETALL", "ZRANGE", "HMGET", "ZRANGEBYSCORE", "SMEMBERS", "KEYS", "SCAN"):
            if s == "hash-types":
                if name == "HMGET":
                    return [[1], 2, ["x"], None] + [3] * max(0, len(cmd) - 6)
                return [7, [1, 2], None, 8]
            if name == "HMGET":
                return [None] * (len(cmd) - 2)
            if name == "ZRANGE":
                return ["k1"]  # the pool's one key, least recently used
            return []
        return 0


def serve(fake: Fake, conn: socket.socket) -> None:
    f = conn.makefile("rb")
    try:
        while True:
            cmd = read_cmd(f)
            if not cmd:
                return
            conn.sendall(enc(fake.answer(cmd)))
    except (OSError, ValueError):
        pass
    finally:
        conn.close()


def main() -> None:
    port_file, scenario = sys.argv[1], sys.argv[2]
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", 0))
    ls.listen(16)
    fake = Fake(scenario, ls.getsockname()[1])
    with open(port_file + ".tmp", "w", encoding="ascii") as f:
        f.write(str(fake.port))
    import os
    os.rename(port_file + ".tmp", port_file)
    while True:
        conn, _ = ls.accept()
        threading.Thread(target=serve, args=(fake, conn), daemon=True).start()


if __name__ == "__main__":
    main()
