"""The engine process: one batching core serving many client processes over shared memory.

``stratabatch-engine`` (see :mod:`stratabatch.cli`) builds an :class:`Engine` and runs it on
uvloop. The engine owns every shared-memory object of its name and drives the SAME
:class:`~stratabatch.core.Core` as :class:`~stratabatch.BatchProcessor`; what it adds is
transport:

* **Rendezvous** (:mod:`stratabatch.slots`). The control segment claims the name; a Unix
  socket (:func:`~stratabatch.wire.socket_path`) admits clients after a handshake (SO_PEERCRED,
  versions, a free slot), each with its own ring segment (request ring then response ring) and
  two eventfd doorbells passed with SCM_RIGHTS: the engine's (one for all clients) and the
  client's own. The socket then stays open as the liveness channel both ways; the engine also
  watches the client's pid with a pidfd, so a forked child that inherited the socket cannot
  hide its parent's death.
* **Intake.** The engine's doorbell wakes a reader callback that schedules one pass over all
  request rings. A pass drains every ring in batches (bounded by the room the core has under
  ``on_full="wait"``, so a full queue leaves requests in the rings and the client's own
  ``on_full`` applies), decodes each frame, builds a core ``Request`` whose sink is the
  client and whose index is the request id, and submits it. After an active pass the engine
  re-checks its rings once per loop iteration for ``spin_us`` before it raises its asleep
  flags (never spinning inside a callback); then it sleeps on the doorbell.
* **Outcomes.** The core's ``on_complete`` appends ``(id, status, value, meta)`` to the
  client's outbox; once per loop iteration the outboxes are encoded and written with one
  ``push_many`` per client. A full response ring keeps the rest and the producer flag raised;
  the client's drain rings the engine's doorbell.
* **Faults.** A frame that does not decode is answered with an error when its id can be read,
  otherwise (and for a corrupt ring or a broken socket message) that client is disconnected.
  A client's death abandons its pending requests in the core (shared work goes on for the
  others), frees its slot and removes its ring segment.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from stratabatch.ipc.arena import Arena
from stratabatch.ipc.doorbell import Doorbell
from stratabatch.ipc.errors import FrameError, FrameTooLargeError
from stratabatch.ipc.frames import (
    FrameDecoder,
    FrameEncoder,
    FrameLimits,
    peek_frame_id,
)
from stratabatch.ipc.frames import Request as DecodedRequest
from stratabatch.ipc.segment import Segment, reclaim_stale, segment_name
from stratabatch.ipc.wait import DEFAULT_SPIN_US

from .config import BatchConfig
from .core import Core
from .errors import (
    ConfigError,
    EngineStartError,
    EngineUnavailableError,
    HandlerError,
    InvalidRequestError,
    QueueFullError,
    StratabatchError,
)
from .exitcodes import EXIT_FORCED, EXIT_OK, EXIT_SHARED_MEMORY, EXIT_SOCKET
from .publish import Publisher, engine_info
from .records import Request
from .requests import build_request
from .slots import STATE_RUNNING, STATE_STOPPING, Client, Slots
from .wire import (
    ARENA_MAGIC,
    STATUS_OK,
    check_name,
    error_to_wire,
    pack_message,
)

log = logging.getLogger("stratabatch.engine")

ARENA_ROWS_PER_SLOT = 64
"""Arena rows each client slot owns: vectors it may have in flight at once."""
FRAME_OVERHEAD = 64
"""Bytes a frame adds around its payload or result at most: a request frame's array header,
id, priority, deadline and row take at most 29, a response frame's header and merge meta 48."""

# control segment words (int64): engine state, then 4 words per slot
_STATE, _MAX_CLIENTS, _PID, _STARTED = 0, 1, 2, 3

_ENGINE_ROWS = 16
_MAX_DRAIN = 4096  # requests per client per pass: one client cannot starve the others
_DEAF_S = 0.002  # sleep deaf to arrivals when the core looks again within this (see _sleep)
_DENSE_SPINS = 4  # arrivals this many spin windows apart or closer count as dense
_MAX_BACKLOG = 4096  # answers waiting for room in a response ring before intake pauses
_TICK_S = 0.1
_PUBLISH_S = 0.02  # the counters block's totals are published at most this often


@contextlib.contextmanager
def _shared_memory_errors() -> Iterator[None]:
    """Turn a failure to make a segment into the start-up error that says so."""
    try:
        yield
    except OSError as exc:
        raise EngineStartError(
            f"cannot create shared memory in /dev/shm: {exc}", status=EXIT_SHARED_MEMORY
        ) from None


def ring_capacity(frame_limit: int) -> int:
    """The data bytes of one ring whose frames may be ``frame_limit`` bytes (a power of two).

    Both rings of a client get this capacity, from :func:`frame_limits`' frame size, which
    holds a request of ``max_request_bytes`` and a result of ``max_result_bytes``.
    """
    need = 2 * (frame_limit + 16)
    cap = 1 << 16
    while cap < need:
        cap <<= 1
    return cap


