"""stratabatch.metrics: every Stats field as a Prometheus metric, parsed back with the official
client's parser; register() for embedded processors; the counters-block collector; the server."""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import os
import socket
import sys
import threading
import urllib.request

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import stratabatch
from stratabatch import BatchProcessor, Stats
from stratabatch import metrics as sm
from stratabatch.ipc.counters import CountersWriter
from stratabatch.ipc.counters_layout import SIMILARITY_BINS, similarity_bin
from tests.conftest import run_name


def scrape(registry) -> dict[str, list]:
    """Sample name -> [(labels, value)] of one exposition, through the official parser."""
    out: dict[str, list] = {}
    for fam in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in fam.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def value(samples, metric, **labels):
    """The one value of ``metric`` whose labels include ``labels``."""
    found = [v for lab, v in samples[metric] if all(lab.get(k) == x for k, x in labels.items())]
    assert len(found) == 1, (metric, labels, samples.get(metric))
    return found[0]


def assert_every_stats_field(samples) -> None:
    """Each Stats field (from the dataclass, so a new field without a metric fails) is served."""
    for f in dataclasses.fields(Stats):
        assert f.name in sm.STATS_METRICS, f"Stats.{f.name} has no metric"
        name = sm.STATS_METRICS[f.name]
        wanted = name + "_bucket" if f.name.endswith("similarity_histogram") else name
        assert wanted in samples, f"Stats.{f.name}: {wanted} missing from the scrape"


def exact_handler(reqs):
    return [r["query"].upper() for r in reqs]


async def test_register_serves_every_stats_field_with_the_processor_s_values():
    reg = CollectorRegistry()
    async with BatchProcessor(exact_handler, dedup_strategy="exact", window_ms=20) as b:
        handle = sm.register(b, reg)
        await asyncio.gather(*(b.process({"query": f"q{i % 6}"}) for i in range(30)))
        samples = scrape(reg)
        st = b.get_stats()
        assert_every_stats_field(samples)
        assert value(samples, "stratabatch_requests_total") == 30 == st.total_requests
        assert value(samples, "stratabatch_unique_requests_total") == 6
        assert value(samples, "stratabatch_duplicates_total") == 24
        assert value(samples, "stratabatch_exact_merges_total") == 24
        assert value(samples, "stratabatch_batches_total") == st.total_batches >= 1
        assert value(samples, "stratabatch_dedup_ratio") == pytest.approx(0.8)
        assert value(samples, "stratabatch_window_seconds") == pytest.approx(0.020)
        assert value(samples, "stratabatch_queue_depth") == 0
        for q, field in (("0.5", "latency_ms_p50"), ("0.99", "latency_ms_p99")):
            got = value(samples, sm.RECENT_LATENCY, quantile=q)
            assert got == pytest.approx(getattr(st, field) / 1000)
        # exact merges have similarity 1.0: only the +Inf bucket holds them
        assert value(samples, "stratabatch_merge_similarity_bucket", le="+Inf") == 24
        buckets = samples["stratabatch_merge_similarity_bucket"]
        assert max(v for lab, v in buckets if lab["le"] != "+Inf") == 0
        handle.unregister()
    assert generate_latest(reg) == b""


def test_similarity_buckets_are_exact_for_bins_closed_on_the_left():
    """A bin [0.81, 0.82) is "le = the float below 0.82": each bucket counts exactly the
    observations <= its le, at the bounds too (0.81, 1.0)."""
    sims = [0.0, 0.29, 0.5, 0.8, 0.80999, 0.81, 0.815, 0.999, 1.0, 1.0]
    hist = [0] * SIMILARITY_BINS
    for s in sims:
        hist[similarity_bin(s)] += 1
    reg = CollectorRegistry()

    class One:
        def collect(self):
            return sm.stats_families([((), {"merge_similarity_histogram": tuple(hist)})])

    reg.register(One())
    samples = scrape(reg)
    buckets = samples["stratabatch_merge_similarity_bucket"]
    assert len(buckets) == SIMILARITY_BINS
    for labels, count in buckets:
        le = float(labels["le"])
        assert count == sum(1 for s in sims if s <= le), labels
    assert "stratabatch_merge_similarity_count" not in samples  # no sum is kept: none claimed


