"""The control API under /_emu/ (JSON in, JSON out). Every request must carry the token
the emulator wrote beside its port file (PORT_FILE.token, or --token-file), mode 0600,
in the X-Emu-Token header, and name a loopback Host; otherwise it is refused with 403
(see fake_gemini.ctlclient for a client).

    GET  /_emu/health                  liveness, pid, port, clock
    GET  /_emu/log[?since=N]           the request log (a JSON array), from entry N
    GET  /_emu/usage                   per project and model: requests and tokens in the
                                       last 60 s, requests today, limits, quota_429,
                                       over_limit (a self-check: always 0)
    GET  /_emu/faults                  the fault settings of every scope
    POST /_emu/faults                  {"scope": "global"|"project"|"key"|"all",
                                        "name": ..., "clear": bool, <fault fields>}
    GET  /_emu/replay                  the replay queue
    POST /_emu/replay                  {"status": 429, "body": "..." | "body_file": "NAME"
                                        | "body_json": {...}, "count": 1, "project",
                                        "key", "model", "action": optional filters,
                                        "midstream": false, "content_type": ...}
                                       or {"clear": true}
    GET  /_emu/gates                   every gate: {"NAME": {"open", "waiting", "passed"}}
    POST /_emu/gates                   {"name": "NAME", "open": true|false}: open lets
                                       the requests waiting there (fault fields hold,
                                       hold_stream) and later ones go; close holds later ones
    GET  /_emu/clock                   the clock
    POST /_emu/clock                   {"offset_s": N} | {"advance_s": N} | {"now": unix time}
    POST /_emu/reset                   usage, faults (back to the start-up settings),
                                       replay queue, gates (requests waiting there are dropped),
                                       in-memory log, request numbering;
                                       {"clock": true} also restores the start-up offset
    GET  /_emu/keys                    keys (names, projects, states; never the secrets)
    POST /_emu/keys                    {"name": "k1", "state": "ok"|"leaked"|...}

body_file names a file of the fixtures directory (--fixtures; by default the error
bodies in tests/fixtures/gemini-errors); no other file is ever read.
Errors answer 400, 403 or 404 with {"error": "<reason>"}.
"""

from __future__ import annotations

import hmac
import json
import math

from . import clock as clk
from .api import Emulator
from .faults import GATE_NAME, parse_replay, validate_faults
from .keyring import KEY_STATES


MAX_CLOCK_S = 200 * 366 * 86400.0


