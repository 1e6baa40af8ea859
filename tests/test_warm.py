"""warm_up() loads every kernel the configured strategy can reach: with an empty numba cache,
nothing compiles on a live request afterwards (a compile stalls the loop for seconds)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("strategy", "cold_start"), [("embedding", "wait"), ("exact", "wait"), ("embedding", "serve")]
)
def test_nothing_compiles_after_warm_up(strategy, cold_start, tmp_path):
    # "serve": after near dedup turns on (the kernels a separate process compiled, loaded)
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba-cache"), "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "warm_probe.py"), strategy, cold_start],
        capture_output=True,
        timeout=600,
        env=env,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    out = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    print(f"{strategy}: warm_up {out['warm_s']:.1f} s with an empty cache")
    assert out["compiled_after_warm_up"] == {}
