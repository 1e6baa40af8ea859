"""The counters block's writer and readers: live statistics shared without locks.

One writer (the engine) updates fields in place; any number of readers (monitors) copy a
consistent snapshot through a seqlock and never block the writer. What the block holds and
where (header, schema, field specs, :class:`CountersLayout`) is defined in
:mod:`stratabatch.ipc.counters_layout`; its public names are re-exported here.

Seqlock protocol: the writer makes the sequence odd (atomic add), writes, then makes it even
again (atomic add; both are full barriers). A reader loads the sequence, retries while it is
odd, copies the whole data region, fences, and accepts the copy only if the sequence has not
changed. The copy loop runs jitted (numba) so it is a few hundred nanoseconds long and fits
between updates even when the writer updates non-stop.

An engine's block lives in the segment named by :func:`counters_segment_name`: the engine makes
it with :meth:`CountersWriter.create` and removes it with :meth:`CountersWriter.close`;
monitors use :meth:`CountersReader.attach` and :meth:`CountersReader.close`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from numba import njit

from stratabatch.ipc.atomics import atomic_add, atomic_load, fence
from stratabatch.ipc.counters_layout import (
    BATCH_SIZE_BUCKETS,
    CLIENT_COLUMNS,
    COUNTERS_MAGIC,
    COUNTERS_VERSION,
    HEADER_BYTES,
    HEADER_STRUCT,
    LATENCY_BUCKETS_MS,
    SECOND_COLUMNS,
    SEQ_OFFSET,
    SIMILARITY_BINS,
    SIMILARITY_BUCKETS,
    STATS_HISTOGRAM,
    STATS_HISTOGRAMS,
    STATS_REUSE_HISTOGRAM,
    WORD_TYPES,
    Counter,
    CountersLayout,
    FieldSpec,
    Gauge,
    Histogram,
    SampleRing,
    Table,
    bucket_index,
    log_buckets,
    similarity_bin,
)
from stratabatch.ipc.counters_layout import STATS_COUNTERS as STATS_COUNTERS
from stratabatch.ipc.counters_layout import STATS_GAUGES as STATS_GAUGES
from stratabatch.ipc.errors import SegmentLayoutError
from stratabatch.ipc.segment import Segment, segment_name

COUNTERS_PART = "counters"
"""The part name of an engine's counters segment (see :func:`counters_segment_name`)."""


def counters_segment_name(engine_name: str) -> str:
    """The shared-memory name of engine ``engine_name``'s counters block.

    ``stratabatch-UID-NAME-counters``: the engine creates it and monitors find it with only
    the engine's name (``/dev/shm/`` + this on Linux).

    Raises:
        ValueError: ``engine_name`` is not 1-48 characters of ``[A-Za-z0-9_.-]``.
    """
    return segment_name(engine_name, COUNTERS_PART)


# ---------------------------------------------------------------------- seqlock kernel


@njit(cache=True)
def _copy_consistent(seq: np.ndarray, src: np.ndarray, dst: np.ndarray, spins: int) -> int:
    """Copy ``src`` to ``dst`` between two equal even sequence loads; the sequence or -1."""
    for _ in range(spins):
        before = atomic_load(seq, 0)
        if before & 1:
            continue
        for i in range(src.shape[0]):
            dst[i] = src[i]
        fence()  # the copy's loads complete before the sequence is read again
        if atomic_load(seq, 0) == before:
            return before
    return -1


# ---------------------------------------------------------------------- writer


