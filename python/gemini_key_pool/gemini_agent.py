"""run_gemini_task and the original's command line, over gkp_run_task:
retries on other keys, waiting for quota, model fallback, and (with no model
named) the pool's router choosing the model from the task and the quota left.

    python3 -m gemini_key_pool.gemini_agent --task "Explain X" --output /tmp/x.md
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import sys
import threading

from . import _lib
from ._lib import PoolError, b, s
from .key_pool_manager import KeyPoolManager

QUALITY_LEVELS = ("draft", "standard", "production", "research")

_shared = {}
_shared_lock = threading.Lock()


def _manager(config_path, state) -> KeyPoolManager:
    """One manager per (config, state) and process, reused across tasks."""
    key = (os.getpid(), config_path, state)
    with _shared_lock:
        m = _shared.get(key)
        if m is None:
            m = _shared[key] = KeyPoolManager(config_path, state)
        return m


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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python3 -m gemini_key_pool.gemini_agent",
        description="Run one task on Gemini through the key pool (the model is chosen from the"
                    " task and the quota left unless --model is given).")
    p.add_argument("--task", required=True, help="the task (prompt); - reads it from stdin")
    p.add_argument("--model", help="the model (default: chosen by the pool)")
    p.add_argument("--context-file", help="a file whose text is sent after the task")
    p.add_argument("--output", help="write the answer here instead of stdout")
    p.add_argument("--image-file", help="an image or PDF to send with the task")
    p.add_argument("--image-output", help="write a generated image here")
    p.add_argument("--quality", choices=QUALITY_LEVELS,
                   help="draft, standard, production or research (model and thinking)")
    p.add_argument("--system-prompt", help="system instructions")
    p.add_argument("--enable-tools", action="store_true",
                   help="Google Search / code execution / URL context as the task calls for")
    p.add_argument("--capture-thinking", action="store_true",
                   help="return the model's thought summaries (with --json)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--max-wait", type=float, help="seconds to wait for a key per model")
    p.add_argument("--config", help="keys.json to use")
    p.add_argument("--state", help="state file or Redis URL to use")
    a = p.parse_args(argv)
    task = sys.stdin.read() if a.task == "-" else a.task
    try:
        r = run_gemini_task(task, model=a.model, quality_level=a.quality,
                            context_file=a.context_file, output_file=a.output,
                            image_file=a.image_file, image_output=a.image_output,
                            system_prompt=a.system_prompt, enable_tools=a.enable_tools,
                            capture_thinking=a.capture_thinking, max_wait=a.max_wait,
                            config_path=a.config, state=a.state)
    except (PoolError, OSError, ValueError) as exc:
        print(f"gemini_agent: {exc}", file=sys.stderr)
        return 1
    if a.json:
        print(json.dumps(r, indent=2))
    elif r["success"] and not a.output and not a.image_output:
        sys.stdout.write(r["output"])
        if r["output"] and not r["output"].endswith("\n"):
            sys.stdout.write("\n")
    if not r["success"]:
        if not a.json:
            print(f"gemini_agent: {r['error']}", file=sys.stderr)
        return 1
    if not a.json:
        where = f" -> {r['output_file']}" if r["output_file"] else ""
        where += f" -> {r['image_path']}" if r["image_path"] else ""
        print(f"gemini_agent: done with {r['model']} (key {r['key_id']}){where}",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
