"""The emulator's control API: only for callers holding its token, on a loopback Host,
and it reads no file outside its fixtures directory.

- the token is written beside the port file, mode 0600;
- a control call without the token, with a wrong one, or naming another Host: 403;
- replay's body_file outside the fixtures (an absolute path, ../, a link) is refused,
  and the content of the secret file never appears in any answer;
- a fixture named by its name is replayed.
"""

from __future__ import annotations

import http.client
import json
import os
import stat
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from seclib import Emu, T  # noqa: E402

t = T("security-emulator")
emu = Emu(t, {"keys": [{"key": "FAKE-SEC-EMU-1", "name": "k1", "project": "p1"}]})
token_file = os.path.join(emu.dir, "port.token")
mode = stat.S_IMODE(os.stat(token_file).st_mode)
t.check(mode == 0o600, f"the token is written beside the port file, mode 0600 ({mode:04o})")

answers = []


def request(method: str, path: str, body=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=10)
    data = json.dumps(body) if body is not None else None
    conn.request(method, path, body=data, headers=headers or {})
    resp = conn.getresponse()
    raw = resp.read()
    conn.close()
    answers.append(raw)
    return resp.status, raw


# ---- the token and the Host -------------------------------------------------------
status, raw = request("GET", "/_emu/usage")
t.check(status == 403 and b"X-Emu-Token" in raw, "a control call without the token: 403", raw)
status, raw = request("POST", "/_emu/faults", {"scope": "global", "p500": 1},
                      {"X-Emu-Token": "guessed"})
t.check(status == 403, "a control call with a wrong token: 403", raw)
status, raw = request("GET", "/_emu/usage", None, {"X-Emu-Token": emu.token,
                                                   "Host": "attacker.example:80"})
t.check(status == 403 and b"loopback" in raw, "a control call for another Host: 403", raw)
status, raw = request("GET", "/_emu/usage", None, {"X-Emu-Token": emu.token})
t.check(status == 200, "with the token and a loopback Host: 200", raw)

# ---- files outside the fixtures --------------------------------------------------
secret_text = "TOP-SECRET-CONTENT-of-a-file-outside-the-fixtures-4f1e"
secret_file = os.path.join(t.dir, "shadow")
with open(secret_file, "w") as f:
    f.write(json.dumps({"http_status": 200, "body": secret_text}))
fixtures = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures",
                        "gemini-errors")
rel = os.path.relpath(secret_file, os.path.realpath(fixtures))
for name in (secret_file, rel, "../../../" + secret_file.lstrip("/"), "/etc/passwd",
             "/proc/self/environ"):
    status, raw = request("POST", "/_emu/replay", {"status": 200, "body_file": name},
                          {"X-Emu-Token": emu.token})
    t.check(status == 400, f"body_file {name[:60]!r}: refused", raw)
status, raw = request("POST", "/v1beta/models/gemini-2.5-flash:generateContent",
                      {"contents": [{"parts": [{"text": "x"}]}]},
                      {"x-goog-api-key": "FAKE-SEC-EMU-1"})
t.check(status == 200 and b"fake-gemini" in raw, "the next API call gets a normal answer", raw)
status, raw = request("GET", "/_emu/replay", None, {"X-Emu-Token": emu.token})
t.check(status == 200 and json.loads(raw)["queue"] == [], "nothing was queued", raw)
status, raw = request("POST", "/_emu/replay", {"body_file": "503_model_overloaded.json"},
                      {"X-Emu-Token": emu.token})
t.check(status == 200, "a fixture named by its name is replayed", raw)
status, raw = request("POST", "/v1beta/models/gemini-2.5-flash:generateContent",
                      {"contents": [{"parts": [{"text": "x"}]}]},
                      {"x-goog-api-key": "FAKE-SEC-EMU-1"})
t.check(status == 503, "... and served", raw)
leaks = [a[:100] for a in answers if secret_text.encode() in a or b"root:x:0:0" in a]
t.check(not leaks, f"the secret file's content is in none of {len(answers)} answers", leaks)
t.done()
