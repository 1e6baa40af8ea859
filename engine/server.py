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
* **Intake** (:mod:`stratabatch.intake`). A pass drains every request ring in batches,
  each non-empty ring its fair share of the room the core has, decodes each frame and submits
  a core ``Request`` whose sink is the client and whose index is the request id, or, for a
  plain request while the core's row lane is open (:mod:`stratabatch.lane`), a row of its
  handler item.
* **Pacing** (:mod:`stratabatch.pacing`). The engine's doorbell schedules a pass; while
  arrivals are dense the engine looks again on each loop iteration for ``spin_us``, then it
  sleeps on the doorbell, or deaf when the core looks again soon anyway.
* **Answers** (:mod:`stratabatch.outbox`). The core's ``on_complete`` appends
  ``(id, status, value, meta)`` to the client's outbox; once per loop iteration the outboxes
  are encoded and written with one ``push_many`` per client.
* **Counters** (:mod:`stratabatch.reporting`): totals after passes, a snapshot at 10 Hz.
* **Faults.** A request frame that does not decode is answered with an error for each request
  whose id can be read (a batch frame's items are then decoded one by one, a text frame's ids
  read alone: :func:`~stratabatch.ipc.frames.split_frame`); a frame that shows no id, or a
  corrupt ring, disconnects that client. A socket message whose framing is intact is always
  answered, the connection kept (:mod:`stratabatch.asks`): a body that does not decode, an
  unknown ``op`` or a refused ``forget`` get an ``error``; only a length over the limit
  disconnects. Socket answers the client's socket has no room for wait in order
  (:data:`~stratabatch.asks.MAX_UNSENT_BYTES` at most), and a client's asks are answered
  :data:`~stratabatch.asks.ASKS_PER_TURN` a loop turn, so a flood of them delays its sender,
  not the others.
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
from collections.abc import Callable, Iterator
from typing import Any

from stratabatch.ipc.arena import Arena
from stratabatch.ipc.counters_layout import STATS_HISTOGRAMS
from stratabatch.ipc.doorbell import Doorbell
from stratabatch.ipc.errors import FrameError
from stratabatch.ipc.frames import (
    FrameDecoder,
    FrameEncoder,
    peek_frame_id,
)
from stratabatch.ipc.segment import Segment, reclaim_stale, segment_name
from stratabatch.ipc.wait import DEFAULT_SPIN_US

from .asks import Asks
from .config import BatchConfig
from .core import Core
from .errors import (
    ConfigError,
    EngineStartError,
    EngineUnavailableError,
    StratabatchError,
)
from .exitcodes import EXIT_FORCED, EXIT_OK, EXIT_SHARED_MEMORY, EXIT_SOCKET
from .intake import Intake
from .lane import LaneGroup
from .limits import FRAME_OVERHEAD, frame_limits, ring_capacity
from .outbox import Outbox
from .pacing import Pacer
from .publish import Publisher, engine_info
from .records import Request
from .reporting import Reporter
from .reusecontrol import forget
from .slots import STATE_RUNNING, STATE_STOPPING, Client, Slots
from .wire import ARENA_MAGIC, check_name, pack_message

log = logging.getLogger("stratabatch.engine")

ARENA_ROWS_PER_SLOT = 64
"""Arena rows each client slot owns: vectors it may have in flight at once."""
_ENGINE_ROWS = 16
_TICK_S = 0.1
DEADLINE_TICK_S = 0.01
"""The engine's requests whose deadlines fall within one such tick share one timer
(:attr:`Core.deadline_tick_s`): a client times its own calls out at their exact deadline, and
the engine drops the work, up to a tick later (never sending it to the handler after it)."""


