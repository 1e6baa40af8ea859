"""Counters block: layout, self-describing header, writer operations, and the seqlock."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import struct
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from stratabatch import Stats
from stratabatch.ipc.counters import (
    COUNTERS_MAGIC,
    COUNTERS_VERSION,
    HEADER_BYTES,
    LATENCY_BUCKETS_MS,
    SEQ_OFFSET,
    SIMILARITY_BINS,
    SIMILARITY_BUCKETS,
    Counter,
    CountersLayout,
    CountersReader,
    CountersWriter,
    Gauge,
    Histogram,
    SampleRing,
    Table,
    bucket_index,
    counters_segment_name,
    histogram_quantile,
    log_buckets,
    similarity_bin,
)
from stratabatch.ipc.errors import SegmentExistsError, SegmentLayoutError, SegmentNotFoundError
from stratabatch.ipc.segment import Segment, segment_name
from tests.conftest import run_name


def stats_block(**kw) -> tuple[bytearray, CountersWriter, CountersReader]:
    layout = CountersLayout.for_stats(**kw)
    buf = bytearray(layout.nbytes)
    writer = CountersWriter(buf, layout)
    return buf, writer, CountersReader(buf)


def test_stats_layout_holds_every_stats_field():
    """Stats is the source of the schema: each of its fields has a field of the same name."""
    buf, w, r = stats_block()
    snap = r.snapshot()
    fields = {f["name"]: f for f in r.schema["fields"]}
    for f in dataclasses.fields(Stats):
        spec = fields.get(f.name)
        assert spec is not None, f"Stats.{f.name} is missing from the counters layout"
        if f.type == "int":
            assert (spec["kind"], spec["type"]) in {("counter", "i64"), ("gauge", "i64")}, f.name
            assert snap[f.name] == 0
        elif f.type == "float":
            assert (spec["kind"], spec["type"]) == ("gauge", "f64"), f.name
            assert snap[f.name] == 0.0
        else:
            assert spec["kind"] == "histogram" and spec["buckets"] == SIMILARITY_BINS, f.name
            assert spec["closed"] == "left" and spec["bounds"] == list(SIMILARITY_BUCKETS)
    for name in [
        "engine_pid",
        "started_at_ns",
        "updated_at_ns",
        "inflight_batches",
        "clients_connected",
        "dedup_threshold",
    ]:
        assert snap[name] == 0, name
    assert set(snap["seconds"]) == {
        "t_s",
        "requests",
        "batches",
        "duplicates",
        "errors",
        "latency_ms_p99",
        "queue_depth",
    }
    assert snap["clients"] == []
    assert snap["latency_ms"]["bounds"] == list(LATENCY_BUCKETS_MS)
    for f in r.schema["fields"]:
        if f["kind"] == "sample_ring":
            assert f["capacity"] == 600
    assert CountersLayout.for_stats(max_clients=8, history_s=300).nbytes < len(buf)
    with pytest.raises(ValueError, match="history_s must be an integer >= 300, got 299"):
        CountersLayout.for_stats(history_s=299)


def test_a_reader_needs_only_struct_and_json():
    buf, w, _ = stats_block(max_clients=4)
    with w.update():
        w.add("total_requests", 41)
        w.add("total_requests")
        w.set("window_ms", 12.5)
        w.set_row("clients", 2, pid=4242, connected=1)
    # decode from the documented layout alone, as a monitor in another language would
    magic, version, header, s_off, s_len, d_off, d_len = struct.unpack_from("<8sIIQQQQ", buf)
    assert (magic, version, header, s_off) == (
        COUNTERS_MAGIC,
        COUNTERS_VERSION,
        HEADER_BYTES,
        HEADER_BYTES,
    )
    schema = json.loads(bytes(buf[s_off : s_off + s_len]))
    fields = {f["name"]: f for f in schema["fields"]}
    (total,) = struct.unpack_from("<q", buf, d_off + fields["total_requests"]["offset"])
    (window,) = struct.unpack_from("<d", buf, d_off + fields["window_ms"]["offset"])
    clients = fields["clients"]
    pid_col = [c["name"] for c in clients["columns"]].index("pid")
    (pid,) = struct.unpack_from(
        "<q", buf, d_off + clients["rows_offset"] + 2 * clients["row_bytes"] + 8 * pid_col
    )
    (seq,) = struct.unpack_from("<q", buf, schema["seqlock"]["offset"])
    assert (total, window, pid, seq % 2) == (42, 12.5, 4242, 0)
    assert schema["seqlock"]["offset"] == SEQ_OFFSET and d_off % 64 == 0


def test_counters_gauges_and_types():
    buf, w, r = stats_block()
    w.add("duplicates", 3)
    w.add("cost_saved_usd", 0.25)
    w.add("cost_saved_usd", 0.5)
    w.set("queue_depth", np.int64(17))
    w.set("window_ms", 7)
    snap = r.snapshot()
    assert (snap["duplicates"], snap["cost_saved_usd"]) == (3, 0.75)
    assert (snap["queue_depth"], snap["window_ms"]) == (17, 7.0)
    assert isinstance(snap["queue_depth"], int) and isinstance(snap["window_ms"], float)
    assert w.get("duplicates") == 3
    with pytest.raises(TypeError, match="queue_depth is an i64 field and needs an integer"):
        w.set("queue_depth", 1.5)
    with pytest.raises(KeyError, match="no counter or gauge named 'nope'"):
        w.add("nope")
    with pytest.raises(KeyError, match="no histogram named 'total_requests'"):
        w.observe("total_requests", 1.0)


def test_histograms_bucket_by_upper_bound():
    layout = CountersLayout([Histogram("h", (1.0, 2.0, 4.0))])
    buf = bytearray(layout.nbytes)
    w, r = CountersWriter(buf, layout), CountersReader(buf)
    for v in (0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, -1.0):
        w.observe("h", v)
    w.observe_many("h", np.array([1.0, 4.5, 2.5]))
    h = r.snapshot()["h"]
    assert h["counts"] == [4, 2, 3, 2]  # (-inf,1], (1,2], (2,4], (4,inf)
    assert (h["count"], h["sum"]) == (11, 0.5 + 1 + 1.5 + 2 + 3 + 4 + 5 - 1 + 1 + 4.5 + 2.5)
    with pytest.raises(ValueError, match="cannot observe NaN"):
        w.observe("h", math.nan)
    with pytest.raises(ValueError, match="cannot observe NaN"):
        w.observe_many("h", [1.0, math.nan])
    assert r.snapshot()["h"]["count"] == 11


def test_left_closed_histograms_and_bucket_index():
    layout = CountersLayout([Histogram("h", (1.0, 2.0, 4.0), closed="left")])
    buf = bytearray(layout.nbytes)
    w, r = CountersWriter(buf, layout), CountersReader(buf)
    for v in (0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, -1.0):
        w.observe("h", v)
    w.observe_many("h", np.array([1.0, 4.0, 2.5]))
    h = r.snapshot()["h"]
    assert h["closed"] == "left"
    assert h["counts"] == [2, 3, 3, 3]  # (-inf,1), [1,2), [2,4), [4,inf)
    for closed in ("left", "right"):
        for v in (-1.0, 0.5, 1.0, 1.5, 2.0, 4.0, 9.0):
            side = "right" if closed == "left" else "left"
            assert bucket_index((1.0, 2.0, 4.0), v, closed) == np.searchsorted(
                [1.0, 2.0, 4.0], v, side=side
            )
    with pytest.raises(ValueError, match="closed must be 'left' or 'right', got 'both'"):
        CountersLayout([Histogram("h", (1.0,), closed="both")])


def test_similarity_bins_are_the_stats_bins():
    """One binning rule: the block's merge-similarity buckets are Stats' histogram bins."""
    from stratabatch.stats import StatsRecorder

    sims = [0.0, 0.005, 0.01, 0.29, 0.5, 0.899999, 0.9, 0.95, 0.96, 0.9999, 1.0, 1.0000001, -0.3]
    rec = StatsRecorder()
    for s in sims:
        rec.record_merge(s, exact=s == 1.0)
    stats = rec.snapshot(now=0.0, queue_depth=0, window_ms=5.0, cost_per_request=0.0)
    expected = [0] * SIMILARITY_BINS
    for s in sims:
        expected[similarity_bin(s)] += 1
    assert list(stats.merge_similarity_histogram) == expected
    assert [similarity_bin(s) for s in (0.96, 0.29, 0.0, -0.3, 0.9999, 1.0, 1.5)] == [
        96,
        29,
        0,
        0,
        99,
        100,
        100,
    ]
    for i in range(SIMILARITY_BINS):  # every bound i/100 opens bin i
        assert similarity_bin(i / 100) == i
    buf, w, r = stats_block()
    w.observe_many("merge_similarity_histogram", sims)
    for s in sims:
        w.observe("merge_similarity_histogram", s)
    assert r.snapshot()["merge_similarity_histogram"]["counts"] == [2 * c for c in expected]


def test_write_stats_publishes_every_stats_field():
    from stratabatch.stats import StatsRecorder

    rec = StatsRecorder()
    rec.total_requests, rec.dropped, rec.errors = 10, 2, 1
    rec.record_batch(3)
    for s in (1.0, 0.97, 0.96):
        rec.record_merge(s, exact=s == 1.0)
    rec.record_done(0.004, 100.0)
    stats = rec.snapshot(
        now=100.0,
        queue_depth=2,
        window_ms=12.5,
        cost_per_request=0.01,
        adaptive_a_ms=1.5,
        adaptive_b_ms=0.25,
    )
    buf, w, r = stats_block()
    w.write_stats(stats, now_ns=123)
    snap = r.snapshot()
    for f in dataclasses.fields(Stats):
        value = getattr(stats, f.name)
        if f.name == "merge_similarity_histogram":
            assert tuple(snap[f.name]["counts"]) == value
            assert snap[f.name]["count"] == 3
        elif f.name == "reuse_similarity_histogram":  # (no near reuse here)
            assert tuple(snap[f.name]["counts"]) == value
            assert snap[f.name]["count"] == 0
        else:
            assert snap[f.name] == value, f.name
            assert type(snap[f.name]) is type(value), f.name
    assert snap["updated_at_ns"] == 123
    assert (snap["dropped"], snap["batch_size_max"], snap["adaptive_b_ms"]) == (2, 3, 0.25)
    w.write_stats({"queue_depth": 5})
    assert r.snapshot()["queue_depth"] == 5 and r.snapshot()["updated_at_ns"] > 123
    with pytest.raises(KeyError, match="no field 'brand_new' to publish"):
        w.write_stats({"brand_new": 1})
    with pytest.raises(ValueError, match="needs 101 non-negative integer counts"):
        w.set_histogram("merge_similarity_histogram", [1, 2])


def test_sample_second_records_what_changed_each_second():
    buf, w, r = stats_block()
    w.add("total_requests", 100)
    w.add("total_batches", 4)
    w.add("duplicates", 30)
    w.set("queue_depth", 7)
    w.observe_many("latency_ms", [1.0] * 99 + [50.0])
    w.sample_second(1000)
    w.add("total_requests", 20)
    w.add("errors", 2)
    w.set("latency_ms_p99", 9.5)
    w.sample_second(1001)
    w.observe_many("latency_ms", [200.0] * 10)
    w.sample_second(1002)
    sec = r.snapshot()["seconds"]
    assert sec["t_s"] == [1000, 1001, 1002]
    assert sec["requests"] == [100, 20, 0]
    assert sec["batches"] == [4, 0, 0] and sec["duplicates"] == [30, 0, 0]
    assert sec["errors"] == [0, 2, 0] and sec["queue_depth"] == [7, 7, 7]
    assert 1.0 <= sec["latency_ms_p99"][0] <= 50.0
    assert sec["latency_ms_p99"][1] == 9.5  # no latency observed that second: the gauge
    assert 150.0 <= sec["latency_ms_p99"][2] <= 260.0


def test_create_and_attach_by_engine_name():
    name = run_name("t")
    seg_name = counters_segment_name(name)
    assert seg_name == f"stratabatch-{os.getuid()}-{name}-counters"
    with pytest.raises(SegmentNotFoundError):
        CountersReader.attach(name)
    info = {"name": name, "handler": "pkg.mod:fn", "max_size": 32, "adaptive": False}
    w = CountersWriter.create(name, info=info, max_clients=4, history_s=300, started_at_ns=1_000)
    try:
        assert os.path.exists(f"/dev/shm/{seg_name}")
        with pytest.raises(SegmentExistsError):
            CountersWriter.create(name)
        r = CountersReader.attach(name)
        snap = r.snapshot()
        assert (snap["engine_pid"], snap["started_at_ns"]) == (os.getpid(), 1_000)
        assert snap["updated_at_ns"] > 0
        assert r.info == info
        assert r.segment is not None and r.segment.owner_pid == os.getpid()
        w.add("total_requests", 3)
        assert r.snapshot()["total_requests"] == 3
        r.close()
        r.close()
        assert os.path.exists(f"/dev/shm/{seg_name}")  # a reader never unlinks
    finally:
        w.close()
        w.close()
    assert not os.path.exists(f"/dev/shm/{seg_name}")


def test_info_validation():
    assert CountersLayout([Counter("c")]).info == {}
    with pytest.raises(ValueError, match="info name must match"):
        CountersLayout([Counter("c")], info={"Bad Key": 1})
    with pytest.raises(ValueError, match=r"info\['h'\] must be a str, number, bool or None"):
        CountersLayout([Counter("c")], info={"h": [1]})
    with pytest.raises(ValueError, match="at most 4096 allowed"):
        CountersLayout([Counter("c")], info={"h": "x" * 5000})


def test_histogram_quantile():
    hist = {"bounds": [1.0, 2.0, 4.0], "counts": [0, 10, 10, 0]}
    assert histogram_quantile(hist, 0.5) == 2.0
    assert histogram_quantile(hist, 0.25) == 1.5
    assert histogram_quantile(hist, 0.75) == 3.0
    assert histogram_quantile({"bounds": [1.0], "counts": [0, 5]}, 0.9) == 1.0
    assert math.isnan(histogram_quantile({"bounds": [1.0], "counts": [0, 0]}, 0.5))
    with pytest.raises(ValueError, match="q must be in"):
        histogram_quantile(hist, 1.5)
    rng = np.random.default_rng(7)
    print("seed 7")
    latencies = rng.lognormal(mean=2.0, sigma=1.0, size=20_000)
    buf, w, r = stats_block()
    w.observe_many("latency_ms", latencies)
    est = histogram_quantile(r.snapshot()["latency_ms"], 0.99)
    assert abs(est / np.quantile(latencies, 0.99) - 1) < 0.15  # buckets are ~26% wide
    assert log_buckets(1.0, 100.0, 2) == (1.0, 3.16228, 10.0, 31.6228, 100.0)


def test_sample_ring_keeps_the_newest_rows_in_order():
    buf, w, r = stats_block(history_s=300)
    assert r.snapshot()["seconds"]["t_s"] == []
    for t in range(1000, 1010):
        w.push_second_sample(t_s=t, requests=t - 1000, latency_ms_p99=t / 10)
    snap = r.snapshot()["seconds"]
    assert snap["t_s"] == list(range(1000, 1010))
    assert snap["latency_ms_p99"][-1] == 100.9 and snap["batches"] == [0] * 10
    for t in range(1010, 1705):  # wraps around more than twice
        w.push_second_sample(t_s=t, requests=t - 1000, batches=1)
    snap = r.snapshot()["seconds"]
    assert snap["t_s"] == list(range(1405, 1705))
    assert snap["requests"] == list(range(405, 705))
    assert snap["latency_ms_p99"] == [0.0] * 300  # columns not given are zero, not stale
    with pytest.raises(KeyError, match="seconds has no column 'nope'"):
        w.push_second_sample(t_s=1, nope=2)
    with pytest.raises(KeyError, match="no sample ring named 'minutes'"):
        w.push_sample("minutes", t_s=1)


def test_client_table_rows():
    buf, w, r = stats_block(max_clients=4)
    w.set_row("clients", 1, pid=100, connected=1, connected_at_ns=5)
    w.add_row("clients", 1, requests=3, errors=1)
    w.add_row("clients", 1, requests=2)
    w.set_row("clients", 3, pid=300, connected=0)
    assert r.snapshot()["clients"] == [
        {
            "slot": 1,
            "pid": 100,
            "connected": 1,
            "requests": 5,
            "errors": 1,
            "timeouts": 0,
            "connected_at_ns": 5,
        },
        {
            "slot": 3,
            "pid": 300,
            "connected": 0,
            "requests": 0,
            "errors": 0,
            "timeouts": 0,
            "connected_at_ns": 0,
        },
    ]
    w.clear_row("clients", 1)
    assert [c["slot"] for c in r.snapshot()["clients"]] == [3]
    with pytest.raises(IndexError, match=r"clients row must be in \[0, 4\), got 4"):
        w.set_row("clients", 4, pid=1)
    with pytest.raises(KeyError, match="no table named 'slots'"):
        w.add_row("slots", 0, requests=1)


def test_update_groups_changes_and_bumps_the_sequence_once():
    buf, w, r = stats_block()
    seq0 = r.snapshot()["seq"]
    with w.update():
        w.add("total_requests", 2)
        w.add("total_batches")
        with w.update():  # nested updates join the outer one
            w.observe("batch_size", 2)
    assert r.snapshot()["seq"] == seq0 + 2
    w.add("errors")
    assert r.snapshot()["seq"] == seq0 + 4
    with pytest.raises(RuntimeError, match="end\\(\\) without a matching begin"):
        w.end()


def test_reader_times_out_on_a_writer_stuck_mid_update():
    buf, w, r = stats_block()
    w.begin()
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="stayed mid-update for 0.05 s"):
        r.snapshot(timeout=0.05)
    assert time.monotonic() - started < 5.0
    w.end()
    assert r.snapshot(timeout=0.05)["seq"] % 2 == 0


def test_layout_validation():
    with pytest.raises(ValueError, match="name 'total' is used twice"):
        CountersLayout([Counter("total"), Gauge("total")])
    for bad in ("Total", "1x", "seq", "a-b", ""):
        with pytest.raises(ValueError, match="must match"):
            CountersLayout([Counter(bad)])
    with pytest.raises(ValueError, match="type must be one of \\('i64', 'f64'\\), got 'u8'"):
        CountersLayout([Gauge("g", "u8")])
    with pytest.raises(ValueError, match="strictly increasing"):
        CountersLayout([Histogram("h", (1.0, 1.0))])
    with pytest.raises(ValueError, match="strictly increasing"):
        CountersLayout([Histogram("h", (1.0, math.inf))])
    with pytest.raises(ValueError, match="size must be in \\[1, 1000000\\], got 0"):
        CountersLayout([SampleRing("s", 0, (("a", "i64"),))])
    with pytest.raises(ValueError, match="needs at least one column"):
        CountersLayout([Table("t", 2, ())])
    with pytest.raises(ValueError, match="index name 'a' is used twice"):
        CountersLayout([Table("t", 2, (("a", "i64"),), index_name="a")])
    layout = CountersLayout([Counter("c")])
    with pytest.raises(ValueError, match=f"writable buffer of {layout.nbytes} bytes, got 10"):
        CountersWriter(bytearray(10), layout)


def test_reader_rejects_foreign_or_damaged_blocks():
    layout = CountersLayout([Counter("c"), Gauge("g")])
    buf = bytearray(layout.nbytes)
    CountersWriter(buf, layout)
    assert CountersReader(buf).field_names == ["c", "g"]
    with pytest.raises(SegmentLayoutError, match="at least 128 bytes"):
        CountersReader(buf[:100])
    bad = bytearray(buf)
    bad[:8] = b"SBARENA1"
    with pytest.raises(SegmentLayoutError, match="not a counters block"):
        CountersReader(bad)
    bad = bytearray(buf)
    bad[8] = 9
    with pytest.raises(SegmentLayoutError, match="counters layout version 9"):
        CountersReader(bad)
    with pytest.raises(SegmentLayoutError, match="inconsistent counters header"):
        CountersReader(buf[: layout.data_offset + 4])
    bad = bytearray(buf)
    bad[HEADER_BYTES] = ord("[")  # the schema no longer parses
    with pytest.raises(SegmentLayoutError, match="unreadable counters schema"):
        CountersReader(bad)
    bad = bytearray(buf)
    text = layout.schema_bytes.replace(b'"offset":8', b'"offset":800')
    bad[HEADER_BYTES : HEADER_BYTES + len(text)] = text
    bad[24:32] = struct.pack("<Q", len(text))
    with pytest.raises(SegmentLayoutError, match="offset 800 .* outside the data region"):
        CountersReader(bad)


# ---------------------------------------------------------------- seqlock across processes

FIELDS = 64
WRITER_CODE = """
    import select
    import sys
    from stratabatch.ipc.counters import Counter, CountersLayout, CountersWriter
    from stratabatch.ipc.segment import Segment

    names = [f"f{i:02d}" for i in range(64)]
    layout = CountersLayout([Counter(n) for n in names])
    seg = Segment.create(sys.argv[1], layout.nbytes, magic=b"SBCNTRS0", version=1)
    writer = CountersWriter(seg.buf, layout)
    print("ready", flush=True)
    value = 0
    while True:  # every field moves to the same value in each update, one store at a time
        value += 1
        with writer.update():
            for name in names:
                writer.set(name, value)
        if value % 128 == 0 and select.select([sys.stdin], [], [], 0)[0]:
            break
    writer.release()
    seg.close()
    print(value, flush=True)
