"""Layout of the counters block: field specs, their offsets, and the self-describing schema.

A counters block holds the engine's live statistics in shared memory (one writer, any number
of readers; see :mod:`stratabatch.ipc.counters`). It describes itself: its header points at a
JSON schema naming every field, its kind, type and offset, so a reader needs no shared Python
code (``json`` and ``struct`` in any language will do). This module turns field specs
(:class:`Counter`, :class:`Gauge`, :class:`Histogram`, :class:`SampleRing`, :class:`Table`)
into a :class:`CountersLayout`: the offsets and that schema. It also holds the header format
and the engine's stats layout (:meth:`CountersLayout.for_stats`), whose scalar and histogram
fields carry the names of ``stratabatch.Stats`` fields (a test keeps the two in step; ipc cannot
import the engine), and the one bucketing rule (:func:`bucket_index`, :func:`similarity_bin`)
that both ``Stats`` and the block use. It needs neither numpy nor numba.

Byte layout (little-endian; offset 0 is the buffer start, usually a Segment payload)::

    offset  size  field
         0     8  magic            b"SBCOUNT1"
         8     4  version          u32, COUNTERS_VERSION
        12     4  header bytes     u32, 128
        16     8  schema offset    u64, 128
        24     8  schema bytes     u64, length of the UTF-8 JSON schema
        32     8  data offset      u64, 64-byte aligned, after the schema
        40     8  data bytes       u64, a multiple of 8
        48    16  reserved         zero
        64     8  sequence         i64 seqlock word, alone on its cache line
        72    56  reserved         zero
       128     -  schema           JSON (see docs/ipc-data.md), zero padded to 64 bytes
    data offset   data             8-byte words: i64 or f64, offsets given by the schema
"""

from __future__ import annotations

import bisect
import json
import math
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Union

COUNTERS_MAGIC = b"SBCOUNT1"
"""First 8 bytes of a counters block."""
COUNTERS_VERSION = 2
"""Layout version of the block (header, schema format and seqlock protocol).

Version 2 added the histograms' ``closed`` side and the schema's ``info`` map."""
HEADER_BYTES = 128
"""Size of the fixed header; the schema starts here."""
SEQ_OFFSET = 64
"""Offset of the seqlock sequence word."""

HEADER_STRUCT = struct.Struct("<8sIIQQQQ")
"""The header's first 48 bytes: magic, version, header bytes, schema offset and bytes,
data offset and bytes."""
WORD_TYPES = ("i64", "f64")
"""Types a data word may have."""
_NAME_RE = re.compile(r"[a-z][a-z0-9_]{0,63}")
_RESERVED = frozenset({"seq"})
INFO_MAX_BYTES = 4096
"""Largest ``info`` map a layout accepts, as compact JSON."""


def _align(n: int, to: int = 64) -> int:
    return (n + to - 1) // to * to


# ---------------------------------------------------------------------- field specs


@dataclass(frozen=True)
class Counter:
    """A monotonically increasing i64 total."""

    name: str
    doc: str = ""


@dataclass(frozen=True)
class Gauge:
    """A value that goes up and down; ``type`` is ``"i64"`` or ``"f64"``."""

    name: str
    type: str = "f64"
    doc: str = ""


@dataclass(frozen=True)
class Histogram:
    """Counts of observations per bucket, plus their count and sum.

    With ``closed="right"`` (the default, Prometheus' ``le`` convention) bucket ``i`` counts
    values ``v`` with ``bounds[i-1] < v <= bounds[i]``; with ``closed="left"`` it counts
    ``bounds[i-1] <= v < bounds[i]``. Either way one bucket before the first bound and one past
    the last take everything outside, so there are ``len(bounds) + 1`` buckets
    (see :func:`bucket_index`).
    """

    name: str
    bounds: tuple[float, ...]
    doc: str = ""
    closed: str = "right"


@dataclass(frozen=True)
class SampleRing:
    """The last ``capacity`` rows of ``columns`` (name, type) pushed, e.g. one per second."""

    name: str
    capacity: int
    columns: tuple[tuple[str, str], ...]
    doc: str = ""