async def test_labels_tell_processors_apart_in_one_registry():
    reg = CollectorRegistry()
    a = BatchProcessor(exact_handler, window_ms=5, dedup_strategy="exact")
    b = BatchProcessor(exact_handler, window_ms=5, dedup_strategy="exact")
    ha = sm.register(a, reg, labels={"processor": "a"})
    with pytest.raises(ValueError, match="already registered"):
        sm.register(b, reg, labels={"processor": "a"})
    with pytest.raises(ValueError, match="labelled"):
        sm.register(b, reg, labels={"fn": "b"})
    with pytest.raises(ValueError, match="not allowed"):
        sm.register(b, CollectorRegistry(), labels={"le": "b"})
    hb = sm.register(b, reg, labels={"processor": "b"})
    await a.process([{"query": "x"}, {"query": "x"}])
    await b.process({"query": "y"})
    samples = scrape(reg)
    assert value(samples, "stratabatch_requests_total", processor="a") == 2
    assert value(samples, "stratabatch_requests_total", processor="b") == 1
    ha.unregister()
    ha.unregister()  # idempotent
    samples = scrape(reg)
    assert [lab["processor"] for lab, _ in samples["stratabatch_requests_total"]] == ["b"]
    with hb:
        pass
    assert generate_latest(reg) == b""
    await a.close()
    await b.close()


async def test_a_closed_processor_leaves_the_registry_at_the_next_scrape():
    reg = CollectorRegistry()
    b = BatchProcessor(exact_handler, window_ms=5)
    sm.register(b, reg)
    with pytest.raises(ValueError, match="already registered"):
        sm.register(b, reg)
    await b.process({"query": "x"})
    assert value(scrape(reg), "stratabatch_requests_total") == 1
    await b.close()
    assert b.closed
    assert generate_latest(reg) == b""
    b2 = BatchProcessor(exact_handler, window_ms=5)
    sm.register(b2, reg)  # its place is free again
    assert value(scrape(reg), "stratabatch_requests_total") == 0


def test_register_uses_the_default_registry_by_default():
    from prometheus_client import REGISTRY

    b = BatchProcessor(exact_handler)
    with sm.register(b) as handle:
        assert handle.registry is REGISTRY
        assert REGISTRY.get_sample_value("stratabatch_requests_total") == 0
    assert REGISTRY.get_sample_value("stratabatch_requests_total") is None


def test_get_stats_racing_a_scrape_thread_is_retried():
    calls = []

    class Flaky:
        closed = False

        def get_stats(self):
            calls.append(1)
            if len(calls) < 3:
                raise RuntimeError("dictionary changed size during iteration")
            return BatchProcessor(exact_handler).get_stats()

    reg = CollectorRegistry()
    p = Flaky()
    sm.register(p, reg)
    assert value(scrape(reg), "stratabatch_requests_total") == 0
    assert len(calls) == 3


# ---------------------------------------------------------------------- the counters block


@pytest.fixture
def block():
    name = run_name("met")
    w = CountersWriter.create(name, info={"name": name, "handler": "h:f", "adaptive": False})
    try:
        yield name, w
    finally:
        w.close()


def test_engine_collector_serves_the_block(block):
    name, w = block
    st = BatchProcessor(exact_handler).get_stats()
    sims = [0.85, 1.0, 1.0]
    hist = [0] * SIMILARITY_BINS
    for s in sims:
        hist[similarity_bin(s)] += 1
    st = dataclasses.replace(
        st,
        total_requests=10,
        duplicates=3,
        exact_merges=2,
        near_merges=1,
        window_ms=50.0,
        latency_ms_p99=12.0,
        merge_similarity_histogram=tuple(hist),
    )
    with w.update():
        w.write_stats(st)
        w.set("clients_connected", 1)
        w.set("dedup_threshold", 0.8)
        w.observe_many("latency_ms", [0.5, 2.0, 2.0, 120.0])
        w.observe_many("batch_size", [3, 4])
        w.set_row("clients", 2, pid=4242, connected=1, requests=10, errors=1, timeouts=0)
        w.set_row("clients", 3, pid=4343, connected=0, requests=5)  # left: not served
    samples = scrape(sm.engine_registry(name))
    assert_every_stats_field(samples)
    assert value(samples, sm.ENGINE_UP) == 1
    assert value(samples, "stratabatch_requests_total") == 10
    assert value(samples, "stratabatch_near_merges_total") == 1
    assert value(samples, "stratabatch_window_seconds") == pytest.approx(0.05)
    assert value(samples, sm.RECENT_LATENCY, quantile="0.99") == pytest.approx(0.012)
    assert value(samples, "stratabatch_dedup_threshold") == pytest.approx(0.8)
    assert value(samples, "stratabatch_engine_info", name=name, handler="h:f") == 1
    assert value(samples, "stratabatch_engine_info", pid=str(os.getpid())) == 1
    # latency: the block's buckets, in seconds, each counting observations <= le
    lat = [0.5e-3, 2e-3, 2e-3, 0.12]
    for labels, count in samples[sm.REQUEST_LATENCY + "_bucket"]:
        assert count == sum(1 for x in lat if x <= float(labels["le"])), labels
    assert value(samples, sm.REQUEST_LATENCY + "_count") == 4
    assert value(samples, sm.REQUEST_LATENCY + "_sum") == pytest.approx(sum(lat))
    assert value(samples, sm.BATCH_SIZE + "_bucket", le="3.0") == 1
    assert value(samples, sm.BATCH_SIZE + "_sum") == 7
    for labels, count in samples["stratabatch_merge_similarity_bucket"]:
        assert count == sum(1 for s in sims if s <= float(labels["le"]))
    assert value(samples, "stratabatch_client_requests_total", client="2", pid="4242") == 10
    assert value(samples, "stratabatch_client_errors_total", client="2") == 1
    assert [lab["client"] for lab, _ in samples["stratabatch_client_requests_total"]] == ["2"]


