"""Garbage in a counters block: the reader refuses it with ``SegmentLayoutError``, the monitor
says so in one line (``--once``, ``--json``) or on its waiting screen, and never shows a
traceback. Numbers that are garbage (the data words) are shown as numbers.
"""

from __future__ import annotations

import contextlib
import copy
import json
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from monitor_helpers import engine_name

from stratabatch.ipc.counters import (
    COUNTERS_MAGIC,
    COUNTERS_VERSION,
    HEADER_BYTES,
    CountersLayout,
    CountersReader,
    CountersWriter,
    counters_segment_name,
)
from stratabatch.ipc.counters_layout import HEADER_STRUCT
from stratabatch.ipc.errors import SegmentLayoutError
from stratabatch.ipc.segment import Segment
from stratabatch.monitor import draw
from stratabatch.monitor.app import MonitorApp
from stratabatch.monitor.cli import EXIT_RUNNING, EXIT_STALLED, EXIT_UNREADABLE, main, render_once
from stratabatch.monitor.snapshot import (
    CountersSource,
    EngineSnapshot,
    RateTracker,
    Waiting,
    build_snapshot,
    read_snapshot,
)

ROOT = Path(__file__).resolve().parents[2]
LAYOUT = CountersLayout.for_stats(
    max_clients=4, history_s=300, info={"name": "g", "adaptive": True, "min_window_ms": 20}
)
SCHEMA: dict[str, Any] = json.loads(LAYOUT.schema_bytes)
WORDS = LAYOUT.data_bytes // 8


def _field(kind: str) -> int:
    return next(i for i, f in enumerate(SCHEMA["fields"]) if f["kind"] == kind)


def _mutated(path: tuple[Any, ...], value: Any) -> bytes:
    schema = copy.deepcopy(SCHEMA)
    node = schema
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return json.dumps(schema).encode()