class ControlError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _json_body(body: bytes) -> dict:
    if not body.strip():
        return {}
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ControlError(400, f"invalid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ControlError(400, "the body must be a JSON object")
    return doc


def _clock_view(emu: Emulator) -> dict:
    now = emu.clock.now()
    return {"offset_s": emu.clock.offset, "now": now, "now_utc": clk.iso_utc(now),
            "now_pacific": clk.iso_pacific(now), "next_midnight": clk.next_midnight(now)}


def _number(doc: dict, name: str) -> float:
    value = doc[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or abs(value) > MAX_CLOCK_S:
        raise ControlError(400, f"{name} must be a number of seconds (within 200 years)")
    return float(value)


def _faults(emu: Emulator, doc: dict) -> dict:
    scope = doc.pop("scope", "global")
    name = doc.pop("name", None)
    clear = doc.pop("clear", False)
    if scope not in ("global", "project", "key", "all"):
        raise ControlError(400, 'scope must be "global", "project", "key" or "all"')
    if scope == "project" and name not in emu.keyring.projects:
        raise ControlError(400, f"no project named {name!r} in the keys file")
    if scope == "key" and emu.keyring.by_name(name) is None:
        raise ControlError(400, f"no key named {name!r} in the keys file")
    try:
        fields = validate_faults(doc)
    except ValueError as exc:
        raise ControlError(400, str(exc)) from None
    emu.faults.configure(scope, name, fields, bool(clear))
    return {"ok": True, "faults": emu.faults.snapshot()}


def _replay(emu: Emulator, doc: dict) -> dict:
    if doc.get("clear"):
        emu.replay.clear()
        return {"ok": True, "queue": []}
    try:
        entry = parse_replay(doc, emu.fixtures_dir)
    except ValueError as exc:
        raise ControlError(400, str(exc)) from None
    emu.replay.add(entry)
    return {"ok": True, "queued": entry.describe(), "queue": emu.replay.snapshot()}


def _gates(emu: Emulator, doc: dict) -> dict:
    name, is_open = doc.get("name"), doc.get("open")
    if not isinstance(name, str) or not GATE_NAME.fullmatch(name):
        raise ControlError(400, "name must be a gate's name (1-64 of A-Z a-z 0-9 _ - .)")
    if not isinstance(is_open, bool):
        raise ControlError(400, "open must be true or false")
    emu.gates.set(name, is_open)
    return {"ok": True, "gates": emu.gates.snapshot()}


def _clock(emu: Emulator, doc: dict) -> dict:
    given = [n for n in ("offset_s", "advance_s", "now") if n in doc]
    if len(given) != 1:
        raise ControlError(400, "give exactly one of offset_s, advance_s, now")
    value = _number(doc, given[0])
    if given[0] == "offset_s":
        offset = value
    elif given[0] == "advance_s":
        offset = emu.clock.offset + value
    else:
        offset = value - (emu.clock.now() - emu.clock.offset)
    if abs(offset) > MAX_CLOCK_S:
        raise ControlError(400, "the clock cannot move more than 200 years")
    emu.clock.set_offset(offset)
    return {"ok": True, **_clock_view(emu)}


def _set_key(emu: Emulator, doc: dict) -> dict:
    key = emu.keyring.by_name(doc.get("name"))
    if key is None:
        raise ControlError(400, f"no key named {doc.get('name')!r} in the keys file")
    state = doc.get("state")
    if state not in KEY_STATES:
        raise ControlError(400, f"state must be one of {', '.join(KEY_STATES)}")
    key.state = state
    return {"ok": True, "keys": emu.keys_view()}


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]", "::1")


def _host_name(host: str) -> str:
    """The name part of a Host header ("127.0.0.1:8080" -> "127.0.0.1")."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[:host.find("]") + 1] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def check_caller(emu: Emulator, headers: dict) -> None:
    """Raises ControlError(403) unless the request names a loopback Host (no page of
    another site can reach the API through DNS rebinding) and carries the token."""
    if _host_name(headers.get("host", "")) not in LOOPBACK_HOSTS:
        raise ControlError(403, "the control API answers only requests for a loopback "
                                "Host (127.0.0.1, localhost, [::1])")
    if emu.control_token is None:
        raise ControlError(403, "no control token: start the emulator with --port-file "
                                "(the token is written beside it) or --token-file")
    given = headers.get("x-emu-token", "")
    if not hmac.compare_digest(given.encode(), emu.control_token.encode()):
        raise ControlError(403, "missing or wrong X-Emu-Token header: send the token the "
                                "emulator wrote beside its port file (PORT_FILE.token)")


def handle_control(emu: Emulator, port: int, method: str, path: str, query: dict,
                   body: bytes, headers: dict | None = None) -> tuple[int, dict]:
    """Serve one control request; returns (HTTP status, JSON document)."""
    try:
        check_caller(emu, headers or {})
        route = (method, path.rstrip("/"))
        if route == ("GET", "/_emu/health"):
            return 200, emu.health(port)
        if route == ("GET", "/_emu/log"):
            since = query.get("since", ["0"])[0]
            if not since.isdigit():
                raise ControlError(400, "since must be a non-negative integer")
            return 200, emu.log.entries(int(since))
        if route == ("GET", "/_emu/usage"):
            return 200, emu.usage()
        if route == ("GET", "/_emu/faults"):
            return 200, emu.faults.snapshot()
        if route == ("GET", "/_emu/replay"):
            return 200, {"queue": emu.replay.snapshot()}
        if route == ("GET", "/_emu/gates"):
            return 200, {"gates": emu.gates.snapshot()}
        if route == ("GET", "/_emu/clock"):
            return 200, _clock_view(emu)
        if route == ("GET", "/_emu/keys"):
            return 200, {"keys": emu.keys_view()}
        if method != "POST":
            raise ControlError(404, f"no control endpoint {method} {path}")
        doc = _json_body(body)
        if path == "/_emu/faults":
            return 200, _faults(emu, doc)
        if path == "/_emu/replay":
            return 200, _replay(emu, doc)
        if path == "/_emu/gates":
            return 200, _gates(emu, doc)
        if path == "/_emu/clock":
            return 200, _clock(emu, doc)
        if path == "/_emu/keys":
            return 200, _set_key(emu, doc)
        if path == "/_emu/reset":
            emu.reset()
            if doc.get("clock"):
                emu.clock.set_offset(emu.clock.initial_offset)
            return 200, {"ok": True, **_clock_view(emu)}
        raise ControlError(404, f"no control endpoint {method} {path}")
    except ControlError as exc:
        return exc.status, {"error": str(exc)}
