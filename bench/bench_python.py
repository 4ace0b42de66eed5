#!/usr/bin/env python3
"""Python reserve_key + release_key cycles per second in one process, over the
libgkp of a build (GKP_LIBRARY), on a durable state file with 8 keys.

Usage: bench_python.py SECONDS   (prints: py_cycles_per_s=N)"""

import json
import os
import shutil
import sys
import tempfile
import time

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(root, "python"))
from gemini_key_pool import KeyPoolManager  # noqa: E402

secs = float(sys.argv[1]) if len(sys.argv) > 1 else 3.0
d = tempfile.mkdtemp(prefix="gkp-bench-py-")
try:
    keys = []
    for i in range(8):
        os.environ[f"GKP_BENCH_KEY_{i}"] = f"FAKE-BENCH-KEY-{i:04d}"
        keys.append({"id": f"k{i}", "api_key": f"env:GKP_BENCH_KEY_{i}"})
    cfg = os.path.join(d, "keys.json")
    with open(cfg, "w", encoding="utf-8") as f:
        # Limits counted but never reached, as bench_engine.c's.
        json.dump({"providers": {"gemini": {"keys": keys}},
                   "models": {"bench-model": {"rpm": 100000000, "tpm": 1000000000000,
                                              "rpd": 100000000000}}}, f)
    os.chmod(cfg, 0o600)
    m = KeyPoolManager(config_path=cfg, state=os.path.join(d, "state.db"))
    m.default_model = "bench-model"
    for _ in range(1000):  # warm up
        m.release_key(m.reserve_key())
    n = 0
    t0 = time.perf_counter()
    end = t0 + secs
    while True:
        for _ in range(500):
            m.release_key(m.reserve_key())
        n += 500
        if time.perf_counter() >= end:
            break
    took = time.perf_counter() - t0
    m.close()
    print(f"py_cycles_per_s={n / took:.0f}")
finally:
    shutil.rmtree(d, ignore_errors=True)
