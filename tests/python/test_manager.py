"""KeyPoolManager over the engine: reservations exclusive across processes,
a killed holder's key freed, cooldowns by the engine's error rules."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from zoneinfo import ZoneInfo

import pytest
from conftest import fixture_body

import gemini_key_pool
from gemini_key_pool import KeyPoolManager, parse_rate_limit_type

M = "gemini-2.5-flash"


def next_pacific_midnight(ts: float) -> float:
    tz = ZoneInfo("America/Los_Angeles")
    day = dt.datetime.fromtimestamp(ts, tz).date() + dt.timedelta(days=1)
    return dt.datetime(day.year, day.month, day.day, tzinfo=tz).timestamp()


def model_status(m: KeyPoolManager, key_id: str, model: str) -> dict:
    for k in m.status()["keys"]:
        if k["id"] == key_id:
            return k["models"][model]
    raise AssertionError(f"no key {key_id} in status")


# 8 processes, 50 reserve/release each, on 3 keys with max_inflight 1.  While
# it holds a key, a worker owns the marker file KEY.held (created with
# O_EXCL, removed before release): a second holder of the same key at the
# same time fails to create it and records the overlap.
WORKER = r"""
import os, sys, time
from gemini_key_pool import KeyPoolManager
d, n = sys.argv[1], int(sys.argv[2])
m = KeyPoolManager()
while not os.path.exists(os.path.join(d, "go")):
    time.sleep(0.005)
