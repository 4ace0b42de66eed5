"""No answer can make the state file invalid: every number the engine takes from a
response (promptTokenCount, retryDelay, quotaValue) is bounded before it is stored,
so the next command opens the state without a warning and every count stays sane.
(A kill -9 in the middle of such a change is tested by security-rollback.)
"""

from __future__ import annotations

import glob
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from seclib import Emu, Pool, T  # noqa: E402

t = T("security-bounds")
emu = Emu(t, {"keys": [{"key": "FAKE-SEC-BOUNDS-1", "name": "k1", "project": "p1"},
                       {"key": "FAKE-SEC-BOUNDS-2", "name": "k2", "project": "p2"}]})
pool = Pool(t, emu, [("k1", "FAKE-SEC-BOUNDS-1"), ("k2", "FAKE-SEC-BOUNDS-2")])
MODEL = "gemini-2.5-flash"
HUGE = 10 ** 18
TOKENS = 10 ** 15  # the largest the client reads as a count (it refuses > 9e15)

answer = {"candidates": [{"content": {"role": "model", "parts": [{"text": "fine"}]},
                          "finishReason": "STOP", "index": 0}],
          "usageMetadata": {"promptTokenCount": TOKENS, "candidatesTokenCount": TOKENS,
                            "thoughtsTokenCount": TOKENS, "totalTokenCount": 3 * TOKENS},
          "modelVersion": MODEL}
emu.replay(status=200, body="data: " + json.dumps(answer) + "\r\n\r\n",
           content_type="text/event-stream", key="k1")
emu.replay(status=200, body=json.dumps(answer), content_type="application/json", key="k1",
           action="generateContent")
r = pool.ask("--task", "count this", "--model", MODEL, "--profile", "flash-2.5")
t.check(r.returncode == 0 and b"fine" in r.stdout,
        f"an answer claiming {TOKENS} prompt tokens is taken", r)

quota_429 = {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED",
                       "message": "You exceeded your current quota.",
                       "details": [
                           {"@type": "type.googleapis.com/google.rpc.QuotaFailure",
                            "violations": [{"quotaMetric": "generativelanguage.googleapis.com/"
                                                           "generate_content_free_tier_requests",
                                            "quotaId": "GenerateRequestsPerMinutePerProject"
                                                       "PerModel-FreeTier",
                                            "quotaValue": str(HUGE)}]},
                           {"@type": "type.googleapis.com/google.rpc.RetryInfo",
                            "retryDelay": "99999999999999999999s"}]}}
emu.replay(status=429, body_json=quota_429, key="k2")
r = pool.ask("--task", "again", "--model", MODEL, "--max-wait", "1")
t.check(r.returncode in (0, 1), "a 429 with an absurd quotaValue and retryDelay is taken", r)

# The next command opens the state without a word and sees bounded numbers.
r = pool.run("status", "--json")
t.check(r.returncode == 0 and b"damaged" not in r.stderr and b"warning" not in r.stderr,
        "the next command opens the state file without a warning", r)
moved = glob.glob(pool.state_file + ".corrupt-*")
t.check(not moved, "the state file was not moved aside", moved)
doc = json.loads(r.stdout) if r.returncode == 0 else {"keys": []}
m1 = pool.model(doc, "k1", MODEL) if doc["keys"] else {}
m2 = pool.model(doc, "k2", MODEL) if doc["keys"] else {}
t.check(10 ** 6 < m1.get("input_tokens_last_minute", 0) <= 10 ** 9,
        f"tokens counted are bounded ({m1.get('input_tokens_last_minute')})", m1)
t.check(m1.get("input_tokens_total", HUGE) <= 10 ** 9
        and m1.get("output_tokens_total", HUGE) <= 3 * 10 ** 9, "totals are bounded", m1)
t.check(m2.get("rpm_limit") is not None and 0 <= m2["rpm_limit"] <= 10 ** 9,
        f"the learned limit is bounded ({m2.get('rpm_limit')})", m2)
until = m2.get("cooldown_until", 0)
t.check(0 < until <= time.time() + 3 * 86400,
        f"the cooldown ends within days ({until - time.time():.0f} s from now)", m2)
t.done()
