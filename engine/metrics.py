"""Prometheus metrics: every ``Stats`` field, read on each scrape, in the official client's types.

Needs the ``metrics`` extra (``pip install 'stratabatch[metrics]'``, the official
``prometheus_client``); importing this module without it raises ``ModuleNotFoundError`` naming
the extra. Three ways in, one set of names (the table is in docs/metrics.md):

* :func:`register` adds an embedded :class:`~stratabatch.BatchProcessor`'s statistics to a
  registry (``prometheus_client.REGISTRY`` by default): each scrape calls ``get_stats()``, so
  serving requests costs nothing more.
* ``stratabatch-engine --metrics-port N`` serves its own counters block over HTTP
  (:func:`engine_registry` and :class:`MetricsServer`).
* ``stratabatch-monitor NAME --prometheus PORT`` serves a running engine's block from another
  process, read-only (:mod:`stratabatch.monitor.prometheus`).

The engine's endpoints read the counters block (:class:`EngineCollector`), which holds more
than ``Stats``: bucketed histograms of latency and batch size, the per-client table, and the
engine's identity. Names follow Prometheus' conventions: a ``stratabatch_`` prefix, ``_total``
on counters, base units (seconds, not the ``_ms`` of ``Stats``) in the name.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

try:
    from prometheus_client import (
        REGISTRY,
        CollectorRegistry,
        GCCollector,
        PlatformCollector,
        ProcessCollector,
        start_http_server,
    )
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
        InfoMetricFamily,
        Metric,
    )
    from prometheus_client.registry import Collector
    from prometheus_client.utils import floatToGoString
except ImportError as _exc:  # pragma: no cover - the test extra installs it
    raise ModuleNotFoundError(
        "stratabatch.metrics needs the official Prometheus client, an optional dependency: "
        "pip install 'stratabatch[metrics]'",
        name="prometheus_client",
    ) from _exc

from stratabatch.ipc.counters_layout import SIMILARITY_BUCKETS

PREFIX = "stratabatch_"
"""Every metric's name starts with this."""

