"""warm_up() loads every kernel the configured strategy can reach: with an empty numba cache,
nothing compiles on a live request afterwards (a compile stalls the loop for seconds)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import CHILD_PYTHONPATH

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.parametrize(("strategy", "cold_start"), [("embedding", "wait"), ("exact", "wait")])
def test_nothing_compiles_after_warm_up(strategy, cold_start, tmp_path):
    # cold_start="serve" (near dedup turns on once a separate process compiled its kernels, which
    # then load here) is checked by tests/e2e/test_coldstart_serve.py's embedded first start: the
    # same rehearsal after near dedup turned on (one empty-cache compile fewer in the suite)
    env = {
        **os.environ,
        "NUMBA_CACHE_DIR": str(tmp_path / "numba-cache"),
        "PYTHONPATH": CHILD_PYTHONPATH,
    }
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


def _cache_with(tmp_path, marker_key):
    from stratabatch import warm

    d = tmp_path / "cache"
    d.mkdir()
    for name in ("pairs.admit-40.py311.nbi", "pairs.admit-40.py311.1.nbc", "index.old-9.py311.nbi"):
        (d / name).write_bytes(b"x")
    (d / "core.cpython-311.pyc").write_bytes(b"x")  # not numba's: stays
    if marker_key is not None:
        (d / "stratabatch-warm-exact.json").write_text(json.dumps({"key": marker_key}))
    return d, warm.CacheCheck(("embedding",), str(d), ("embedding",), "the-current-key")


@pytest.mark.parametrize(
    ("marker_key", "left"),
    [
        # sources changed since the cache was filled: every numba entry and marker goes
        ("an-older-key", ["core.cpython-311.pyc"]),
        # the markers carry this key: nothing is stale
        (
            "the-current-key",
            [
                "core.cpython-311.pyc",
                "index.old-9.py311.nbi",
                "pairs.admit-40.py311.1.nbc",
                "pairs.admit-40.py311.nbi",
                "stratabatch-warm-exact.json",
            ],
        ),
        # a first start (no marker): nothing to say the entries are stale
        (
            None,
            [
                "core.cpython-311.pyc",
                "index.old-9.py311.nbi",
                "pairs.admit-40.py311.1.nbc",
                "pairs.admit-40.py311.nbi",
            ],
        ),
    ],
)
def test_stale_kernel_caches_are_purged_before_a_start_compiles(tmp_path, marker_key, left):
    # numba keys a cached kernel on its own file: a caller whose callee's module changed keeps
    # running the old machine code. A marker keyed on every kernel module says when to purge.
    from stratabatch import warm

    d, result = _cache_with(tmp_path, marker_key)
    warm.purge_stale(result)
    assert sorted(os.listdir(d)) == left


def test_a_start_that_compiles_purges_a_stale_cache_first(tmp_path, monkeypatch):
    from stratabatch import warm
    from stratabatch.config import BatchConfig

    d, result = _cache_with(tmp_path, "an-older-key")
    monkeypatch.setattr(warm, "check", lambda **_: result)
    warm.Notice(BatchConfig())
    assert sorted(os.listdir(d)) == ["core.cpython-311.pyc"]


def test_compiling_for_exact_waits_for_the_warm_up_thread(monkeypatch):
    """``compile_kernels`` (``python -m stratabatch.warm``) returns only once the warm-up
    thread has loaded the hash kernel, even though its exact request takes the row lane,
    which needs no kernel and does not wait (the build step used to end first, after a purged
    cache, and report "kernels for strategy=exact did not load")."""
    import asyncio
    import time

    from stratabatch import kernels, warm
    from stratabatch.config import BatchConfig

    real = kernels.xxh64_batch
    loaded: list[bool] = []

    def slow(*args):
        time.sleep(0.5)  # (a compile after a purge takes ~1 s)
        out = real(*args)
        loaded.append(True)
        return out

    monkeypatch.setattr(kernels, "xxh64_batch", slow)
    asyncio.run(warm._warm_core(BatchConfig(dedup_strategy="exact", cold_start="wait")))
    assert loaded == [True]


def test_the_warm_up_thread_retries_an_import_refused_as_a_deadlock(monkeypatch):
    # CPython refuses one of two threads whose import chains cross (_DeadlockError); the
    # warm-up thread must try again, not fail every dedup pass with "kernels failed to load"
    import importlib._bootstrap as bootstrap

    from stratabatch import warmup

    monkeypatch.setattr(warmup.time, "sleep", lambda s: None)
    calls = []

    def refused_twice():
        calls.append(1)
        if len(calls) < 3:
            raise bootstrap._DeadlockError("deadlock detected by _ModuleLock('x')")

    warmup._retrying_imports(refused_twice)
    assert len(calls) == 3

    def always_refused():
        raise bootstrap._DeadlockError("deadlock detected by _ModuleLock('x')")

    with pytest.raises(RuntimeError, match="deadlock"):
        warmup._retrying_imports(always_refused)

    def other_error():
        calls.append(1)
        raise RuntimeError("a kernel failed")

    calls.clear()
    with pytest.raises(RuntimeError, match="a kernel failed"):
        warmup._retrying_imports(other_error)
    assert len(calls) == 1