def frame_limits(config: BatchConfig) -> FrameLimits:
    """The frame limits of an engine, derived from the request and result rules.

    A request frame carries a payload of at most ``max_request_bytes`` and a response frame a
    result of at most ``max_result_bytes`` (both checked exactly, see
    :class:`~stratabatch.ipc.frames.FrameEncoder`); a frame adds :data:`FRAME_OVERHEAD` bytes
    and one level of nesting (its own array) to what :mod:`stratabatch.requests` allows. No
    str, bin, array or map can be longer than the bytes that carry it, so those lengths are
    bounded by the frame size. An error response gets at least 16 KiB whatever the options
    (its message is not a result), which the smallest ring holds anyway.
    """
    from .requests import MAX_DEPTH

    n = max(config.max_request_bytes, config.max_result_bytes, 16 * 1024) + FRAME_OVERHEAD
    return FrameLimits(
        max_frame_bytes=n,
        max_str_len=n,
        max_bin_len=n,
        max_array_len=n,
        max_map_len=n,
        max_depth=MAX_DEPTH + 1,
        max_request_bytes=config.max_request_bytes,
        max_result_bytes=config.max_result_bytes,
    )


class Engine:
    """A stratabatch engine serving one name.

    Args:
        handler: The batch handler (async or sync), as for BatchProcessor.
        config: The batching options.
        name: The engine name (socket and segment names derive from it).
        max_clients: Client slots (processes connected at once).
        spin_us: Microseconds the engine keeps re-checking its rings after activity before it
            sleeps on its doorbell.
        metrics_port: Serve Prometheus metrics on this port (0: off; needs the ``metrics``
            extra, see docs/metrics.md).
        metrics_host: The address the metrics port binds (loopback by default).
    """

    def __init__(
        self,
        handler: Callable[..., Any],
        config: BatchConfig,
        *,
        name: str = "default",
        max_clients: int = 64,
        spin_us: float = DEFAULT_SPIN_US,
        metrics_port: int = 0,
        metrics_host: str = "127.0.0.1",
    ) -> None:
        self.name = check_name(name)
        self._metrics_at = _metrics_address(metrics_port, metrics_host)
        self._metrics: Any = None
        if (
            isinstance(max_clients, bool)
            or not isinstance(max_clients, int)
            or not 1 <= max_clients <= 4096
        ):
            raise StratabatchError(f"max_clients must be an int in [1, 4096], got {max_clients!r}")
        self.config = config
        self.max_clients = max_clients
        self._slots = Slots(self.name, max_clients)
        self.socket_path = self._slots.socket_path
        if (
            isinstance(spin_us, bool)
            or not isinstance(spin_us, (int, float))
            or not 0 <= spin_us <= 100_000
        ):
            raise StratabatchError(f"spin_us must be in [0, 100000], got {spin_us!r}")
        self._spin_s = spin_us / 1e6
        self._user_handler = handler
        self.core = Core(config, self._on_complete, handler)
        # each handler call's size published, and a pass over the rings (a batch leaving the
        # queue makes room): the core's hook, the handler itself stays the user's
        self.core.on_batch_start = self._batch_started
        self.core.on_look = self._on_look
        self.limits = frame_limits(config)
        self._capacity = ring_capacity(self.limits.max_frame_bytes)
        self._max_frame = self._capacity // 2 - 8
        self._encoder = FrameEncoder(self.limits)
        self._decoder = FrameDecoder(self.limits)
        self._clients = self._slots.clients  # by slot
        self._loop: asyncio.AbstractEventLoop | None = None
        self._publisher: Publisher | None = None
        self._arena_seg: Segment | None = None
        self._arena: Arena | None = None
        self._dim = 0
        self._bell: Doorbell | None = None
        self._poll_scheduled = False
        self._flush_scheduled = False
        self._next_first = 0  # the ring a pass serves first turns (fair admission)
        self._active_until = 0.0
        self._deaf = False  # asleep with the request rings' flags down (see _sleep)
        self._last_work = 0.0  # perf_counter() of the last pass that took requests
        self._publish_later: asyncio.TimerHandle | None = None
        self._stopping = False
        self._stopped: asyncio.Event | None = None
        self._force: asyncio.Event | None = None
        self.forced = False
        """Whether a second stop signal cut the shutdown short (exit status 6)."""
        self._tick_handle: asyncio.TimerHandle | None = None
        self._published_total = -1
        self._published_done = -1
        self._published_batches = -1
        self._published_at = 0.0
        self._uses_vectors = False

    # ----------------------------------------------------------------- handler

    def _batch_started(self, size: int) -> None:
        if self._publisher is not None:
            self._publisher.batch(size)
        self._schedule_poll()

    # ----------------------------------------------------------------- start

    async def start(self) -> None:
        """Create the segments and the socket, warm the kernels, and start serving.

        Raises:
            EngineUnavailableError: Another live engine already serves this name.
        """
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._stopped = asyncio.Event()
        self._force = asyncio.Event()
        self._slots.claim()
        try:
            await self._start_rest(loop)
        except BaseException:
            self._teardown()
            raise

    async def _start_rest(self, loop: asyncio.AbstractEventLoop) -> None:
        for stale in reclaim_stale(self.name):
            log.info("reclaimed stale segment %s (its engine died)", stale)
        from .warm import Notice, load_engine_kernels

        # one line before kernels compile (a first start: seconds), one when done (stratabatch.warm)
        notice = Notice(self.config, log, logging.INFO, engine=True)
        with _shared_memory_errors():
            self._publisher = Publisher(
                self.name, self.max_clients, engine_info(self.name, self._user_handler, self.config)
            )
        self.core.warm_log = (log, logging.INFO)  # a background compile's lines: ours
        if self._metrics_at is not None:
            self._metrics = _serve_metrics(self.name, *self._metrics_at)
        self.core.bind(loop)
        load_engine_kernels()  # the rings' fence and the counters' atomics, never on a live path
        await self.core.warm_up()
        notice.done()
        try:
            self._publisher.threshold = float(self.core.threshold())
        except Exception:  # a broken embedder shows on the first pass, not here
            pass
        c = self.config
        self._uses_vectors = c.enable_dedup and (
            c.dedup_strategy != "exact" or c.dedup_function is not None
        )
        if self._uses_vectors and c.dedup_function is None:
            dim = self.core.vector_dim()
            self._dim = dim if isinstance(dim, int) and dim > 0 else 0
        if self._dim:
            geometry = {
                "dim": self._dim,
                "slots": self.max_clients,
                "rows_per_slot": ARENA_ROWS_PER_SLOT,
                "engine_rows": _ENGINE_ROWS,
            }
            with _shared_memory_errors():
                self._arena_seg = Segment.create(
                    segment_name(self.name, "arena"),
                    Arena.nbytes(**geometry),
                    magic=ARENA_MAGIC,
                    version=1,
                )
            self._arena = Arena.create(self._arena_seg.buf, **geometry)
        self._bell = Doorbell.create()
        loop.add_reader(self._bell.fileno(), self._on_bell)
        welcome = {
            "arena": self._arena_seg.name if self._arena_seg is not None else None,
            "dim": self._dim,
            "counters": segment_name(self.name, "counters"),
            "control": segment_name(self.name, "control"),
            "limits": dataclasses.asdict(self.limits),
            "max_request_bytes": c.max_request_bytes,
            "max_result_bytes": c.max_result_bytes,
            "dedup_key": c.dedup_key,
            "on_full": c.on_full,
            "uses_vectors": self._uses_vectors,
            "processing_timeout": c.processing_timeout,
        }
        self._slots.listen(
            loop,
            bell_fd=self._bell.fileno(),
            capacity=self._capacity,
            max_frame=self._max_frame,
            welcome=welcome,
            on_join=self._on_join,
        )
        self._slots.set_state(STATE_RUNNING)
        self._tick_handle = loop.call_later(_TICK_S, self._tick)

    # ----------------------------------------------------------------- clients

    def _on_join(self, client: Client) -> None:
        loop = self._loop
        assert loop is not None
        loop.add_reader(client.sock.fileno(), self._on_client_socket, client)
        if client.pidfd >= 0:
            loop.add_reader(client.pidfd, self._on_client_exit, client)
        if self._publisher is not None:
            self._publisher.client(
                client.slot,
                pid=client.pid,
                connected=1,
                requests=0,
                errors=0,
                timeouts=0,
                connected_at_ns=client.connected_at_ns,
            )
        log.info(
            "client joined: pid %d, slot %d (%d connected)",
            client.pid,
            client.slot,
            len(self._clients),
        )
        self._schedule_poll()

    def _on_client_exit(self, client: Client) -> None:
        self._drop_client(client, "process exited")

    def _on_client_socket(self, client: Client) -> None:
        try:
            data = client.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._drop_client(client, f"socket error: {exc}")
            return
        if not data:
            self._drop_client(client, "disconnected")
            return
        try:
            msgs = client.rbuf.feed(data)
        except ValueError as exc:
            self._drop_client(client, f"broken socket message: {exc}")
            return
        for msg in msgs:
            if msg.get("op") == "stats":
                snap = dataclasses.asdict(self.core.snapshot())
                snap["merge_similarity_histogram"] = list(snap["merge_similarity_histogram"])
                reply = {
                    "op": "stats",
                    "seq": msg.get("seq"),
                    "stats": snap,
                    "clients": len(self._clients),
                }
                try:
                    client.sock.send(pack_message(reply))
                except OSError as exc:
                    self._drop_client(client, f"socket error: {exc}")
                    return
            else:
                self._drop_client(client, f"unknown socket message {msg.get('op')!r}")
                return

    def _drop_client(self, client: Client, reason: str) -> None:
        """Forget a client: abandon its pending requests, free its slot and segment."""
        if client.closed:
            return
        client.closed = True
        pending = list(client.pending.values())
        client.pending.clear()
        for req in pending:
            self.core.abandon(req)
        self._slots.release(client)
        if self._publisher is not None:
            self._publisher.client_left(client.slot)
        log.info(
            "client left: pid %d, slot %d (%s; %d pending requests dropped)",
            client.pid,
            client.slot,
            reason,
            len(pending),
        )

    # ----------------------------------------------------------------- intake

    def _on_bell(self) -> None:
        assert self._bell is not None
        self._bell.clear()
        self._schedule_poll()

    def _schedule_poll(self) -> None:
        if not self._poll_scheduled and self._loop is not None:
            self._poll_scheduled = True
            self._loop.call_soon(self._poll)

    def _poll(self) -> None:
        """One pass: drain every request ring, submit, write responses, then spin or sleep.

        Room is shared fairly: when ``on_full="wait"`` leaves less room in the queue than the
        rings hold, each non-empty ring gets an equal share of it, and the ring served first
        changes from pass to pass, so a client that keeps its ring full never starves the
        others (their requests wait in their rings, bounded by their callers' timeouts).
        """
        self._poll_scheduled = False
        if self._loop is None:
            return
        self._deaf = False
        got = self._intake()
        self._flush()
        # An adaptive spin, on a fine clock (uvloop's loop.time() moves in whole
        # milliseconds): while arrivals are dense (the previous pass with work was within a
        # few spin windows), look again on each loop iteration for spin_us; else sleep on
        # the doorbell at once, even right after a pass that took work. A trickle of
        # requests then costs one wake-up each, not a spin or an extra loop iteration each.
        now = time.perf_counter()
        if got:
            dense = now - self._last_work < _DENSE_SPINS * self._spin_s
            self._last_work = now
            if dense:
                self._active_until = now + self._spin_s
                self._schedule_poll()
            else:  # a lone arrival: sleep now (what came meanwhile is seen by _sleep)
                self._sleep()
        elif now < self._active_until:
            self._schedule_poll()  # spin: look again on the next loop iteration
        else:
            self._sleep()
        self._publish_totals()

    def _intake(self) -> int:
        """Drain the request rings into the core, each non-empty ring its fair share of the
        room (see :meth:`_poll`); returns how many requests were taken."""
        got = 0
        c = self.config
        core = self.core
        clients = list(self._clients.values())
        if len(clients) > 1:
            start = self._next_first % len(clients)
            self._next_first = start + 1
            clients = clients[start:] + clients[:start]
        ready: list[Client] = []
        for client in clients:
            ring = client.requests
            if client.closed or ring is None:
                continue
            if client.frames or client.outbox:
                self._flush_client(client)
            if self._stopping or len(client.frames) > _MAX_BACKLOG:
                continue  # a client that does not read its answers gets no new work in
            if client.inbox or not ring.empty():
                ready.append(client)
        room = c.max_queue - core.waiting if c.on_full == "wait" else _MAX_DRAIN * len(ready)
        for i, client in enumerate(ready):
            if client.closed:  # (a request of an earlier client cannot drop it; cheap to check)
                continue
            # an equal share of what is left, rounded up: the first rings of this pass's
            # order get the remainder, and that order turns every pass
            share = -(-room // (len(ready) - i)) if room > 0 else 0
            budget = min(_MAX_DRAIN, share)
            if budget <= 0:
                break  # the queue is full: the requests wait in their rings
            inbox = client.inbox
            if len(inbox) < budget:
                self._take_frames(client, budget)
            n = self._admit(client, budget)
            got += n
            room -= n
        return got

    def _sleep(self) -> None:
        """Raise every ring's asleep flag; if one got a frame meanwhile, poll again instead.

        Deaf sleep: when the core looks again soon anyway (a window ends within
        :data:`_DEAF_S`), the request rings' flags stay down, so clients push without ringing,
        and that look reads the rings first (:meth:`_on_look`). At a moderate rate the engine
        then wakes once per window, not once per arrival, and clients save the doorbell."""
        c = self.config
        core = self.core
        full = c.on_full == "wait" and core.waiting >= c.max_queue
        at = core.next_look_at
        loop = self._loop
        assert loop is not None
        deaf = at is not None and not self._stopping and not full and at - loop.time() <= _DEAF_S
        for client in self._clients.values():
            if client.closed or client.requests is None:
                continue
            if (
                client.frames
                and client.responses is not None
                and not client.responses.producer_sleep_check(len(client.frames[0]))
            ):
                self._schedule_poll()
                return
            if not full and client.inbox:
                self._schedule_poll()  # decoded requests wait for admission
                return
            if deaf:
                client.requests.consumer_awake()  # (a flag left up from an earlier sleep)
            elif not full and not client.requests.consumer_sleep_check():
                self._schedule_poll()
                return
        self._deaf = deaf

    def _on_look(self) -> None:
        """The core is about to look at its queue: if the engine sleeps deaf, read the rings
        now (what arrived joins this look), then decide again how to sleep."""
        if self._deaf:
            self._deaf = False
            self._intake()
            self._schedule_poll()

    def _take_frames(self, client: Client, budget: int) -> None:
        """Drain frames of ``client``'s request ring into its inbox until it holds ``budget``
        requests (or the ring is empty), decoding each frame (single or batch) once. Frames
        are taken one at a time, so what the queue has no room for stays in the ring (the
        client's backpressure) but for the rest of the last frame taken. A frame nothing can
        be answered from drops the client."""
        ring = client.requests
        assert ring is not None
        decode = self._decoder.requests
        inbox = client.inbox
        while len(inbox) < budget and not client.closed:
            try:
                frames = ring.drain(1)
            except FrameError as exc:
                self._drop_client(client, f"corrupt request ring: {exc}")
                return
            if not frames:
                return
            data = frames[0]
            try:
                items = decode(data)
            except FrameError as exc:
                rid = peek_frame_id(data)
                if rid is None:
                    self._drop_client(client, f"unreadable request frame: {exc}")
                    return
                items = [exc]
                exc.id = rid  # type: ignore[attr-defined]
            except Exception as exc:  # a bug of ours: that frame fails, not the engine
                self._internal_error(client, peek_frame_id(data), exc, "decoding a frame")
                continue
            # the size a single frame's payload is bounded by (a batch's were checked whole)
            size = len(data) if len(items) == 1 else 0
            for item in items:
                inbox.append((item, size))

    def _admit(self, client: Client, budget: int) -> int:
        """Hand up to ``budget`` decoded requests of ``client``'s inbox to the core; returns
        how many were taken. The common request (no deadline, no arena row, a new id, a
        mapping payload, room in the queue) takes the short way: its record is made here and
        the run of them goes to the core at once (:meth:`Core.submit_many`); any other goes
        through :meth:`_accept`, in arrival order, with the same outcome either way."""
        inbox = client.inbox
        pending = client.pending
        core = self.core
        config = self.config
        dim = self._dim or None
        key = config.dedup_key
        # an "embedding" in a payload is read (and checked) only by near dedup
        vectors = config.enable_dedup and (
            config.dedup_strategy != "exact" or config.dedup_function is not None
        )
        room = config.max_queue - core.waiting  # (make_room's own test, for the whole run)
        run: list[Request] = []
        n = 0
        while inbox and n < budget and not client.closed:
            n += 1
            entry = inbox.popleft()
            fr = entry[0]
            if (
                room <= 0
                or type(fr) is not DecodedRequest
                or fr.deadline_ns
                or fr.arena_row >= 0
                or fr.id in pending
                or type(fr.payload) is not dict
            ):
                if run:
                    self._submit_run(client, run)
                    run = []
                self._accept(client, entry)
                room = config.max_queue - core.waiting
                continue
            payload = fr.payload
            rid = fr.id
            if vectors and "embedding" in payload:
                try:
                    req = build_request(
                        payload, config, rid, client, fr.priority, None, dim, entry[1]
                    )
                except (StratabatchError, ValueError) as exc:
                    self._answer_error(client, rid, exc)
                    continue
            else:  # build_request's record of a checked payload without a vector
                text = payload.get(key)
                req = Request(
                    payload,
                    fr.priority,
                    None,
                    client,
                    rid,
                    text if type(text) is str or isinstance(text, str) else None,
                    None,
                    entry[1],
                )
            pending[rid] = req  # (a twin id later in the run takes the long way)
            run.append(req)
            room -= 1
        if run:
            self._submit_run(client, run)
        return n

    def _submit_run(self, client: Client, run: list[Request]) -> None:
        """Queue ``run`` (records already in ``client.pending``); if the core refuses, each
        of them gets the refusal."""
        try:
            self.core.submit_many(run)
        except Exception as exc:
            for req in run:
                del client.pending[req.index]
                if isinstance(exc, (StratabatchError, ValueError)):
                    self._answer_error(client, req.index, exc)
                else:  # a bug of ours: these requests fail, not the engine
                    self._internal_error(client, req.index, exc, "on a request")
            return
        client.counts[0] += len(run)
        client.dirty = True

    def _accept(self, client: Client, entry: tuple[Any, int]) -> None:
        """Hand one decoded request to the core (or answer it with an error)."""
        fr, size = entry
        if isinstance(fr, FrameError):
            rid = getattr(fr, "id", None)
            if rid is None:
                self._drop_client(client, f"unreadable request frame: {fr}")
            elif rid not in client.pending:
                self._answer_error(
                    client, rid, InvalidRequestError(f"malformed request frame: {fr}")
                )
            return
        try:
            self._submit(client, fr, size)
        except Exception as exc:  # a bug of ours: that request fails, not the engine
            self._internal_error(client, fr.id, exc, "on a request")

    def _internal_error(self, client: Client, rid: int | None, exc: Exception, where: str) -> None:
        """A bug of ours met a client's request ``rid``: log it, and answer that request with
        an error unless it has no readable id or already waits for its answer."""
        log.error("internal error %s of client pid %d: %r", where, client.pid, exc)
        if rid is not None and rid not in client.pending:
            self._answer_error(
                client,
                rid,
                StratabatchError(f"internal error in the engine: {type(exc).__name__}: {exc}"),
            )

    def _submit(self, client: Client, fr: Any, size: int) -> None:
        rid = fr.id
        if rid in client.pending:
            self._answer_error(
                client,
                rid,
                InvalidRequestError(f"request id {rid} is already pending for this client"),
            )
            return
        payload = fr.payload
        if type(payload) is not dict:
            self._answer_error(
                client,
                rid,
                InvalidRequestError(f"a request must be a mapping, got {type(payload).__name__}"),
            )
            return
        core = self.core
        try:
            if fr.arena_row >= 0:
                payload["embedding"] = self._arena_vector(client, fr.arena_row)
            deadline = None
            if fr.deadline_ns:
                deadline = core.deadline_from_monotonic_ns(fr.deadline_ns)
            # the frame's size bounds the payload's: the client checked the exact rule
            req = build_request(
                payload,
                self.config,
                index=rid,
                sink=client,
                priority=fr.priority,
                deadline=deadline,
                dim=self._dim or None,
                checked=size,
            )
            if not core.make_room(fr.priority):
                raise QueueFullError(f"queue full (max_queue={self.config.max_queue})")
            core.submit(req)
        except (StratabatchError, ValueError) as exc:
            self._answer_error(client, rid, exc)
            return
        client.pending[rid] = req
        client.counts[0] += 1
        client.dirty = True

    def _arena_vector(self, client: Client, row: int) -> np.ndarray:
        arena = self._arena
        if arena is None:
            raise InvalidRequestError(
                "this engine has no embedding arena; send the vector in the request"
            )
        own = arena.slot_range(client.slot)
        if row not in own:
            raise InvalidRequestError(
                f"arena row {row} is not this client's (slot {client.slot} owns rows "
                f"[{own.start}, {own.stop}))"
            )
        # a copy: the client may rewrite its row at any time, and what the core keeps must
        # stay what build_request checked
        return arena.matrix[row].copy()

    # ----------------------------------------------------------------- outcomes

    def _on_complete(self, req: Request, value: Any, error: BaseException | None) -> None:
        client = req.sink
        if client.closed or client.pending.get(req.index) is not req:
            return  # answered already (the engine failed it while stopping)
        del client.pending[req.index]
        if self._publisher is not None:
            self._publisher.latency(self._loop.time() - req.arrival)  # type: ignore[union-attr]
        if error is None:
            lead = req.merged_with
            if lead is not None:
                meta = {
                    "leader": lead.index if lead.sink is client else -1,
                    "similarity": 1.0 if req.similarity is None else float(req.similarity),
                }
                client.outbox.append((req.index, STATUS_OK, value, meta))
            else:
                client.outbox.append((req.index, STATUS_OK, value))
        else:
            self._count_error(client, error)
            client.outbox.append((req.index, *error_to_wire(error)))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)  # type: ignore[union-attr]

    def _count_error(self, client: Client, error: BaseException) -> None:
        from .errors import BatchTimeoutError

        client.counts[2 if isinstance(error, BatchTimeoutError) else 1] += 1
        client.dirty = True

    def _answer_error(self, client: Client, rid: int, error: BaseException) -> None:
        self._count_error(client, error)
        client.outbox.append((rid, *error_to_wire(error)))

    def _flush(self) -> None:
        self._flush_scheduled = False
        for client in list(self._clients.values()):
            if client.outbox or client.frames:
                self._flush_client(client)

    def _flush_client(self, client: Client) -> None:
        ring = client.responses
        if client.closed or ring is None:
            client.outbox.clear()
            return
        if client.outbox:
            self._encode_outbox(client)
        if client.frames:
            n = ring.push_many(client.frames)
            if n:
                del client.frames[:n]
            if client.frames and not ring.producer_sleep_check(len(client.frames[0])):
                self._schedule_poll()  # room appeared meanwhile

    def _encode_outbox(self, client: Client) -> None:
        """Encode ``client``'s answers as batch frames (one, unless the frame limit splits
        them); an answer that cannot be sent becomes an error answer of its own."""
        enc = self._encoder
        data = enc.response_batch(client.outbox)
        if data is not None:
            client.frames.append(data)
            client.outbox.clear()
            return
        singles: list[bytes] = []
        for item in client.outbox:
            try:
                singles.append(enc.response(*item))
            except (FrameError, FrameTooLargeError) as exc:
                ok = item[1] == STATUS_OK
                hint = (
                    " (raise it with --max-result-bytes, or return less)"
                    if ok and isinstance(exc, FrameTooLargeError)
                    else ""
                )
                err = HandlerError(
                    f"the handler's {'result' if ok else 'error'} for request {item[0]} "
                    f"cannot be sent to the client: {exc}{hint}",
                    exc_type=type(exc).__name__,
                    exc_message=str(exc),
                )
                self._count_error(client, err)
                self.core.record_error()  # answered with an error after all
                singles.append(enc.response(item[0], *error_to_wire(err)))
        client.outbox.clear()
        client.frames.extend(enc.join(singles))

    # ----------------------------------------------------------------- counters

    def _publish_totals(self) -> None:
        pub = self._publisher
        if pub is None:
            return
        st = self.core.stats
        if (
            st.total_batches == self._published_batches
            and st.total_requests == self._published_total
            and self.core.completed == self._published_done
        ):
            return
        # at most every 20 ms (a pass may take one request: publishing each would cost more
        # than serving it; the monitor refreshes at most 10 times a second); what changed
        # meanwhile is published 20 ms later at the latest
        now = time.monotonic()
        if now - self._published_at < _PUBLISH_S:
            if self._publish_later is None and self._loop is not None:
                self._publish_later = self._loop.call_later(_PUBLISH_S, self._publish_deferred)
            return
        self._published_at = now
        self._published_batches = st.total_batches
        self._published_total = st.total_requests
        self._published_done = self.core.completed
        pub.totals(st, self.core.waiting, self.core.inflight_batches, len(self._clients))
        self._publish_clients()

    def _publish_deferred(self) -> None:
        self._publish_later = None
        self._publish_totals()

    def _publish_clients(self) -> None:
        pub = self._publisher
        assert pub is not None
        for client in self._clients.values():
            if client.dirty:
                client.dirty = False
                pub.client(
                    client.slot,
                    requests=client.counts[0],
                    errors=client.counts[1],
                    timeouts=client.counts[2],
                )

    def _tick(self) -> None:
        """10 Hz: full snapshot into the counters block, a safety-net pass over the rings."""
        loop = self._loop
        assert loop is not None
        self._tick_handle = loop.call_later(_TICK_S, self._tick)
        pub = self._publisher
        if pub is not None:
            try:
                busy = (
                    self.core.waiting
                    or self.core.inflight_batches
                    or self.core.completed != getattr(self, "_tick_done", -1)
                )
                if busy or int(time.time()) != getattr(self, "_tick_sec", 0):
                    self._tick_done = self.core.completed
                    self._tick_sec = int(time.time())
                    self._publish_totals()
                    pub.tick(self.core.snapshot(), self.core.inflight_batches, len(self._clients))
                else:
                    pub.heartbeat()
            except Exception as exc:  # the monitor's view must never stop the engine
                log.error("publishing counters failed: %s", exc)
        if self._clients:
            self._schedule_poll()  # safety net against a lost wake-up

    # ----------------------------------------------------------------- shutdown

    def request_stop(self) -> None:
        """Begin a graceful shutdown; called again while it runs, stop at once.

        The signal handlers call this: the first SIGINT/SIGTERM lets the engine finish what it
        accepted (:meth:`shutdown`), a second one fails whatever is unfinished and exits.
        """
        if self._stopped is None:
            return
        if not self._stopped.is_set():
            self._stopped.set()
        elif self._force is not None and not self._force.is_set():
            log.warning("shutdown: second stop signal: stopping now")
            self._force.set()

    async def serve(self, ready: Callable[[], None] | None = None) -> None:
        """Start, call ``ready``, run until :meth:`request_stop`, then shut down gracefully."""
        await self.start()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.request_stop)
        try:
            if ready is not None:
                ready()
            assert self._stopped is not None
            await self._stopped.wait()
        finally:
            await self.shutdown()

    async def shutdown(self) -> None:
        """Stop accepting, finish what was accepted, answer every request, remove everything.

        Requests queued in the core run now, without waiting for their windows, and running
        batches finish; the wait is bounded by ``processing_timeout`` + 1 s (31 s without one)
        and ends at once on a second :meth:`request_stop`. Requests still in the rings (never
        accepted), and whatever is unfinished when the wait ends, fail with
        :class:`EngineUnavailableError`. :attr:`forced` tells whether a second stop cut it short.
        """
        if self._stopping:
            return
        self._stopping = True
        self._slots.stopping = True
        core = self.core
        log.info(
            "shutdown: stopping (%d clients, %d requests queued)", len(self._clients), core.waiting
        )
        loop = self._loop
        assert loop is not None
        self._slots.set_state(STATE_STOPPING)
        self._slots.stop_listening()
        gone = EngineUnavailableError("the engine is shutting down; the request was not run")
        for client in list(self._clients.values()):  # requests never accepted
            if client.requests is None:
                continue
            try:
                for data in client.requests.drain():
                    rid = peek_frame_id(data)
                    if rid is not None:
                        self._answer_error(client, rid, gone)
            except FrameError:
                pass
        limit = (self.config.processing_timeout or 30.0) + 1.0
        if core.waiting or core.inflight_batches:
            log.warning(
                "shutdown: finishing %d running batches and %d queued requests, up to "
                "%.0f s; press Ctrl-C again (or send SIGTERM again) to stop now",
                core.inflight_batches,
                core.waiting,
                limit,
            )
        assert self._force is not None
        closing = loop.create_task(core.close())
        forced = loop.create_task(self._force.wait())
        await asyncio.wait((closing, forced), timeout=limit, return_when=asyncio.FIRST_COMPLETED)
        forced.cancel()
        unfinished = sum(len(c.pending) for c in self._clients.values())
        if not closing.done():
            closing.cancel()
            if self._force.is_set():
                self.forced = True
                why = "the engine was stopped at once (a second stop signal)"
            else:
                why = f"the handler did not finish within {limit:.0f} s of the shutdown"
            log.warning("shutdown: %s; %d unfinished requests fail", why, unfinished)
        elif unfinished:
            why = "the engine shut down first"
            log.warning("shutdown: %d requests were not answered; they fail", unfinished)
        if unfinished:
            stop = EngineUnavailableError(f"{why}; the request did not finish")
            for client in self._clients.values():
                pending = list(client.pending.items())
                client.pending.clear()
                for rid, req in pending:
                    self._answer_error(client, rid, stop)
                    core.abandon(req)  # its handler call is cancelled once nobody waits
        self._flush()
        deadline = loop.time() + 2.0  # let clients read what is left in their rings
        while (
            not self.forced
            and any(c.frames for c in self._clients.values())
            and loop.time() < deadline
            and not self._force.is_set()
        ):
            await asyncio.sleep(0.005)
            self._flush()
        for client in list(self._clients.values()):
            with contextlib.suppress(OSError):
                client.sock.send(pack_message({"op": "bye", "reason": "the engine shut down"}))
            self._drop_client(client, "engine shutting down")
        self._teardown()
        log.info("shutdown: done%s", " (stopped at once)" if self.forced else "")

    def _teardown(self) -> None:
        loop = self._loop
        if self._metrics is not None:
            self._metrics.close()
            self._metrics = None
        if self._tick_handle is not None:
            self._tick_handle.cancel()
            self._tick_handle = None
        if self._publish_later is not None:
            self._publish_later.cancel()
            self._publish_later = None
        if self._bell is not None:
            if loop is not None:
                with contextlib.suppress(Exception):
                    loop.remove_reader(self._bell.fileno())
            self._bell.close()
            self._bell = None
        if self._arena is not None:
            self._arena.close()
            self._arena = None
        if self._arena_seg is not None:
            self._arena_seg.close()
            self._arena_seg = None
        if self._publisher is not None:
            self._publisher.close()
            self._publisher = None
        self._slots.close()