log = os.open(os.path.join(d, "log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
for i in range(n):
    k = m.reserve_key("gemini", wait=300)
    marker = os.path.join(d, k + ".held")
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        os.write(log, f"OVERLAP {k} {os.getpid()} {i}\n".encode())
        fd = None
    os.write(log, f"A {k} {os.getpid()} {i} {time.time():.6f}\n".encode())
    time.sleep(0.002)
    os.write(log, f"R {k} {os.getpid()} {i} {time.time():.6f}\n".encode())
    if fd is not None:
        os.close(fd)
        os.unlink(marker)
    m.release_key(k)
print("done", flush=True)
"""


def test_eight_processes_never_share_a_key(emu_pool, tmp_path):
    emu, pool = emu_pool(3, {"max_inflight": 1})
    d = tmp_path / "shared"
    d.mkdir()
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(d), "50"], env=pool.env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(8)]
    (d / "go").write_text("")
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0 and out == b"done\n", err.decode(errors="replace")
    lines = (d / "log").read_text().splitlines()
    assert not [ln for ln in lines if ln.startswith("OVERLAP")]
    assert sum(ln.startswith("A ") for ln in lines) == 400
    # Per key, the log alternates A/R of one holder, and the hold intervals
    # (timestamps taken inside each hold) never intersect.
    holder, last_release = {}, {}
    for ln in lines:
        ev, key, pid, i, ts = ln.split()
        ts = float(ts)
        if ev == "A":
            assert key not in holder, f"{key} taken by {pid} while {holder.get(key)} held it"
            assert ts >= last_release.get(key, 0.0)
            holder[key] = pid
        else:
            assert holder.pop(key) == pid
            last_release[key] = ts
    assert set(last_release) == {"k1", "k2", "k3"}
    assert not emu.log()  # reservations send nothing


HOLDER = r"""
import sys, time
from gemini_key_pool import KeyPoolManager
m = KeyPoolManager()
print(m.reserve_key("gemini"), flush=True)
time.sleep(3600)
"""


def test_killed_holder_frees_its_key(emu_pool):
    emu, pool = emu_pool(1)
    child = subprocess.Popen([sys.executable, "-c", HOLDER], env=pool.env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert child.stdout.readline().strip() == b"k1"
        m = KeyPoolManager()
        with pytest.raises(RuntimeError, match="No available keys"):
            m.reserve_key("gemini")
        assert m.count_available() == 0
        child.send_signal(signal.SIGKILL)
        child.wait(60)
        # The engine reclaims the lease of a dead holder; at the latest it
        # expires after its lifetime (60 s).  Generous guard for a loaded machine.
        assert m.reserve_key("gemini", wait=240) == "k1"
        m.release_key("k1")
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_reservation_is_exclusive_and_released(emu_pool):
    emu, pool = emu_pool(2)
    a, b_ = KeyPoolManager(), KeyPoolManager()
    k1 = a.reserve_key("gemini")
    k2 = b_.reserve_key("gemini")
    assert {k1, k2} == {"k1", "k2"}
    with pytest.raises(RuntimeError):
        a.reserve_key()
    assert a.held_keys() == [k1]
    a.release_key(k1)
    a.release_key(k1)  # harmless
    assert b_.reserve_key(wait=30) == k1
    b_.close()
    assert a.reserve_key(wait=30) in ("k1", "k2")
    with pytest.raises(ValueError, match="Provider openai not found"):
        a.reserve_key("openai")
    with pytest.raises(ValueError, match="unknown model 'gemini-9'"):
        a.reserve_key("gemini", model="gemini-9")
    assert a.get_api_key("k1") == pool.env["GKP_PYTEST_KEY_1"]
    with pytest.raises(ValueError, match="Key ID nokey not found"):
        a.get_api_key("nokey")


def test_per_day_429_cools_until_midnight_pacific(emu_pool):
    emu, pool = emu_pool(3)
    m = KeyPoolManager()
    before = time.time()
    r = m.mark_key_rate_limited("k1", error_message=fixture_body("429_per_day_free_tier.json"),
                                model=M)
    midnight = next_pacific_midnight(before)
    assert r["kind"] == "rpd" and r["model"] == M
    assert r["cooldown_until"] == midnight
    st = model_status(m, "k1", M)
    assert st["cooldown_kind"] == "rpd" and st["cooldown_until"] == midnight
    assert st["rpd_limit"] == 250  # learned from quotaValue
    assert m.count_available("gemini", M) == 2
    assert model_status(m, "k2", M)["cooldown_until"] == 0
    # The other models of k1 are not blocked.
    assert m.count_available("gemini", "gemini-3.1-flash-lite-preview") == 3


def test_per_minute_429_cools_for_its_retry_delay(emu_pool):
    emu, pool = emu_pool(3)
    m = KeyPoolManager()
    before = time.time()
    body = fixture_body("429_input_tokens_per_minute_free_tier.json")  # retryDelay 26s
    r = m.mark_key_rate_limited("k2", error_message=body)  # the body names the model
    after = time.time()
    assert r["kind"] == "tpm" and r["model"] == M
    assert before + 26 - 0.01 <= r["cooldown_until"] <= after + 26 + 0.01
    st = model_status(m, "k2", M)
    assert st["cooldown_kind"] == "tpm"
    assert before + 26 <= st["cooldown_until"] <= after + 27
    assert m.count_available("gemini", M) == 2
    # An explicit length overrides (the original's cooldown_seconds).
    r = m.mark_key_rate_limited("k3", error_message=body, model=M, cooldown_seconds=5)
    assert before + 5 - 0.01 <= r["cooldown_until"] <= time.time() + 5 + 0.01
    assert m.count_available("gemini", M) == 1
    with pytest.raises(ValueError, match="Key ID nokey not found"):
        m.mark_key_rate_limited("nokey", error_message=body)


def test_parse_rate_limit_type_by_engine_rules():
    day = fixture_body("429_per_day_free_tier.json")
    assert parse_rate_limit_type(day) == "rpd"
    assert parse_rate_limit_type(fixture_body("429_input_tokens_per_minute_free_tier.json")) == "tpm"
    assert parse_rate_limit_type(fixture_body("429_limit_zero_no_free_tier.json")) == "quota"
    assert parse_rate_limit_type(fixture_body("429_prepay_credits_depleted.json")) == "quota"
    # As google-genai's ClientError prints it: status, then the body as a Python dict.
    sdk = "429 RESOURCE_EXHAUSTED. " + repr(json.loads(day))
    assert parse_rate_limit_type(sdk) == "rpd"
    # Plain text.
    assert parse_rate_limit_type("quotaId: GenerateRequestsPerMinutePerProjectPerModel-FreeTier."
                                 " Please retry in 7s.") == "rpm"
    assert parse_rate_limit_type("Resource has been exhausted (e.g. check quota).") == "unknown"
    assert parse_rate_limit_type("") == "unknown"


def test_update_usage_keeps_the_request_counted(emu_pool):
    emu, pool = emu_pool(1)
    m = KeyPoolManager()
    k = m.reserve_key("gemini", model=M)
    m.release_key(k)  # never sent: given back
    assert model_status(m, "k1", M)["requests_today"] == 0
    k = m.reserve_key("gemini", model=M)
    m.update_usage(k, {"requests": 1, "input_tokens": 42, "model": M})
    m.release_key(k)
    st = model_status(m, "k1", M)
    assert st["requests_today"] == 1 and st["input_tokens_last_minute"] == 42
    assert m.select_key("gemini", model=M) == "k1"
    assert m.clear_expired_cooldowns() >= 0


def test_bad_config_is_one_line(tmp_path, monkeypatch):
    bad = tmp_path / "keys.json"
    bad.write_text('{"providers": {"gemini": {"keys": [}}}')
    bad.chmod(0o600)
    with pytest.raises(gemini_key_pool.PoolError) as e:
        KeyPoolManager(config_path=str(bad), state=str(tmp_path / "state.db"))
    assert str(bad) in str(e.value) and "\n" not in str(e.value)
    assert isinstance(e.value, RuntimeError)


def test_route_and_key_ids_send_nothing(emu_pool):
    emu, pool = emu_pool(2)
    m = KeyPoolManager()
    assert m.key_ids() == ["k1", "k2"]
    r = m.route("Refactor the authentication module", quality="research")
    assert r["quality"] == "research" and r["quality_given"] is True
    assert r["candidates"] and all("model" in c for c in r["candidates"])
    assert set(r) >= {"task_type", "complexity", "quality", "candidates", "skipped"}
    with pytest.raises(gemini_key_pool.PoolError):
        m.route("x", quality="best")
    assert not emu.log()