def test_engine_collector_without_an_engine_serves_only_up_zero():
    samples = scrape(sm.engine_registry(run_name("met")))
    assert samples == {sm.ENGINE_UP: [({}, 0.0)]}


def test_engine_collector_hides_a_dead_engine_s_block(block):
    name, w = block
    w.set("total_requests", 5)
    samples = scrape(sm.engine_registry(name, alive=lambda pid: False))
    assert samples == {sm.ENGINE_UP: [({}, 0.0)]}


def test_engine_collector_rejects_a_bad_name():
    with pytest.raises(ValueError):
        sm.EngineCollector("no/slashes")


# ---------------------------------------------------------------------- the HTTP server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_metrics_server_serves_and_closes_without_leaving_a_thread_or_socket():
    reg = CollectorRegistry()
    b = BatchProcessor(exact_handler)
    sm.register(b, reg)
    server = sm.MetricsServer.start(reg, _free_port())
    assert server.url == f"http://127.0.0.1:{server.port}/metrics"
    with urllib.request.urlopen(server.url, timeout=10) as resp:
        text = resp.read().decode()
    assert "stratabatch_requests_total 0.0" in text
    server.close()
    server.close()  # idempotent
    assert not [t for t in threading.enumerate() if t.name.startswith("stratabatch-metrics")]
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", server.port), 1):
        pass


def test_metrics_server_port_in_use_is_a_clear_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=f"cannot serve metrics on 127.0.0.1:{port}: .*in use"):
            sm.MetricsServer.start(CollectorRegistry(), port)
    for bad in (0, 70000, True):
        with pytest.raises(ValueError, match="port"):
            sm.MetricsServer.start(CollectorRegistry(), bad)


# ---------------------------------------------------------------------- without the extra


def test_without_prometheus_client_the_error_names_the_extra(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    monkeypatch.delitem(sys.modules, "stratabatch.metrics")
    monkeypatch.delattr(stratabatch, "metrics")
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'stratabatch\[metrics\]'"):
        importlib.import_module("stratabatch.metrics")
    from stratabatch.cli import main
    from stratabatch.exitcodes import EXIT_USAGE

    argv = ["--handler", "tests.e2e.handlers:echo", "--name", run_name("met")]
    rc = main([*argv, "--metrics-port", "9999"])
    assert rc == EXIT_USAGE
    err = capsys.readouterr().err
    assert "--metrics-port" in err and "stratabatch[metrics]" in err
    from stratabatch.monitor.prometheus import serve

    assert serve(run_name("met"), 9999) == 2
    assert "stratabatch[metrics]" in capsys.readouterr().err


def test_engine_rejects_a_bad_metrics_port():
    from stratabatch.config import BatchConfig
    from stratabatch.errors import ConfigError
    from stratabatch.server import Engine

    with pytest.raises(ConfigError, match=r"metrics_port must be in \[0, 65535\]"):
        Engine(exact_handler, BatchConfig(), name=run_name("met"), metrics_port=-1)
