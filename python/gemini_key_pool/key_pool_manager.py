"""KeyPoolManager: the original package's key manager, over libgkp's engine.

A reservation is an engine lease: exclusive across threads, processes and
(with a Redis state) machines, renewed in the background while it is held,
and reclaimed by the engine when the holding process dies."""

from __future__ import annotations

import ast
import atexit
import ctypes
import errno
import json
import os
import re
import threading
import time
import weakref

from . import _lib
from ._lib import PoolError, b, s

# The model a reservation counts against when none is named: the original's
# default ("gemini-3-flash").
DEFAULT_MODEL = "gemini-3-flash-preview"

# The original's short model names and the API ids they stood for.
MODEL_ALIASES = {
    "gemini-3.1-pro": "gemini-3.1-pro-preview",
    "gemini-3-pro": "gemini-3.1-pro-preview",
    "gemini-3-flash": "gemini-3-flash-preview",
    "gemini-3.1-flash": "gemini-3.1-flash-lite-preview",
    "gemini-3.1-flash-lite": "gemini-3.1-flash-lite-preview",
    "gemma-3-1b": "gemma-3-1b-it",
    "gemma-3-4b": "gemma-3-4b-it",
    "gemma-3-12b": "gemma-3-12b-it",
    "gemma-3-27b": "gemma-3-27b-it",
}

# parse_rate_limit_type's vocabulary (the original's tiers) for the engine's kinds.
_LIMIT_TYPES = {"rpm": "rpm", "tpm": "tpm", "rpd": "rpd", "no_free_tier": "quota",
                "billing": "quota", "unknown_429": "unknown"}


def _verdict_of(message, status: int = 429) -> _lib.Verdict:
    body = _body_of(message)
    v = _lib.Verdict()
    raw = b(body) or b""
    _lib.lib().gkp_classify(_status_of(message, status), raw, len(raw), ctypes.byref(v))
    return v


def parse_rate_limit_type(message) -> str:
    """Classifies a rate-limit error (Google's JSON body, an SDK exception's
    text, or plain text) by the engine's rules: "rpm", "tpm", "rpd",
    "quota" (no free tier, billing) or "unknown"; another kind of error by
    its engine name ("server", "invalid_key", ...)."""
    if not message:
        return "unknown"
    name = s(_lib.lib().gkp_kind_name(_verdict_of(message).kind))
    return _LIMIT_TYPES.get(name, name)


def _body_of(message) -> str:
    """The error text to classify: JSON as is; an SDK exception's text whose
    body is a Python dict (google-genai prints "429 RESOURCE_EXHAUSTED.
    {'error': {...}}") made JSON; anything else as plain text."""
    if message is None:
        return ""
    if isinstance(message, bytes):
        message = message.decode("utf-8", "replace")
    text = str(message)
    start = text.find("{")
    if start >= 0:
        tail = text[start:]
        try:
            json.loads(tail)
            return tail
        except ValueError:
            pass
        try:
            doc = ast.literal_eval(tail)
            if isinstance(doc, dict):
                return json.dumps(doc)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            pass
    return text


def _status_of(message, default: int) -> int:
    if message is None:
        return default
    text = str(message)
    try:
        doc = json.loads(_body_of(text))
        err = doc[0] if isinstance(doc, list) and doc else doc
        code = err.get("error", {}).get("code")
        if isinstance(code, int) and 100 <= code <= 599:
            return code
    except (ValueError, AttributeError, TypeError):
        pass
    m = re.match(r"\s*(?:Error code:\s*)?([1-5]\d\d)\b", text)
    return int(m.group(1)) if m else default


def _model_in(message) -> str | None:
    """The model a quota error names (quotaDimensions.model), if any."""
    m = re.search(r"""["']model["']\s*:\s*["']([A-Za-z0-9._-]+)["']""", str(message or ""))
    return m.group(1) if m else None


class _Held:
    __slots__ = ("lease", "sent")

    def __init__(self, lease: _lib.Lease) -> None:
        self.lease = lease
        self.sent = False


_managers = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # A pool belongs to the process that opened it: the child opens its own
    # on first use; the parent's leases stay the parent's.
    for m in list(_managers):
        m._forked()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


@atexit.register
def _close_all() -> None:
    # Reservations still held at exit are released now rather than left to
    # the engine's reclaim (which, on Redis, waits for the lease to expire).
    for m in list(_managers):
        try:
            if m._pool is not None and m._pid == os.getpid():
                m.close()
        except Exception:  # noqa: BLE001 - exiting anyway
            pass


