"""read_snapshot, CountersSource (waiting, restarts, dead engines) and RateTracker."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import textwrap

import pytest
from monitor_helpers import T0_NS, engine_name, publish

from stratabatch import Stats
from stratabatch.ipc.counters import CountersWriter, counters_segment_name
from stratabatch.ipc.errors import SegmentNotFoundError
from stratabatch.monitor.snapshot import (
    CountersSource,
    EngineSnapshot,
    RateTracker,
    Waiting,
    list_engines,
    read_snapshot,
)


def test_read_snapshot_holds_what_the_engine_wrote(block):
    name, w = block
    stats = publish(w)
    w.set_row(
        "clients",
        3,
        pid=777,
        connected=1,
        requests=50,
        errors=1,
        timeouts=2,
        connected_at_ns=T0_NS + 5,
    )
    w.set_row("clients", 5, pid=888, connected=1, requests=9)
    for t in range(10):
        w.push_second_sample(t_s=1000 + t, requests=100 + t, latency_ms_p99=5.0 + t)
    snap = read_snapshot(name, clock=lambda: T0_NS + 90_000_000_000)
    assert dataclasses.is_dataclass(snap) and isinstance(snap.stats, Stats)
    for key, value in stats.items():
        assert getattr(snap.stats, key) == value, key
    assert (snap.pid, snap.alive, snap.started_at_ns) == (os.getpid(), True, T0_NS)
    assert snap.uptime_s == 90.0 and snap.info["handler"] == "tests.app:handle"
    assert (snap.inflight_batches, snap.clients_connected, snap.dedup_threshold) == (2, 2, 0.93)
    assert snap.segment == counters_segment_name(name)
    assert [(c.slot, c.pid, c.requests, c.errors, c.timeouts) for c in snap.clients] == [
        (3, 777, 50, 1, 2),
        (5, 888, 9, 0, 0),
    ]
    assert snap.history.t_s == tuple(range(1000, 1010))
    assert snap.history.requests[-1] == 109 and snap.history.latency_ms_p99[0] == 5.0
    assert snap.batch_size.total == 51 and snap.batch_size.quantile(0.5) > 16
    with pytest.raises(dataclasses.FrozenInstanceError):
        snap.pid = 1  # type: ignore[misc]
    with pytest.raises(SegmentNotFoundError):
        read_snapshot(engine_name())


def test_every_snapshot_field_has_a_docstring():
    import ast
    import inspect

    import stratabatch.monitor.snapshot as mod

    tree = ast.parse(inspect.getsource(mod))
    checked = 0
    for cls in (n for n in tree.body if isinstance(n, ast.ClassDef)):
        body = cls.body
        for i, node in enumerate(body):
            if isinstance(node, ast.AnnAssign):
                nxt = body[i + 1] if i + 1 < len(body) else None
                assert isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant), (
                    f"{cls.name}.{ast.unparse(node.target)} has no docstring"
                )
                checked += 1
    assert checked >= len(dataclasses.fields(EngineSnapshot))


def test_json_has_every_stats_field_engine_identity_and_clients(block):
    name, w = block
    publish(w)
    w.set_row("clients", 1, pid=4321, connected=1, requests=12)
    data = read_snapshot(name).to_json()
    for f in dataclasses.fields(Stats):
        assert f.name in data, f.name
    assert data["total_requests"] == 123_456
    assert data["merge_similarity_histogram"][100] == 40
    assert data["engine"]["name"] == name and data["engine"]["pid"] == os.getpid()
    assert data["engine"]["info"]["max_size"] == 32
    assert data["clients"] == [
        {"slot": 1, "pid": 4321, "requests": 12, "errors": 0, "timeouts": 0, "connected_at_ns": 0}
    ]
    counts = data["batch_size_histogram"]["counts"]
    assert (counts[2], counts[7], counts[9]) == (1, 10, 40)  # buckets 3, (12, 16], (24, 32]
    assert data["latency_ms_histogram"]["closed"] == "right"


def test_source_waits_attaches_and_follows_a_restart():
    name = engine_name()
    src = CountersSource(name)
    try:
        state = src.poll()
        assert isinstance(state, Waiting) and state.name == name
        assert state.path == f"/dev/shm/{counters_segment_name(name)}"
        assert "no engine of that name" in state.reason
        first = CountersWriter.create(name, started_at_ns=T0_NS)
        try:
            assert name in list_engines()
            publish(first, total_requests=10)
            snap = src.poll()
            assert isinstance(snap, EngineSnapshot) and snap.stats.total_requests == 10
            assert src.poll().seq == snap.seq  # unchanged block: same data
        finally:
            first.close()
        assert isinstance(src.poll(), Waiting)
        second = CountersWriter.create(name, started_at_ns=T0_NS + 1)
        try:
            publish(second, total_requests=20)
            snap = src.poll()
            assert isinstance(snap, EngineSnapshot) and snap.stats.total_requests == 20
            second.close()  # a restart with no gap in between: a new segment, same name
            second = CountersWriter.create(name, started_at_ns=T0_NS + 2)
            publish(second, total_requests=30)
            snap = src.poll()
            assert isinstance(snap, EngineSnapshot)
            assert (snap.stats.total_requests, snap.started_at_ns) == (30, T0_NS + 2)
        finally:
            second.close()
    finally:
        src.close()


DYING_ENGINE = """
    import os, sys
    from stratabatch.ipc.counters import CountersWriter
    w = CountersWriter.create(sys.argv[1])
    w.set("total_requests", 5)
    print("ready", flush=True)
    sys.stdin.read()
