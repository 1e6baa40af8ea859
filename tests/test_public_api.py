"""The public face: documented names, the error hierarchy, and a cheap import."""

from __future__ import annotations

import json
import queue
import subprocess
import sys

import stratabatch

DOCUMENTED = [
    "BatchConfig",
    "BatchOptions",
    "BatchProcessor",
    "BatchTimeoutError",
    "Completed",
    "ConfigError",
    "EngineUnavailableError",
    "HandlerError",
    "InvalidRequestError",
    "QueueFullError",
    "RequestTooLargeError",
    "Stats",
    "StratabatchError",
    "batch",
    "connect",
]


def test_all_is_exactly_the_documented_names_sorted():
    assert stratabatch.__all__ == sorted(DOCUMENTED)
    for name in DOCUMENTED:
        assert getattr(stratabatch, name) is not None


def test_each_error_is_also_the_builtin_it_narrows():
    s = stratabatch
    assert issubclass(s.ConfigError, ValueError)
    assert issubclass(s.InvalidRequestError, ValueError)
    assert issubclass(s.RequestTooLargeError, s.InvalidRequestError)
    assert issubclass(s.BatchTimeoutError, TimeoutError)
    assert issubclass(s.QueueFullError, queue.Full)
    assert issubclass(s.HandlerError, RuntimeError)
    assert issubclass(s.EngineUnavailableError, ConnectionError)
    for name in DOCUMENTED:
        obj = getattr(s, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, s.StratabatchError)


def test_importing_stratabatch_loads_no_numba_textual_or_uvloop():
    code = (
        "import sys, json, stratabatch; from stratabatch import BatchProcessor, Stats;"
        "BatchProcessor(window_ms=5);"
        "print(json.dumps([m for m in ('numba', 'llvmlite', 'textual', 'uvloop')"
        " if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import stratabatch"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "numba" not in out.stderr and "textual" not in out.stderr


def test_stats_fields_documented_in_design_are_all_there():
    from dataclasses import fields

    names = {f.name for f in fields(stratabatch.Stats)}
    design = (
        "total_requests total_batches avg_batch_size unique_requests duplicates dedup_rate "
        "inflight_coalesced requests_per_second cost_saved_usd latency_ms_p50 "
        "latency_ms_p95 latency_ms_p99 queue_depth window_ms errors timeouts rejected "
        "exact_merges near_merges merge_similarity_histogram"
    ).split()
    assert set(design) <= names
