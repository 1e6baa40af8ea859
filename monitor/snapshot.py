"""What the monitor shows, read apart from drawing: one frozen snapshot of an engine's counters.

:func:`read_snapshot` attaches to an engine's counters block by name, copies one consistent
snapshot and lets go. :class:`CountersSource` does the same repeatedly for the live dashboard:
it keeps the block attached, notices when the engine exits or is replaced by a new one (new
segment, new pid) and re-attaches by itself. Both only read: they never create, write or unlink
a segment. Nothing here imports Textual, so ``stratabatch-monitor --once`` stays light.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
import typing
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from stratabatch import Stats
from stratabatch.ipc.counters import (
    COUNTERS_PART,
    STATS_HISTOGRAMS,
    CountersReader,
    counters_segment_name,
    histogram_quantile,
)
from stratabatch.ipc.errors import IpcError, SegmentLayoutError, SegmentNotFoundError
from stratabatch.ipc.segment import NAME_PREFIX, pid_alive

SHM_DIR = "/dev/shm"
"""Where POSIX shared memory segments appear as files on Linux."""
STALL_AFTER_S = 3.0
"""An engine whose heartbeat is older than this is shown as stalled."""

Clock = Callable[[], int]
"""A wall clock in nanoseconds, ``time.time_ns`` unless a test injects a fixed one."""

_STATS_TYPES = typing.get_type_hints(Stats)
_STATS_FIELDS = tuple(f.name for f in dataclasses.fields(Stats))


def engine_alive(pid: int) -> bool:
    """Whether process ``pid`` runs: it exists and is not a zombie.

    A killed engine whose parent has not reaped it yet still answers ``kill(pid, 0)``; its
    ``/proc`` state says it has exited. Without ``/proc`` the signal check decides alone.
    """
    if not pid_alive(pid):
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return pid_alive(pid)
    # the command name may hold spaces or parens: the state follows the last ')'
    return stat[stat.rfind(b")") + 2 :][:1] not in (b"Z", b"X")


@dataclass(frozen=True)
class Histogram:
    """Bucket counts of one histogram of the block."""

    bounds: tuple[float, ...]
    """Bucket bounds; there is one more bucket than bounds."""
    counts: tuple[int, ...]
    """Observations per bucket."""
    closed: str = "right"
    """``"right"``: bucket ``i`` is ``(bounds[i-1], bounds[i]]``; ``"left"``:
    ``[bounds[i-1], bounds[i])``."""

    @property
    def total(self) -> int:
        """Number of observations."""
        return sum(self.counts)

    def quantile(self, q: float) -> float:
        """Estimated ``q`` quantile (NaN when empty)."""
        return histogram_quantile({"bounds": self.bounds, "counts": self.counts}, q)


@dataclass(frozen=True)
class History:
    """The block's per-second ring, oldest second first (columns of equal length)."""

    t_s: tuple[int, ...] = ()
    """End of each second, unix seconds."""
    requests: tuple[int, ...] = ()
    """Requests accepted during each second."""
    batches: tuple[int, ...] = ()
    """Handler calls made during each second."""
    duplicates: tuple[int, ...] = ()
    """Duplicates merged during each second."""
    errors: tuple[int, ...] = ()
    """Requests failed with an error during each second."""
    latency_ms_p99: tuple[float, ...] = ()
    """99th percentile latency of each second, ms."""
    queue_depth: tuple[int, ...] = ()
    """Queue depth at the end of each second."""


@dataclass(frozen=True)
class ClientRow:
    """One connected client process, from the block's ``clients`` table."""

    slot: int
    """The client's slot in the engine."""
    pid: int
    """The client's process id."""
    requests: int
    """Requests it sent."""
    errors: int
    """Its requests answered with an error."""
    timeouts: int
    """Its requests that timed out."""
    connected_at_ns: int
    """When it connected, ``time.time_ns()``."""