# (Stats field, metric name as exposed, help); every count that only grows is a counter
_COUNTERS = (
    ("total_requests", "stratabatch_requests_total", "Requests accepted."),
    ("total_batches", "stratabatch_batches_total", "Handler calls made."),
    ("unique_requests", "stratabatch_unique_requests_total", "Items sent to the handler."),
    (
        "duplicates",
        "stratabatch_duplicates_total",
        "Accepted requests answered by another request's handler item.",
    ),
    (
        "inflight_coalesced",
        "stratabatch_inflight_coalesced_total",
        "Duplicates that joined work already running in the handler.",
    ),
    (
        "errors",
        "stratabatch_errors_total",
        "Requests answered with an error other than a timeout or backpressure.",
    ),
    ("timeouts", "stratabatch_timeouts_total", "Requests answered with BatchTimeoutError."),
    ("rejected", "stratabatch_rejected_total", "Requests answered with QueueFullError."),
    (
        "exact_merges",
        "stratabatch_exact_merges_total",
        "Duplicates merged on equal normalized keys.",
    ),
    (
        "near_merges",
        "stratabatch_near_merges_total",
        "Duplicates merged by similarity (or dedup_function).",
    ),
    (
        "dropped",
        "stratabatch_dropped_total",
        "Accepted requests that left the queue without reaching the handler.",
    ),
    (
        "reuse_hits",
        "stratabatch_reuse_hits_total",
        "Duplicates answered from the reuse cache (a subset of duplicates).",
    ),
    (
        "reuse_near_hits",
        "stratabatch_reuse_near_hits_total",
        "Reuse hits of near twins (a subset of reuse hits).",
    ),
)
# (Stats field, metric name, help, scale to the base unit); levels and ratios are gauges
_GAUGES = (
    ("queue_depth", "stratabatch_queue_depth", "Requests waiting for a batch now.", 1.0),
    ("window_ms", "stratabatch_window_seconds", "The batching window in force now.", 1e-3),
    (
        "avg_batch_size",
        "stratabatch_batch_size_average",
        "Mean items per handler call since the start.",
        1.0,
    ),
    ("batch_size_max", "stratabatch_batch_size_max", "Largest handler call so far.", 1.0),
    ("dedup_rate", "stratabatch_dedup_ratio", "Duplicates / requests accepted.", 1.0),
    (
        "requests_per_second",
        "stratabatch_requests_per_second",
        "Completed requests per second over the last 10 s (rate() of "
        "stratabatch_requests_total is the Prometheus way).",
        1.0,
    ),
    (
        "cost_saved_usd",
        "stratabatch_cost_saved_usd",
        "Duplicates * cost_per_request_usd (a gauge: the price may be changed at run time).",
        1.0,
    ),
    (
        "adaptive_a_ms",
        "stratabatch_adaptive_batch_cost_seconds",
        "Fitted fixed cost per handler call (adaptive=True; 0 otherwise).",
        1e-3,
    ),
    (
        "adaptive_b_ms",
        "stratabatch_adaptive_item_cost_seconds",
        "Fitted cost per item (adaptive=True; 0 otherwise).",
        1e-3,
    ),
    ("reuse_entries", "stratabatch_reuse_entries", "Answers the reuse cache holds now.", 1.0),
    ("reuse_bytes", "stratabatch_reuse_bytes", "Bytes the reuse cache accounts for now.", 1.0),
)
_QUANTILES = (("latency_ms_p50", "0.5"), ("latency_ms_p95", "0.95"), ("latency_ms_p99", "0.99"))
RECENT_LATENCY = "stratabatch_recent_latency_seconds"
"""The summary of ``Stats``' latency percentiles (quantiles only, see docs/metrics.md)."""
MERGE_SIMILARITY = "stratabatch_merge_similarity"
"""The histogram of merge similarities (``Stats.merge_similarity_histogram``)."""
REUSE_SIMILARITY = "stratabatch_reuse_similarity"
"""The histogram of the similarities of near twins answered from the reuse cache
(``Stats.reuse_similarity_histogram``)."""
_SIMILARITIES = (
    (
        "merge_similarity_histogram",
        MERGE_SIMILARITY,
        "Similarity of each merge to its unique; 1.0 (every exact merge) is in le=+Inf only.",
    ),
    (
        "reuse_similarity_histogram",
        REUSE_SIMILARITY,
        "Similarity of each near twin answered from the reuse cache to the stored answer's "
        "request (apart from the merges); 1.0 (the same canonical text) is in le=+Inf only.",
    ),
)

STATS_METRICS: Mapping[str, str] = {
    **{field: name for field, name, _ in _COUNTERS},
    **{field: name for field, name, _, _ in _GAUGES},
    **{field: RECENT_LATENCY for field, _ in _QUANTILES},
    **{field: name for field, name, _ in _SIMILARITIES},
}
"""The metric that carries each ``Stats`` field (a counter's name ends in ``_total``)."""

# The engine's counters block holds these too (stratabatch.ipc.counters_layout.for_stats).
_ENGINE_GAUGES = (
    ("inflight_batches", "stratabatch_inflight_batches", "Handler calls running now.", 1.0),
    ("clients_connected", "stratabatch_clients_connected", "Client processes connected.", 1.0),
    (
        "dedup_threshold",
        "stratabatch_dedup_threshold",
        "Near-duplicate threshold in force (0 when the strategy has none).",
        1.0,
    ),
    (
        "started_at_ns",
        "stratabatch_engine_start_time_seconds",
        "When the engine started, unix time.",
        1e-9,
    ),
    (
        "updated_at_ns",
        "stratabatch_engine_heartbeat_timestamp_seconds",
        "The engine's last update of its counters block, unix time (at least once a second).",
        1e-9,
    ),
)
ENGINE_UP = "stratabatch_engine_up"
"""1 while the engine's counters block is readable and its process runs, else 0."""
_ENGINE_UP_DOC = "1 while the engine's counters block is readable and its process runs, else 0."
REQUEST_LATENCY = "stratabatch_request_latency_seconds"
"""The engine's bucketed latency histogram, submission to outcome."""
BATCH_SIZE = "stratabatch_batch_size"
"""The engine's histogram of items per handler call."""
_CLIENT_COUNTERS = (
    ("requests", "stratabatch_client_requests_total", "Requests this client process sent."),
    ("errors", "stratabatch_client_errors_total", "Its requests answered with an error."),
    ("timeouts", "stratabatch_client_timeouts_total", "Its requests that timed out."),
)
_CLIENT_LABELS = ("client", "pid")