@dataclass(frozen=True)
class Table:
    """``rows`` rows of ``columns`` (name, type), addressed by index (e.g. a client slot)."""

    name: str
    rows: int
    columns: tuple[tuple[str, str], ...]
    index_name: str = "row"
    doc: str = ""


FieldSpec = Union[Counter, Gauge, Histogram, SampleRing, Table]


def bucket_index(bounds: Sequence[float], value: float, closed: str = "right") -> int:
    """Index of the bucket of a :class:`Histogram` with ``bounds`` that counts ``value``.

    This is the one bucketing rule of the block: the writer, the reader's documentation and
    ``stratabatch.Stats`` all follow it.

    Args:
        bounds: The histogram's strictly increasing bounds.
        value: The observation (not NaN).
        closed: ``"right"`` (``bounds[i-1] < v <= bounds[i]``) or ``"left"``
            (``bounds[i-1] <= v < bounds[i]``).

    Returns:
        An index in ``[0, len(bounds)]``.
    """
    if closed == "left":
        return bisect.bisect_right(bounds, value)
    return bisect.bisect_left(bounds, value)


def log_buckets(low: float, high: float, per_decade: int) -> tuple[float, ...]:
    """Log-spaced bucket bounds from ``low`` to at least ``high``, ``per_decade`` per decade."""
    count = math.ceil(round(math.log10(high / low) * per_decade, 9)) + 1
    return tuple(float(f"{low * 10 ** (i / per_decade):.6g}") for i in range(count))


LATENCY_BUCKETS_MS = log_buckets(0.01, 100_000.0, 10)
"""Latency bounds: 10 µs to 100 s, 10 per decade (each bucket about 26% wide)."""
BATCH_SIZE_BUCKETS = (
    1,
    2,
    3,
    4,
    6,
    8,
    12,
    16,
    24,
    32,
    48,
    64,
    96,
    128,
    192,
    256,
    384,
    512,
    768,
    1024,
    1536,
    2048,
    3072,
    4096,
)
"""Batch-size bounds (1, 2, 3, 4, then two per power of two up to 4096)."""
SIMILARITY_BUCKETS = tuple(round(i / 100, 2) for i in range(1, 101))
"""Merge-similarity bounds: 0.01 to 1.00 in steps of 0.01, closed on the left, so bucket
``i < 100`` counts similarities in ``[i/100, (i+1)/100)`` (bucket 0 also takes anything below
0) and bucket 100 counts 1.0 (exact merges) and above: 101 buckets, the bins of
``Stats.merge_similarity_histogram``."""
SIMILARITY_BINS = len(SIMILARITY_BUCKETS) + 1
"""Number of merge-similarity buckets (101)."""


def similarity_bin(similarity: float) -> int:
    """Bucket of a merge similarity: ``i`` for ``[i/100, (i+1)/100)``, 100 for 1.0 and above.

    The one binning rule of merge similarities, used by ``stratabatch.Stats`` and the counters
    block alike. It compares with the bounds themselves, so 0.29 lands in bucket 29 (a
    computed ``int(0.29 * 100)`` is 28).
    """
    return bisect.bisect_right(SIMILARITY_BUCKETS, similarity)