@dataclass(frozen=True)
class EngineSnapshot:
    """One consistent view of a running engine, as its counters block holds it."""

    name: str
    """The engine name asked for (``stratabatch-monitor NAME``)."""
    segment: str
    """The counters segment read, ``stratabatch-UID-NAME-counters``."""
    seq: int
    """Seqlock sequence of the copy: equal sequences mean equal data."""
    pid: int
    """The engine's process id, as the engine wrote it."""
    alive: bool
    """Whether the segment's creator process still runs."""
    started_at_ns: int
    """When the engine started, ``time.time_ns()``."""
    updated_at_ns: int
    """The engine's last update of the block (its heartbeat)."""
    taken_at_ns: int
    """When this snapshot was taken (the monitor's clock)."""
    info: Mapping[str, Any]
    """The engine's identity and options (``handler``, ``max_size``, ``dedup_strategy``...)."""
    stats: Stats
    """Every ``stratabatch.Stats`` field, as the engine last published them."""
    inflight_batches: int
    """Handler calls running now."""
    clients_connected: int
    """Client processes connected now."""
    dedup_threshold: float
    """Near-duplicate threshold in force (0.0 when the strategy has none)."""
    batch_size: Histogram
    """Handler calls by number of items."""
    latency_ms: Histogram
    """Requests by end-to-end latency, ms."""
    history: History
    """The per-second ring (up to the last 10 minutes)."""
    clients: tuple[ClientRow, ...]
    """Connected clients, by slot."""

    @property
    def uptime_s(self) -> float:
        """Seconds since the engine started."""
        return max(0.0, (self.taken_at_ns - self.started_at_ns) / 1e9)

    @property
    def heartbeat_age_s(self) -> float:
        """Seconds since the engine last updated the block."""
        return max(0.0, (self.taken_at_ns - self.updated_at_ns) / 1e9)

    @property
    def stalled(self) -> bool:
        """The engine runs but has not updated the block for :data:`STALL_AFTER_S`."""
        return self.alive and self.heartbeat_age_s > STALL_AFTER_S

    @property
    def status(self) -> str:
        """``"running"``, ``"stalled"`` (see :attr:`stalled`) or ``"exited"`` (the engine is
        gone and the block is what it left behind)."""
        if not self.alive:
            return "exited"
        return "stalled" if self.stalled else "running"

    def to_json(self) -> dict[str, Any]:
        """Plain data for ``--json``: the Stats fields by name, ``engine``, ``clients`` and the
        rest of the block (histograms, per-second history)."""
        out: dict[str, Any] = {
            "alive": self.alive,
            "status": self.status,
            "engine": {
                "name": self.name,
                "segment": self.segment,
                "pid": self.pid,
                "alive": self.alive,
                "stalled": self.stalled,
                "started_at_ns": self.started_at_ns,
                "updated_at_ns": self.updated_at_ns,
                "taken_at_ns": self.taken_at_ns,
                "uptime_s": round(self.uptime_s, 3),
                "heartbeat_age_s": round(self.heartbeat_age_s, 3),
                "info": dict(self.info),
            },
        }
        stats = dataclasses.asdict(self.stats)
        for f in STATS_HISTOGRAMS:
            stats[f] = list(stats[f])
        out.update(stats)
        out.update(
            inflight_batches=self.inflight_batches,
            clients_connected=self.clients_connected,
            dedup_threshold=self.dedup_threshold,
            batch_size_histogram=_hist_json(self.batch_size),
            latency_ms_histogram=_hist_json(self.latency_ms),
            seconds={k: list(v) for k, v in dataclasses.asdict(self.history).items()},
            clients=[dataclasses.asdict(c) for c in self.clients],
        )
        return _finite(out)


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: such floats become None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _hist_json(h: Histogram) -> dict[str, Any]:
    return {"bounds": list(h.bounds), "closed": h.closed, "counts": list(h.counts)}


def shm_path(name: str) -> str:
    """Where the counters segment of engine ``name`` appears in the file system."""
    return os.path.join(SHM_DIR, counters_segment_name(name))


def list_engines() -> list[str]:
    """Names of this user's engines that have a counters segment now (live or stale)."""
    prefix = f"{NAME_PREFIX}{os.getuid()}-"
    suffix = f"-{COUNTERS_PART}"
    try:
        entries = os.listdir(SHM_DIR)
    except OSError:
        return []
    return sorted(
        e[len(prefix) : -len(suffix)]
        for e in entries
        if e.startswith(prefix) and e.endswith(suffix) and len(e) > len(prefix + suffix)
    )