# ---------------------------------------------------------------------- families


def _counter(name: str, doc: str, labels: Sequence[str]) -> CounterMetricFamily:
    # the family's name is the counter's without _total; prometheus_client adds it back
    return CounterMetricFamily(name.removesuffix("_total"), doc, labels=labels)


def _buckets(
    bounds: Sequence[float], counts: Sequence[int], closed: str, scale: float = 1.0
) -> list[tuple[str, float]]:
    """Per-bucket counts of a block histogram as Prometheus' cumulative ``le`` buckets.

    A bucket closed on the right (``(lo, hi]``) is exactly ``le=hi``. A bucket closed on the
    left (``[lo, hi)``) counts values below ``hi``, which is ``le`` = the largest float below
    ``hi``: ``le="0.8099999999999999"`` holds every similarity under 0.81 and none equal to it.
    """
    out: list[tuple[str, float]] = []
    seen = 0
    for bound, count in zip(bounds, counts, strict=False):
        seen += count
        le = bound * scale
        if scale != 1.0:  # the bounds are short decimals: ms 50.1187 is s 0.0501187, not ...6999
            le = float(f"{le:.15g}")
        if closed == "left":
            le = math.nextafter(le, -math.inf)
        out.append((floatToGoString(le), float(seen)))
    out.append(("+Inf", float(sum(counts))))
    return out


def stats_families(
    rows: Sequence[tuple[Sequence[str], Mapping[str, Any]]], label_names: Sequence[str] = ()
) -> list[Metric]:
    """The metric families of ``Stats`` values, one series per row.

    Args:
        rows: ``(label values, Stats fields by name)`` pairs; a field missing from a row
            (an engine of an older layout) reads as 0.
        label_names: The labels that tell the rows apart (none for a single source).

    Returns:
        One family per metric of :data:`STATS_METRICS`.
    """
    labels = list(label_names)
    families: list[Metric] = []
    for field, name, doc in _COUNTERS:
        fam = _counter(name, doc, labels)
        for values, stats in rows:
            fam.add_metric(list(values), _number(stats.get(field)))
        families.append(fam)
    for field, name, doc, scale in _GAUGES:
        gauge = GaugeMetricFamily(name, doc, labels=labels)
        for values, stats in rows:
            gauge.add_metric(list(values), _number(stats.get(field)) * scale)
        families.append(gauge)
    recent = Metric(
        RECENT_LATENCY,
        "Latency, submission to outcome, over the last 16,384 completed requests "
        "(quantiles only: these are Stats' percentiles, no count or sum).",
        "summary",
    )
    for values, stats in rows:
        for field, q in _QUANTILES:
            series = dict(zip(labels, values, strict=True))
            series["quantile"] = q
            recent.add_sample(RECENT_LATENCY, series, _number(stats.get(field)) * 1e-3)
    families.append(recent)
    for field, metric, doc in _SIMILARITIES:
        sim = HistogramMetricFamily(metric, doc, labels=labels)
        for values, stats in rows:
            hist = stats.get(field)
            if isinstance(hist, Mapping):  # a block histogram: it describes its own buckets
                bounds, counts = hist["bounds"], hist["counts"]
                closed = hist.get("closed", "right")
            else:
                bounds, closed = SIMILARITY_BUCKETS, "left"
                counts = list(hist) if hist else [0] * (len(bounds) + 1)
            # no sum is kept, so no _sum and no _count: the +Inf bucket is the count
            sim.add_metric(list(values), _buckets(bounds, counts, closed), None)
        families.append(sim)
    return families


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return 0.0
    return float(value)


def _describe(
    names: Iterable[tuple[str, str]],
) -> Iterator[Metric]:
    """Empty families carrying only names and types, for a registry's clash check."""
    for name, typ in names:
        yield Metric(name.removesuffix("_total") if typ == "counter" else name, "", typ)


def _stats_names() -> list[tuple[str, str]]:
    return (
        [(name, "counter") for _, name, _ in _COUNTERS]
        + [(name, "gauge") for _, name, _, _ in _GAUGES]
        + [(RECENT_LATENCY, "summary")]
        + [(name, "histogram") for _, name, _ in _SIMILARITIES]
    )


# ---------------------------------------------------------------------- embedded processors