def _metrics_address(port: Any, host: Any) -> tuple[int, str] | None:
    """``(port, host)`` of the metrics endpoint, or None when it is off (port 0).

    Raises:
        ConfigError: A port outside [0, 65535], an empty host, or ``prometheus_client`` is
            not installed (the ``metrics`` extra).
    """
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ConfigError(
            f"metrics_port must be in [0, 65535] (0: off), got {port!r}", field="metrics_port"
        )
    if not port:
        return None
    if not isinstance(host, str) or not host:
        raise ConfigError(f"metrics_host must be an address, got {host!r}", field="metrics_host")
    try:
        from . import metrics  # noqa: F401
    except ImportError as exc:
        raise ConfigError(f"--metrics-port: {exc}", field="metrics_port") from None
    return port, host


def _serve_metrics(name: str, port: int, host: str) -> Any:
    """Serve engine ``name``'s counters block (and this process's) at ``host:port``."""
    from .metrics import MetricsServer, engine_registry

    try:
        server = MetricsServer.start(engine_registry(name, process=True), port, host)
    except OSError as exc:
        raise EngineStartError(f"{exc.strerror} (--metrics-port)", status=EXIT_SOCKET) from None
    log.info("metrics: serving Prometheus metrics at %s", server.url)
    return server


def run(engine: Engine, *, use_uvloop: bool = True) -> int:
    """Run ``engine`` until SIGINT/SIGTERM; print the ready line; return the exit status
    (:mod:`stratabatch.exitcodes`)."""

    def ready() -> None:
        # The engine owns this process: what exists now (modules, the loaded kernels, the
        # handler) lives as long as it does and is frozen out of the cyclic GC's walks, and
        # young collections run less often, so that request records are mostly freed before
        # one sees them (stratabatch.gctune; perf/bench_dedup_depth.py --gc on / freeze)
        from .gctune import settle

        settle()
        print(
            f"stratabatch-engine ready name={engine.name} pid={os.getpid()} "
            f"socket={engine.socket_path}",
            flush=True,
        )
        log.info(
            "ready: name %s, pid %d, socket %s, %d client slots",
            engine.name,
            os.getpid(),
            engine.socket_path,
            engine.max_clients,
        )

    try:
        if use_uvloop:
            import uvloop

            uvloop.run(engine.serve(ready))
        else:
            asyncio.run(engine.serve(ready))
    except EngineStartError as exc:
        print(f"stratabatch-engine: {exc}", file=sys.stderr, flush=True)
        return exc.status
    finally:
        # closing the loop restored the default actions; the engine is done, so a late
        # SIGINT/SIGTERM must not turn its exit status into a signal death
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
    return EXIT_FORCED if engine.forced else EXIT_OK


__all__ = ["Engine", "frame_limits", "ring_capacity", "run"]
