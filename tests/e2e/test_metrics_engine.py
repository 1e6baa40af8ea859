"""Prometheus endpoints of real processes: ``stratabatch-engine --metrics-port`` and
``stratabatch-monitor NAME --prometheus``, scraped with a real HTTP GET and parsed with
``prometheus_client``'s parser."""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

import stratabatch
from stratabatch import Stats
from stratabatch.exitcodes import EXIT_SOCKET
from stratabatch.metrics import ENGINE_UP, REQUEST_LATENCY, STATS_METRICS
from tests.e2e.conftest import CHILD_PYTHONPATH, ROOT

N_REQUESTS = 60
N_DISTINCT = 12


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str) -> dict[str, list]:
    """One scrape: sample name -> [(labels, value)]."""
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.status == 200
        text = resp.read().decode()
    out: dict[str, list] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def one(samples, metric, **labels):
    found = [v for lab, v in samples[metric] if all(lab.get(k) == x for k, x in labels.items())]
    assert len(found) == 1, (metric, labels, samples.get(metric))
    return found[0]


def scrape_until_counted(url: str, total: int, timeout: float = 20.0) -> dict[str, list]:
    """Scrape until the engine has published ``total`` requests and their outcomes (it writes
    its block after each pass and at 10 Hz)."""
    deadline = time.monotonic() + timeout
    while True:
        samples = get(url)
        done = samples.get(REQUEST_LATENCY + "_count", [({}, 0)])[0][1]
        if (
            samples.get("stratabatch_requests_total", [({}, 0)])[0][1] == total and done == total
        ) or time.monotonic() > deadline:
            return samples
        time.sleep(0.1)


def send_traffic(name: str) -> None:
    """N_REQUESTS requests, N_DISTINCT distinct (exact twins), from this process."""
    with stratabatch.connect(name, sync=True) as client:
        reqs = [{"query": f"question {i % N_DISTINCT}"} for i in range(N_REQUESTS)]
        answers = client.process(reqs)
        assert [a["answer"] for a in answers] == [r["query"].upper() for r in reqs]


def check_traffic(samples) -> None:
    for f in dataclasses.fields(Stats):  # a new Stats field without a metric fails here
        metric = STATS_METRICS[f.name]
        assert (metric + "_bucket" if metric.endswith("similarity") else metric) in samples, f
    assert one(samples, ENGINE_UP) == 1
    assert one(samples, "stratabatch_requests_total") == N_REQUESTS
    assert one(samples, "stratabatch_unique_requests_total") == N_DISTINCT
    assert one(samples, "stratabatch_duplicates_total") == N_REQUESTS - N_DISTINCT
    assert one(samples, "stratabatch_exact_merges_total") == N_REQUESTS - N_DISTINCT
    assert one(samples, "stratabatch_errors_total") == 0
    assert one(samples, "stratabatch_dedup_ratio") == pytest.approx(0.8)
    assert one(samples, "stratabatch_merge_similarity_bucket", le="+Inf") == 48
    assert one(samples, REQUEST_LATENCY + "_count") == N_REQUESTS
    assert one(samples, REQUEST_LATENCY + "_bucket", le="+Inf") == N_REQUESTS
    assert one(samples, "stratabatch_batch_size_sum") == N_DISTINCT


def test_engine_metrics_port_serves_every_stats_field(start_engine):
    port = free_port()
    eng = start_engine("--metrics-port", str(port), "--dedup-strategy", "exact")
    url = f"http://127.0.0.1:{port}/metrics"
    assert one(get(url), "stratabatch_requests_total") == 0
    with stratabatch.connect(eng.name, sync=True) as client:
        reqs = [{"query": f"question {i % N_DISTINCT}"} for i in range(N_REQUESTS)]
        client.process(reqs)
        samples = scrape_until_counted(url, N_REQUESTS)
        check_traffic(samples)
        # this process's row of the client table, while it is connected
        assert one(samples, "stratabatch_client_requests_total", pid=str(os.getpid())) == 60
        assert one(samples, "stratabatch_clients_connected") == 1
    assert one(samples, "stratabatch_engine_info", name=eng.name, pid=str(eng.pid)) == 1
    assert one(samples, "process_start_time_seconds") > 0  # the engine process's own
    assert f"metrics: serving Prometheus metrics at {url}" in eng.log()
    assert eng.stop(signal.SIGINT) == 0
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), 1):
        pass  # the port closed with the engine


def test_engine_metrics_port_in_use_exits_with_the_socket_status(engine_name):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "stratabatch.cli", "--name", engine_name]
            + ["--handler", "tests.e2e.handlers:echo", "--metrics-port", str(port)],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": CHILD_PYTHONPATH},
        )
    assert proc.returncode == EXIT_SOCKET, proc.stderr
    assert f"cannot serve metrics on 127.0.0.1:{port}" in proc.stderr
    assert "in use" in proc.stderr and "--metrics-port" in proc.stderr
    assert "ready" not in proc.stdout


class Monitor:
    """``stratabatch-monitor NAME --prometheus PORT`` as a subprocess."""

    def __init__(self, name: str, port: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "stratabatch.monitor.cli", name, "--prometheus", str(port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": CHILD_PYTHONPATH},
        )

    def stop(self, sig: int = signal.SIGINT) -> tuple[int, str, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            out, err = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
        return self.proc.returncode, out, err


@pytest.fixture
def monitors():
    started: list[Monitor] = []

    def start(name: str, port: int) -> Monitor:
        m = Monitor(name, port)
        started.append(m)
        return m

    yield start
    for m in started:
        m.stop(signal.SIGKILL)


def test_monitor_prometheus_exports_a_running_engine(start_engine, monitors):
    eng = start_engine("--dedup-strategy", "exact")
    send_traffic(eng.name)
    port = free_port()
    mon = monitors(eng.name, port)
    assert mon.proc.stdout is not None
    ready = mon.proc.stdout.readline()
    url = f"http://127.0.0.1:{port}/metrics"
    assert ready.strip() == f"stratabatch-monitor serving name={eng.name} url={url}"
    samples = scrape_until_counted(url, N_REQUESTS)
    check_traffic(samples)
    assert one(samples, "stratabatch_engine_info", name=eng.name, pid=str(eng.pid)) == 1
    assert "process_start_time_seconds" not in samples  # the monitor's own would mislead
    # the engine goes away: the exporter stays, and says so
    assert eng.stop() == 0
    assert get(url) == {ENGINE_UP: [({}, 0.0)]}
    rc, _, err = mon.stop(signal.SIGINT)
    assert rc == 0, err
    assert "Traceback" not in err
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), 1):
        pass


def test_monitor_prometheus_port_in_use_is_a_clear_error(engine_name, monitors):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        mon = monitors(engine_name, port)
        rc = mon.proc.wait(60)
        _, out, err = mon.stop()
    assert rc == 4
    assert f"cannot serve metrics on 127.0.0.1:{port}" in err and "in use" in err
    assert out == ""


def test_monitor_prometheus_refuses_once_or_json(engine_name):
    proc = subprocess.run(
        [sys.executable, "-m", "stratabatch.monitor.cli", engine_name, "--prometheus", "1"]
        + ["--once"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": CHILD_PYTHONPATH},
    )
    assert proc.returncode == 2
    assert "--prometheus cannot be combined" in proc.stderr
