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