class ProcessorCollector(Collector):
    """The statistics of embedded processors for one registry, read at each scrape.

    :func:`register` makes one per registry and adds processors to it; every processor in it
    carries the same label names, so their series form one family per metric. A processor is
    held weakly and leaves at the first scrape after it is closed or collected.
    """

    def __init__(self, label_names: Sequence[str]) -> None:
        self.label_names = tuple(label_names)
        self._lock = threading.Lock()
        self._members: dict[tuple[str, ...], weakref.ref[Any]] = {}

    def add(self, label_values: tuple[str, ...], processor: Any) -> None:
        """Add ``processor`` under ``label_values``.

        Raises:
            ValueError: Another live processor has the same label values.
        """
        with self._lock:
            old = self._members.get(label_values)
            if old is not None and _live(old()):
                shown = dict(zip(self.label_names, label_values, strict=True))
                raise ValueError(
                    f"a processor with labels {shown} is already registered in this "
                    "registry; give each processor its own labels (register(..., "
                    "labels={'processor': 'NAME'}))"
                )
            self._members[label_values] = weakref.ref(processor)

    def remove(self, label_values: tuple[str, ...], processor: Any) -> bool:
        """Remove ``processor``; whether the collector is empty now."""
        with self._lock:
            ref = self._members.get(label_values)
            if ref is not None and ref() is processor:
                del self._members[label_values]
            return not self._members

    def describe(self) -> Iterator[Metric]:
        return _describe(_stats_names())

    def collect(self) -> Iterator[Metric]:
        rows: list[tuple[tuple[str, ...], Mapping[str, Any]]] = []
        with self._lock:
            members = list(self._members.items())
        for values, ref in members:
            proc = ref()
            if not _live(proc):
                with self._lock:
                    if self._members.get(values) is ref:
                        del self._members[values]
                continue
            rows.append((values, _stats_dict(proc)))
        if rows:
            yield from stats_families(rows, self.label_names)


def _live(processor: Any) -> bool:
    return processor is not None and not getattr(processor, "closed", False)


def _stats_dict(processor: Any) -> dict[str, Any]:
    """``processor.get_stats()`` as a dict, taken from whichever thread scrapes.

    The recorder behind ``get_stats()`` belongs to the processor's event loop; read from a
    scrape thread, a dict it iterates may change size under it (RuntimeError), so that read is
    retried. The fields themselves are plain numbers, read whole.
    """
    for attempt in range(10):
        try:
            stats = processor.get_stats()
            break
        except RuntimeError:
            if attempt == 9:
                raise
    if dataclasses.is_dataclass(stats) and not isinstance(stats, type):
        return {f.name: getattr(stats, f.name) for f in dataclasses.fields(stats)}
    return dict(stats)


_collectors: weakref.WeakKeyDictionary[Any, ProcessorCollector] = weakref.WeakKeyDictionary()
_collectors_lock = threading.Lock()


class Registration:
    """What :func:`register` returns: :meth:`unregister` (or leaving a ``with``) takes the
    processor's series out of the registry."""

    def __init__(
        self,
        registry: Any,
        collector: ProcessorCollector,
        label_values: tuple[str, ...],
        processor: Any,
    ) -> None:
        self.registry = registry
        """The registry the processor's series are in."""
        self.collector = collector
        """The registry's :class:`ProcessorCollector`."""
        self._values = label_values
        self._processor: weakref.ref[Any] | None = weakref.ref(processor)

    def unregister(self) -> None:
        """Take the processor's series out (idempotent); the last one out removes the
        collector from the registry."""
        ref, self._processor = self._processor, None
        if ref is None:
            return
        proc = ref()
        with _collectors_lock:
            empty = self.collector.remove(self._values, proc)
            if empty and _collectors.get(self.registry) is self.collector:
                del _collectors[self.registry]
                self.registry.unregister(self.collector)

    def __enter__(self) -> Registration:
        return self

    def __exit__(self, *exc: object) -> None:
        self.unregister()


