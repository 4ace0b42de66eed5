"""libgkp through ctypes: loading the library, the structures of gkp.h that
the package uses, and errors carrying the library's one-line messages.

Only the public API (gkp.h) is used.  The structures mirror gkp.h of the
library's ABI 0.3 (libgkp.so.0.3)."""

from __future__ import annotations

import ctypes
import ctypes.util
import errno as _errno
import logging
import os
import threading

SONAME = "libgkp.so.0.3"

ID_MAX = 64
MSG_MAX = 512
REASON_MAX = 160
LEASE_RENEW_S = 20.0  # GKP_LEASE_RENEW_MS

# enum gkp_kind
KIND_NONE, KIND_RPM, KIND_TPM, KIND_RPD, KIND_NO_FREE_TIER, KIND_BILLING, KIND_UNKNOWN_429 = range(7)
# enum gkp_wait_reason
WAIT_REASONS = {0: "none", 1: "busy", 2: "cooldown", 3: "quota", 4: "never", 5: "unreachable"}

log = logging.getLogger("gemini_key_pool")


class PoolError(RuntimeError):
    """An error from libgkp: `errno` is the (positive) errno value, the
    message is the library's one line."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.errno = abs(code)
        self.message = message


class Error(ctypes.Structure):
    _fields_ = [("code", ctypes.c_int), ("msg", ctypes.c_char * MSG_MAX)]

    def raise_for(self, rc: int, what: str = "") -> None:
        msg = self.msg.decode("utf-8", "replace") or os.strerror(abs(rc))
        raise PoolError(rc, f"{what}: {msg}" if what else msg)


CLOCK_FN = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_void_p)
LOG_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p)


class Options(ctypes.Structure):
    _fields_ = [("config_path", ctypes.c_char_p), ("state_path", ctypes.c_char_p),
                ("clock", CLOCK_FN), ("clock_ud", ctypes.c_void_p),
                ("log", LOG_FN), ("log_ud", ctypes.c_void_p)]


class Lease(ctypes.Structure):
    _fields_ = [("id", ctypes.c_uint64), ("started_ms", ctypes.c_int64),
                ("est_tokens", ctypes.c_int64), ("key_id", ctypes.c_char * ID_MAX),
                ("project", ctypes.c_char * ID_MAX), ("model", ctypes.c_char * ID_MAX)]


class Wait(ctypes.Structure):
    _fields_ = [("reason", ctypes.c_int), ("next_ms", ctypes.c_int64),
                ("next_key_id", ctypes.c_char * ID_MAX)]


class Usage(ctypes.Structure):
    _fields_ = [("prompt_tokens", ctypes.c_int64), ("candidates_tokens", ctypes.c_int64),
                ("thoughts_tokens", ctypes.c_int64)]


class Verdict(ctypes.Structure):
    _fields_ = [("kind", ctypes.c_int), ("action", ctypes.c_int), ("http_status", ctypes.c_int),
                ("retry_ms", ctypes.c_int64), ("learned_limit", ctypes.c_int64),
                ("learned_metric", ctypes.c_int), ("key_wide", ctypes.c_int),
                ("cooldown_until_ms", ctypes.c_int64), ("message", ctypes.c_char * REASON_MAX)]


TEXT_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.POINTER(ctypes.c_char), ctypes.c_size_t)
RESTART_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


class Task(ctypes.Structure):
    _fields_ = [("profile", ctypes.c_char_p), ("model", ctypes.c_char_p),
                ("prompt", ctypes.c_char_p), ("context", ctypes.c_char_p),
                ("system", ctypes.c_char_p), ("image", ctypes.c_void_p),
                ("image_len", ctypes.c_size_t), ("thinking", ctypes.c_char_p),
                ("capture_thinking", ctypes.c_int), ("max_wait_ms", ctypes.c_int64),
                ("timeout_ms", ctypes.c_int64), ("on_text", TEXT_FN),
                ("on_restart", RESTART_FN), ("ud", ctypes.c_void_p),
                ("quality", ctypes.c_char_p), ("enable_tools", ctypes.c_int)]


class Image(ctypes.Structure):
    _fields_ = [("mime", ctypes.c_char * 48), ("data", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class TaskResult(ctypes.Structure):
    _fields_ = [("ok", ctypes.c_int), ("model_used", ctypes.c_char * ID_MAX),
                ("key_id", ctypes.c_char * ID_MAX), ("attempts", ctypes.c_int),
                ("tokens_in", ctypes.c_int64), ("tokens_out", ctypes.c_int64),
                ("latency_ms", ctypes.c_int64), ("text", ctypes.c_void_p),
                ("text_len", ctypes.c_size_t), ("thoughts", ctypes.c_void_p),
                ("images", ctypes.POINTER(Image)), ("nimages", ctypes.c_size_t),
                ("error", ctypes.c_char * MSG_MAX), ("route", ctypes.c_void_p)]


P = ctypes.c_void_p
PErr = ctypes.POINTER(Error)
_SIGNATURES = {
    "gkp_pool_open": (ctypes.c_int, [ctypes.POINTER(P), ctypes.POINTER(Options), PErr]),
    "gkp_pool_close": (None, [P]),
    "gkp_pool_state_path": (ctypes.c_char_p, [P]),
    "gkp_pool_config_path": (ctypes.c_char_p, [P]),
    "gkp_pool_now": (ctypes.c_int64, [P]),
    "gkp_model_known": (ctypes.c_int, [P, ctypes.c_char_p]),
    "gkp_reserve": (ctypes.c_int, [P, ctypes.c_char_p, ctypes.c_int64, ctypes.POINTER(Lease),
                                   ctypes.POINTER(Wait), PErr]),
    "gkp_lease_renew": (ctypes.c_int, [P, ctypes.POINTER(Lease), PErr]),
    "gkp_release": (ctypes.c_int, [P, ctypes.POINTER(Lease), ctypes.c_int, PErr]),
    "gkp_key_secret": (ctypes.c_int, [P, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t,
                                      PErr]),
    "gkp_record_usage": (ctypes.c_int, [P, ctypes.POINTER(Lease), ctypes.POINTER(Usage), PErr]),
    "gkp_kind_name": (ctypes.c_char_p, [ctypes.c_int]),
    "gkp_classify": (None, [ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t,
                            ctypes.POINTER(Verdict)]),
    "gkp_report_key_error": (ctypes.c_int, [P, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int,
                                            ctypes.c_char_p, ctypes.c_size_t,
                                            ctypes.POINTER(Verdict), PErr]),
    "gkp_set_cooldown": (ctypes.c_int, [P, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int64,
                                        ctypes.c_int, PErr]),
    "gkp_count_available": (ctypes.c_int, [P, ctypes.c_char_p, PErr]),
    "gkp_clear_expired": (ctypes.c_int, [P, PErr]),
    "gkp_key_count": (ctypes.c_size_t, [P]),
    "gkp_key_id": (ctypes.c_char_p, [P, ctypes.c_size_t]),
    "gkp_next_pacific_midnight": (ctypes.c_int64, [ctypes.c_int64]),
    "gkp_status_json": (ctypes.c_int, [P, ctypes.POINTER(ctypes.c_void_p), PErr]),
    "gkp_run_task": (ctypes.c_int, [P, ctypes.POINTER(Task), ctypes.POINTER(TaskResult), PErr]),
    "gkp_task_result_free": (None, [ctypes.POINTER(TaskResult)]),
    "gkp_route": (ctypes.c_int, [P, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int,
                                 ctypes.POINTER(ctypes.c_void_p), PErr]),
    "gkp_rate": (ctypes.c_int, [P, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p,
                                ctypes.c_int, PErr]),
    "gkp_free": (None, [ctypes.c_void_p]),
}

_lib = None
_lib_lock = threading.Lock()


def _candidates() -> list:
    given = os.environ.get("GKP_LIBRARY")
    if given:
        return [given]
    names = [SONAME]
    found = ctypes.util.find_library("gkp")
    if found and found not in names and found.startswith(SONAME):
        names.append(found)
    # Where `meson install` puts it when the loader's cache does not know it yet.
    for d in ("/usr/local/lib", "/usr/local/lib64", "/usr/lib"):
        try:
            for sub in [""] + sorted(os.listdir(d)):
                p = os.path.join(d, sub, SONAME)
                if os.path.exists(p):
                    names.append(p)
        except OSError:
            pass
    return names


def lib():
    """The loaded libgkp, its functions typed (loaded on first use)."""
    global _lib
    if _lib is not None:
        return _lib
    with _lib_lock:
        if _lib is not None:
            return _lib
        tried = []
        handle = None
        for name in _candidates():
            try:
                handle = ctypes.CDLL(name)
                break
            except OSError as exc:
                tried.append(f"{name} ({exc})")
        if handle is None:
            where = "$GKP_LIBRARY" if os.environ.get("GKP_LIBRARY") else SONAME
            raise PoolError(_errno.ENOENT,
                            f"cannot load libgkp: {where} not found ({'; '.join(tried)[:300]});"
                            " install gemini-key-pool's library or set GKP_LIBRARY to its path")
        for name, (res, args) in _SIGNATURES.items():
            fn = getattr(handle, name, None)
            if fn is None:
                if name in ("gkp_route", "gkp_rate", "gkp_free"):
                    continue
                raise PoolError(_errno.ENOSYS, f"libgkp at {handle._name} lacks {name}: "
                                "it is not the library of this package's version (0.3)")
            fn.restype = res
            fn.argtypes = args
        _lib = handle
        return _lib


def free(ptr) -> None:
    """Frees memory the library allocated for the caller."""
    if not ptr:
        return
    lb = lib()
    if hasattr(lb, "gkp_free"):
        lb.gkp_free(ptr)
    else:
        _libc().free(ctypes.c_void_p(ptr))


_libc_handle = None


def _libc():
    global _libc_handle
    if _libc_handle is None:
        _libc_handle = ctypes.CDLL(None)
        _libc_handle.free.argtypes = [ctypes.c_void_p]
        _libc_handle.free.restype = None
    return _libc_handle


def take_string(ptr) -> str | None:
    """The NUL-terminated malloc'd string at ptr, freed."""
    if not ptr:
        return None
    try:
        return ctypes.string_at(ptr).decode("utf-8", "replace")
    finally:
        free(ptr)


def b(s) -> bytes | None:
    """A str argument as bytes for the library (None stays NULL)."""
    if s is None:
        return None
    if isinstance(s, bytes):
        return s
    return str(s).encode("utf-8")


def s(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


_LEVELS = {0: logging.DEBUG, 1: logging.INFO, 2: logging.WARNING, 3: logging.ERROR}


@LOG_FN
def log_callback(ud, level, line):
    try:
        log.log(_LEVELS.get(level, logging.WARNING), "%s", line.decode("utf-8", "replace"))
    except Exception:  # noqa: BLE001 - never raise into C
        pass
