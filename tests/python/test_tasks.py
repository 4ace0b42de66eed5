"""run_gemini_task and gemini_agent over gkp_run_task against the emulator, and
the original README's Python example, word for word, from our README."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
from conftest import SOURCE_ROOT, fixture_body

from gemini_key_pool import KeyPoolManager, PoolError, run_gemini_task

TASK = "Analyze this code for security issues: eval(input())"


def readme_example() -> str:
    with open(os.path.join(SOURCE_ROOT, "README.md"), encoding="utf-8") as f:
        text = f.read()
    m = re.search(r"<!-- example: python -->\n```python\n(.*?)\n```\n", text, re.S)
    assert m, "no Python example in README.md"
    return m.group(1) + "\n"


def model_status(m: KeyPoolManager, key_id: str, model: str) -> dict:
    return next(k for k in m.status()["keys"] if k["id"] == key_id)["models"][model]


def test_production_quality_output_is_the_emulators_answer(emu_pool, tmp_path):
    emu, pool = emu_pool(1)
    out = tmp_path / "analysis.md"
    r = run_gemini_task(TASK, quality_level="production", output_file=str(out),
                        capture_thinking=True)
    assert r["success"] and r["error"] is None, r
    # The same task through `gemini-pool ask` on the same key: the emulator's
    # answer is a function of the request, the model and the key.
    cli = pool.cli("ask", "--task", TASK, "--quality", "production", "--model", r["model"])
    assert cli.returncode == 0, cli.stderr
    assert r["output"] == cli.stdout.decode("utf-8")
    assert r["output"].startswith(f"[fake-gemini model={r['model']} key=k1 project=p1 ")
    assert "eval(input())" in r["output"]
    assert out.read_text(encoding="utf-8") == r["output"] and r["output_file"] == str(out)
    # Routed: the decision names the quality given and puts the model used first.
    assert r["route"]["quality"] == "production" and r["route"]["quality_given"] is True
    assert r["route"]["candidates"][0]["model"] == r["model"]
    assert r["route"]["candidates"][0]["thinking"] == "high"
    assert "thinking level: high" in r["thinking"].lower()
    assert r["key_id"] == "k1" and r["usage"]["input_tokens"] > 0
    log = emu.log()
    assert [e["model"] for e in log] == [r["model"], r["model"]]


def test_explicit_model_and_files(emu_pool, tmp_path):
    emu, pool = emu_pool(2)
    ctx = tmp_path / "ctx.txt"
    ctx.write_text("def f(): return 1\n")
    r = run_gemini_task("Summarize the context", model="gemini-3.1-flash",  # original's name
                        context_file=str(ctx), system_prompt="Be brief.")
    assert r["success"] and r["model"] == "gemini-3.1-flash-lite-preview" and r["route"] is None
    assert "def f(): return 1" in r["output"] and 'system="Be brief."' in r["output"]
    assert "thinking" not in r
    with pytest.raises(ValueError, match="unknown model 'gemini-9'"):
        run_gemini_task("x", model="gemini-9")
    with pytest.raises(FileNotFoundError):
        run_gemini_task("x", context_file=str(tmp_path / "missing"))
    with pytest.raises(PoolError, match="empty"):
        run_gemini_task("")


def test_a_failed_task_returns_its_reason(emu_pool):
    # Every key's daily quota of the whole chain is spent: the task ran and failed.
    emu, pool = emu_pool(1, {"models": {"gemini-3.1-flash-lite-preview": {"rpd": 1}}})
    assert run_gemini_task("hello", model="gemini-3.1-flash-lite-preview")["success"]
    r = run_gemini_task("hello again", model="gemini-3.1-flash-lite-preview", max_wait=1)
    assert r["success"] is False and r["output"] is None
    assert "gemini-3.1-flash-lite-preview" in r["error"] and "\n" not in r["error"]


def test_readme_example_runs_verbatim(emu_pool):
    emu, pool = emu_pool(2)
    # `error` is the exception the caller's Gemini request raised: here, a
    # real per-minute 429 as google-genai prints it.
    body = fixture_body("429_input_tokens_per_minute_free_tier.json")
    prelude = ("error = Exception('429 RESOURCE_EXHAUSTED. ' + "
               f"repr(__import__('json').loads({body!r})))\n")
    code = prelude + readme_example() + "print(key_id)\n"
    r = pool.python(code)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    key_id = r.stdout.decode().strip()
    assert key_id in ("k1", "k2")
    m = KeyPoolManager()
    st = model_status(m, key_id, "gemini-3-flash-preview")
    assert st["requests_today"] == 1  # update_usage kept it counted
    assert st["cooldown_kind"] == "tpm" and st["cooldown_until"] > 0
    assert m.count_available("gemini", "gemini-3-flash") == 1
    assert m.held_keys() == [] and not emu.log()


def test_gemini_agent_command(emu_pool, tmp_path):
    emu, pool = emu_pool(1)
    out = tmp_path / "result.md"
    agent = [sys.executable, "-m", "gemini_key_pool.gemini_agent"]
    r = subprocess.run(agent + ["--task", "Explain quantum computing in one paragraph",
                                "--output", str(out)],
                       env=pool.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
    assert r.returncode == 0 and r.stdout == b"", r.stderr
    assert out.read_text().startswith("[fake-gemini model=")
    r = subprocess.run(agent + ["--task", "Quick format this", "--quality", "draft", "--json"],
                       env=pool.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["success"] and doc["route"]["quality"] == "draft"
    assert doc["output"].startswith(f"[fake-gemini model={doc['model']} ")
    r = subprocess.run(agent + ["--task", "x", "--model", "gemini-9"], env=pool.env,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
    assert r.returncode == 1 and r.stdout == b""
    assert r.stderr.decode().count("\n") == 1 and "gemini-9" in r.stderr.decode()
    r = subprocess.run(agent + ["--quality", "best", "--task", "x"], env=pool.env,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
    assert r.returncode == 2
