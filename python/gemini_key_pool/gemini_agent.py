"""The original's command line over run_gemini_task:

    python3 -m gemini_key_pool.gemini_agent --task "Explain X" --output /tmp/x.md
"""

from __future__ import annotations

import argparse
import json
import sys

from ._lib import PoolError
from .tasks import QUALITY_LEVELS, run_gemini_task

__all__ = ["main", "run_gemini_task"]


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