def register(
    processor: Any,
    registry: Any = None,
    *,
    labels: Mapping[str, str] | None = None,
) -> Registration:
    """Expose an embedded processor's ``Stats`` in a Prometheus registry.

    Nothing is added to the request path: each scrape calls ``processor.get_stats()`` and
    turns it into the metrics of docs/metrics.md. The processor leaves the registry when it
    is closed (at the next scrape), when it is garbage-collected, or on
    :meth:`Registration.unregister`.

    Args:
        processor: A :class:`~stratabatch.BatchProcessor` (anything with ``get_stats()``
            returning a ``Stats``).
        registry: A ``prometheus_client.CollectorRegistry``; ``prometheus_client.REGISTRY``
            (what ``start_http_server`` and ``make_asgi_app`` serve) by default.
        labels: Constant labels that tell this processor's series from another's in the same
            registry, e.g. ``{"processor": "embed"}``. Every processor of one registry uses the
            same label names.

    Returns:
        A :class:`Registration` handle (also a context manager).

    Raises:
        ValueError: A processor with the same labels is already registered there, the label
            names differ from those already used there, or a label name is invalid.
    """
    reg = REGISTRY if registry is None else registry
    names = tuple(labels or {})
    for n in names:
        if (
            not isinstance(n, str)
            or not n.isidentifier()
            or n.startswith("__")
            or n
            in (
                "quantile",
                "le",
            )
        ):
            raise ValueError(
                f"label name {n!r} is not allowed (a Python identifier, not 'le', "
                "'quantile' or starting with '__')"
            )
    values = tuple(str(v) for v in (labels or {}).values())
    with _collectors_lock:
        collector = _collectors.get(reg)
        if collector is None:
            collector = ProcessorCollector(names)
            reg.register(collector)
            _collectors[reg] = collector
        elif collector.label_names != names:
            raise ValueError(
                f"processors in this registry are labelled {list(collector.label_names)}; "
                f"got labels {list(names)}"
            )
        collector.add(values, processor)
    return Registration(reg, collector, values, processor)


# ---------------------------------------------------------------------- engines


class EngineCollector(Collector):
    """An engine's counters block as metrics: every ``Stats`` field and the rest of the block.

    Each scrape attaches to the block read-only, copies one consistent snapshot (the ipc
    reader's seqlock) and lets go, so it follows an engine that restarts under the same name
    and never holds a mapping a closing engine could pull away. While no live engine has a
    block, only :data:`ENGINE_UP` (0) is served: the last values of a dead engine would look
    current.

    Args:
        name: The engine's name (``stratabatch-engine --name``).
        alive: Whether a pid runs (``stratabatch.ipc.segment.pid_alive`` by default).
    """

    def __init__(self, name: str, *, alive: Callable[[int], bool] | None = None) -> None:
        from stratabatch.ipc.counters import counters_segment_name

        counters_segment_name(name)  # a bad name is the caller's error, raised now
        self.name = name
        self._alive = alive

    def describe(self) -> Iterator[Metric]:
        names = _stats_names() + [
            (ENGINE_UP, "gauge"),
            ("stratabatch_engine", "info"),
            (REQUEST_LATENCY, "histogram"),
            (BATCH_SIZE, "histogram"),
        ]
        names += [(name, "gauge") for _, name, _, _ in _ENGINE_GAUGES]
        names += [(name, "counter") for _, name, _ in _CLIENT_COUNTERS]
        names += [("stratabatch_client_connect_time_seconds", "gauge")]
        return _describe(names)

    def _read(self) -> tuple[dict[str, Any], dict[str, Any], int] | None:
        """``(snapshot, info, pid)`` of a live engine's block, or None."""
        from stratabatch.ipc.counters import CountersReader
        from stratabatch.ipc.errors import IpcError
        from stratabatch.ipc.segment import pid_alive

        try:
            reader = CountersReader.attach(self.name)
        except (IpcError, OSError):
            return None
        try:
            seg = reader.segment
            pid = seg.owner_pid if seg is not None else 0
            if not (self._alive or pid_alive)(pid):
                return None
            return reader.snapshot(timeout=0.5), reader.info, pid
        except TimeoutError:
            return None  # the writer stayed mid-update: no consistent copy to serve
        finally:
            reader.close()

    def collect(self) -> Iterator[Metric]:
        read = self._read()
        up = GaugeMetricFamily(ENGINE_UP, _ENGINE_UP_DOC)
        up.add_metric([], 1.0 if read is not None else 0.0)
        yield up
        if read is None:
            return
        raw, info, pid = read
        labels = {k: _label(v) for k, v in info.items() if k.isidentifier()}
        labels["pid"] = str(pid)
        yield InfoMetricFamily(
            "stratabatch_engine", "The engine's name, handler and options.", labels
        )
        yield from stats_families([((), raw)])
        for field, name, doc, scale in _ENGINE_GAUGES:
            yield GaugeMetricFamily(name, doc, value=_number(raw.get(field)) * scale)
        for field, name, doc, scale in (
            ("latency_ms", REQUEST_LATENCY, "Request latency, submission to outcome.", 1e-3),
            ("batch_size", BATCH_SIZE, "Items per handler call.", 1.0),
        ):
            hist = raw.get(field)
            if isinstance(hist, Mapping):
                hfam = HistogramMetricFamily(name, doc, labels=[])
                hfam.add_metric(
                    [],
                    _buckets(hist["bounds"], hist["counts"], hist.get("closed", "right"), scale),
                    _number(hist.get("sum")) * scale,
                )
                yield hfam
        rows = [r for r in raw.get("clients", ()) if isinstance(r, Mapping) and r.get("connected")]
        for column, name, doc in _CLIENT_COUNTERS:
            fam = _counter(name, doc, _CLIENT_LABELS)
            for r in rows:
                fam.add_metric([str(r.get("slot")), str(r.get("pid"))], _number(r.get(column)))
            yield fam
        since = GaugeMetricFamily(
            "stratabatch_client_connect_time_seconds",
            "When this client process connected, unix time.",
            labels=_CLIENT_LABELS,
        )
        for r in rows:
            since.add_metric(
                [str(r.get("slot")), str(r.get("pid"))], _number(r.get("connected_at_ns")) * 1e-9
            )
        yield since