def build_snapshot(
    name: str,
    segment: str,
    raw: Mapping[str, Any],
    info: Mapping[str, Any],
    *,
    alive: bool,
    taken_at_ns: int,
) -> EngineSnapshot:
    """Turn a :meth:`CountersReader.snapshot` dict into an :class:`EngineSnapshot`.

    Fields missing from the block (an engine of an older layout), or of another kind than the
    engine writes (a damaged block), read as zero or empty.
    """
    values: dict[str, Any] = {}
    for fname in _STATS_FIELDS:
        v = raw.get(fname)
        if fname in STATS_HISTOGRAMS:
            hist = _histogram(v)
            values[fname] = hist.counts if hist.bounds else ()
        elif _STATS_TYPES[fname] is int:
            values[fname] = _int(v)
        else:
            values[fname] = _float(v)
    ring = raw.get("seconds")
    if isinstance(ring, History):
        history = ring
    elif isinstance(ring, Mapping):
        history = History(
            **{f.name: _column(ring.get(f.name)) for f in dataclasses.fields(History)}
        )
    else:
        history = History()
    rows = raw.get("clients")
    clients = tuple(
        ClientRow(
            slot=_int(row.get("slot")),
            pid=_int(row.get("pid")),
            requests=_int(row.get("requests")),
            errors=_int(row.get("errors")),
            timeouts=_int(row.get("timeouts")),
            connected_at_ns=_int(row.get("connected_at_ns")),
        )
        for row in (rows if isinstance(rows, list) else ())
        if isinstance(row, Mapping) and row.get("connected", 1)
    )
    return EngineSnapshot(
        name=name,
        segment=segment,
        seq=_int(raw.get("seq")),
        pid=_int(raw.get("engine_pid")),
        alive=alive,
        started_at_ns=_int(raw.get("started_at_ns")),
        updated_at_ns=_int(raw.get("updated_at_ns")),
        taken_at_ns=taken_at_ns,
        info=dict(info),
        stats=Stats(**values),
        inflight_batches=_int(raw.get("inflight_batches")),
        clients_connected=_int(raw.get("clients_connected")),
        dedup_threshold=_float(raw.get("dedup_threshold")),
        batch_size=_histogram(raw.get("batch_size")),
        latency_ms=_histogram(raw.get("latency_ms")),
        history=history,
        clients=clients,
    )


def _int(v: Any) -> int:
    """A block value as an integer: a float is truncated, anything else (NaN, a histogram where
    a counter belongs) is 0."""
    if isinstance(v, int):
        return int(v)
    if isinstance(v, float) and math.isfinite(v):
        return int(v)
    return 0


def _float(v: Any) -> float:
    """A block value as a float; anything but a number is 0.0."""
    return float(v) if isinstance(v, (int, float)) else 0.0


def _column(v: Any) -> tuple[Any, ...]:
    return (
        tuple(x for x in v if isinstance(x, (int, float))) if isinstance(v, (list, tuple)) else ()
    )


