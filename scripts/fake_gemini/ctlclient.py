"""Calling the control API: the one place clients in Python find the token and send it.

The emulator writes a random token, readable by its user only, beside its port file
(PORT_FILE + ".token", or the file --token-file names); every /_emu/ request must
carry it in the X-Emu-Token header and name a loopback Host.

    from fake_gemini import ctlclient
    token = ctlclient.read_token(port_file)
    status, doc = ctlclient.call(f"http://127.0.0.1:{port}", token, "GET", "/_emu/usage")
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

TOKEN_HEADER = "X-Emu-Token"


def token_path(port_file: str) -> str:
    """Where the emulator writes its token for a given --port-file."""
    return port_file + ".token"


def read_token(port_file: str) -> str:
    """The token of the emulator that wrote `port_file` (read once it is listening)."""
    with open(token_path(port_file), encoding="ascii") as f:
        return f.read().strip()


def headers(token: str) -> dict:
    """The headers a control request needs."""
    return {TOKEN_HEADER: token, "Content-Type": "application/json"}


def call(base_url: str, token: str, method: str, path: str, body: dict | None = None,
         timeout: float = 30) -> tuple[int, object]:
    """One control request; returns (HTTP status, parsed JSON answer)."""
    if not path.startswith("/_emu"):
        path = "/_emu/" + path.lstrip("/")
    data = json.dumps(body if body is not None else {}).encode() if method == "POST" else None
    req = urllib.request.Request(base_url + path, data=data, method=method,
                                 headers=headers(token))
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            return exc.code, json.loads(raw)
        except ValueError:
            return exc.code, {"error": raw.decode("utf-8", "replace")}


def gate(base_url: str, token: str, name: str) -> dict:
    """A gate's counts: {"open", "waiting", "passed"} (all zero before first use)."""
    status, doc = call(base_url, token, "GET", "/_emu/gates")
    if status != 200:
        raise RuntimeError(f"GET /_emu/gates: {status} {doc}")
    return doc["gates"].get(name, {"open": False, "waiting": 0, "passed": 0})


def wait_gate(base_url: str, token: str, name: str, count: int,
              limit_s: float = 120.0) -> int:
    """Wait until at least `count` requests wait at gate `name`; returns how many do
    (fewer only if `limit_s`, a hang guard, ran out)."""
    import time
    deadline = time.monotonic() + limit_s
    while True:
        waiting = gate(base_url, token, name)["waiting"]
        if waiting >= count or time.monotonic() >= deadline:
            return waiting
        time.sleep(0.05)


def set_gate(base_url: str, token: str, name: str, is_open: bool) -> None:
    """Open (the requests waiting there go on) or close the gate `name`."""
    status, doc = call(base_url, token, "POST", "/_emu/gates", {"name": name, "open": is_open})
    if status != 200:
        raise RuntimeError(f"POST /_emu/gates: {status} {doc}")