def _label(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def engine_registry(
    name: str, *, process: bool = False, alive: Callable[[int], bool] | None = None
) -> Any:
    """A new ``CollectorRegistry`` holding engine ``name``'s :class:`EngineCollector`.

    Args:
        name: The engine's name.
        process: Add the client's process, platform and GC collectors too (the engine's own
            endpoint: they then describe the engine process).
        alive: See :class:`EngineCollector`.
    """
    registry = CollectorRegistry()
    registry.register(EngineCollector(name, alive=alive))
    if process:
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
    return registry


class MetricsServer:
    """A registry served at ``http://HOST:PORT/metrics`` by ``prometheus_client`` on a thread.

    Use :meth:`start`; :meth:`close` stops the thread and closes the socket.
    """

    def __init__(self, httpd: Any, thread: threading.Thread, host: str, port: int) -> None:
        self._httpd = httpd
        self._thread = thread
        self.host = host
        """The address bound."""
        self.port = port
        """The port bound."""

    @classmethod
    def start(cls, registry: Any, port: int, host: str = "127.0.0.1") -> MetricsServer:
        """Bind ``host:port`` and serve ``registry`` from a daemon thread.

        Raises:
            ValueError: ``port`` is not in [1, 65535] or ``host`` is empty.
            OSError: The address cannot be bound (the port is in use, the host is not an
                address of this machine); the message names both.
        """
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise ValueError(f"the metrics port must be in [1, 65535], got {port!r}")
        if not isinstance(host, str) or not host:
            raise ValueError(f"the metrics host must be an address, got {host!r}")
        try:
            httpd, thread = start_http_server(port, addr=host, registry=registry)
        except OSError as exc:
            why = exc.strerror or str(exc)
            raise OSError(exc.errno, f"cannot serve metrics on {host}:{port}: {why}") from None
        thread.name = f"stratabatch-metrics-{port}"
        return cls(httpd, thread, host, httpd.server_address[1])

    @property
    def url(self) -> str:
        """Where the metrics are, ``http://HOST:PORT/metrics``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        """Stop serving, close the socket and join the thread (idempotent)."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()  # returns once serve_forever has left its loop
        httpd.server_close()
        self._thread.join(5.0)


__all__ = [
    "BATCH_SIZE",
    "ENGINE_UP",
    "EngineCollector",
    "MERGE_SIMILARITY",
    "REUSE_SIMILARITY",
    "MetricsServer",
    "PREFIX",
    "ProcessorCollector",
    "RECENT_LATENCY",
    "REQUEST_LATENCY",
    "Registration",
    "STATS_METRICS",
    "engine_registry",
    "register",
    "stats_families",
]
