"""The first start on a machine compiles the numba kernels: it says so while it happens, and a
build step can do it ahead of time (``stratabatch-engine --compile-only``,
``python -m stratabatch.warm``), after which a start compiles nothing.

Each test gives numba an empty ``NUMBA_CACHE_DIR`` of its own and uses the ``exact`` strategy,
whose kernels compile in a few seconds (the default strategy's take 20 s and more, and
tests/test_warm.py pays that once); "compiles nothing" is checked on the cache directory:
numba writes its index and data files only when it compiles.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from stratabatch.config import BatchConfig
from stratabatch.warm import units

from .conftest import CHILD_PYTHONPATH, ROOT

EMBEDDED = """
import asyncio, logging
logging.basicConfig(format="%(name)s %(levelname)s %(message)s")
from stratabatch import BatchProcessor

async def handler(requests):
    return [r["query"] for r in requests]

async def main():
    async with BatchProcessor(handler, dedup_strategy="exact") as batch:
        await batch.warm_up()
        assert await batch.process([{"query": "a"}, {"query": "A"}]) == ["a", "a"]

asyncio.run(main())
"""


def _env(cache: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": CHILD_PYTHONPATH, "NUMBA_CACHE_DIR": str(cache)}


def _files(cache: Path) -> dict[str, int]:
    """Every file numba (or the warm-up) wrote, with its modification time."""
    return {str(p): p.stat().st_mtime_ns for p in cache.rglob("*") if p.is_file()}


def _run(args: list[str], cache: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        env=_env(cache),
        cwd=ROOT,
        timeout=300,
    )


def _serve_one(start_engine, cache: Path, name: str) -> str:
    """Start an engine on ``cache``, answer one client's request, stop it; its log. Checks
    that nothing compiles once the engine is ready (the client's joining and request)."""
    import stratabatch

    eng = start_engine("--dedup-strategy", "exact", env={"NUMBA_CACHE_DIR": str(cache)}, name=name)
    at_ready = _files(cache)
    client = stratabatch.connect(eng.name, sync=True, timeout=30)
    try:
        assert client.process({"query": "hello"}, timeout=60) == {"answer": "HELLO", "n": 1}
    finally:
        client.close()
    assert eng.stop() == 0, eng.log()
    assert _files(cache) == at_ready
    return eng.log()


CACHE_DIRS = """
from numba.core.caching import FunctionCache
import stratabatch.kernels as kernels
from stratabatch.warm import cache_dir
print(cache_dir() == FunctionCache(kernels.hash_strings).cache_path)
"""


def test_the_cache_directory_is_numbas_own(tmp_path):
    # with NUMBA_CACHE_DIR, and without (the package's __pycache__, or the user cache)
    env = {k: v for k, v in _env(tmp_path / "numba").items() if k != "NUMBA_CACHE_DIR"}
    for e in (_env(tmp_path / "numba"), env):
        proc = subprocess.run(
            [sys.executable, "-c", CACHE_DIRS],
            capture_output=True,
            text=True,
            env=e,
            cwd=ROOT,
            timeout=120,
        )
        assert proc.stdout.strip() == "True", proc.stdout + proc.stderr


def test_the_units_a_start_loads_follow_its_options():
    assert units(BatchConfig()) == ("embedding",)
    assert units(BatchConfig(dedup_strategy="hybrid"), engine=True) == ("hybrid", "engine")
    assert units(BatchConfig(dedup_strategy="exact")) == ("exact",)
    # the user's similarity or embedder is never called by the warm-up: only the hash kernel
    assert units(BatchConfig(dedup_function=lambda a, b: 1.0)) == ("exact",)
    assert units(BatchConfig(enable_dedup=False)) == ()
    assert units(BatchConfig(enable_dedup=False), engine=True) == ("engine",)


def test_the_engine_needs_a_handler_unless_it_only_compiles(tmp_path):
    proc = _run(["-m", "stratabatch.cli", "--name", "x"], tmp_path / "numba")
    assert proc.returncode == 2 and "--handler" in proc.stderr


@pytest.mark.slow
def test_a_first_engine_start_says_it_compiles_and_the_next_says_nothing(
    start_engine, engine_name, tmp_path
):
    cache = tmp_path / "numba"
    log = _serve_one(start_engine, cache, engine_name)
    lines = log.splitlines()

    def at(text: str) -> int:
        found = [i for i, line in enumerate(lines) if text in line]
        assert found, f"no line with {text!r} in:\n{log}"
        return found[0]

    begin = at(
        "INFO compiling kernels for strategy=exact and the engine: first start on this "
        "machine, cached after, ~"
    )
    assert (
        begin
        < at("INFO compiled kernels for strategy=exact and the engine in ")
        < at("INFO ready: ")
    )
    before = _files(cache)
    log = _serve_one(start_engine, cache, engine_name)
    assert "compil" not in log, log
    assert _files(cache) == before  # numba compiled nothing, not even on the client's request


@pytest.mark.slow
def test_compile_only_fills_the_cache_an_engine_start_then_loads(
    start_engine, engine_name, tmp_path
):
    cache = tmp_path / "numba"
    proc = _run(["-m", "stratabatch.cli", "--compile-only", "--dedup-strategy", "exact"], cache)
    assert proc.returncode == 0, proc.stderr
    assert "compiling kernels for strategy=exact and the engine: first start" in proc.stderr
    before = _files(cache)
    log = _serve_one(start_engine, cache, engine_name)
    assert "compil" not in log, log
    assert _files(cache) == before


@pytest.mark.slow
def test_python_m_warm_fills_the_cache_an_embedded_warm_up_then_loads(tmp_path):
    cache = tmp_path / "numba"
    check = ["-m", "stratabatch.warm", "--strategy", "exact", "--check"]
    assert _run(check, cache).returncode == 1  # nothing cached yet
    proc = _run(["-m", "stratabatch.warm", "--strategy", "exact"], cache)
    assert proc.returncode == 0, proc.stderr
    assert "compiling kernels for strategy=exact and the engine: first start" in proc.stderr
    assert "2 of 2 cached (exact, engine)" in proc.stderr
    assert _run(check, cache).returncode == 0
    before = _files(cache)
    proc = _run(["-c", EMBEDDED], cache)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert _files(cache) == before


@pytest.mark.slow
def test_an_embedded_first_warm_up_says_it_compiles(tmp_path):
    cache = tmp_path / "numba"
    proc = _run(["-c", EMBEDDED], cache)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 2, proc.stderr
    assert lines[0].startswith(
        "stratabatch.warm WARNING compiling kernels for strategy=exact: "
        "first start on this machine, cached after, ~"
    )
    assert lines[1].startswith("stratabatch.warm WARNING compiled kernels for strategy=exact in ")
    assert _run(["-c", EMBEDDED], cache).stderr == ""  # the second start: cached, nothing said