class CountersWriter:
    """The single writer of a counters block.

    Every method is safe to call on its own (it then forms its own update); group several
    in :meth:`update` (or :meth:`begin` / :meth:`end`) so readers see them together and the
    sequence is bumped once. Never share a block between two writers.

    Args:
        buf: Writable buffer of at least ``layout.nbytes`` bytes (e.g. ``segment.buf``).
        layout: The fields to lay out. The block is zeroed and its header written.
    """

    def __init__(self, buf: Any, layout: CountersLayout) -> None:
        view = memoryview(buf).cast("B")
        if view.readonly or view.nbytes < layout.nbytes:
            raise ValueError(
                f"the counters block needs a writable buffer of {layout.nbytes} bytes, got "
                f"{'a read-only ' if view.readonly else ''}{view.nbytes} bytes"
            )
        self.layout = layout
        view[8 : layout.nbytes] = bytes(layout.nbytes - 8)
        view[HEADER_BYTES : HEADER_BYTES + len(layout.schema_bytes)] = layout.schema_bytes
        HEADER_STRUCT.pack_into(
            view,
            0,
            b"\0" * 8,
            COUNTERS_VERSION,
            HEADER_BYTES,
            HEADER_BYTES,
            len(layout.schema_bytes),
            layout.data_offset,
            layout.data_bytes,
        )
        self._seq = np.frombuffer(buf, np.int64, 1, SEQ_OFFSET)
        self._words = np.frombuffer(buf, np.int64, layout.data_bytes // 8, layout.data_offset)
        self._floats = self._words.view(np.float64)
        self._depth = 0
        self._scalars: dict[str, tuple[np.ndarray, int, bool]] = {}
        self._hists: dict[str, tuple[int, list[float], np.ndarray, str]] = {}
        self._segment: Segment | None = None
        self._last_second: dict[str, Any] | None = None
        self._rings: dict[str, dict[str, Any]] = {}
        self._tables: dict[str, dict[str, Any]] = {}
        for f in layout.fields:
            if f["kind"] in ("counter", "gauge"):
                is_int = f["type"] == "i64"
                arr = self._words if is_int else self._floats
                self._scalars[f["name"]] = (arr, f["offset"] // 8, is_int)
            elif f["kind"] == "histogram":
                self._hists[f["name"]] = (
                    f["count_offset"] // 8,
                    f["bounds"],
                    np.asarray(f["bounds"]),
                    f["closed"],
                )
            else:
                cols = {c["name"]: (i, c["type"]) for i, c in enumerate(f["columns"])}
                info = {
                    "base": f["rows_offset"] // 8,
                    "cols": cols,
                    "width": len(cols),
                    "size": f.get("capacity", f.get("rows")),
                }
                if f["kind"] == "sample_ring":
                    info["head"] = f["head_offset"] // 8
                    self._rings[f["name"]] = info
                else:
                    self._tables[f["name"]] = info
        view[:8] = COUNTERS_MAGIC  # last: readers never see a magic over a half-built block
        view.release()

    @classmethod
    def create(
        cls,
        engine_name: str,
        layout: CountersLayout | None = None,
        *,
        info: dict[str, Any] | None = None,
        max_clients: int = 64,
        history_s: int = 600,
        started_at_ns: int | None = None,
    ) -> CountersWriter:
        """Create engine ``engine_name``'s counters segment and own it (the engine's call).

        The segment is :func:`counters_segment_name` ``(engine_name)``, mode 0600; a stale one
        left by a dead engine is reclaimed. ``engine_pid``, ``started_at_ns`` and
        ``updated_at_ns`` are set at once, so a monitor shows the engine from the start.

        Args:
            engine_name: The engine's ``--name``.
            layout: The block's layout; by default ``CountersLayout.for_stats(max_clients=,
                history_s=, info=)``.
            info: The engine's identity and options (used only without ``layout``).
            max_clients: Client-table rows (used only without ``layout``).
            history_s: Per-second ring rows (used only without ``layout``).
            started_at_ns: The engine's start, ``time.time_ns()``; now by default.

        Raises:
            SegmentExistsError: A live engine already serves that name.
            ValueError: A bad name or layout argument.
        """
        if layout is None:
            layout = CountersLayout.for_stats(
                max_clients=max_clients, history_s=history_s, info=info
            )
        seg = Segment.create(
            counters_segment_name(engine_name),
            layout.nbytes,
            magic=COUNTERS_MAGIC,
            version=COUNTERS_VERSION,
        )
        try:
            writer = cls(seg.buf, layout)
            writer._segment = seg
            now = time.time_ns()
            with writer.update():
                for name, value in (
                    ("engine_pid", os.getpid()),
                    ("started_at_ns", now if started_at_ns is None else started_at_ns),
                    ("updated_at_ns", now),
                ):
                    if name in writer._scalars:
                        writer.set(name, value)
        except BaseException:
            seg.close()
            raise
        return writer

    # -- updates

    def begin(self) -> None:
        """Start an update (nestable); readers wait for the outermost :meth:`end`."""
        if self._depth == 0:
            atomic_add(self._seq, 0, 1)
        self._depth += 1

    def end(self) -> None:
        """Finish an update started with :meth:`begin`."""
        if self._depth <= 0:
            raise RuntimeError("end() without a matching begin()")
        self._depth -= 1
        if self._depth == 0:
            atomic_add(self._seq, 0, 1)

    @contextmanager
    def update(self) -> Iterator[CountersWriter]:
        """Group changes so readers see all of them or none."""
        self.begin()
        try:
            yield self
        finally:
            self.end()

    def _unknown(self, name: str) -> KeyError:
        return KeyError(f"no counter or gauge named {name!r}; have {sorted(self._scalars)}")

    def add(self, name: str, n: float = 1) -> None:
        """Add ``n`` to a counter or gauge (an int for i64 fields)."""
        try:
            arr, i, is_int = self._scalars[name]
        except KeyError:
            raise self._unknown(name) from None
        if is_int and type(n) is not int:
            n = _as_int(n, name)
        if self._depth:
            arr[i] += n
        else:
            atomic_add(self._seq, 0, 1)
            arr[i] += n
            atomic_add(self._seq, 0, 1)

    def set(self, name: str, value: float) -> None:
        """Set a counter or gauge to ``value`` (an int for i64 fields)."""
        try:
            arr, i, is_int = self._scalars[name]
        except KeyError:
            raise self._unknown(name) from None
        if is_int and type(value) is not int:
            value = _as_int(value, name)
        if self._depth:
            arr[i] = value
        else:
            atomic_add(self._seq, 0, 1)
            arr[i] = value
            atomic_add(self._seq, 0, 1)

    def get(self, name: str) -> float:
        """Current value of a counter or gauge (the writer's own view)."""
        try:
            arr, i, _ = self._scalars[name]
        except KeyError:
            raise self._unknown(name) from None
        return arr[i].item()

    def _hist(self, name: str) -> tuple[int, list[float], np.ndarray, str]:
        try:
            return self._hists[name]
        except KeyError:
            raise KeyError(f"no histogram named {name!r}; have {sorted(self._hists)}") from None

    def observe(self, name: str, value: float) -> None:
        """Count one observation in a histogram."""
        base, bounds, _, closed = self._hist(name)
        if value != value:
            raise ValueError(f"histogram {name!r}: cannot observe NaN")
        self.begin()
        self._words[base] += 1
        self._floats[base + 1] += value
        self._words[base + 2 + bucket_index(bounds, value, closed)] += 1
        self.end()

    def observe_many(self, name: str, values: npt.ArrayLike) -> None:
        """Count many observations in a histogram at once."""
        base, _, edges, closed = self._hist(name)
        vals = np.asarray(values, dtype=np.float64).reshape(-1)
        if np.isnan(vals).any():
            raise ValueError(f"histogram {name!r}: cannot observe NaN")
        # searchsorted's sides are bucket_index's bisect_left / bisect_right
        side: Literal["left", "right"] = "right" if closed == "left" else "left"
        counts = np.bincount(np.searchsorted(edges, vals, side=side), minlength=len(edges) + 1)
        self.begin()
        self._words[base] += vals.size
        self._floats[base + 1] += float(vals.sum())
        self._words[base + 2 : base + 3 + len(edges)] += counts
        self.end()

    def set_histogram(self, name: str, counts: npt.ArrayLike, total: float = 0.0) -> None:
        """Replace a histogram's bucket counts (its count becomes their sum).

        For a histogram kept elsewhere, e.g. ``Stats.merge_similarity_histogram``, whose
        bins follow the same :func:`bucket_index` rule.

        Args:
            name: The histogram.
            counts: One non-negative integer per bucket (``len(bounds) + 1``).
            total: The sum of the observations, when known (0.0 otherwise).
        """
        base, _, edges, _ = self._hist(name)
        arr = np.asarray(counts)
        if arr.shape != (len(edges) + 1,) or arr.dtype.kind not in "iu" or (arr < 0).any():
            raise ValueError(
                f"histogram {name!r} needs {len(edges) + 1} non-negative integer "
                f"counts, got {arr.dtype} of shape {arr.shape}"
            )
        self.begin()
        self._words[base] = int(arr.sum())
        self._floats[base + 1] = total
        self._words[base + 2 : base + 3 + len(edges)] = arr
        self.end()

    def write_stats(self, stats: Any, *, now_ns: int | None = None) -> None:
        """Publish a ``stratabatch.Stats`` (or a mapping of its fields) in one update.

        Every field must exist in the layout under the same name: numbers go to the counter
        or gauge, ``merge_similarity_histogram`` to the histogram of that name.
        ``updated_at_ns`` (the heartbeat) is set too.

        Args:
            stats: A dataclass instance or a mapping of field name to value.
            now_ns: ``time.time_ns()`` of the snapshot; now by default.

        Raises:
            KeyError: A field has no counterpart in the layout (the layout and ``Stats`` went
                out of step).
        """
        if dataclasses.is_dataclass(stats) and not isinstance(stats, type):
            items = [(f.name, getattr(stats, f.name)) for f in dataclasses.fields(stats)]
        else:
            items = list(dict(stats).items())
        with self.update():
            for name, value in items:
                if name in self._scalars:
                    self.set(name, value)
                elif name in self._hists:
                    self.set_histogram(name, np.asarray(value, dtype=np.int64))
                else:
                    raise KeyError(
                        f"the counters layout has no field {name!r} to publish; "
                        "every Stats field needs one (see CountersLayout.for_stats)"
                    )
            if "updated_at_ns" in self._scalars:
                self.set("updated_at_ns", time.time_ns() if now_ns is None else now_ns)

    def sample_second(self, t_s: int) -> None:
        """Push one ``seconds`` row for the second ending at ``t_s`` (unix seconds).

        The row holds what changed since the previous call: requests, batches, duplicates
        and errors (differences of ``total_requests``, ``total_batches``, ``duplicates``,
        ``errors``), the p99 of the latencies observed into ``latency_ms`` meanwhile (the
        ``latency_ms_p99`` gauge when none were observed there), and the current
        ``queue_depth``. Call it once a second; the first call counts from zero.
        """
        totals = {
            c: self.get(t)
            for c, t in (
                ("requests", "total_requests"),
                ("batches", "total_batches"),
                ("duplicates", "duplicates"),
                ("errors", "errors"),
            )
        }
        base, bounds, _, _ = self._hist("latency_ms")
        lat = self._words[base + 2 : base + 3 + len(bounds)].copy()
        prev = self._last_second or {"totals": dict.fromkeys(totals, 0), "lat": np.zeros_like(lat)}
        delta = lat - prev["lat"]
        if delta.any():
            p99 = histogram_quantile({"bounds": bounds, "counts": delta.tolist()}, 0.99)
        else:
            p99 = self.get("latency_ms_p99")
        self.push_second_sample(
            t_s=t_s,
            latency_ms_p99=p99,
            queue_depth=self.get("queue_depth"),
            **{c: v - prev["totals"][c] for c, v in totals.items()},
        )
        self._last_second = {"totals": totals, "lat": lat}

    def _write_row(
        self, info: dict[str, Any], start: int, values: Mapping[str, Any], add: bool, where: str
    ) -> None:
        for cname, value in values.items():
            try:
                col, typ = info["cols"][cname]
            except KeyError:
                raise KeyError(
                    f"{where} has no column {cname!r}; have {sorted(info['cols'])}"
                ) from None
            arr = self._floats if typ == "f64" else self._words
            if typ == "i64" and type(value) is not int:
                value = _as_int(value, f"{where}.{cname}")
            if add:
                arr[start + col] += value
            else:
                arr[start + col] = value

    def push_sample(self, ring: str, **values: Any) -> None:
        """Append a row to a sample ring (columns not given are 0), evicting the oldest."""
        try:
            info = self._rings[ring]
        except KeyError:
            raise KeyError(f"no sample ring named {ring!r}; have {sorted(self._rings)}") from None
        head = int(self._words[info["head"]])
        start = info["base"] + (head % info["size"]) * info["width"]
        self.begin()
        self._words[start : start + info["width"]] = 0
        self._write_row(info, start, values, False, ring)
        self._words[info["head"]] = head + 1
        self.end()

    def push_second_sample(self, **values: Any) -> None:
        """Append one row to the stats layout's ``seconds`` ring (see :data:`SECOND_COLUMNS`)."""
        self.push_sample("seconds", **values)

    def _row(self, table: str, row: int) -> tuple[dict[str, Any], int]:
        try:
            info = self._tables[table]
        except KeyError:
            raise KeyError(f"no table named {table!r}; have {sorted(self._tables)}") from None
        if type(row) is not int or not 0 <= row < info["size"]:
            raise IndexError(f"{table} row must be in [0, {info['size']}), got {row!r}")
        return info, info["base"] + row * info["width"]

    def set_row(self, table: str, row: int, **values: Any) -> None:
        """Set columns of one table row."""
        info, start = self._row(table, row)
        self.begin()
        self._write_row(info, start, values, False, table)
        self.end()

    def add_row(self, table: str, row: int, **deltas: Any) -> None:
        """Add to columns of one table row."""
        info, start = self._row(table, row)
        self.begin()
        self._write_row(info, start, deltas, True, table)
        self.end()

    def clear_row(self, table: str, row: int) -> None:
        """Zero one table row (a zero row is left out of snapshots)."""
        info, start = self._row(table, row)
        self.begin()
        self._words[start : start + info["width"]] = 0
        self.end()

    def close(self) -> None:
        """Let go of the block; a block made by :meth:`create` is also unlinked (idempotent)."""
        self._seq = self._words = self._floats = None  # type: ignore[assignment]
        if self._segment is not None:
            self._segment.close()
            self._segment = None

    release = close
    """Old name of :meth:`close`."""


def _as_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise TypeError(f"{name} is an i64 field and needs an integer, got {value!r}")
    return value.__index__()


# ---------------------------------------------------------------------- reader


class CountersReader:
    """Read consistent snapshots of a counters block, knowing nothing but its header.

    Args:
        buf: The buffer holding the block (e.g. an attached segment's ``buf``).

    Raises:
        SegmentLayoutError: The buffer holds no counters block of this version, or its
            header or schema is inconsistent.
    """

    def __init__(self, buf: Any) -> None:
        view = memoryview(buf).cast("B")
        size = view.nbytes
        if size < HEADER_BYTES:
            raise SegmentLayoutError(
                f"a counters block holds at least {HEADER_BYTES} bytes, got {size}"
            )
        magic, version, header, s_off, s_len, d_off, d_len = HEADER_STRUCT.unpack_from(view, 0)
        if magic != COUNTERS_MAGIC:
            raise SegmentLayoutError(
                f"not a counters block: magic {magic!r}, expected {COUNTERS_MAGIC!r}"
            )
        if version != COUNTERS_VERSION or header != HEADER_BYTES:
            raise SegmentLayoutError(
                f"counters layout version {version} (header {header} bytes) is not the "
                f"supported version {COUNTERS_VERSION} ({HEADER_BYTES} bytes)"
            )
        if not (
            s_off >= HEADER_BYTES
            and s_off + s_len <= d_off
            and d_off % 64 == 0
            and d_len % 8 == 0
            and d_len > 0
            and d_off + d_len <= size
        ):
            raise SegmentLayoutError(
                f"inconsistent counters header: schema [{s_off}, +{s_len}), data [{d_off}, "
                f"+{d_len}) in a {size}-byte buffer"
            )
        try:
            schema = json.loads(bytes(view[s_off : s_off + s_len]))
            self._plan = _read_plan(schema, d_len)
        except (
            ValueError,
            KeyError,
            TypeError,
            AttributeError,
            ArithmeticError,
            RecursionError,
        ) as exc:
            view.release()
            raise SegmentLayoutError(f"unreadable counters schema: {exc}") from exc
        view.release()
        self.schema: dict[str, Any] = schema
        """The block's schema, as stored in its header."""
        self._seq = np.frombuffer(buf, np.int64, 1, SEQ_OFFSET)
        self._src = np.frombuffer(buf, np.int64, d_len // 8, d_off)
        self._dst = np.empty(d_len // 8, np.int64)
        self.segment: Segment | None = None
        """The attached segment, for a reader made by :meth:`attach` (its ``owner_pid`` and
        ``created_ns`` tell one engine run from the next)."""

    @classmethod
    def attach(cls, engine_name: str) -> CountersReader:
        """Attach to engine ``engine_name``'s counters block (a monitor's call).

        The reader never writes to the block, never creates or unlinks the segment.

        Raises:
            SegmentNotFoundError: No engine of that name has a block.
            SegmentLayoutError: The segment holds no counters block of this version.
            ValueError: ``engine_name`` is not a valid engine name.
        """
        seg = Segment.attach(
            counters_segment_name(engine_name), magic=COUNTERS_MAGIC, version=COUNTERS_VERSION
        )
        try:
            reader = cls(seg.buf)
        except BaseException:
            seg.close()
            raise
        reader.segment = seg
        return reader

    @property
    def info(self) -> dict[str, Any]:
        """The writer's ``info`` map (engine identity and options), empty if it gave none."""
        info = self.schema.get("info")
        if not isinstance(info, dict):
            return {}
        # a writer stores only scalars (CountersLayout checks); anything else is not an option
        return {
            k: v for k, v in info.items() if v is None or isinstance(v, (str, int, float, bool))
        }

    @property
    def field_names(self) -> list[str]:
        """Names of the block's fields, in layout order."""
        return [f["name"] for f in self.schema["fields"]]

    def read_words(self, timeout: float = 1.0) -> tuple[int, np.ndarray]:
        """Copy the data region consistently; return ``(sequence, int64 words)``.

        Raises:
            TimeoutError: The writer held an update open for ``timeout`` seconds (it probably
                died inside one).
        """
        deadline = None
        while True:
            seq = _copy_consistent(self._seq, self._src, self._dst, 2_000)
            if seq >= 0:
                return seq, self._dst.copy()
            now = time.monotonic()
            if deadline is None:
                deadline = now + timeout
            elif now > deadline:
                raise TimeoutError(
                    f"the counters block stayed mid-update for {timeout} s (sequence "
                    f"{int(self._seq[0])}); its writer probably died during an update"
                )
            os.sched_yield()  # let a writer that shares our core finish its update

    def snapshot(self, timeout: float = 1.0) -> dict[str, Any]:
        """Return one consistent snapshot of every field as plain data.

        Counters and gauges map to numbers; a histogram to ``{"bounds", "closed", "counts",
        "count", "sum"}``; a sample ring to ``{column: [values, oldest first]}``; a table to its
        non-zero rows as dicts with the row index under the table's ``index_name``. ``"seq"`` is the
        sequence number the snapshot was taken at.

        Raises:
            TimeoutError: See :meth:`read_words`.
        """
        seq, words = self.read_words(timeout)
        ints = words.tolist()
        floats = words.view(np.float64).tolist()
        out: dict[str, Any] = {"seq": seq}
        for step in self._plan:
            kind, name = step[0], step[1]
            if kind == "scalar":
                out[name] = (floats if step[3] else ints)[step[2]]
            elif kind == "histogram":
                base, bounds = step[2], step[3]
                out[name] = {
                    "bounds": bounds,
                    "closed": step[4],
                    "counts": ints[base + 2 : base + 3 + len(bounds)],
                    "count": ints[base],
                    "sum": floats[base + 1],
                }
            else:
                base, size, cols, extra = step[2], step[3], step[4], step[5]
                width = len(cols)
                if kind == "sample_ring":
                    head = ints[extra]  # rows pushed so far; the oldest kept is head - n
                    n = min(head, size)
                    block = words[base : base + size * width].reshape(size, width)
                    block = block[np.arange(head - n, head) % size]
                    out[name] = {
                        cname: (block[:, i].view(np.float64) if is_float else block[:, i]).tolist()
                        for i, (cname, is_float) in enumerate(cols)
                    }
                else:
                    rows = []
                    for r in range(size):
                        start = base + r * width
                        if any(ints[start : start + width]):
                            row = {extra: r}
                            row.update(_row(ints, floats, start, cols))
                            rows.append(row)
                    out[name] = rows
        return out

    def close(self) -> None:
        """Drop the views of the buffer and unmap an attached segment (idempotent)."""
        self._seq = self._src = None  # type: ignore[assignment]
        if self.segment is not None:
            self.segment.close()
            self.segment = None

    release = close
    """Old name of :meth:`close`."""


def _row(
    ints: list[int], floats: list[float], start: int, cols: list[tuple[str, bool]]
) -> dict[str, Any]:
    return {
        cname: (floats if is_float else ints)[start + i] for i, (cname, is_float) in enumerate(cols)
    }


def _read_plan(schema: Any, data_bytes: int) -> list[tuple[Any, ...]]:
    """Turn a schema into decoding steps, checking every offset lies inside the data.

    Anything a writer could not have produced (a schema that is not an object, a field of the
    wrong JSON type, bounds that are not increasing numbers) raises ``ValueError``: a reader
    that accepts a schema can decode every snapshot of it, whatever the data words hold.
    """
    if not isinstance(schema, dict):
        raise ValueError(f"the schema is a JSON {_json_type(schema)}, not an object")
    if schema.get("format") != "stratabatch-counters" or schema.get("version") != COUNTERS_VERSION:
        raise ValueError(
            f"schema format {schema.get('format')!r:.60} "
            f"v{schema.get('version')!r:.20} is not stratabatch-counters "
            f"v{COUNTERS_VERSION}"
        )
    fields = schema.get("fields")
    if not isinstance(fields, list):
        raise ValueError(f"the schema's fields are a JSON {_json_type(fields)}, not an array")
    words = data_bytes // 8
    plan: list[tuple[Any, ...]] = []

    def word(offset: Any, count: int = 1) -> int:
        if type(offset) is not int or offset % 8 or not 0 <= offset // 8 <= words - count:
            raise ValueError(f"offset {offset!r:.40} (+{count} words) is outside the data region")
        return offset // 8

    def size(f: dict[str, Any], key: str) -> int:
        n = f.get(key)
        if type(n) is not int or not 1 <= n <= words:
            raise ValueError(f"field {f['name']!r}: {key} {n!r:.40} is not a count in [1, {words}]")
        return n

    def columns(f: dict[str, Any]) -> list[tuple[str, bool]]:
        cols = f.get("columns")
        if not isinstance(cols, list) or not cols:
            raise ValueError(f"field {f['name']!r}: columns must be a non-empty array")
        out = []
        for c in cols:
            if (
                not isinstance(c, dict)
                or not isinstance(c.get("name"), str)
                or c.get("type") not in WORD_TYPES
            ):
                raise ValueError(
                    f"field {f['name']!r}: column {c!r:.60} is not {{name, type in {WORD_TYPES}}}"
                )
            out.append((c["name"], c["type"] == "f64"))
        return out

    for f in fields:
        if not isinstance(f, dict):
            raise ValueError(f"a field is a JSON {_json_type(f)}, not an object")
        kind, name = f.get("kind"), f.get("name")
        if not isinstance(name, str) or not name or name == "seq":
            raise ValueError(f"field name {name!r:.60} is not a string other than 'seq'")
        if kind in ("counter", "gauge"):
            if f.get("type") not in WORD_TYPES:
                raise ValueError(f"field {name!r} has unknown type {f.get('type')!r:.40}")
            plan.append(("scalar", name, word(f.get("offset")), f["type"] == "f64"))
        elif kind == "histogram":
            raw = f.get("bounds")
            if (
                not isinstance(raw, list)
                or not raw
                or not all(type(b) in (int, float) and math.isfinite(b) for b in raw)
                or any(a >= b for a, b in zip(raw[:-1], raw[1:], strict=True))
            ):
                raise ValueError(
                    f"histogram {name!r}: bounds must be finite, strictly "
                    f"increasing numbers, got {raw!r:.60}"
                )
            bounds = [float(b) for b in raw]
            base = f.get("count_offset")
            parts = (f.get("sum_offset"), f.get("buckets_offset"), f.get("buckets"))
            if type(base) is not int or parts != (base + 8, base + 16, len(bounds) + 1):
                raise ValueError(f"histogram {name!r} is not laid out as count, sum, buckets")
            closed = f.get("closed", "right")
            if closed not in ("left", "right"):
                raise ValueError(f"histogram {name!r} has unknown closed side {closed!r:.40}")
            plan.append(("histogram", name, word(base, len(bounds) + 3), bounds, closed))
        elif kind in ("sample_ring", "table"):
            cols = columns(f)
            rows = size(f, "capacity" if kind == "sample_ring" else "rows")
            base = word(f.get("rows_offset"), rows * len(cols))
            if kind == "sample_ring":
                extra: Any = word(f.get("head_offset"))
            else:
                extra = f.get("index_name")
                if not isinstance(extra, str):
                    raise ValueError(f"table {name!r}: index_name {extra!r:.40} is not a string")
            plan.append((kind, name, base, rows, cols, extra))
        else:
            raise ValueError(f"field {name!r} has unknown kind {kind!r:.40}")
    return plan


def _json_type(value: Any) -> str:
    """The JSON name of a decoded value's type (for messages)."""
    for typ, label in (
        (bool, "boolean"),
        (dict, "object"),
        (list, "array"),
        (str, "string"),
        ((int, float), "number"),
    ):
        if isinstance(value, typ):
            return label
    return "null" if value is None else type(value).__name__


def histogram_quantile(hist: Mapping[str, Any], q: float) -> float:
    """Estimate the ``q`` quantile (0..1) of a snapshot histogram; NaN when it is empty.

    Interpolates linearly inside the bucket holding the quantile; values in the overflow
    bucket are reported as the last bound. The bucket's closed side does not change the
    estimate.
    """
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"q must be in [0, 1], got {q!r}")
    counts, bounds = hist["counts"], hist["bounds"]
    total = sum(counts)
    if total == 0:
        return math.nan
    rank = q * total
    seen = 0
    for i, c in enumerate(counts):
        if c and seen + c >= rank:
            if i == len(bounds):
                return float(bounds[-1])
            low = bounds[i - 1] if i else min(0.0, bounds[0])
            return low + (bounds[i] - low) * max(rank - seen, 0.0) / c
        seen += c
    return float(bounds[-1])


__all__ = [
    "BATCH_SIZE_BUCKETS",
    "CLIENT_COLUMNS",
    "COUNTERS_MAGIC",
    "COUNTERS_PART",
    "COUNTERS_VERSION",
    "HEADER_BYTES",
    "LATENCY_BUCKETS_MS",
    "SECOND_COLUMNS",
    "SEQ_OFFSET",
    "SIMILARITY_BINS",
    "SIMILARITY_BUCKETS",
    "STATS_HISTOGRAM",
    "STATS_HISTOGRAMS",
    "STATS_REUSE_HISTOGRAM",
    "Counter",
    "CountersLayout",
    "CountersReader",
    "CountersWriter",
    "FieldSpec",
    "Gauge",
    "Histogram",
    "SampleRing",
    "Table",
    "bucket_index",
    "counters_segment_name",
    "histogram_quantile",
    "log_buckets",
    "similarity_bin",
]