HIST, RING, TABLE = _field("histogram"), _field("sample_ring"), _field("table")
BAD_SCHEMAS = {
    "array": b"[1, 2, 3]",
    "string": b'"stratabatch-counters"',
    "null": b"null",
    "number": b"42",
    "deeply nested": b"[" * 50_000 + b"]" * 50_000,
    "fields a number": _mutated(("fields",), 5),
    "field a string": _mutated(("fields",), ["total_requests"]),
    "name a list": _mutated(("fields", 0, "name"), [1]),
    "name seq": _mutated(("fields", 0, "name"), "seq"),
    "type unknown": _mutated(("fields", 0, "type"), ["i64"]),
    "offset a float": _mutated(("fields", 0, "offset"), 8.0),
    "offset outside": _mutated(("fields", 0, "offset"), 8 * WORDS),
    "bounds strings": _mutated(("fields", HIST, "bounds"), ["1", "2"]),
    "bounds empty": _mutated(("fields", HIST, "bounds"), []),
    "bounds decreasing": _mutated(("fields", HIST, "bounds"), [5, 1]),
    "bound too large": _mutated(("fields", HIST, "bounds"), [10**400]),
    "closed a list": _mutated(("fields", HIST, "closed"), ["left"]),
    "capacity negative": _mutated(("fields", RING, "capacity"), -3),
    "capacity a string": _mutated(("fields", RING, "capacity"), "300"),
    "column not an object": _mutated(("fields", RING, "columns"), ["t_s"]),
    "columns empty": _mutated(("fields", TABLE, "columns"), []),
    "index name a number": _mutated(("fields", TABLE, "index_name"), 7),
    "truncated": LAYOUT.schema_bytes[: len(LAYOUT.schema_bytes) // 2],
    "random bytes": random.Random(17).randbytes(500),
}


def block_bytes(schema: bytes, words: int = WORDS) -> bytearray:
    """A counters block whose header is right and whose schema is ``schema``."""
    data_offset = (HEADER_BYTES + len(schema) + 63) // 64 * 64
    buf = bytearray(data_offset + 8 * words)
    HEADER_STRUCT.pack_into(
        buf,
        0,
        COUNTERS_MAGIC,
        COUNTERS_VERSION,
        HEADER_BYTES,
        HEADER_BYTES,
        len(schema),
        data_offset,
        8 * words,
    )
    buf[HEADER_BYTES : HEADER_BYTES + len(schema)] = schema
    return buf


@contextlib.contextmanager
def segment_holding(payload: bytes) -> Iterator[str]:
    """An engine name whose counters segment (owned by this live process) holds ``payload``."""
    name = engine_name()
    seg = Segment.create(
        counters_segment_name(name), len(payload), magic=COUNTERS_MAGIC, version=COUNTERS_VERSION
    )
    try:
        seg.buf[:] = payload
        yield name
    finally:
        seg.close()


def check_unreadable(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Every way of reading engine ``name``'s block says it is unreadable, without raising."""
    with pytest.raises(SegmentLayoutError):
        read_snapshot(name)
    src = CountersSource(name)
    try:
        state = src.poll()
        assert isinstance(state, Waiting) and "not a readable counters block" in state.reason
        assert isinstance(src.poll(), Waiting)
    finally:
        src.close()
    for flag in ("--once", "--json"):
        assert main([name, flag]) == EXIT_UNREADABLE
        out = capsys.readouterr()
        lines = out.err.splitlines()
        assert out.out == "" and len(lines) == 1, out
        assert lines[0].startswith(f"stratabatch-monitor: cannot read engine {name!r}: ")


@pytest.mark.parametrize("schema", BAD_SCHEMAS.values(), ids=BAD_SCHEMAS.keys())
def test_a_bad_schema_is_refused_by_the_reader_and_the_monitor(schema, capsys):
    with pytest.raises(SegmentLayoutError, match="unreadable counters schema"):
        CountersReader(block_bytes(schema))
    with segment_holding(bytes(block_bytes(schema))) as name:
        check_unreadable(name, capsys)


@pytest.mark.parametrize(
    "payload",
    [
        b"\x00" * 40,
        random.Random(5).randbytes(4096),
        COUNTERS_MAGIC + random.Random(6).randbytes(4088),
    ],
    ids=["shorter than the header", "random block", "random after magic"],
)
def test_a_bad_header_is_refused(payload, capsys):
    with pytest.raises(SegmentLayoutError):
        CountersReader(bytearray(payload))
    with segment_holding(payload) as name:
        check_unreadable(name, capsys)


def test_the_cli_prints_one_line_for_a_schema_that_is_not_an_object():
    with segment_holding(bytes(block_bytes(b"[1, 2, 3]"))) as name:
        res = subprocess.run(
            [sys.executable, "-m", "stratabatch.monitor.cli", name, "--once"],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=120,
        )
    assert res.returncode == EXIT_UNREADABLE and "Traceback" not in res.stderr
    assert res.stderr.count("\n") == 1 and "the schema is a JSON array, not an object" in res.stderr


def _shown_everywhere(snap: EngineSnapshot) -> None:
    """What the monitor does with a snapshot: JSON, the table, the dashboard's lines."""
    json.dumps(snap.to_json(), allow_nan=False)
    render_once(snap)
    rates = RateTracker().update(snap)
    for width, height in ((80, 24), (160, 48), (20, 6)):
        draw.screen_lines(
            snap,
            rates,
            width=width,
            height=height,
            visible=list(draw.PANEL_TITLES),
            paused=False,
            charts={},
            redraw_charts=True,
        )


@pytest.mark.parametrize("fill", ["random", "small", "special floats"])
def test_garbage_numbers_are_shown_as_numbers(fill, capsys):
    name = engine_name()
    seg = Segment.create(
        counters_segment_name(name), LAYOUT.nbytes, magic=COUNTERS_MAGIC, version=COUNTERS_VERSION
    )
    try:
        w = CountersWriter(seg.buf, LAYOUT)
        rng = np.random.default_rng(23)
        words = np.frombuffer(seg.buf, np.int64, WORDS, LAYOUT.data_offset)
        with w.update():
            if fill == "random":
                words[:] = rng.integers(-(2**63), 2**63 - 1, WORDS, dtype=np.int64)
            elif fill == "small":
                words[:] = rng.integers(-5, 5, WORDS)
            else:
                words.view(np.float64)[:] = rng.choice(
                    [np.nan, np.inf, -np.inf, 1e308, -1.0, 0.0], WORDS
                )
            words[SCHEMA["fields"][RING]["head_offset"] // 8] = 1000  # a full per-second ring
        _shown_everywhere(read_snapshot(name))
        src = CountersSource(name)
        try:
            assert isinstance(src.poll(), EngineSnapshot)
        finally:
            src.close()
        for flag in ("--once", "--json"):
            # a garbage heartbeat may say the engine stalled
            assert main([name, flag]) in (EXIT_RUNNING, EXIT_STALLED)
            assert capsys.readouterr().out
        w.close()
    finally:
        seg.close()


def test_mutated_schemas_are_refused_or_read_whole():
    """Random edits of a real schema (a few values replaced by JSON of any type): the reader
    refuses the schema, or every snapshot of it reads and shows."""
    seed = random.randrange(2**32)
    print(f"seed {seed}")
    rng = random.Random(seed)
    values = [
        None,
        True,
        0,
        -1,
        1,
        8,
        2**70,
        1.5,
        float("nan"),
        "",
        "x",
        "i64",
        "f64",
        [],
        [1],
        {},
        {"a": 1},
        "seconds",
        "clients",
        "batch_size",
    ]

    def paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
        if prefix:
            yield prefix
        items = (
            node.items()
            if isinstance(node, dict)
            else enumerate(node)
            if isinstance(node, list)
            else ()
        )
        for key, child in items:
            yield from paths(child, (*prefix, key))

    every = list(paths(SCHEMA))
    read = 0
    for i in range(300):
        schema = copy.deepcopy(SCHEMA)
        for _ in range(rng.randint(1, 3)):
            path = rng.choice(every)
            node = schema
            with contextlib.suppress(LookupError, TypeError):
                for key in path[:-1]:
                    node = node[key]
                node[path[-1]] = copy.deepcopy(rng.choice(values))
        buf = block_bytes(json.dumps(schema).encode())
        words = np.frombuffer(buf, np.int64, WORDS, len(buf) - 8 * WORDS)
        words[:] = np.random.default_rng(i).integers(-(2**63), 2**63 - 1, WORDS, dtype=np.int64)
        try:
            reader = CountersReader(buf)
        except SegmentLayoutError:
            continue
        raw = reader.snapshot()
        _shown_everywhere(build_snapshot("g", "seg", raw, reader.info, alive=True, taken_at_ns=0))
        read += 1
    assert read > 0  # edits of docs and unused keys leave a readable schema


async def test_the_dashboard_waits_on_a_bad_schema():
    with segment_holding(bytes(block_bytes(b'{"fields": "x"}'))) as name:
        app = MonitorApp(name, poll=False)
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.pause()
            screen = app.dashboard.text
            assert f"Waiting for engine '{name}'" in screen
            assert "not a readable counters block" in screen and "monitor error" not in screen