class KeyPoolManager:
    """The pool of keys.json, its state shared with every process using it.

    config_path: keys.json (default: $GEMINI_POOL_CONFIG, ./keys.json, then
    $XDG_CONFIG_HOME/gemini-pool/keys.json).  state: a state file or a Redis
    URL (default: $GEMINI_POOL_STATE, the config's "state", then
    $XDG_STATE_HOME/gemini-pool/state.db)."""

    default_model = DEFAULT_MODEL

    def __init__(self, config_path=None, state=None) -> None:
        self._config_arg = os.fspath(config_path) if config_path is not None else None
        self._state_arg = os.fspath(state) if state is not None else None
        self._lock = threading.Lock()
        self._held: dict = {}
        self._models: dict = {}  # model names resolved (a reload may remove one: the
        # engine then answers "unknown model" itself)
        self._renewer = None
        self._stop = threading.Event()
        self._pool = None
        self._open()
        _managers.add(self)

    # ---- the pool --------------------------------------------------------

    def _open(self) -> None:
        lb = _lib.lib()
        opts = _lib.Options()
        opts.config_path = b(self._config_arg)
        opts.state_path = b(self._state_arg)
        opts.log = _lib.log_callback
        pool = ctypes.c_void_p()
        err = _lib.Error()
        rc = lb.gkp_pool_open(ctypes.byref(pool), ctypes.byref(opts), ctypes.byref(err))
        if rc != 0:
            err.raise_for(rc)
        self._pool = pool
        self._pid = os.getpid()
        self.config_path = s(lb.gkp_pool_config_path(pool) or b"")
        self.state_path = s(lb.gkp_pool_state_path(pool) or b"")

    def _forked(self) -> None:
        # The parent's pool, leases and renewal thread are not ours.
        self._pool = None
        self._held = {}
        self._renewer = None
        self._stop = threading.Event()
        self._lock = threading.Lock()

    def _p(self):
        if self._pool is None:
            if getattr(self, "_closed", False):
                raise PoolError(errno.EBADF, "the key pool manager was closed")
            self._open()
        return self._pool

    def close(self) -> None:
        """Releases every key still held and closes the pool."""
        self._stop.set()
        pool, self._pool = self._pool, None
        self._closed = True
        if pool is not None:
            with self._lock:
                held, self._held = self._held, {}
            lb = _lib.lib()
            for stack in held.values():
                for h in stack:
                    lb.gkp_release(pool, ctypes.byref(h.lease), int(h.sent), None)
            lb.gkp_pool_close(pool)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            if self._pool is not None and self._pid == os.getpid():
                self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    def _model(self, model) -> str:
        """The engine's id for a model name (the original's short names too)."""
        name = model or self.default_model
        known = self._models.get(name)
        if known is not None:
            return known
        lb = _lib.lib()
        pool = self._p()
        for cand in (name, MODEL_ALIASES.get(name), f"{name}-preview", f"{name}-it"):
            if cand and lb.gkp_model_known(pool, b(cand)):
                if len(self._models) < 256:
                    self._models[name] = cand
                return cand
        raise ValueError(f"unknown model '{name}'")

    @staticmethod
    def _provider(provider) -> None:
        if provider != "gemini":
            raise ValueError(f"Provider {provider} not found")

    # ---- reservations ----------------------------------------------------

    def reserve_key(self, provider: str = "gemini", model=None, wait=None) -> str:
        """Reserves the least recently used eligible key for one request on
        `model` and returns its id.  Raises RuntimeError when none is free
        now, or, with wait=SECONDS, when none became free in that time.
        Release it with release_key(key_id)."""
        if provider != "gemini":
            self._provider(provider)
        mid = self._model(model).encode()
        lb = _lib._lib or _lib.lib()
        pool = self._pool or self._p()
        lease = _lib.Lease()
        w = _lib.Wait()
        err = _lib.Error()
        deadline = None if wait is None else time.monotonic() + max(0.0, float(wait))
        nap = 0.002
        while True:
            rc = lb.gkp_reserve(pool, mid, 0, ctypes.byref(lease), ctypes.byref(w),
                                ctypes.byref(err))
            if rc == 0:
                break
            if rc != -errno.EAGAIN:
                err.raise_for(rc)
            now = time.monotonic()
            if deadline is None or now >= deadline or w.reason == 4:  # GKP_WAIT_NEVER
                why = _lib.WAIT_REASONS.get(w.reason, "busy")
                raise PoolError(errno.EAGAIN,
                                f"No available keys for provider '{provider}' on {s(mid)}"
                                f" — all reserved or on cooldown ({why})")
            until = w.next_ms / 1000.0 - time.time() if 0 < w.next_ms < 2**62 else nap
            time.sleep(min(max(until, 0.001), nap, deadline - now))
            nap = min(nap * 2, 0.1)
        key_id = s(lease.key_id)
        with self._lock:
            self._held.setdefault(key_id, []).append(_Held(lease))
            if self._renewer is None:
                self._renewer = threading.Thread(target=_renew_loop,
                                                 args=(weakref.ref(self), self._stop),
                                                 name="gkp-lease-renew", daemon=True)
                self._renewer.start()
        return key_id

    def release_key(self, key_id: str) -> None:
        """Ends the reservation of key_id.  A request reported with
        update_usage stays counted; one never sent gives its counts back.
        Releasing a key not held is harmless."""
        with self._lock:
            stack = self._held.get(key_id)
            if not stack:
                return
            h = stack.pop()
            if not stack:
                del self._held[key_id]
        err = _lib.Error()
        rc = (_lib._lib or _lib.lib()).gkp_release(self._pool or self._p(), ctypes.byref(h.lease),
                                                   int(h.sent), ctypes.byref(err))
        if rc != 0:
            err.raise_for(rc)

    def held_keys(self) -> list:
        """The ids of the keys this manager holds now."""
        with self._lock:
            return [k for k, v in self._held.items() for _ in v]

    def select_key(self, provider: str = "gemini", model=None) -> str:
        """The key reserve_key would pick now, without reserving it; when
        none is free, the one that frees up first (as the original)."""
        self._provider(provider)
        mid = b(self._model(model))
        lb = _lib.lib()
        pool = self._p()
        lease = _lib.Lease()
        w = _lib.Wait()
        err = _lib.Error()
        rc = lb.gkp_reserve(pool, mid, 0, ctypes.byref(lease), ctypes.byref(w), ctypes.byref(err))
        if rc == 0:
            lb.gkp_release(pool, ctypes.byref(lease), 0, None)
            return s(lease.key_id)
        if rc == -errno.EAGAIN and w.next_key_id:
            return s(w.next_key_id)
        if rc == -errno.EAGAIN:
            raise PoolError(errno.EAGAIN, f"No available keys for provider '{provider}'")
        err.raise_for(rc)

    def get_api_key(self, key_id: str) -> str:
        """The secret of key_id (resolved from env: or .env)."""
        buf = ctypes.create_string_buffer(1024)
        err = _lib.Error()
        rc = _lib.lib().gkp_key_secret(self._p(), b(key_id), buf, len(buf), ctypes.byref(err))
        if rc == -errno.ENOENT:
            raise ValueError(f"Key ID {key_id} not found")
        if rc != 0:
            err.raise_for(rc)
        return s(buf.value)

    def update_usage(self, key_id: str, usage_data=None) -> None:
        """Reports that the request made with a reserved key was sent:
        {"requests": 1, "input_tokens": N, "output_tokens": N, "model": M}.
        The reservation already counted it against the limits; this keeps
        it counted at release and corrects the token window with the real
        prompt size.  A key not reserved by this manager counts nothing
        (reserve_key is how requests are counted)."""
        usage_data = usage_data or {}
        with self._lock:
            stack = self._held.get(key_id)
            h = stack[-1] if stack else None
        if h is None:
            self.get_api_key(key_id)  # ValueError for an unknown key
            return
        if usage_data.get("requests", 1) or usage_data.get("input_tokens"):
            h.sent = True
        u = _lib.Usage(int(usage_data.get("input_tokens", -1) or -1),
                       int(usage_data.get("output_tokens", -1) or -1),
                       int(usage_data.get("thinking_tokens", -1) or -1))
        if u.prompt_tokens < 0 and u.candidates_tokens < 0:
            return
        err = _lib.Error()
        rc = _lib.lib().gkp_record_usage(self._p(), ctypes.byref(h.lease), ctypes.byref(u),
                                         ctypes.byref(err))
        if rc != 0:
            err.raise_for(rc)

    def mark_key_rate_limited(self, key_id: str, error_message=None, model=None,
                              cooldown_seconds=None) -> dict:
        """Applies an error the caller met with key_id.  With error_message
        (Google's JSON body, an SDK exception or plain text) the engine's
        rules decide: per minute → the retry delay, per day → midnight
        Pacific, no free tier, billing, invalid key...  cooldown_seconds
        overrides the length.  The cooldown is for (key's project, model);
        without a model, the model the error names, else the default model
        (with cooldown_seconds and no model: the whole key, as the original).
        For the original's positional order (key_id, cooldown_seconds) a
        number in second place is taken as cooldown_seconds.
        Returns {"kind", "cooldown_until" (epoch seconds, 0: none), "model"}."""
        if isinstance(error_message, (int, float)) and not isinstance(error_message, bool):
            error_message, cooldown_seconds = None, error_message
        lb = _lib.lib()
        pool = self._p()
        err = _lib.Error()
        named = model or _model_in(error_message)
        if cooldown_seconds is not None:
            v = _verdict_of(error_message) if error_message else _lib.Verdict()
            kind = v.kind if v.kind != _lib.KIND_NONE else _lib.KIND_UNKNOWN_429
            mid = self._model(named) if named else None
            until = lb.gkp_pool_now(pool) + int(float(cooldown_seconds) * 1000)
            rc = lb.gkp_set_cooldown(pool, b(key_id), b(mid), until, kind, ctypes.byref(err))
            if rc != 0:
                err.raise_for(rc)
            return {"kind": s(lb.gkp_kind_name(kind)), "cooldown_until": until / 1000.0,
                    "model": mid}
        try:
            mid = self._model(named)
        except ValueError:
            mid = self._model(None)
        body = b(_body_of(error_message)) or b""
        v = _lib.Verdict()
        rc = lb.gkp_report_key_error(pool, b(key_id), b(mid), _status_of(error_message, 429),
                                     body, len(body), ctypes.byref(v), ctypes.byref(err))
        if rc == -errno.ENOENT and b"key id" in err.msg:
            raise ValueError(f"Key ID {key_id} not found")
        if rc != 0:
            err.raise_for(rc)
        return {"kind": s(lb.gkp_kind_name(v.kind)), "cooldown_until": v.cooldown_until_ms / 1000.0,
                "model": mid}

    def count_available(self, provider: str = "gemini", model=None) -> int:
        """How many keys could be reserved for `model` right now."""
        self._provider(provider)
        err = _lib.Error()
        n = _lib.lib().gkp_count_available(self._p(), b(self._model(model)), ctypes.byref(err))
        if n < 0:
            err.raise_for(n)
        return n

    def clear_expired_cooldowns(self) -> int:
        """Removes cooldowns and leases that have expired; returns how many."""
        err = _lib.Error()
        n = _lib.lib().gkp_clear_expired(self._p(), ctypes.byref(err))
        if n < 0:
            err.raise_for(n)
        return n

    def key_ids(self) -> list:
        """The configured key ids, in config order."""
        lb = _lib.lib()
        pool = self._p()
        return [s(lb.gkp_key_id(pool, i)) for i in range(lb.gkp_key_count(pool))]

    def status(self) -> dict:
        """The pool as `gemini-pool status --json` shows it (no secrets)."""
        out = ctypes.c_void_p()
        err = _lib.Error()
        rc = _lib.lib().gkp_status_json(self._p(), ctypes.byref(out), ctypes.byref(err))
        if rc != 0:
            err.raise_for(rc)
        return json.loads(_lib.take_string(out.value))

    def route(self, task: str, quality=None, has_image: bool = False) -> dict:
        """What the pool's router would pick for `task` now (sends nothing)."""
        out = ctypes.c_void_p()
        err = _lib.Error()
        rc = _lib.lib().gkp_route(self._p(), b(task), b(quality), int(bool(has_image)),
                                  ctypes.byref(out), ctypes.byref(err))
        if rc != 0:
            err.raise_for(rc)
        return json.loads(_lib.take_string(out.value))

    # ---- background renewal ----------------------------------------------

    def _renew_all(self) -> None:
        pool = self._pool
        if pool is None:
            return
        with self._lock:
            held = [h for stack in self._held.values() for h in stack]
        lb = _lib.lib()
        err = _lib.Error()
        for h in held:
            rc = lb.gkp_lease_renew(pool, ctypes.byref(h.lease), ctypes.byref(err))
            if rc == -errno.ESTALE:
                _lib.log.warning("%s", s(err.msg))


def _renew_loop(ref, stop: threading.Event) -> None:
    while not stop.wait(_lib.LEASE_RENEW_S):
        m = ref()
        if m is None:
            return
        try:
            m._renew_all()
        except Exception as exc:  # noqa: BLE001 - keep renewing
            _lib.log.warning("lease renewal: %s", exc)
        del m