STATS_COUNTERS = (
    ("total_requests", "requests accepted"),
    ("total_batches", "handler calls"),
    ("unique_requests", "requests that reached the handler"),
    ("duplicates", "requests answered by another request's result"),
    ("inflight_coalesced", "duplicates that joined work already running"),
    ("errors", "requests that ended in an error"),
    ("timeouts", "requests that timed out"),
    ("rejected", "requests refused by backpressure"),
    ("exact_merges", "duplicates merged on equal normalized keys"),
    ("near_merges", "duplicates merged on similarity"),
    ("dropped", "accepted requests that left the queue without reaching the handler"),
    ("reuse_hits", "duplicates answered from the reuse cache"),
    ("reuse_near_hits", "reuse hits of near twins (a subset of reuse_hits)"),
)
"""(name, doc) of each counter of the stats layout; each is a ``Stats`` field."""
STATS_GAUGES = (
    ("queue_depth", "i64", "requests waiting"),
    ("inflight_batches", "i64", "handler calls running"),
    ("clients_connected", "i64", "connected client processes"),
    ("window_ms", "f64", "current batching window"),
    ("avg_batch_size", "f64", "mean handler batch size"),
    ("dedup_rate", "f64", "duplicates / total_requests"),
    ("requests_per_second", "f64", "recent request rate"),
    ("cost_saved_usd", "f64", "duplicates * cost_per_request_usd"),
    ("latency_ms_p50", "f64", "end-to-end latency median"),
    ("latency_ms_p95", "f64", "end-to-end latency 95th percentile"),
    ("latency_ms_p99", "f64", "end-to-end latency 99th percentile"),
    ("batch_size_max", "i64", "largest handler call so far"),
    ("adaptive_a_ms", "f64", "fitted fixed cost per handler call, ms (0 without adaptive)"),
    ("adaptive_b_ms", "f64", "fitted cost per item, ms (0 without adaptive)"),
    ("reuse_entries", "i64", "answers the reuse cache holds"),
    ("reuse_bytes", "i64", "bytes the reuse cache accounts for"),
    ("dedup_threshold", "f64", "near-duplicate threshold in force (0 without one)"),
    ("engine_pid", "i64", "pid of the writer"),
    ("started_at_ns", "i64", "time.time_ns() when the engine started"),
    ("updated_at_ns", "i64", "time.time_ns() of the engine's last update (a heartbeat)"),
)
"""(name, type, doc) of each gauge of the stats layout. Those up to ``batch_size_max`` and the
adaptive fit are ``Stats`` fields; the rest describe the engine."""
STATS_HISTOGRAM = "merge_similarity_histogram"
"""The stats layout's histogram that mirrors ``Stats.merge_similarity_histogram``."""
STATS_REUSE_HISTOGRAM = "reuse_similarity_histogram"
"""The stats layout's histogram that mirrors ``Stats.reuse_similarity_histogram`` (near twins
answered from the reuse cache, apart from the merges of a window)."""
STATS_HISTOGRAMS = (STATS_HISTOGRAM, STATS_REUSE_HISTOGRAM)
"""The ``Stats`` fields that are similarity histograms (101 bins, :func:`similarity_bin`)."""
SECOND_COLUMNS = (
    ("t_s", "i64"),
    ("requests", "i64"),
    ("batches", "i64"),
    ("duplicates", "i64"),
    ("errors", "i64"),
    ("latency_ms_p99", "f64"),
    ("queue_depth", "i64"),
)
"""Columns of the stats layout's per-second ring ``seconds``: the second's end (unix seconds),
the requests, batches, duplicates and errors counted during that second, its latency p99 and
the queue depth at its end."""
CLIENT_COLUMNS = (
    ("pid", "i64"),
    ("connected", "i64"),
    ("requests", "i64"),
    ("errors", "i64"),
    ("timeouts", "i64"),
    ("connected_at_ns", "i64"),
)
"""Columns of the stats layout's per-client table ``clients`` (indexed by slot)."""


# ---------------------------------------------------------------------- layout