class _Decoder:
    """Decodes the words of a stats block into what :func:`build_snapshot` reads.

    Faster than :meth:`CountersReader.snapshot` for a monitor at 10 Hz: scalars are picked by
    index, the client table is scanned with numpy, and the per-second ring is decoded again
    only when its head moved (once a second).
    """

    def __init__(self, schema: Mapping[str, Any]) -> None:
        self.scalars: list[tuple[str, int, bool]] = []
        self.hists: list[tuple[str, int, tuple[float, ...], str]] = []
        self.ring: tuple[int, int, int, list[tuple[str, bool]]] | None = None
        self.table: tuple[int, int, list[tuple[str, bool]], str] | None = None
        for f in schema["fields"]:
            kind, name = f["kind"], f["name"]
            if kind in ("counter", "gauge"):
                self.scalars.append((name, f["offset"] // 8, f["type"] == "f64"))
            elif kind == "histogram":
                self.hists.append(
                    (
                        name,
                        f["count_offset"] // 8,
                        tuple(float(b) for b in f["bounds"]),
                        f.get("closed", "right"),
                    )
                )
            elif kind == "sample_ring" and name == "seconds":
                cols = [(c["name"], c["type"] == "f64") for c in f["columns"]]
                self.ring = (f["head_offset"] // 8, f["rows_offset"] // 8, f["capacity"], cols)
            elif kind == "table" and name == "clients":
                cols = [(c["name"], c["type"] == "f64") for c in f["columns"]]
                self.table = (f["rows_offset"] // 8, f["rows"], cols, f["index_name"])
        self._ring_head = -1
        self._ring_value = History()

    def decode(self, seq: int, words: np.ndarray) -> dict[str, Any]:
        """The block's fields as plain data (the shapes of ``CountersReader.snapshot``, except
        the ring, which is a :class:`History`)."""
        floats = words.view(np.float64)
        out: dict[str, Any] = {"seq": seq}
        for name, i, is_float in self.scalars:
            out[name] = float(floats[i]) if is_float else int(words[i])
        for name, base, bounds, closed in self.hists:
            out[name] = {
                "bounds": bounds,
                "closed": closed,
                "counts": words[base + 2 : base + 3 + len(bounds)].tolist(),
            }
        if self.ring is not None:
            head_i, base, size, cols = self.ring
            head = int(words[head_i])
            if head != self._ring_head:
                n = min(head, size)
                width = len(cols)
                block = words[base : base + size * width].reshape(size, width)
                block = block[np.arange(head - n, head) % size]
                columns = {
                    cname: tuple(
                        (block[:, i].view(np.float64) if is_float else block[:, i]).tolist()
                    )
                    for i, (cname, is_float) in enumerate(cols)
                }
                self._ring_value = History(
                    **{f.name: columns.get(f.name, ()) for f in dataclasses.fields(History)}
                )
                self._ring_head = head
            out["seconds"] = self._ring_value
        if self.table is not None:
            base, rows, cols, index = self.table
            width = len(cols)
            block = words[base : base + rows * width].reshape(rows, width)
            used = np.flatnonzero(block.any(axis=1))
            out["clients"] = [
                {
                    index: int(r),
                    **{
                        c: (
                            float(block[r, i : i + 1].view(np.float64)[0])
                            if f
                            else int(block[r, i])
                        )
                        for i, (c, f) in enumerate(cols)
                    },
                }
                for r in used.tolist()
            ]
        return out


def _histogram(h: Any) -> Histogram:
    if not isinstance(h, Mapping):
        return Histogram((), (0,))
    bounds, counts = _column(h.get("bounds")), _column(h.get("counts"))
    if len(counts) != len(bounds) + 1:
        return Histogram((), (0,))
    closed = h.get("closed", "right")
    return Histogram(
        tuple(float(b) for b in bounds),
        tuple(_int(c) for c in counts),
        closed if closed in ("left", "right") else "right",
    )


class MidUpdateError(TimeoutError):
    """The counters block stayed in the middle of an update: no consistent copy exists.

    Its writer died inside an update (``alive`` is False) or hangs in one.

    Attributes:
        pid: The engine's process id (the segment's creator).
        alive: Whether that process still runs.
    """

    def __init__(self, message: str, *, pid: int, alive: bool) -> None:
        super().__init__(message)
        self.pid = pid
        self.alive = alive


def read_snapshot(name: str = "default", *, clock: Clock = time.time_ns) -> EngineSnapshot:
    """Attach to engine ``name``'s counters block, take one snapshot, and let go.

    The snapshot of a block whose engine has exited (killed, so it could not remove the block)
    is returned too, with ``alive`` False.

    Args:
        name: The engine's name (``stratabatch-engine --name``).
        clock: Wall clock in ns, for ``uptime_s`` and ``heartbeat_age_s``.

    Raises:
        SegmentNotFoundError: No engine of that name has a counters block.
        SegmentLayoutError: The block is of another layout version or damaged.
        MidUpdateError: The block stayed inside an update for a second (a ``TimeoutError``).
        ValueError: ``name`` is not a valid engine name.
    """
    reader = CountersReader.attach(name)
    try:
        seg = reader.segment
        assert seg is not None
        alive = engine_alive(seg.owner_pid)
        try:
            seq, words = reader.read_words()
        except TimeoutError as exc:
            raise MidUpdateError(
                f"{exc} (engine pid {seg.owner_pid}: {'running' if alive else 'exited'})",
                pid=seg.owner_pid,
                alive=alive,
            ) from None
        try:
            raw = _Decoder(reader.schema).decode(seq, words)
            return build_snapshot(
                name, seg.name, raw, reader.info, alive=alive, taken_at_ns=clock()
            )
        except Exception as exc:  # any block contents: a documented error, never another
            raise SegmentLayoutError(
                f"the counters block holds what the monitor cannot read "
                f"({type(exc).__name__}: {exc})"
            ) from exc
    finally:
        reader.close()


@dataclass(frozen=True)
class Waiting:
    """Why there is no snapshot: what the monitor waits for and where it looks."""

    name: str
    """The engine name waited for."""
    path: str
    """The counters segment's path."""
    reason: str
    """What was found there (nothing, a dead engine's block, an unreadable block)."""
    engines: tuple[str, ...] = ()
    """Other engine names that have a counters block now."""


class CountersSource:
    """Snapshots of engine ``name`` for a live view: attach, follow restarts, wait when gone.

    Call :meth:`poll` at each refresh; it returns an :class:`EngineSnapshot` or a
    :class:`Waiting`. It never raises for a missing, dead, restarted or damaged engine. An
    engine that exited without removing its block (killed) gives its last snapshot with
    ``alive`` False, as :func:`read_snapshot` does, until a new engine of that name starts.

    Args:
        name: The engine's name.
        clock: Wall clock in ns (injected by tests for a fixed uptime).
    """

    def __init__(self, name: str = "default", *, clock: Clock = time.time_ns) -> None:
        counters_segment_name(name)  # a bad name is the caller's error, raised now
        self.name = name
        self.path = shm_path(name)
        self._clock = clock
        self._reader: CountersReader | None = None
        self._decoder: _Decoder | None = None
        self._ident: tuple[int, int] | None = None
        self._last: EngineSnapshot | None = None
        self._others: tuple[str, ...] = ()
        self._others_at = 0.0

    @property
    def attached(self) -> bool:
        """Whether a block is attached now."""
        return self._reader is not None

    def _detach(self) -> None:
        if self._reader is not None:
            self._reader.close()
        self._reader = None
        self._ident = None
        self._last = None

    def _waiting(self, reason: str) -> Waiting:
        now = time.monotonic()
        if now - self._others_at > 1.0:
            self._others = tuple(n for n in list_engines() if n != self.name)
            self._others_at = now
        return Waiting(self.name, self.path, reason, self._others)

    def poll(self) -> EngineSnapshot | Waiting:
        """Take a snapshot, or say why there is none."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._detach()
            return self._waiting("no counters segment: no engine of that name is running")
        except OSError as exc:
            self._detach()
            return self._waiting(f"cannot read the counters segment: {exc.strerror}")
        ident = (st.st_dev, st.st_ino)
        if self._reader is not None and ident != self._ident:
            self._detach()  # a new engine made a new segment under the same name
        if self._reader is None:
            try:
                reader = CountersReader.attach(self.name)
            except SegmentNotFoundError:
                return self._waiting("no counters segment: no engine of that name is running")
            except SegmentLayoutError as exc:
                return self._waiting(f"the segment is not a readable counters block ({exc})")
            except (IpcError, OSError, ValueError) as exc:
                return self._waiting(f"cannot attach: {exc}")
            except Exception as exc:  # any block contents: a reason on screen, no traceback
                return self._waiting(
                    f"the segment is not a readable counters block ({type(exc).__name__}: {exc})"
                )
            try:
                decoder = _Decoder(reader.schema)
            except Exception as exc:
                reader.close()
                return self._waiting(
                    f"the segment is not a readable counters block ({type(exc).__name__}: {exc})"
                )
            self._reader, self._decoder, self._ident = reader, decoder, ident
        reader = self._reader
        seg = reader.segment
        assert seg is not None
        alive = engine_alive(seg.owner_pid)
        try:
            seq, words = reader.read_words(timeout=0.05)
        except TimeoutError:
            if not alive:
                return self._waiting(
                    f"the engine that made the block (pid {seg.owner_pid}) "
                    "died in the middle of an update; waiting for a new one"
                )
            return self._waiting("the engine stopped in the middle of an update")
        now = self._clock()
        last = self._last
        if last is not None and last.seq == seq and last.alive == alive:
            snap = dataclasses.replace(last, taken_at_ns=now)
        else:
            assert self._decoder is not None
            try:
                raw = self._decoder.decode(seq, words)
                snap = build_snapshot(
                    self.name, seg.name, raw, reader.info, alive=alive, taken_at_ns=now
                )
            except Exception as exc:  # any block contents: a reason on screen, no traceback
                self._detach()
                return self._waiting(
                    f"the counters block holds what the monitor cannot read "
                    f"({type(exc).__name__}: {exc})"
                )
        self._last = snap
        return snap

    def close(self) -> None:
        """Let go of the block."""
        self._detach()


RATE_WINDOW_S = 10.0
"""The window of every rate the dashboard shows (req/s, batches/s, per-client req/s, the red
failure highlights): the same 10 s as ``Stats.requests_per_second``, which ``--once`` shows."""
MIN_RATE_SPAN_S = 1.0
"""Rates are shown once the monitor's samples span this long (``-`` before): a rate over the
first tenth of a second after a start or a reset says little."""


@dataclass
class Rates:
    """Rates the monitor measures itself between refreshes, over one sliding window."""

    requests_per_s: float | None = None
    """Requests accepted per second (None until the samples span :data:`MIN_RATE_SPAN_S`)."""
    batches_per_s: float | None = None
    """Handler calls per second."""
    clients_per_s: dict[int, float] = field(default_factory=dict)
    """Requests per second by client slot."""
    grew: frozenset[str] = frozenset()
    """Failure counters (errors, timeouts, rejected, dropped) that grew within the window."""
    window_s: float = RATE_WINDOW_S
    """The window the rates are measured over (what the screen's labels say)."""


class RateTracker:
    """Turns successive snapshots into rates over the last ``window_s`` seconds.

    Every rate is a difference of the block's counters between the oldest snapshot within the
    window and the newest, over the time between them, so each rate on screen has the same
    window, and a rate falls to 0 at the first refresh ``window_s`` after the counters stopped
    moving. :meth:`reset` drops the baseline (the ``r`` key), so rates restart from the next
    snapshots.
    """

    WORSE = ("errors", "timeouts", "rejected", "dropped")

    def __init__(self, window_s: float = RATE_WINDOW_S) -> None:
        if not window_s > 0:
            raise ValueError(f"window_s must be > 0, got {window_s}")
        self.window_s = window_s
        self._samples: deque[tuple[float, int, int, dict[int, tuple[int, int]], tuple[int, ...]]]
        self._samples = deque()

    def reset(self) -> None:
        """Forget every sample: rates and highlights start again from the next snapshot."""
        self._samples.clear()

    def update(self, snap: EngineSnapshot) -> Rates:
        """Add a snapshot and return the rates over the window."""
        t = snap.taken_at_ns / 1e9
        s = snap.stats
        clients = {c.slot: (c.pid, c.requests) for c in snap.clients}
        worse = tuple(getattr(s, n) for n in self.WORSE)
        samples = self._samples
        if samples and t < samples[-1][0]:
            samples.clear()  # the clock went back
        samples.append((t, s.total_requests, s.total_batches, clients, worse))
        # the oldest sample kept is the baseline: none older than the window
        while len(samples) > 1 and t - samples[0][0] > self.window_s * (1 + 1e-9):
            samples.popleft()
        t0, req0, bat0, clients0, worse0 = samples[0]
        grew = frozenset(n for n, a, b in zip(self.WORSE, worse0, worse, strict=True) if b > a)
        dt = t - t0
        if dt < min(MIN_RATE_SPAN_S, self.window_s) or s.total_requests < req0:
            return Rates(grew=grew, window_s=self.window_s)
        per_client = {}
        for slot, (pid, n) in clients.items():
            old = clients0.get(slot)
            if old is not None and old[0] == pid and n >= old[1]:
                per_client[slot] = (n - old[1]) / dt
        return Rates(
            (s.total_requests - req0) / dt,
            max(0, s.total_batches - bat0) / dt,
            per_client,
            grew,
            self.window_s,
        )


__all__ = [
    "ClientRow",
    "CountersSource",
    "EngineSnapshot",
    "Histogram",
    "History",
    "MIN_RATE_SPAN_S",
    "MidUpdateError",
    "RATE_WINDOW_S",
    "RateTracker",
    "Rates",
    "Waiting",
    "build_snapshot",
    "engine_alive",
    "list_engines",
    "read_snapshot",
    "shm_path",
]
