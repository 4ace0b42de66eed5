"""KeyPoolManager on a Redis state (with_redis.sh names the server in
GKP_TEST_STATE): reservations exclusive across processes sharing the server,
and a reservation still held when a process exits is released at exit."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from test_manager import WORKER

from gemini_key_pool import KeyPoolManager

URL = os.environ.get("GKP_TEST_STATE", "")
if not URL.startswith(("redis://", "unix://")):
    pytest.skip("needs GKP_TEST_STATE=redis://... (run through tests/redis/with_redis.sh)",
                allow_module_level=True)


@pytest.fixture
def redis_pool(emu_pool, monkeypatch):
    def make(n, config=None):
        emu, pool = emu_pool(n, config)
        subprocess.run(["redis-cli", "-u", URL, "FLUSHALL"] if URL.startswith("redis://")
                       else ["redis-cli", "-s", URL[len("unix://"):], "FLUSHALL"],
                       check=True, stdout=subprocess.DEVNULL)
        pool.env["GEMINI_POOL_STATE"] = URL
        monkeypatch.setenv("GEMINI_POOL_STATE", URL)
        return emu, pool
    return make


def test_processes_on_redis_never_share_a_key(redis_pool, tmp_path):
    emu, pool = redis_pool(2, {"max_inflight": 1})
    d = tmp_path / "shared"
    d.mkdir()
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(d), "25"], env=pool.env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(4)]
    (d / "go").write_text("")
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0 and out == b"done\n", err.decode(errors="replace")
    lines = (d / "log").read_text().splitlines()
    assert not [ln for ln in lines if ln.startswith("OVERLAP")]
    assert sum(ln.startswith("A ") for ln in lines) == 100
    holder = {}
    for ln in lines:
        ev, key, pid = ln.split()[:3]
        if ev == "A":
            assert key not in holder
            holder[key] = pid
        else:
            assert holder.pop(key) == pid
    assert KeyPoolManager().status()["keys"][0]["inflight"] == 0


def test_a_reservation_held_at_exit_is_released(redis_pool):
    emu, pool = redis_pool(1)
    r = pool.python("from gemini_key_pool import KeyPoolManager\n"
                    "m = KeyPoolManager()\n"
                    "print(m.reserve_key('gemini'))\n")
    assert r.returncode == 0 and r.stdout.strip() == b"k1", r.stderr
    m = KeyPoolManager()
    assert m.count_available() == 1
    assert m.reserve_key("gemini") == "k1"
