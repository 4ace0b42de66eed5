"""The keys file: which keys exist, what state each is in, which project owns it.

Format (JSON)::

    {
      "projects": {
        "proj-1": {
          "models": {
            "gemini-3-flash-preview": {"rpm": 5, "tpm": 250000, "rpd": 20},
            "gemini-2.5-flash": {}
          },
          "faults": {"p503": 0.1}
        }
      },
      "keys": [
        {"key": "FAKE-KEY-0001", "name": "k1", "project": "proj-1", "state": "ok"}
      ],
      "faults": {"latency_ms": 20}
    }

- ``keys`` (required, non-empty): ``key`` is the secret (required, unique); ``name``
  (unique) is what answers and logs show, default ``key-N`` with N the 1-based
  position; ``project`` defaults to the key's name (every key its own project, as
  Google's one-key-per-project habit); ``state`` is ``ok`` (default), ``leaked``,
  ``suspended`` or ``billing``; ``billing_status`` (429 default, or 402) is the
  HTTP status of a ``billing`` key's answer; ``faults`` sets per-key faults.
- ``projects`` (optional): a project without ``models`` gets every built-in model
  with its default limits. With ``models``, only the listed models are available
  to the project (every other known model answers 429 ``limit: 0``); ``{}`` means
  the built-in limits, and ``rpm``/``tpm``/``rpd`` override them (``null`` = not
  enforced, ``0`` = not on the free tier). A model name the built-in table lacks
  becomes known to the emulator; its missing limits are not enforced.
- ``faults`` (optional, top level, per project, per key): initial fault settings,
  the same fields as ``POST /_emu/faults``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from .models import Catalog, Limits

KEY_STATES = ("ok", "leaked", "suspended", "billing")


class KeysFileError(ValueError):
    """The keys file is unusable; the message names the file, the place and the fix."""


@dataclass
class Key:
    secret: str
    name: str
    project: str
    state: str = "ok"
    billing_status: int = 429
    faults: dict = field(default_factory=dict)


@dataclass
class Project:
    name: str
    # None: every built-in model with default limits; else only these models.
    models: dict[str, Limits] | None = None
    faults: dict = field(default_factory=dict)

    def limits_for(self, model_id: str, catalog: Catalog) -> Limits | None:
        """This project's limits for a model, or None when the project lacks it."""
        if self.models is None:
            spec = catalog.get(model_id)
            return spec.limits if spec else None
        return self.models.get(model_id)


class Keyring:
    """All keys and projects of one keys file."""

    def __init__(self, keys: list[Key], projects: dict[str, Project], faults: dict,
                 catalog: Catalog) -> None:
        self.keys = keys
        self.projects = projects
        self.global_faults = faults
        self.catalog = catalog
        self._by_secret = {k.secret: k for k in keys}
        self._by_name = {k.name: k for k in keys}

    def by_secret(self, secret: str) -> Key | None:
        return self._by_secret.get(secret)

    def by_name(self, name: str) -> Key | None:
        return self._by_name.get(name)

    def secrets(self) -> list[str]:
        return list(self._by_secret)


def _fail(path: str, where: str, what: str) -> KeysFileError:
    return KeysFileError(f"{path}: {where}: {what}")


def _limit(path: str, where: str, value, default: int | None) -> int | None:
    if value is _MISSING:
        return default
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _fail(path, where, f"must be a non-negative integer or null (got {value!r})")
    return value


_MISSING = object()


def _parse_models(path: str, where: str, raw, catalog: Catalog) -> dict[str, Limits]:
    if not isinstance(raw, dict):
        raise _fail(path, where, "must be an object mapping model ids to limits")
    models = {}
    for model_id, lim in raw.items():
        here = f"{where}.{model_id}"
        if not isinstance(lim, dict):
            raise _fail(path, here, 'must be an object like {"rpm": 5} or {}')
        unknown = set(lim) - {"rpm", "tpm", "rpd"}
        if unknown:
            raise _fail(path, here, f"unknown field(s) {sorted(unknown)}; use rpm, tpm, rpd")
        spec = catalog.get(model_id)
        base = spec.limits if spec else Limits(None, None, None)
        limits = Limits(_limit(path, f"{here}.rpm", lim.get("rpm", _MISSING), base.rpm),
                        _limit(path, f"{here}.tpm", lim.get("tpm", _MISSING), base.tpm),
                        _limit(path, f"{here}.rpd", lim.get("rpd", _MISSING), base.rpd))
        if spec is None:
            catalog.add_custom(model_id, limits)
        models[model_id] = limits
    return models