class CountersLayout:
    """Offsets of every field of a counters block, and the JSON schema describing them.

    Args:
        fields: The fields, in the order they are laid out.
        info: Facts about the writer that do not change while the block lives (engine name,
            handler, options), stored in the schema: a map of names (as field names) to
            strings, numbers, booleans or None, at most :data:`INFO_MAX_BYTES` as JSON.

    Attributes:
        fields: One schema entry (a dict) per field, offsets included.
        schema: The whole schema, as stored in the block.
        info: The ``info`` map (empty when none was given).
        schema_bytes: The schema encoded as compact UTF-8 JSON.
        data_offset: Where the data words start (64-byte aligned).
        data_bytes: Size of the data region.
        nbytes: Bytes a buffer needs to hold the block; size the segment with it.

    Raises:
        ValueError: A name is invalid or repeated, a type unknown, a size out of range, or
            histogram bounds not strictly increasing and finite, or a bad ``info``.
    """

    def __init__(self, fields: Sequence[FieldSpec], info: dict[str, Any] | None = None) -> None:
        entries: list[dict[str, Any]] = []
        names: set[str] = set()
        word = 0
        for spec in fields:
            _check_name(spec.name, "field", names)
            entry: dict[str, Any] = {"name": spec.name, "doc": spec.doc}
            if isinstance(spec, (Counter, Gauge)):
                kind = "counter" if isinstance(spec, Counter) else "gauge"
                typ = "i64" if isinstance(spec, Counter) else spec.type
                _check_type(typ, spec.name)
                entry.update(kind=kind, type=typ, offset=word * 8)
                word += 1
            elif isinstance(spec, Histogram):
                bounds = [float(b) for b in spec.bounds]
                if (
                    not bounds
                    or not all(math.isfinite(b) for b in bounds)
                    or any(b >= c for b, c in zip(bounds[:-1], bounds[1:], strict=True))
                ):
                    raise ValueError(
                        f"histogram {spec.name!r}: bounds must be finite and strictly "
                        f"increasing, got {spec.bounds!r:.80}"
                    )
                if spec.closed not in ("left", "right"):
                    raise ValueError(
                        f"histogram {spec.name!r}: closed must be 'left' or "
                        f"'right', got {spec.closed!r}"
                    )
                entry.update(
                    kind="histogram",
                    closed=spec.closed,
                    count_offset=word * 8,
                    count_type="i64",
                    sum_offset=word * 8 + 8,
                    sum_type="f64",
                    buckets_offset=word * 8 + 16,
                    bucket_type="i64",
                    buckets=len(bounds) + 1,
                    bounds=bounds,
                )
                word += 2 + len(bounds) + 1
            elif isinstance(spec, (SampleRing, Table)):
                size = spec.capacity if isinstance(spec, SampleRing) else spec.rows
                if type(size) is not int or not 1 <= size <= 1_000_000:
                    raise ValueError(f"{spec.name!r}: size must be in [1, 1000000], got {size!r}")
                cols: set[str] = set()
                columns = []
                for cname, ctype in spec.columns:
                    _check_name(cname, f"{spec.name!r} column", cols)
                    _check_type(ctype, f"{spec.name}.{cname}")
                    columns.append({"name": cname, "type": ctype})
                if not columns:
                    raise ValueError(f"{spec.name!r} needs at least one column")
                if isinstance(spec, SampleRing):
                    entry.update(
                        kind="sample_ring",
                        head_offset=word * 8,
                        head_type="i64",
                        rows_offset=word * 8 + 8,
                        capacity=size,
                    )
                    word += 1
                else:
                    _check_name(spec.index_name, "index", {c["name"] for c in columns})
                    entry.update(
                        kind="table", rows_offset=word * 8, rows=size, index_name=spec.index_name
                    )
                entry.update(row_bytes=8 * len(columns), columns=columns)
                word += size * len(columns)
            else:
                raise TypeError(f"not a field spec: {spec!r}")
            entries.append(entry)
        self.fields: tuple[dict[str, Any], ...] = tuple(entries)
        self.info: dict[str, Any] = _check_info(info)
        self.schema: dict[str, Any] = {
            "format": "stratabatch-counters",
            "version": COUNTERS_VERSION,
            "byte_order": "little",
            "offsets": "fields' offsets are bytes from the data offset",
            "seqlock": {
                "offset": SEQ_OFFSET,
                "type": "i64",
                "protocol": "odd while writing; copy data, accept if unchanged",
            },
            "fields": list(entries),
            "info": self.info,
        }
        self.schema_bytes = json.dumps(self.schema, separators=(",", ":")).encode()
        self.data_offset = _align(HEADER_BYTES + len(self.schema_bytes))
        self.data_bytes = max(word, 1) * 8
        self.nbytes = _align(self.data_offset + self.data_bytes)

    @classmethod
    def for_stats(
        cls, *, max_clients: int = 64, history_s: int = 600, info: dict[str, Any] | None = None
    ) -> CountersLayout:
        """The engine's stats block: totals, gauges, histograms, seconds ring, client table.

        Args:
            max_clients: Rows of the ``clients`` table (one per client slot).
            history_s: Rows of the ``seconds`` ring; at least 300.
            info: The engine's identity and options (see the class and docs/ipc-data.md).
        """
        if type(history_s) is not int or history_s < 300:
            raise ValueError(f"history_s must be an integer >= 300, got {history_s!r}")
        fields: list[FieldSpec] = [Counter(n, d) for n, d in STATS_COUNTERS]
        fields += [Gauge(n, t, d) for n, t, d in STATS_GAUGES]
        fields += [
            Histogram("latency_ms", LATENCY_BUCKETS_MS, "end-to-end request latency, ms"),
            Histogram("batch_size", BATCH_SIZE_BUCKETS, "requests per handler call"),
            Histogram(
                STATS_HISTOGRAM, SIMILARITY_BUCKETS, "similarity of each merge", closed="left"
            ),
            Histogram(
                STATS_REUSE_HISTOGRAM,
                SIMILARITY_BUCKETS,
                "similarity of each near twin answered from the reuse cache",
                closed="left",
            ),
            SampleRing("seconds", history_s, SECOND_COLUMNS, "one row per second"),
            Table("clients", max_clients, CLIENT_COLUMNS, "slot", "one row per client slot"),
        ]
        return cls(fields, info)


