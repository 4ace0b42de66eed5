"""Helpers for the end-to-end tests of the `gemini-pool` command against
scripts/fake-gemini (Python 3 standard library only).

    from clilib import Emu, Pool, T
    t = T("cli-something")
    emu = Emu(t, {"projects": {...}, "keys": [...]})      # started, stopped at exit
    pool = Pool(t, emu, [("one", 0), ("two", 1)])          # keys.json + state dir
    r = pool.ask("--task", "hello")                        # a CompletedProcess
    t.check(r.returncode == 0, "ask succeeds", r)
    t.done()                                               # exit 1 if any check failed

Environment (set by meson's test_env): GKP_BUILD_ROOT (the binary is
$GKP_BUILD_ROOT/src/cli/gemini-pool), GKP_SOURCE_ROOT, GKP_FIXTURES.
"""

from __future__ import annotations

import atexit
import datetime as dt
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time

SOURCE_ROOT = os.environ.get("GKP_SOURCE_ROOT") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD_ROOT = os.environ.get("GKP_BUILD_ROOT", os.path.join(SOURCE_ROOT, "build"))
FIXTURES = os.environ.get("GKP_FIXTURES", os.path.join(SOURCE_ROOT, "tests", "fixtures"))
ERRORS = os.path.join(FIXTURES, "gemini-errors")
BINARY = os.path.join(BUILD_ROOT, "src", "cli", "gemini-pool")
FAKE_GEMINI = os.path.join(SOURCE_ROOT, "scripts", "fake-gemini")
sys.path.insert(0, os.path.join(SOURCE_ROOT, "scripts"))
from fake_gemini import ctlclient  # noqa: E402  (the control API's token)

# Sanitizer builds are slower; scale the test's own time limits with this.
SLOW = float(os.environ.get("GKP_TEST_SLOWDOWN", "1"))
try:
    with open(BINARY, "rb") as _f:
        if b"__asan_init" in _f.read():
            SLOW = max(SLOW, 3.0)
except OSError:
    pass


def make_secret(tag: str) -> str:
    """A key string that looks like a real one and is unique to this run, so a
    leak scan can search for it."""
    return f"AIzaSyTEST{tag}{secrets.token_hex(12)}"


def fixture(name: str) -> dict:
    with open(os.path.join(ERRORS, name), encoding="utf-8") as f:
        return json.load(f)


