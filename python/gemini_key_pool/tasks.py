"""run_gemini_task over gkp_run_task: retries on other keys, waiting for
quota, model fallback, and (with no model named) the pool's router choosing
the model from the task and the quota left."""

from __future__ import annotations

import ctypes
import json
import os
import threading

from . import _lib
from ._lib import b, s
from .key_pool_manager import KeyPoolManager

QUALITY_LEVELS = ("draft", "standard", "production", "research")

_shared = {"key": None, "manager": None}
_shared_lock = threading.Lock()
# What decides which pool a manager opened without arguments finds.
_LOOKUP_ENV = ("GEMINI_POOL_CONFIG", "GEMINI_POOL_STATE", "GOOGLE_GEMINI_BASE_URL",
               "XDG_CONFIG_HOME", "XDG_STATE_HOME")


def _manager(config_path, state) -> KeyPoolManager:
    """The manager of the last task, reused while it would open the same pool
    (same process, arguments, lookup variables and directory)."""
    key = (os.getpid(), config_path, state, os.getcwd(),
           tuple(os.environ.get(v) for v in _LOOKUP_ENV))
    with _shared_lock:
        if _shared["key"] != key:
            old = _shared["manager"]
            _shared["key"], _shared["manager"] = None, None
            if old is not None and old._pid == os.getpid():
                old.close()
            _shared["manager"] = KeyPoolManager(config_path, state)
            _shared["key"] = key
        return _shared["manager"]


def _read(path, mode="r"):
    with open(path, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
        return f.read()


def run_gemini_task(task: str, model=None, quality_level=None, context_file=None,
                    output_file=None, image_file=None, image_output=None, system_prompt=None,
                    enable_tools: bool = False, capture_thinking: bool = False, max_wait=None,
                    *, max_retries=None, config_path=None, state=None, timeout=None) -> dict:
    """Runs one task through the pool and returns a dict:
    success, output, model (and model_used), key_id, route (the router's
    decision when no model was named, else None), usage, thinking (with
    capture_thinking), error (None on success), output_file, image_path.

    A task that ran and failed (every key and model exhausted, Google refused
    it) returns success False with the engine's reason in error; a task that
    cannot start (unknown model, unreadable file, bad configuration) raises.
    max_retries is accepted for the original's callers; the engine decides
    retries by its error rules."""
    if quality_level is not None and quality_level not in QUALITY_LEVELS:
        raise ValueError(f"quality_level must be one of {', '.join(QUALITY_LEVELS)}")
    mgr = _manager(config_path, state)
    lb = _lib.lib()
    t = _lib.Task()
    prompt = b(task)
    context = b(_read(context_file)) if context_file else None
    image = _read(image_file, "rb") if image_file else None
    t.prompt = prompt
    t.model = b(mgr._model(model)) if model and model != "auto" else None
    t.context = context
    t.system = b(system_prompt)
    img_buf = None
    if image:
        img_buf = ctypes.create_string_buffer(image, len(image))
        t.image = ctypes.cast(img_buf, ctypes.c_void_p)
        t.image_len = len(image)
    t.capture_thinking = int(bool(capture_thinking))
    t.max_wait_ms = int(float(max_wait) * 1000) if max_wait is not None else -1
    t.timeout_ms = int(float(timeout) * 1000) if timeout is not None else 0
    t.quality = b(quality_level)
    t.enable_tools = int(bool(enable_tools))
    res = _lib.TaskResult()
    err = _lib.Error()
    rc = lb.gkp_run_task(mgr._p(), ctypes.byref(t), ctypes.byref(res), ctypes.byref(err))
    if rc != 0:
        err.raise_for(rc)
    try:
        text = ctypes.string_at(res.text, res.text_len).decode("utf-8", "replace") \
            if res.text else ""
        thoughts = ctypes.string_at(res.thoughts).decode("utf-8", "replace") \
            if res.thoughts else ""
        route = json.loads(ctypes.string_at(res.route).decode("utf-8")) if res.route else None
        images = [(s(res.images[i].mime), ctypes.string_at(res.images[i].data, res.images[i].len))
                  for i in range(res.nimages)]
        ok = bool(res.ok)
        model_used = s(res.model_used) or None
        result = {
            "success": ok,
            "output": text if ok else None,
            "model": model_used,
            "model_used": model_used,
            "key_id": s(res.key_id) or None,
            "route": route,
            "usage": {"input_tokens": res.tokens_in if res.tokens_in >= 0 else None,
                      "output_tokens": res.tokens_out if res.tokens_out >= 0 else None,
                      "attempts": res.attempts, "latency_ms": res.latency_ms},
            "tokens_in": res.tokens_in if res.tokens_in >= 0 else None,
            "tokens_out": res.tokens_out if res.tokens_out >= 0 else None,
            "duration_ms": res.latency_ms,
            "error": None if ok else (s(res.error) or "the task failed"),
            "output_file": None,
            "image_path": None,
        }
        if capture_thinking:
            result["thinking"] = thoughts
            result["thinking_trace"] = thoughts
    finally:
        lb.gkp_task_result_free(ctypes.byref(res))
    if ok and output_file:
        with open(output_file, "w", encoding="utf-8") as f:
            f.write(text)
        result["output_file"] = output_file
    if ok and image_output and images:
        with open(image_output, "wb") as f:
            f.write(images[0][1])
        result["image_path"] = image_output
    return result
