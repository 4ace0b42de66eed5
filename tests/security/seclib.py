"""Helpers of the security tests (on top of tests/cli/clilib.py).

    from seclib import ConnectWatch, scan_runs
    with ConnectWatch() as w:          # a proxy that only counts who connects to it
        env = w.env(env)               # HTTPS_PROXY/HTTP_PROXY/ALL_PROXY pointing at it
        ...                            # run gemini-pool
    w.connections                      # how many connections were attempted
"""

from __future__ import annotations

import os
import socket
import sys
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "cli"))
from clilib import *  # noqa: E402,F401,F403
from clilib import BINARY  # noqa: E402,F401


class ConnectWatch:
    """A listening socket standing in for every proxy: libcurl sends every request
    (CONNECT for https) to it, so a connection here is an attempt to reach a host.
    It answers nothing and closes."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.first_bytes = b""
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "ConnectWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop = True
        self.sock.close()

    def _run(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.settimeout(1)
            try:
                self.first_bytes += conn.recv(200)
            except OSError:
                pass
            conn.close()

    def env(self, base: dict) -> dict:
        e = {k: v for k, v in base.items() if "proxy" not in k.lower()}
        url = f"http://127.0.0.1:{self.port}"
        for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY",
                     "all_proxy"):
            e[name] = url
        return e


def key_runs(secrets, n: int = 8) -> set:
    """Every n-character run of every secret, as bytes."""
    runs = set()
    for s in secrets:
        b = s.encode()
        runs.update(b[i:i + n] for i in range(len(b) - n + 1))
    return runs


def scan_runs(data: bytes, runs: set, n: int = 8) -> list:
    """The runs of `runs` found in data."""
    return sorted({data[i:i + n] for i in range(len(data) - n + 1)} & runs)


def scan_tree(root: str, runs: set) -> list:
    """(path, run) for every file under root holding a run."""
    found = []
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = os.path.join(dirpath, name)
            if os.path.islink(path) or not os.path.isfile(path):
                continue
            with open(path, "rb") as f:
                data = f.read()
            found += [(path, r) for r in scan_runs(data, runs)]
    return found