def _parse_faults(path: str, where: str, raw, validate) -> dict:
    if raw is None:
        return {}
    try:
        return validate(raw)
    except ValueError as exc:
        raise _fail(path, where, str(exc)) from None


def parse_keys(doc, path: str, validate_faults) -> Keyring:
    """Build a Keyring from a parsed keys-file document (raises KeysFileError)."""
    catalog = Catalog()
    if not isinstance(doc, dict):
        raise _fail(path, "top level", 'must be an object with "keys" (and optional "projects")')
    unknown = set(doc) - {"projects", "keys", "faults"}
    if unknown:
        raise _fail(path, "top level", f"unknown field(s) {sorted(unknown)}")
    projects: dict[str, Project] = {}
    raw_projects = doc.get("projects", {})
    if not isinstance(raw_projects, dict):
        raise _fail(path, "projects", "must be an object mapping project names to settings")
    for name, raw in raw_projects.items():
        where = f"projects.{name}"
        if not isinstance(raw, dict):
            raise _fail(path, where, 'must be an object (e.g. {} or {"models": {...}})')
        unknown = set(raw) - {"models", "faults"}
        if unknown:
            raise _fail(path, where, f"unknown field(s) {sorted(unknown)}")
        models = None
        if "models" in raw:
            models = _parse_models(path, f"{where}.models", raw["models"], catalog)
        projects[name] = Project(name, models,
                                 _parse_faults(path, f"{where}.faults", raw.get("faults"),
                                               validate_faults))

    raw_keys = doc.get("keys")
    if not isinstance(raw_keys, list) or not raw_keys:
        raise _fail(path, "keys", "must be a non-empty array of {\"key\": ..., ...}")
    keys: list[Key] = []
    seen_secret, seen_name = set(), set()
    for i, raw in enumerate(raw_keys):
        where = f"keys[{i}]"
        if not isinstance(raw, dict):
            raise _fail(path, where, 'must be an object like {"key": "FAKE-KEY-0001"}')
        unknown = set(raw) - {"key", "name", "project", "state", "billing_status", "faults"}
        if unknown:
            raise _fail(path, where, f"unknown field(s) {sorted(unknown)}")
        secret = raw.get("key")
        if not isinstance(secret, str) or not secret:
            raise _fail(path, f"{where}.key", "must be a non-empty string")
        if secret in seen_secret:
            raise _fail(path, f"{where}.key", "duplicate key (each key may appear once)")
        name = raw.get("name", f"key-{i + 1}")
        if not isinstance(name, str) or not name:
            raise _fail(path, f"{where}.name", "must be a non-empty string")
        if name in seen_name:
            raise _fail(path, f"{where}.name", f"duplicate name {name!r}")
        if name == secret:
            raise _fail(path, f"{where}.name", "must differ from the key itself")
        project = raw.get("project", name)
        if not isinstance(project, str) or not project:
            raise _fail(path, f"{where}.project", "must be a non-empty string")
        state = raw.get("state", "ok")
        if state not in KEY_STATES:
            raise _fail(path, f"{where}.state",
                        f"must be one of {', '.join(KEY_STATES)} (got {state!r})")
        billing_status = raw.get("billing_status", 429)
        if billing_status not in (402, 429):
            raise _fail(path, f"{where}.billing_status", "must be 429 or 402")
        seen_secret.add(secret)
        seen_name.add(name)
        projects.setdefault(project, Project(project))
        keys.append(Key(secret, name, project, state, billing_status,
                        _parse_faults(path, f"{where}.faults", raw.get("faults"),
                                      validate_faults)))
    faults = _parse_faults(path, "faults", doc.get("faults"), validate_faults)
    return Keyring(keys, projects, faults, catalog)


def load_keys(path: str, validate_faults) -> Keyring:
    """Read and validate a keys file (raises KeysFileError with a one-line reason)."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise KeysFileError(f"{path}: cannot read the keys file: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise KeysFileError(f"{path}: the keys file is not UTF-8 text") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise KeysFileError(f"{path}: invalid JSON at line {exc.lineno}, column {exc.colno}: "
                            f"{exc.msg}") from None
    return parse_keys(doc, path, validate_faults)