def _check_name(name: Any, what: str, seen: set[str]) -> None:
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name) or name in _RESERVED:
        raise ValueError(
            f"{what} name must match [a-z][a-z0-9_]{{0,63}} and not be 'seq', got {name!r}"
        )
    if name in seen:
        raise ValueError(f"{what} name {name!r} is used twice")
    seen.add(name)


def _check_info(info: Any) -> dict[str, Any]:
    if info is None:
        return {}
    if not isinstance(info, dict):
        raise ValueError(f"info must be a dict, got {type(info).__name__}")
    seen: set[str] = set()
    for key, value in info.items():
        _check_name(key, "info", seen)
        if value is not None and not isinstance(value, (str, int, float, bool)):
            raise ValueError(
                f"info[{key!r}] must be a str, number, bool or None, got {type(value).__name__}"
            )
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"info[{key!r}] must be finite, got {value!r}")
    size = len(json.dumps(info, separators=(",", ":")).encode())
    if size > INFO_MAX_BYTES:
        raise ValueError(f"info takes {size} bytes as JSON, at most {INFO_MAX_BYTES} allowed")
    return dict(info)


def _check_type(typ: Any, where: str) -> None:
    if typ not in WORD_TYPES:
        raise ValueError(f"{where}: type must be one of {WORD_TYPES}, got {typ!r}")


__all__ = [
    "BATCH_SIZE_BUCKETS",
    "CLIENT_COLUMNS",
    "COUNTERS_MAGIC",
    "COUNTERS_VERSION",
    "HEADER_BYTES",
    "HEADER_STRUCT",
    "INFO_MAX_BYTES",
    "LATENCY_BUCKETS_MS",
    "SECOND_COLUMNS",
    "SEQ_OFFSET",
    "SIMILARITY_BINS",
    "SIMILARITY_BUCKETS",
    "STATS_COUNTERS",
    "STATS_GAUGES",
    "STATS_HISTOGRAM",
    "STATS_HISTOGRAMS",
    "STATS_REUSE_HISTOGRAM",
    "WORD_TYPES",
    "Counter",
    "CountersLayout",
    "FieldSpec",
    "Gauge",
    "Histogram",
    "SampleRing",
    "Table",
    "bucket_index",
    "log_buckets",
    "similarity_bin",
]