"""


def test_seqlock_snapshots_are_consistent_across_processes():
    name = segment_name(run_name("t"), "counters")
    writer = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(WRITER_CODE), name],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout.readline().strip() == "ready", writer.stderr.read()
        seg = Segment.attach(name, magic=b"SBCNTRS0", version=1)
        reader = CountersReader(seg.buf)
        names = reader.field_names
        assert len(names) == FIELDS

        # control: plain copies taken while the writer runs do tear, so the check can fail
        d_off = struct.unpack_from("<Q", seg.buf, 32)[0]
        raw = np.frombuffer(seg.buf, np.int64, FIELDS, d_off)
        deadline = time.monotonic() + 30.0
        while raw[-1] < 100 and time.monotonic() < deadline:  # the writer is up to speed
            time.sleep(0.001)
        torn = 0
        while torn < 20 and time.monotonic() < deadline:
            copy = raw.copy()
            torn += bool((copy != copy[0]).any())
        assert torn >= 20, "the writer never tore a plain copy: the test would prove nothing"

        # at least 100,000 snapshots, and on until 1,000 distinct values were seen (the
        # writer really ran during the reads, however little of the cores it got)
        previous, values, reads = 0, set(), 0
        deadline = time.monotonic() + 120.0
        while reads < 100_000 or (len(values) < 1_000 and time.monotonic() < deadline):
            snap = reader.snapshot(timeout=10.0)
            first = snap["f00"]
            assert all(snap[n] == first for n in names), snap
            assert first >= previous
            previous = first
            values.add(first)
            reads += 1
        print(
            f"torn plain copies: {torn}; distinct values seen by {reads:,} snapshots: "
            f"{len(values)}; last value {previous}"
        )
        assert len(values) >= 1_000
        reader.release()
        del raw
        seg.close()
    finally:
        out, err = writer.communicate(timeout=30)
    assert writer.returncode == 0, err
    assert int(out.split()[-1]) >= previous