def utc(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


class T:
    """A test: named checks, a private temporary directory, cleanups at exit."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.failures = 0
        self.checks = 0
        self.dir = tempfile.mkdtemp(prefix=f"gkp-{name}-")
        self._cleanups = []
        self.started = time.monotonic()
        atexit.register(self._cleanup)
        if not os.access(BINARY, os.X_OK):
            print(f"FATAL: {BINARY} is not built", flush=True)
            sys.exit(1)

    def on_exit(self, fn) -> None:
        self._cleanups.append(fn)

    def _cleanup(self) -> None:
        for fn in reversed(self._cleanups):
            try:
                fn()
            except Exception as exc:  # noqa: BLE001 - cleanup must go on
                print(f"cleanup: {exc}", flush=True)
        if self.failures == 0 and not os.environ.get("GKP_KEEP"):
            shutil.rmtree(self.dir, ignore_errors=True)
        else:
            print(f"(files kept in {self.dir})", flush=True)

    def log(self, msg: str) -> None:
        print(f"[{time.monotonic() - self.started:6.1f}s] {msg}", flush=True)

    def check(self, cond, what: str, detail=None) -> bool:
        self.checks += 1
        if cond:
            print(f"ok   {what}", flush=True)
            return True
        self.failures += 1
        print(f"FAIL {what}", flush=True)
        if detail is not None:
            if isinstance(detail, subprocess.CompletedProcess):
                detail = (f"exit {detail.returncode}\n--- stdout:\n{_text(detail.stdout)[:3000]}"
                          f"\n--- stderr:\n{_text(detail.stderr)[:3000]}")
            print("     " + str(detail).replace("\n", "\n     "), flush=True)
        return False

    def require(self, cond, what: str, detail=None) -> None:
        if not self.check(cond, what, detail):
            self.done()

    def done(self) -> None:
        took = time.monotonic() - self.started
        print(f"{self.name}: {self.checks - self.failures}/{self.checks} checks passed "
              f"in {took:.1f}s", flush=True)
        sys.exit(1 if self.failures or self.checks == 0 else 0)


def _text(b) -> str:
    if b is None:
        return ""
    return b.decode("utf-8", "replace") if isinstance(b, bytes) else b


class Emu:
    """scripts/fake-gemini on a free loopback port, stopped at exit."""

    def __init__(self, t: T, keys_doc: dict, *args: str, name: str = "emu") -> None:
        self.t = t
        self.dir = os.path.join(t.dir, name)
        os.makedirs(self.dir)
        self.keys_file = os.path.join(self.dir, "emu-keys.json")
        with open(self.keys_file, "w", encoding="utf-8") as f:
            json.dump(keys_doc, f)
        self.log_file = os.path.join(self.dir, "requests.jsonl")
        port_file = os.path.join(self.dir, "port")
        self.stderr = open(os.path.join(self.dir, "stderr"), "wb")
        self.proc = subprocess.Popen(
            [sys.executable, FAKE_GEMINI, "--port", "0", "--keys", self.keys_file,
             "--port-file", port_file, "--log", self.log_file, "--quiet", *args],
            stdout=subprocess.DEVNULL, stderr=self.stderr, start_new_session=True)
        t.on_exit(self.stop)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if os.path.exists(port_file) and os.path.getsize(port_file) > 0:
                with open(port_file, encoding="utf-8") as f:
                    self.port = int(f.read().strip())
                self.url = f"http://127.0.0.1:{self.port}"
                self.token = ctlclient.read_token(port_file)
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        self.stop()
        with open(os.path.join(self.dir, "stderr"), encoding="utf-8", errors="replace") as f:
            err = f.read()
        t.require(False, "the emulator starts", err)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.stderr.close()

    def ctl(self, method: str, path: str, body: dict | None = None):
        status, doc = ctlclient.call(self.url, self.token, method, path, body)
        if status >= 400:
            raise RuntimeError(f"{method} {path}: {status} {str(doc)[:300]}")
        return doc

    def log(self, since: int = 0) -> list:
        return self.ctl("GET", f"/_emu/log?since={since}")

    def usage(self) -> dict:
        return self.ctl("GET", "/_emu/usage")

    def replay(self, **spec) -> dict:
        return self.ctl("POST", "/_emu/replay", spec)

    def faults(self, **spec) -> dict:
        return self.ctl("POST", "/_emu/faults", spec)

    def reset(self) -> None:
        self.ctl("POST", "/_emu/reset", {})


class Pool:
    """A keys.json for gemini-pool naming emulator keys, a state directory, and
    the environment to run the command with.

    keys: list of (id, secret) or (id, secret, extra fields); `config` adds
    top-level keys.json fields (models, fallback, profiles...)."""

    def __init__(self, t: T, emu: Emu | None, keys: list, config: dict | None = None,
                 name: str = "pool") -> None:
        self.t = t
        self.dir = os.path.join(t.dir, name)
        os.makedirs(os.path.join(self.dir, "state"), exist_ok=True)
        os.chmod(os.path.join(self.dir, "state"), 0o700)  # it will hold prompts
        self.config_file = os.path.join(self.dir, "keys.json")
        self.state_file = os.path.join(self.dir, "state", "state.db")
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("GEMINI_POOL", "GOOGLE_GEMINI", "XDG_"))}
        entries = []
        self.secrets = {}
        for i, k in enumerate(keys):
            kid, secret = k[0], k[1]
            extra = k[2] if len(k) > 2 else {}
            var = f"GKP_TEST_KEY_{i + 1}"
            self.env[var] = secret
            self.secrets[kid] = secret
            entries.append({"id": kid, "api_key": f"env:{var}", **extra})
        doc = {"providers": {"gemini": {"keys": entries}}}
        doc.update(config or {})
        with open(self.config_file, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=2)
        os.chmod(self.config_file, 0o600)
        self.env["GEMINI_POOL_CONFIG"] = self.config_file
        self.env["GEMINI_POOL_STATE"] = self.state_file
        self.env["XDG_STATE_HOME"] = os.path.join(self.dir, "xdg-state")
        self.env["XDG_CONFIG_HOME"] = os.path.join(self.dir, "xdg-config")
        if emu is not None:
            self.env["GOOGLE_GEMINI_BASE_URL"] = emu.url

    def cmd(self, *args: str, faketime: str | None = None, routed: bool = False) -> list:
        """The command line of `gemini-pool ARGS`.  `ask` without --model or
        --profile routes (the pool picks the model); tests of other things run
        it on the "flash" profile unless they ask for routing (routed=True)."""
        if (args and args[0] == "ask" and not routed and "--model" not in args
                and "--profile" not in args):
            args = ("ask", "--profile", "flash", *args[1:])
        argv = [BINARY, *args]
        if faketime is not None:
            argv = ["faketime", "-f", faketime, *argv]
        return argv

    def run(self, *args: str, input: bytes | None = None, timeout: float = 60,
            faketime: str | None = None, env: dict | None = None,
            routed: bool = False) -> subprocess.CompletedProcess:
        e = dict(self.env)
        e.update(env or {})
        try:
            return subprocess.run(self.cmd(*args, faketime=faketime, routed=routed), input=input,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  env=e, timeout=timeout * SLOW, cwd=self.dir)
        except subprocess.TimeoutExpired as exc:
            return subprocess.CompletedProcess(exc.cmd, -999, exc.stdout or b"",
                                               (exc.stderr or b"") + b"\n(TEST: timed out)")

    def ask(self, *args: str, **kw) -> subprocess.CompletedProcess:
        """`gemini-pool ask ARGS` (see cmd for routed=True)."""
        return self.run("ask", *args, **kw)

    def status(self, **kw) -> dict:
        r = self.run("status", "--json", **kw)
        if r.returncode != 0:
            self.t.require(False, "gemini-pool status --json works", r)
        return json.loads(r.stdout)

    def key(self, doc: dict, kid: str) -> dict:
        for k in doc["keys"]:
            if k["id"] == kid:
                return k
        raise KeyError(kid)

    def model(self, doc: dict, kid: str, model: str) -> dict:
        return self.key(doc, kid)["models"].get(model, {})

    def executions(self) -> list:
        path = os.path.join(os.path.dirname(self.state_file), "executions.jsonl")
        if not os.path.exists(path):
            return []
        with open(path, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]


def one_line_error(r: subprocess.CompletedProcess) -> str | None:
    """The stderr of a failed run if it is exactly one non-empty line starting
    with 'gemini-pool:', else None."""
    err = _text(r.stderr)
    lines = [line for line in err.split("\n") if line != ""]
    if len(lines) == 1 and lines[0].startswith("gemini-pool: ") and err.endswith("\n"):
        return lines[0]
    return None


def answer_of(model: str, key_name: str, project: str, task: str,
              answer_bytes: int | None = None) -> str:
    """The emulator's deterministic answer (answers.py is imported from the source
    tree so that the test compares with exactly what the emulator sends)."""
    sys.path.insert(0, os.path.join(SOURCE_ROOT, "scripts"))
    from fake_gemini import answers, models, prompt as prompts  # noqa: E402
    p = prompts.Prompt(text=task, text_bytes=len(task.encode()))
    spec = models.Catalog().get(model)
    return answers.build_answer(p, spec, key_name, project, answer_bytes, lambda s: s).text


def next_pacific_midnight(ts: float) -> int:
    """The first midnight in America/Los_Angeles strictly after `ts` (Unix s)."""
    from zoneinfo import ZoneInfo
    tz = ZoneInfo("America/Los_Angeles")
    local = dt.datetime.fromtimestamp(ts, tz)
    day = (local + dt.timedelta(days=1)).date()
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=tz).timestamp())
