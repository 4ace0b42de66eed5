"""Injectable faults and the replay queue.

Fault fields (global, per project, per key name; a key's fields win over its
project's, which win over the global ones):

- ``latency_ms``      delay before the response headers
- ``latency_jitter_ms`` a further random delay, uniform from 0 to this
- ``chunk_delay_ms``  delay between stream chunks ("slow streams")
- ``answer_bytes``    size of generated answers (default 400)
- ``image_count``     images in an image model's answer (default 1, at most 200)
- ``image_bytes``     pad each generated image to at least this size (a PNG
                      ancillary chunk; default: no padding, at most 16 MiB)
- ``p500`` ``p503`` ``p504``  probability of that server error (503: "overloaded")
- ``p_reset``         close the connection: with no response (plain), mid-body (streams)
- ``p_truncate``      plain: Content-Length larger than what is sent, then close;
                      streams: stop mid-event
- ``p_malformed``     a 200 whose body (or one stream event) is not valid JSON
- ``p_midstream``     streams: after one good chunk an error inside the 200 stream
- ``midstream_form``  ``bare`` (``{"error":…}`` without ``data:``), ``data``
                      (``data: {"error":…}``) or ``random`` (default, half each)
- ``hold``            the name of a gate: the request waits there, after its latency
                      and before its response headers, until the gate is opened
- ``hold_stream``     the name of a gate: a stream waits there after its first chunk

Gates (``POST /_emu/gates``) let a test act while requests are known to be in flight
rather than guess a delay: ``GET /_emu/gates`` counts the requests waiting at each.
A gate is closed until opened; a request waits at most 600 s (a hang guard). A reset
drops the requests waiting at gates (closes their connections, logs nothing).

One uniform draw per request picks at most one fault, in the order above
(probabilities that add up to more than 1 favour the earlier ones). Randomness is
derived from ``--seed`` and the request's sequence number, so a sequential test
sees the same faults on every run.
"""

from __future__ import annotations

import json
import os
import stat
import random
import re
import threading
import time
from dataclasses import dataclass

from . import errors

PROBABILITIES = ("p500", "p503", "p504", "p_reset", "p_truncate", "p_malformed", "p_midstream")
DURATIONS = ("latency_ms", "latency_jitter_ms", "chunk_delay_ms")
GATES = ("hold", "hold_stream")
MIDSTREAM_FORMS = ("bare", "data", "random")
SIZES = {"answer_bytes": (1, 16 * 1024 * 1024), "image_count": (1, 200),
         "image_bytes": (1, 16 * 1024 * 1024)}
FAULT_FIELDS = PROBABILITIES + DURATIONS + tuple(SIZES) + GATES + ("midstream_form",)
MAX_ANSWER_BYTES = 16 * 1024 * 1024
MAX_DELAY_MS = 600000
GATE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def validate_faults(raw) -> dict:
    """Check fault fields; return them normalised (raises ValueError with the reason)."""
    if not isinstance(raw, dict):
        raise ValueError("faults must be an object of fault fields")
    out = {}
    for name, value in raw.items():
        if name not in FAULT_FIELDS:
            raise ValueError(f"unknown fault field {name!r}; known: {', '.join(FAULT_FIELDS)}")
        if value is None:  # null removes a field, falling back to the wider scope
            out[name] = None
        elif name in PROBABILITIES:
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not 0 <= value <= 1:  # NaN fails this test too
                raise ValueError(f"{name} must be a probability between 0 and 1 (got {value!r})")
            out[name] = float(value)
        elif name in DURATIONS:
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not 0 <= value <= MAX_DELAY_MS:
                raise ValueError(f"{name} must be a number of ms from 0 to {MAX_DELAY_MS} "
                                 f"(got {value!r})")
            out[name] = float(value)
        elif name in SIZES:
            low, high = SIZES[name]
            if isinstance(value, bool) or not isinstance(value, int) \
                    or not low <= value <= high:
                raise ValueError(f"{name} must be an integer from {low} to {high} "
                                 f"(got {value!r})")
            out[name] = value
        elif name in GATES:
            if not isinstance(value, str) or not GATE_NAME.fullmatch(value):
                raise ValueError(f"{name} must be a gate's name (1-64 of A-Z a-z 0-9 _ - .)")
            out[name] = value
        elif value not in MIDSTREAM_FORMS:
            raise ValueError(f"midstream_form must be one of {', '.join(MIDSTREAM_FORMS)}")
        else:
            out[name] = value
    return out


@dataclass
class FaultPlan:
    """What goes wrong with one request (kind None: nothing but delays)."""

    kind: str | None = None    # 500 503 504 reset truncate malformed midstream
    latency_s: float = 0.0
    chunk_delay_s: float = 0.0
    answer_bytes: int | None = None
    image_count: int = 1
    image_bytes: int = 0
    midstream_form: str = "bare"
    midstream_code: int = 503
    hold: str | None = None
    hold_stream: str | None = None