@contextlib.contextmanager
def _shared_memory_errors() -> Iterator[None]:
    """Turn a failure to make a segment into the start-up error that says so."""
    try:
        yield
    except OSError as exc:
        raise EngineStartError(
            f"cannot create shared memory in /dev/shm: {exc}", status=EXIT_SHARED_MEMORY
        ) from None


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
        self._user_handler = handler
        self.limits = frame_limits(config)
        self._capacity = ring_capacity(self.limits.max_frame_bytes)
        self._max_frame = self._capacity // 2 - 8
        self._clients = self._slots.clients  # by slot, shared by the components below
        # the components: answers out, requests in, when to look, what to publish
        self._outbox = Outbox(self._clients, FrameEncoder(self.limits))
        self.core = Core(config, self._outbox.on_complete, handler)
        if self.core.reuse is not None:  # a stored answer's size: its msgpack encoding's
            from .reuse import encoded_size

            self.core.reuse.size_of = encoded_size(config.max_result_bytes)
        self.core.on_complete_many = self._outbox.on_complete_many  # a batch's answers at once
        # plain requests as rows (engine/lane.py), answered straight from their groups; the
        # default strategy's too (near: a request alone in its partition leads on the lane;
        # the outbox sends a near twin's similarity from LaneGroup.sims)
        self.core.enable_lane(
            self._outbox.lane_deliver,
            self._outbox.lane_fail,
            self._outbox.lane_repoint,
            near=True,
        )
        # the clients time their calls out themselves: the deadlines of a tick share a timer
        self.core.deadline_tick_s = DEADLINE_TICK_S
        self._intake = Intake(
            self.core,
            config,
            self._clients,
            FrameDecoder(self.limits),
            self._outbox,
            self._drop_client,
        )
        self._reporter = Reporter(self.core, self._clients)
        self._pacer = Pacer(
            self.core,
            config,
            self._clients,
            self._intake,
            self._outbox,
            spin_us / 1e6,
            self._reporter.totals,
        )
        # each handler call's size published, and a pass over the rings (a batch leaving the
        # queue makes room): the core's hook, the handler itself stays the user's
        self.core.on_batch_start = self._batch_started
        self.core.on_look = self._pacer.on_look
        self._loop: asyncio.AbstractEventLoop | None = None
        self._publisher: Publisher | None = None
        self._arena_seg: Segment | None = None
        self._arena: Arena | None = None
        self._dim = 0
        self._bell: Doorbell | None = None
        self._stopping = False
        self._stopped: asyncio.Event | None = None
        self._force: asyncio.Event | None = None
        self.forced = False
        """Whether a second stop signal cut the shutdown short (exit status 6)."""
        self._tick_handle: asyncio.TimerHandle | None = None
        self._uses_vectors = False
        # the clients' socket asks (stats, forget), answered in order
        self._asks = Asks(self._stats_fields, self._forget_scope, self._drop_client)

    # ----------------------------------------------------------------- handler

    def _batch_started(self, size: int) -> None:
        if self._publisher is not None:
            self._publisher.batch(size)
        self._pacer.schedule()

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
        self.core.stats.keep_latencies()  # (the counters block's latency histogram reads them)
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
        self._uses_vectors = c.reads_vectors
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
        self._intake.use_arena(self._arena, self._dim)
        self._bell = Doorbell.create()
        self._outbox.start(loop, self.core, self._pacer.schedule, self._drop_client)
        self._asks.start(loop)
        self._reporter.start(loop, self._publisher)
        self._pacer.start(loop, self._bell)
        loop.add_reader(self._bell.fileno(), self._pacer.on_bell)
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

    def _tick(self) -> None:
        """10 Hz: the counters block's snapshot, a safety-net pass over the rings."""
        loop = self._loop
        assert loop is not None
        self._tick_handle = loop.call_later(_TICK_S, self._tick)
        self._reporter.tick()
        if self._clients:
            self._pacer.schedule()  # safety net against a lost wake-up

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
        self._pacer.schedule()

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
        self._asks.feed(client, data)

    def _stats_fields(self) -> dict[str, Any]:
        """A ``stats`` answer's fields: the core's ``Stats`` as a map, the clients connected."""
        snap = dataclasses.asdict(self.core.snapshot())
        for f in STATS_HISTOGRAMS:
            snap[f] = list(snap[f])
        return {"stats": snap, "clients": len(self._clients)}

    def _forget_scope(self, scope: Any) -> int:
        """Drop the reuse cache's entries of a client's ``forget`` ``scope``
        (:func:`stratabatch.reusecontrol.forget`); how many."""
        return forget(self.core.reuse, self.config.dedup_scope, scope)

    def _abandon(self, client: Client, rid: int, req: Request | LaneGroup) -> None:
        """``client`` gave up on its request ``rid`` (a record, or a row of a lane group)."""
        if type(req) is LaneGroup:
            self.core.abandon_row(req, client, rid)
        else:
            self.core.abandon(req)  # type: ignore[arg-type]

    def _drop_client(self, client: Client, reason: str) -> None:
        """Forget a client: abandon its pending requests, free its slot and segment."""
        if client.closed:
            return
        client.closed = True
        pending = list(client.pending.items())
        client.pending.clear()
        for rid, req in pending:
            self._abandon(client, rid, req)
        self._asks.drop(client)
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
        self._intake.close()
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
                        self._outbox.error(client, rid, gone)
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
                    self._outbox.error(client, rid, stop)
                    self._abandon(client, rid, req)  # its call is cancelled once nobody waits
        self._outbox.flush()
        deadline = loop.time() + 2.0  # let clients read what is left in their rings
        while (
            not self.forced
            and any(c.frames for c in self._clients.values())
            and loop.time() < deadline
            and not self._force.is_set()
        ):
            await asyncio.sleep(0.005)
            self._outbox.flush()
        for client in list(self._clients.values()):
            if not self._asks.has_unsent(client):  # (a client that does not read gets no bye)
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
        self._reporter.stop()
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


__all__ = ["FRAME_OVERHEAD", "Engine", "frame_limits", "ring_capacity", "run"]
