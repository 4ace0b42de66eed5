"""A reservation held longer than the engine's lease lifetime (60 s) stays
exclusive: the manager renews it in the background.  Without renewal the
engine would reclaim it after 60 s and hand the key to someone else."""

from __future__ import annotations

import subprocess
import sys

import pytest

from gemini_key_pool import KeyPoolManager

LEASE_TTL_S = 60  # GKP_LEASE_TTL_MS

HOLDER = r"""
import sys, time
from gemini_key_pool import KeyPoolManager
m = KeyPoolManager()
k = m.reserve_key("gemini")
print(k, flush=True)
sys.stdin.readline()          # the test says when
m.release_key(k)              # still ours: no error
print("released", flush=True)
"""


def test_held_key_outlives_the_lease_lifetime(emu_pool):
    emu, pool = emu_pool(1)
    child = subprocess.Popen([sys.executable, "-c", HOLDER], env=pool.env,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
    try:
        assert child.stdout.readline().strip() == b"k1"
        m = KeyPoolManager()
        # Wait past the lease lifetime: the key must still be taken (waiting
        # for it for longer than the lifetime, with a margin, gets nothing).
        with pytest.raises(RuntimeError, match="No available keys"):
            m.reserve_key("gemini", wait=LEASE_TTL_S + 15)
        child.stdin.write(b"\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == b"released"
        assert child.wait(60) == 0, child.stderr.read().decode(errors="replace")
        assert m.reserve_key("gemini", wait=60) == "k1"
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