class FaultBook:
    """Fault settings of every scope, and the per-request draw."""

    def __init__(self, global_faults: dict, projects: dict, keys: dict, seed: int) -> None:
        self._lock = threading.Lock()
        self._initial = (dict(global_faults), _copy(projects), _copy(keys))
        self.seed = seed
        self.reset()

    def reset(self) -> None:
        """Back to the faults given at start (command line and keys file)."""
        with self._lock:
            g, p, k = self._initial
            self._global, self._projects, self._keys = dict(g), _copy(p), _copy(k)

    def configure(self, scope: str, name: str | None, fields: dict, clear: bool) -> None:
        """Set fault fields of one scope (`clear` empties the scope first)."""
        with self._lock:
            if scope == "all":
                self._global, self._projects, self._keys = {}, {}, {}
                target = self._global
            elif scope == "global":
                target = self._global
            else:
                book = self._projects if scope == "project" else self._keys
                target = book.setdefault(name, {})
            if clear:
                target.clear()
            for field, value in fields.items():
                if value is None:
                    target.pop(field, None)
                else:
                    target[field] = value

    def resolve(self, project: str | None, key_name: str | None) -> dict:
        with self._lock:
            merged = dict(self._global)
            merged.update(self._projects.get(project, {}) if project else {})
            merged.update(self._keys.get(key_name, {}) if key_name else {})
            return merged

    def snapshot(self) -> dict:
        with self._lock:
            return {"global": dict(self._global), "projects": _copy(self._projects),
                    "keys": _copy(self._keys), "seed": self.seed}

    def plan(self, seq: int, project: str | None, key_name: str | None,
             stream: bool) -> FaultPlan:
        """Draw this request's fault from its scopes' settings."""
        fields = self.resolve(project, key_name)
        rng = random.Random(f"{self.seed}:{seq}")
        # A separate stream, so that jitter never changes which faults a seed draws.
        jitter = random.Random(f"{self.seed}:{seq}:jitter").uniform(
            0, fields.get("latency_jitter_ms", 0)) / 1000.0
        plan = FaultPlan(latency_s=fields.get("latency_ms", 0) / 1000.0 + jitter,
                         chunk_delay_s=fields.get("chunk_delay_ms", 0) / 1000.0,
                         answer_bytes=fields.get("answer_bytes"),
                         image_count=fields.get("image_count", 1),
                         image_bytes=fields.get("image_bytes", 0),
                         hold=fields.get("hold"), hold_stream=fields.get("hold_stream"))
        draw, edge = rng.random(), 0.0
        for name in PROBABILITIES:
            if name == "p_midstream" and not stream:
                continue
            edge += fields.get(name, 0.0)
            if draw < edge:
                plan.kind = name[1:].lstrip("_")
                break
        form = fields.get("midstream_form", "random")
        plan.midstream_form = form if form != "random" else rng.choice(("bare", "data"))
        plan.midstream_code = rng.choice((500, 503))
        return plan


def _copy(book: dict) -> dict:
    return {name: dict(fields) for name, fields in book.items()}


# --- gates -------------------------------------------------------------------------


