"""Fixtures for the Python package's tests: the package from the source tree
over the built libgkp, scripts/fake-gemini on a free port, and a keys.json
pointing at it.

Environment (meson's test_env): GKP_SOURCE_ROOT, GKP_BUILD_ROOT, GKP_FIXTURES."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time

import pytest

SOURCE_ROOT = os.environ.get("GKP_SOURCE_ROOT") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD_ROOT = os.environ.get("GKP_BUILD_ROOT", os.path.join(SOURCE_ROOT, "build"))
FIXTURES = os.environ.get("GKP_FIXTURES", os.path.join(SOURCE_ROOT, "tests", "fixtures"))
ERRORS = os.path.join(FIXTURES, "gemini-errors")
BINARY = os.path.join(BUILD_ROOT, "src", "cli", "gemini-pool")
FAKE_GEMINI = os.path.join(SOURCE_ROOT, "scripts", "fake-gemini")
PYTHON_DIR = os.path.join(SOURCE_ROOT, "python")

if not os.environ.get("GKP_LIBRARY"):
    os.environ["GKP_LIBRARY"] = os.path.join(BUILD_ROOT, "libgkp.so.0.3")
sys.path.insert(0, PYTHON_DIR)
sys.path.insert(0, os.path.join(SOURCE_ROOT, "scripts"))
from fake_gemini import ctlclient  # noqa: E402


def make_secret(tag: str) -> str:
    return f"AIzaSyTEST{tag}{secrets.token_hex(12)}"


def fixture_body(name: str) -> str:
    with open(os.path.join(ERRORS, name), encoding="utf-8") as f:
        return json.load(f)["body"]


class Emu:
    """scripts/fake-gemini on a free loopback port."""

    def __init__(self, d, keys_doc: dict) -> None:
        os.makedirs(d, exist_ok=True)
        keys_file = os.path.join(d, "emu-keys.json")
        with open(keys_file, "w", encoding="utf-8") as f:
            json.dump(keys_doc, f)
        port_file = os.path.join(d, "port")
        self.stderr = open(os.path.join(d, "emu.stderr"), "wb")
        self.proc = subprocess.Popen(
            [sys.executable, FAKE_GEMINI, "--port", "0", "--keys", keys_file,
             "--port-file", port_file, "--quiet"],
            stdout=subprocess.DEVNULL, stderr=self.stderr, start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if os.path.exists(port_file) and os.path.getsize(port_file) > 0:
                with open(port_file, encoding="utf-8") as f:
                    self.url = f"http://127.0.0.1:{int(f.read().strip())}"
                self.token = ctlclient.read_token(port_file)
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        self.stop()
        raise RuntimeError("the emulator did not start")

    def log(self) -> list:
        status, doc = ctlclient.call(self.url, self.token, "GET", "/_emu/log?since=0", None)
        assert status == 200, doc
        return doc

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.stderr.close()


class Pool:
    """A keys.json naming emulator keys, a state file, and the environment
    (set in this process too: the library reads env: keys from it)."""

    def __init__(self, d, emu, keys: list, config: dict | None = None) -> None:
        os.makedirs(os.path.join(d, "state"), exist_ok=True)
        self.dir = str(d)
        self.config_file = os.path.join(d, "keys.json")
        self.state_file = os.path.join(d, "state", "state.db")
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("GEMINI_POOL", "GOOGLE_GEMINI", "XDG_"))}
        entries = []
        for i, (kid, secret) in enumerate(keys):
            var = f"GKP_PYTEST_KEY_{i + 1}"
            self.env[var] = secret
            entries.append({"id": kid, "api_key": f"env:{var}"})
        doc = {"providers": {"gemini": {"keys": entries}}}
        doc.update(config or {})
        with open(self.config_file, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=2)
        os.chmod(self.config_file, 0o600)
        self.env["GEMINI_POOL_CONFIG"] = self.config_file
        self.env["GEMINI_POOL_STATE"] = self.state_file
        self.env["XDG_STATE_HOME"] = os.path.join(d, "xdg-state")
        self.env["XDG_CONFIG_HOME"] = os.path.join(d, "xdg-config")
        self.env["PYTHONPATH"] = PYTHON_DIR
        if emu is not None:
            self.env["GOOGLE_GEMINI_BASE_URL"] = emu.url

    def apply(self, monkeypatch) -> None:
        for k in list(os.environ):
            if k.startswith(("GEMINI_POOL", "GOOGLE_GEMINI", "XDG_")):
                monkeypatch.delenv(k)
        for k, v in self.env.items():
            if os.environ.get(k) != v:
                monkeypatch.setenv(k, v)

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([BINARY, *args], env=self.env, cwd=self.dir, timeout=timeout,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def python(self, code: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", code, *args], env=self.env, cwd=self.dir,
                              timeout=timeout, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.fixture
def emu_factory(tmp_path):
    started = []

    def make(keys_doc: dict, name: str = "emu") -> Emu:
        e = Emu(tmp_path / name, keys_doc)
        started.append(e)
        return e

    yield make
    for e in started:
        e.stop()


@pytest.fixture
def pool_factory(tmp_path, monkeypatch):
    def make(emu, keys: list, config: dict | None = None, name: str = "pool") -> Pool:
        p = Pool(tmp_path / name, emu, keys, config)
        p.apply(monkeypatch)
        return p

    return make


@pytest.fixture
def emu_pool(emu_factory, pool_factory):
    """An emulator with three keys in three projects and a pool over them."""
    def make(n: int = 3, config: dict | None = None):
        keys = [{"key": make_secret(f"P{i}"), "name": f"k{i}", "project": f"p{i}"}
                for i in range(1, n + 1)]
        emu = emu_factory({"projects": {f"p{i}": {} for i in range(1, n + 1)}, "keys": keys})
        pool = pool_factory(emu, [(k["name"], k["key"]) for k in keys], config)
        return emu, pool

    return make