"""


def test_a_dead_engine_shows_its_last_snapshot_until_a_successor_attaches():
    name = engine_name()
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(DYING_ENGINE), name],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    src = CountersSource(name)
    try:
        assert proc.stdout.readline().strip() == "ready"
        snap = src.poll()
        assert isinstance(snap, EngineSnapshot) and snap.pid == proc.pid
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        state = src.poll()  # the block is still there, its writer is not
        assert isinstance(state, EngineSnapshot) and state.pid == proc.pid
        assert (state.alive, state.status, state.stats.total_requests) == (False, "exited", 5)
        successor = CountersWriter.create(name)  # reclaims the stale segment
        try:
            publish(successor, total_requests=99)
            snap = src.poll()
            assert isinstance(snap, EngineSnapshot)
            assert (snap.pid, snap.stats.total_requests) == (os.getpid(), 99)
        finally:
            successor.close()
    finally:
        src.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdin.close()
        proc.stdout.close()


def test_an_engine_killed_inside_an_update_is_waited_for():
    name = engine_name()
    script = DYING_ENGINE.replace('w.set("total_requests", 5)', "w.begin()")
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script), name],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    src = CountersSource(name)
    try:
        assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        state = src.poll()  # no consistent copy will ever exist: nothing to show
        assert isinstance(state, Waiting)
        assert f"(pid {proc.pid}) died in the middle of an update" in state.reason
    finally:
        src.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdin.close()
        proc.stdout.close()
        CountersWriter.create(name).close()  # a successor reclaims the block, then removes it


def test_the_monitor_never_writes_the_block(block):
    name, w = block
    publish(w)
    w.set_row("clients", 0, pid=1, connected=1)
    path = f"/dev/shm/{counters_segment_name(name)}"
    with open(path, "rb") as f:
        before = f.read()
    src = CountersSource(name)
    for _ in range(5):
        assert isinstance(src.poll(), EngineSnapshot)
    read_snapshot(name).to_json()
    src.close()
    with open(path, "rb") as f:
        assert f.read() == before


def test_bad_names_are_refused_at_once():
    with pytest.raises(ValueError, match="engine name must be"):
        CountersSource("no/slash")


def _snap_at(block_writer_name, t_s: float) -> EngineSnapshot:
    return read_snapshot(block_writer_name, clock=lambda: int(t_s * 1e9))


def test_rates_follow_totals_and_reset(block):
    name, w = block
    publish(w, total_requests=1000, total_batches=10, errors=1)
    w.set_row("clients", 2, pid=50, connected=1, requests=100)
    rt = RateTracker(window_s=5.0)
    assert rt.update(_snap_at(name, 100.0)).requests_per_s is None  # one sample: no rate
    publish(w, total_requests=1500, total_batches=15, errors=1)
    w.add_row("clients", 2, requests=200)
    r = rt.update(_snap_at(name, 102.0))
    assert (r.requests_per_s, r.batches_per_s, r.clients_per_s) == (250.0, 2.5, {2: 100.0})
    assert r.grew == frozenset()
    publish(w, total_requests=1600, total_batches=16, errors=4, timeouts=9)
    r = rt.update(_snap_at(name, 104.0))
    assert r.requests_per_s == 150.0 and r.grew == {"errors", "timeouts"}
    rt.reset()
    r = rt.update(_snap_at(name, 105.0))
    assert r.requests_per_s is None and r.grew == frozenset()
    w.set_row("clients", 2, pid=51, requests=5)  # another process took the slot
    r = rt.update(_snap_at(name, 106.0))
    assert 2 not in r.clients_per_s