class Gates:
    """Named gates where requests wait (faults ``hold`` and ``hold_stream``) until a
    test opens them. Every gate is closed until opened; a reset forgets the gates and
    drops the requests waiting there (their connections are closed, nothing is logged)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._gates: dict[str, dict] = {}
        self._epoch = 0

    def _gate(self, name: str) -> dict:
        return self._gates.setdefault(name, {"open": False, "waiting": 0, "passed": 0})

    def wait(self, name: str, limit_s: float = MAX_DELAY_MS / 1000.0) -> bool:
        """Wait until the gate `name` is open (at most `limit_s`); False when a reset
        ended the wait (the request then belongs to no log: it is dropped)."""
        deadline = time.monotonic() + limit_s
        with self._cond:
            gate, epoch = self._gate(name), self._epoch
            gate["waiting"] += 1
            try:
                while not gate["open"] and epoch == self._epoch:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
            finally:
                gate["waiting"] -= 1
                gate["passed"] += 1
            return epoch == self._epoch

    def set(self, name: str, is_open: bool) -> None:
        with self._cond:
            self._gate(name)["open"] = is_open
            self._cond.notify_all()

    def reset(self) -> None:
        with self._cond:
            self._epoch += 1
            self._gates = {}
            self._cond.notify_all()

    def snapshot(self) -> dict:
        with self._cond:
            return {name: dict(gate) for name, gate in self._gates.items()}


# --- replay ------------------------------------------------------------------------


@dataclass
class ReplayEntry:
    """`remaining` matching requests answer `status` + `body`, byte for byte."""

    status: int
    body: bytes
    remaining: int
    content_type: str = "application/json; charset=UTF-8"
    project: str | None = None
    key: str | None = None
    model: str | None = None
    action: str | None = None
    midstream: bool = False
    source: str = "body"

    def matches(self, key_name: str, project: str, model: str | None, action: str) -> bool:
        if self.action is None:
            if action not in ("generateContent", "streamGenerateContent"):
                return False
        elif self.action != action:
            return False
        if self.midstream and action != "streamGenerateContent":
            return False
        return ((self.project is None or self.project == project)
                and (self.key is None or self.key == key_name)
                and (self.model is None or self.model == model))

    def describe(self) -> dict:
        return {"status": self.status, "remaining": self.remaining, "project": self.project,
                "key": self.key, "model": self.model, "action": self.action,
                "midstream": self.midstream, "source": self.source, "bytes": len(self.body)}


def _read_body_file(name: str, fixtures_dir: str) -> tuple[bytes, int | None, str]:
    """A replay body from a file of the fixtures directory, named by its name (a path
    is accepted only when it names a file of that directory itself): a fixture (JSON
    with `body` and `http_status`) gives its body and status; any other file is sent
    as it is. Nothing outside the fixtures directory is ever read."""
    real_dir = os.path.realpath(fixtures_dir)
    base = os.path.basename(name)
    if "/" in name and os.path.realpath(os.path.dirname(name) or ".") != real_dir:
        raise ValueError(f"body_file {name!r}: only files of the fixtures directory "
                         f"({fixtures_dir}) can be replayed; give a file name")
    if base in ("", ".", "..") or base.startswith("."):
        raise ValueError(f"body_file {name!r} is not a fixture's name")
    path = os.path.join(real_dir, base)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        raise ValueError(f"body_file {base!r} not found in the fixtures directory "
                         f"({fixtures_dir})") from None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise ValueError(f"body_file {base!r} is not a regular file")
        raw = f.read()
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        doc = None
    if isinstance(doc, dict) and isinstance(doc.get("body"), str) \
            and isinstance(doc.get("http_status"), int):
        return doc["body"].encode("utf-8"), doc["http_status"], base
    return raw, None, base


REPLAY_FIELDS = ("status", "body", "body_file", "body_json", "count", "project", "key",
                 "model", "action", "midstream", "content_type")


def parse_replay(spec, fixtures_dir: str) -> ReplayEntry:
    """Build a ReplayEntry from a `POST /_emu/replay` document (raises ValueError)."""
    if not isinstance(spec, dict):
        raise ValueError("the replay must be a JSON object")
    unknown = set(spec) - set(REPLAY_FIELDS)
    if unknown:
        raise ValueError(f"unknown replay field(s) {sorted(unknown)}; known: "
                         f"{', '.join(REPLAY_FIELDS)}")
    given = [f for f in ("body", "body_file", "body_json") if f in spec]
    if len(given) != 1:
        raise ValueError("give exactly one of body, body_file, body_json")
    status = spec.get("status")
    if "body_file" in given:
        if not isinstance(spec["body_file"], str):
            raise ValueError("body_file must be the name of a file of the fixtures directory")
        body, file_status, source = _read_body_file(spec["body_file"], fixtures_dir)
        status = status if status is not None else file_status
    elif "body" in given:
        if not isinstance(spec["body"], str):
            raise ValueError("body must be a string (use body_json for an object)")
        body, source = spec["body"].encode("utf-8"), "body"
    else:
        body, source = errors.render(spec["body_json"]), "body_json"
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        raise ValueError("status must be an HTTP status code (100-599)")
    count = spec.get("count", 1)
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError("count must be a positive integer")
    for name in ("project", "key", "model", "action", "content_type"):
        if spec.get(name) is not None and not isinstance(spec[name], str):
            raise ValueError(f"{name} must be a string")
    entry = ReplayEntry(status, body, count, project=spec.get("project"), key=spec.get("key"),
                        model=spec.get("model"), action=spec.get("action"),
                        midstream=bool(spec.get("midstream", False)), source=source)
    if spec.get("content_type"):
        entry.content_type = spec["content_type"]
    return entry


class ReplayQueue:
    """Queued replies, used first-in first-out by the requests they match."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[ReplayEntry] = []

    def add(self, entry: ReplayEntry) -> None:
        with self._lock:
            self._entries.append(entry)

    def take(self, key_name: str, project: str, model: str | None,
             action: str) -> ReplayEntry | None:
        with self._lock:
            for entry in self._entries:
                if entry.matches(key_name, project, model, action):
                    entry.remaining -= 1
                    if entry.remaining == 0:
                        self._entries.remove(entry)
                    return entry
            return None

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def snapshot(self) -> list:
        with self._lock:
            return [e.describe() for e in self._entries]
