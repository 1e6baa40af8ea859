"""Clients of a running ``stratabatch-engine``: ``stratabatch.connect()``.

``connect(name)`` returns an :class:`EngineClient` (asyncio, uvloop too; one per process,
shared by every task); ``connect(name, sync=True)`` a :class:`SyncEngineClient` for sync code
and threads. Both have BatchProcessor's surface: ``process`` (one request or a list,
``priority=``, ``timeout=``, ``return_exceptions=``), ``process_streaming``, ``get_stats``,
``close`` and context managers.

Requests are validated and encoded in the caller, so a request that is not a mapping, holds
something msgpack cannot carry, is over the engine's size limit, or has a bad ``"embedding"``
fails before anything is sent. A precomputed vector travels through the embedding arena: the
client writes it into one of its slot's rows before pushing the frame that names the row.

Liveness: the client watches its socket and the engine's pid (a pidfd). When the engine dies,
every waiting call fails with :class:`~stratabatch.EngineUnavailableError` at once (after the
answers already in the response ring are delivered), and the next call connects again, to a
new engine of the same name if one serves it by then.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import select
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any

import msgpack

from .errors import (
    BatchTimeoutError,
    EngineUnavailableError,
    InvalidRequestError,
    QueueFullError,
    RequestTooLargeError,
    StratabatchError,
)
from .wire import (
    ARENA_MAGIC,
    PROTOCOL_VERSION,
    RINGS_MAGIC,
    RINGS_VERSION,
    STATUS_OK,
    MessageBuffer,
    check_name,
    error_from_wire,
    pack_message,
    socket_path,
)

_GRACE_S = 1.0  # the engine answers a timed-out request itself; this is the client's backstop
_ON_FULL = ("wait", "reject")


class _Call:
    """One ``process``/``process_streaming`` call: where its requests' outcomes go."""

    __slots__ = ("fut", "results", "remaining", "return_exceptions", "stream", "first_id",
                 "requests")

    def __init__(self, requests: Sequence[Any], fut: asyncio.Future | None,
                 return_exceptions: bool, stream: asyncio.Queue | None, first_id: int) -> None:
        self.requests = requests
        self.fut = fut
        self.results: list[Any] = [None] * len(requests)
        self.remaining = len(requests)
        self.return_exceptions = return_exceptions
        self.stream = stream
        self.first_id = first_id

    def deliver(self, index: int, value: Any, error: BaseException | None,
                meta: dict[str, Any] | None) -> None:
        if self.stream is not None:
            from .processor import Completed

            merged = similarity = None
            if meta is not None:
                leader = meta.get("leader", -1)
                pos = leader - self.first_id if isinstance(leader, int) and leader >= 0 else -1
                merged = pos if 0 <= pos < len(self.requests) else -1
                s = meta.get("similarity")
                similarity = float(s) if isinstance(s, (int, float)) else 1.0
            self.stream.put_nowait(Completed(index, self.requests[index], value, merged,
                                             similarity, error))
            return
        fut = self.fut
        if fut is None or fut.done():
            return
        if error is not None and not self.return_exceptions:
            fut.set_exception(error)
            return
        self.results[index] = error if error is not None else value
        self.remaining -= 1
        if self.remaining == 0:
            fut.set_result(self.results)


class _One:
    """A ``process`` call of one request: its outcome resolves the future."""

    __slots__ = ("fut",)

    def __init__(self, fut: asyncio.Future) -> None:
        self.fut = fut

    def deliver(self, index: int, value: Any, error: BaseException | None,
                meta: dict[str, Any] | None) -> None:
        fut = self.fut
        if not fut.done():
            if error is not None:
                fut.set_exception(error)
            else:
                fut.set_result(value)


class _RoomBell:
    """What ``Ring.push_async`` awaits: woken whenever the client's doorbell rings."""

    def __init__(self) -> None:
        self.waiters: list[asyncio.Future] = []

    async def wait_async(self, timeout: float | None = None) -> bool:
        fut = asyncio.get_running_loop().create_future()
        self.waiters.append(fut)
        try:
            if timeout is None:
                await fut
            else:
                await asyncio.wait_for(fut, max(timeout, 0.0))
        except (TimeoutError, asyncio.TimeoutError):
            return False
        finally:
            with contextlib.suppress(ValueError):
                self.waiters.remove(fut)
        return True

    def wake(self, error: BaseException | None = None) -> None:
        waiters, self.waiters = self.waiters, []
        for fut in waiters:
            if not fut.done():
                if error is None:
                    fut.set_result(None)
                else:
                    fut.set_exception(error)


class _Connection:
    """One live connection to an engine: its socket, rings, arena rows and pending calls."""

    def __init__(self, name: str, timeout: float) -> None:
        from stratabatch.ipc.arena import Arena
        from stratabatch.ipc.doorbell import Doorbell
        from stratabatch.ipc.frames import FRAME_VERSION, FrameDecoder, FrameEncoder, FrameLimits
        from stratabatch.ipc.ring import Ring
        from stratabatch.ipc.segment import Segment

        self.name = name
        self.path = socket_path(name)
        self.dead: str | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.pending: dict[int, tuple[_Call | _One, int]] = {}
        self.rows_in_use: dict[int, int] = {}
        self.room = _RoomBell()
        self.rbuf = MessageBuffer()
        self.stats_seq = 0
        self.next_id = 1
        # one Packer per connection: a connection is only used from its event loop's thread
        self.pack = msgpack.Packer(use_bin_type=True, autoreset=True).pack
        self.seg = self.arena_seg = None
        self.arena: Any = None
        self.pidfd = -1
        self.fds: list[int] = []
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock = sock
        try:
            sock.settimeout(timeout)
            try:
                sock.connect(self.path)
            except (FileNotFoundError, ConnectionRefusedError):
                raise EngineUnavailableError(
                    f"no stratabatch engine named {name!r} is running: nothing listens at "
                    f"{self.path} (start one with `stratabatch-engine --handler MODULE:ATTR "
                    f"--name {name}`)"
                ) from None
            except OSError as exc:
                raise EngineUnavailableError(
                    f"cannot connect to the engine {name!r} at {self.path}: {exc}") from None
            sock.sendall(pack_message({"op": "hello", "protocol": PROTOCOL_VERSION,
                                       "frame_version": FRAME_VERSION, "pid": os.getpid()}))
            welcome = self._read_welcome(timeout)
            self.welcome = welcome
            if len(self.fds) != 2:
                raise EngineUnavailableError(
                    f"the engine {name!r} at {self.path} sent {len(self.fds)} doorbells, not 2")
            self.engine_bell = Doorbell.attach(self.fds[0])
            self.bell = Doorbell.attach(self.fds[1])
            self.fds = []
            self.engine_pid = int(welcome["engine_pid"])
            self.slot = int(welcome["slot"])
            cap, max_frame = int(welcome["capacity"]), int(welcome["max_frame"])
            self.seg = Segment.attach(welcome["rings"], magic=RINGS_MAGIC, version=RINGS_VERSION)
            buf = self.seg.buf
            n = Ring.nbytes(cap)
            self.requests = Ring.attach(buf[:n], capacity=cap, max_frame=max_frame,
                                        wake_consumer=self.engine_bell)
            self.responses = Ring.attach(buf[n : 2 * n], capacity=cap, max_frame=max_frame,
                                         wake_producer=self.engine_bell)
            self.free_rows: list[int] = []
            if welcome.get("arena"):
                self.arena_seg = Segment.attach(welcome["arena"], magic=ARENA_MAGIC, version=1)
                self.arena = Arena.attach(self.arena_seg.buf, owner=self.slot)
                self.free_rows = list(reversed(self.arena.own_range))
            limits = FrameLimits(**welcome["limits"])
            self.encoder = FrameEncoder(limits)
            self.decoder = FrameDecoder(limits)
            self.max_request_bytes = int(welcome["max_request_bytes"])
            self.on_full = welcome["on_full"]
            self.uses_vectors = bool(welcome["uses_vectors"])
            self.dim = int(welcome.get("dim") or 0)
            try:
                self.pidfd = os.pidfd_open(self.engine_pid)
            except (OSError, AttributeError):
                self.pidfd = -1
            sock.setblocking(False)
        except BaseException:
            self.close()
            raise
        self.pid = os.getpid()

    def _read_welcome(self, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            self.sock.settimeout(max(deadline - time.monotonic(), 0.001))
            try:
                data, fds, _, _ = socket.recv_fds(self.sock, 65536, 4)
            except TimeoutError:
                raise EngineUnavailableError(
                    f"the engine {self.name!r} at {self.path} did not answer within "
                    f"{timeout:g} s") from None
            except OSError as exc:
                raise EngineUnavailableError(
                    f"the engine {self.name!r} at {self.path} dropped the connection: {exc}"
                ) from None
            self.fds.extend(fds)
            if not data:
                raise EngineUnavailableError(
                    f"the engine {self.name!r} at {self.path} closed the connection during "
                    "the handshake")
            try:
                msgs = self.rbuf.feed(data)
            except ValueError as exc:
                raise EngineUnavailableError(f"the engine at {self.path} is not speaking the "
                                             f"stratabatch protocol: {exc}") from None
            if msgs:
                msg = msgs[0]
                if msg.get("op") == "refused":
                    raise EngineUnavailableError(
                        f"the engine {self.name!r} at {self.path} refused this client: "
                        f"{msg.get('reason')}")
                if msg.get("op") != "welcome":
                    raise EngineUnavailableError(
                        f"the engine at {self.path} answered {msg.get('op')!r}, not welcome")
                return msg

    # ------------------------------------------------------------- event loop

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Watch this connection's doorbell, socket and engine pid from ``loop``."""
        if self.loop is loop:
            return
        old = self.loop
        if old is not None and not old.is_closed():
            if self.pending:
                raise StratabatchError(
                    "this client has calls waiting on another event loop; use one client per "
                    "event loop (stratabatch.connect() in each)")
            self._unwatch()
        self.loop = loop
        loop.add_reader(self.bell.fileno(), self._on_bell)
        loop.add_reader(self.sock.fileno(), self._on_socket)
        if self.pidfd >= 0:
            loop.add_reader(self.pidfd, self.die, "died")
        self._drain()

    def _unwatch(self) -> None:
        loop = self.loop
        if loop is None or loop.is_closed():
            return
        for fd in (self.bell.fileno() if self.bell is not None else -1,
                   self.sock.fileno(), self.pidfd):
            if fd >= 0:
                with contextlib.suppress(Exception):
                    loop.remove_reader(fd)

    def _on_bell(self) -> None:
        self.bell.clear()
        self._drain()
        self.room.wake()

    def _drain(self) -> None:
        from stratabatch.ipc.errors import FrameError

        ring = self.responses
        decode = self.decoder.response
        while self.dead is None:
            try:
                frames = ring.drain()
            except FrameError as exc:
                self.die(f"sent a corrupt response ring ({exc})")
                return
            if not frames:
                if ring.consumer_sleep_check():
                    return
                continue
            pending = self.pending
            rows = self.rows_in_use
            for data in frames:
                try:
                    r = decode(data)
                except FrameError as exc:
                    from stratabatch.ipc.frames import peek_frame_id

                    rid = peek_frame_id(data)
                    entry = pending.pop(rid, None) if rid is not None else None
                    if entry is not None:
                        entry[0].deliver(entry[1], None, StratabatchError(
                            f"the engine's response could not be decoded: {exc}"), None)
                    continue
                if rows:
                    row = rows.pop(r.id, None)
                    if row is not None:
                        self.free_rows.append(row)
                entry = pending.pop(r.id, None)
                if entry is None:
                    continue  # its caller left (timeout, cancellation)
                if r.status == STATUS_OK:
                    entry[0].deliver(entry[1], r.value, None, r.meta)
                else:
                    entry[0].deliver(entry[1], None, error_from_wire(r.status, r.value), None)

    def _on_socket(self) -> None:
        try:
            data = self.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self.die(f"dropped the connection ({exc})")
            return
        if not data:
            self.die("closed the connection (it stopped or died)")
            return
        try:
            msgs = self.rbuf.feed(data)
        except ValueError as exc:
            self.die(f"sent a broken message ({exc})")
            return
        for msg in msgs:
            if msg.get("op") == "bye":
                self.die(f"shut down ({msg.get('reason')})")
                return

    def die(self, why: str) -> None:
        """The engine is gone: deliver what it answered, fail every other waiting call."""
        if self.dead is not None:
            return
        if self.loop is not None and not self.loop.is_closed():
            with contextlib.suppress(Exception):
                self._drain()
        self.dead = why
        self._unwatch()
        err_text = f"the stratabatch engine {self.name!r} ({self.path}) {why}"
        pending, self.pending = self.pending, {}
        for call, index in pending.values():
            call.deliver(index, None, EngineUnavailableError(err_text), None)
        self.room.wake(EngineUnavailableError(err_text))
        self.close()

    def close(self) -> None:
        """Release everything this connection holds (the engine sees EOF and frees the slot)."""
        self._unwatch()
        for fd in self.fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.fds = []
        with contextlib.suppress(OSError):
            self.sock.close()
        if self.pidfd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.pidfd)
            self.pidfd = -1
        # the rings' views are left to the garbage collector, not released here: a call
        # suspended in Ring.push_async still touches its ring's header when it wakes up
        if self.arena is not None:
            self.arena.close()
            self.arena = None
        for seg in (self.seg, self.arena_seg):
            if seg is not None:
                seg.close()
        self.seg = self.arena_seg = None
        for name in ("bell", "engine_bell"):
            bell = self.__dict__.get(name)
            if bell is not None:
                bell.close()
        if self.dead is None:
            self.dead = "was closed"

    # ------------------------------------------------------------- requests

    def encode(self, request: Any, index: int, rid: int, priority: int,
               deadline_ns: int) -> tuple[bytes, int]:
        """Validate and encode one request; returns the frame and the arena row it uses.

        The request is checked by the same rules as in embedded mode
        (:func:`stratabatch.requests.check_payload`); its msgpack encoding then becomes the
        frame's last item as is, so the payload is encoded once.
        """
        from .requests import check_payload

        row = -1
        payload = request
        emb = request.get("embedding") if isinstance(request, Mapping) else None
        if emb is not None and self.uses_vectors:
            vec = _check_vector(emb, self.dim, index)
            if self.arena is not None and self.free_rows:
                payload = {k: v for k, v in request.items() if k != "embedding"}
                blob = check_payload(payload, index, self.max_request_bytes)
                row = self.free_rows.pop()
                self.arena.write_row(row, vec)
                self.rows_in_use[rid] = row
                return self._frame(rid, priority, deadline_ns, row, blob, index), row
        blob = check_payload(payload, index, self.max_request_bytes)
        return self._frame(rid, priority, deadline_ns, row, blob, index), row

    def _frame(self, rid: int, priority: int, deadline_ns: int, row: int, blob: bytes,
               index: int) -> bytes:
        # a request frame is the msgpack array [id, priority, deadline_ns, arena_row, payload]
        pack = self.pack
        frame = b"\x95" + pack(rid) + pack(priority) + pack(deadline_ns) + pack(row) + blob
        if len(frame) > self.encoder.limits.max_frame_bytes:
            self._free_row(self.rows_in_use.pop(rid, -1))
            raise RequestTooLargeError(
                f"request {index}: its frame is {len(frame)} bytes, over the engine's frame "
                f"limit of {self.encoder.limits.max_frame_bytes} bytes")
        return frame

    def _free_row(self, row: int) -> None:
        if row >= 0:
            self.free_rows.append(row)

    def forget(self, call: _Call, ids: range) -> None:
        """The caller left: drop its pending entries (late answers are ignored)."""
        for rid in ids:
            entry = self.pending.get(rid)
            if entry is not None and entry[0] is call:
                del self.pending[rid]

    def stats(self, timeout: float) -> dict[str, Any]:
        """Ask the engine for its stats over the socket (a blocking round trip)."""
        self.stats_seq += 1
        seq = self.stats_seq
        sock = self.sock
        try:
            sock.setblocking(True)
            sock.settimeout(timeout)
            sock.sendall(pack_message({"op": "stats", "seq": seq}))
            deadline = time.monotonic() + timeout
            poller = select.poll()
            poller.register(sock.fileno(), select.POLLIN)
            while True:
                left = deadline - time.monotonic()
                if left <= 0 or not poller.poll(left * 1000):
                    raise EngineUnavailableError(
                        f"the engine {self.name!r} did not answer a stats request within "
                        f"{timeout:g} s")
                data = sock.recv(1 << 20)
                if not data:
                    self.die("closed the connection (it stopped or died)")
                    raise EngineUnavailableError(f"the stratabatch engine {self.name!r} "
                                                 f"({self.path}) {self.dead}")
                for msg in self.rbuf.feed(data):
                    if msg.get("op") == "bye":
                        self.die(f"shut down ({msg.get('reason')})")
                        raise EngineUnavailableError(f"the stratabatch engine {self.name!r} "
                                                     f"({self.path}) {self.dead}")
                    if msg.get("op") == "stats" and msg.get("seq") == seq:
                        return msg["stats"]
        except (OSError, ValueError) as exc:
            self.die(f"dropped the connection ({exc})")
            raise EngineUnavailableError(f"the stratabatch engine {self.name!r} ({self.path}) "
                                         f"{self.dead}") from None
        finally:
            if self.dead is None:
                with contextlib.suppress(OSError):
                    sock.setblocking(False)


def _check_vector(vec: Any, dim: int, index: int) -> Any:
    """A request's own embedding as float32, checked as the engine will check it."""
    import numpy as np

    try:
        arr = np.asarray(vec)
    except (ValueError, TypeError) as exc:
        raise InvalidRequestError(f"request {index}: bad 'embedding' field: {exc}") from None
    problem = None
    if arr.dtype.kind not in "fiu" or arr.ndim != 1:
        problem = f"must be a flat list or 1-D array of real numbers, got {arr.dtype} " \
                  f"of shape {arr.shape}"
    elif arr.shape[0] == 0:
        problem = "is empty"
    elif dim and arr.shape[0] != dim:
        problem = f"has dimension {arr.shape[0]}, the engine's embedder uses {dim}"
    else:
        arr = arr.astype(np.float32)
        if not np.isfinite(arr).all():
            problem = "holds NaN or infinite values"
        elif not arr.any():
            problem = "is the zero vector"
    if problem:
        raise InvalidRequestError(f"request {index}: bad 'embedding' field: it {problem}")
    return arr


class EngineClient:
    """An asyncio client of a stratabatch engine (from ``stratabatch.connect(name)``).

    One per process, safe to share among tasks of one event loop. Not usable in a process
    forked after it connected: the child calls ``stratabatch.connect()`` itself.

    Args:
        name: The engine's name.
        timeout: Seconds the connection handshake may take.
        on_full: What to do when this client's request ring is full: "wait" (until the
            call's timeout) or "reject" (QueueFullError at once); None follows the engine's
            ``on_full`` ("drop_lowest" acts as "reject" at the ring: the ring cannot evict).
    """

    def __init__(self, name: str = "default", *, timeout: float = 5.0,
                 on_full: str | None = None) -> None:
        self.name = check_name(name)
        if on_full is not None and on_full not in _ON_FULL:
            raise StratabatchError(f"on_full must be one of {', '.join(_ON_FULL)} or None, "
                                   f"got {on_full!r}")
        self._timeout = timeout
        self._on_full = on_full
        self._pid = os.getpid()
        self._closed = False
        self._conn: _Connection | None = _Connection(self.name, timeout)

    # ------------------------------------------------------------- plumbing

    def _check_process(self) -> None:
        if os.getpid() != self._pid:
            raise StratabatchError(
                f"this stratabatch client was connected in process {self._pid}; process "
                f"{os.getpid()} was forked from it and cannot share its rings: call "
                "stratabatch.connect() in the child")
        if self._closed:
            raise StratabatchError("this stratabatch client is closed")

    def _connection(self) -> _Connection:
        loop = asyncio.get_running_loop()
        conn = self._conn
        if conn is None or conn.dead is not None:
            conn = self._conn = _Connection(self.name, self._timeout)
        conn.bind(loop)
        return conn

    @property
    def connected(self) -> bool:
        """True while a live connection to the engine exists."""
        return self._conn is not None and self._conn.dead is None

    @property
    def socket_path(self) -> str:
        """The socket this client connects to."""
        return socket_path(self.name)

    @staticmethod
    def _check_call_args(priority: Any, timeout: Any) -> None:
        if isinstance(priority, bool) or not isinstance(priority, int) or \
                not -(2**31) <= priority < 2**31:
            raise InvalidRequestError(
                f"priority must be an int in [-2**31, 2**31), got {priority!r}")
        if timeout is not None and (isinstance(timeout, bool) or
                                    not isinstance(timeout, (int, float)) or not timeout > 0):
            raise InvalidRequestError(f"timeout must be a positive number of seconds or None, "
                                      f"got {timeout!r}")

    async def _send(self, items: Sequence[Any], call: _Call, priority: int,
                    timeout: float | None, invalid_ok: bool, conn: _Connection) -> range:
        """Encode every request (refusing before anything is sent), then push them."""
        deadline_ns = 0 if timeout is None else time.monotonic_ns() + int(timeout * 1e9)
        first = conn.next_id
        conn.next_id += len(items)
        call.first_id = first
        frames: list[tuple[int, int, bytes]] = []
        try:
            for i, item in enumerate(items):
                try:
                    frame, _ = conn.encode(item, i, first + i, priority, deadline_ns)
                except InvalidRequestError as exc:
                    if not invalid_ok:
                        raise
                    call.results[i] = exc
                    call.remaining -= 1
                    continue
                frames.append((i, first + i, frame))
        except BaseException:
            for _, rid, _ in frames:
                row = conn.rows_in_use.pop(rid, None)
                if row is not None:
                    conn.free_rows.append(row)
            raise
        ids = range(first, first + len(items))
        pending = conn.pending
        for i, rid, _ in frames:
            pending[rid] = (call, i)
        ring = conn.requests
        try:
            for n, (_i, _rid, frame) in enumerate(frames):
                if ring.try_push(frame):
                    continue
                await self._push_slow(conn, frame, timeout, deadline_ns, frames[n:])
        except BaseException:
            conn.forget(call, ids)
            raise
        return ids

    async def _push_slow(self, conn: _Connection, frame: bytes, timeout: float | None,
                         deadline_ns: int, unsent: list[tuple[int, int, bytes]]) -> None:
        policy = self._on_full or conn.on_full
        if conn.dead is not None:
            raise EngineUnavailableError(f"the stratabatch engine {self.name!r} "
                                         f"({conn.path}) {conn.dead}")
        if policy != "wait":
            self._unsent(conn, unsent)
            raise QueueFullError(f"the request ring to engine {self.name!r} is full "
                                 f"(on_full={policy!r})")
        left = None if timeout is None else max(deadline_ns - time.monotonic_ns(), 0) / 1e9
        if not await conn.requests.push_async(frame, conn.room, left):
            self._unsent(conn, unsent)
            raise QueueFullError(f"the request ring to engine {self.name!r} was still full "
                                 "when the caller's timeout ran out")

    @staticmethod
    def _unsent(conn: _Connection, unsent: list[tuple[int, int, bytes]]) -> None:
        for _, rid, _ in unsent:
            row = conn.rows_in_use.pop(rid, None)
            if row is not None:
                conn.free_rows.append(row)

    async def _wait(self, fut: asyncio.Future, timeout: float | None) -> Any:
        if timeout is None:
            return await fut
        try:
            return await asyncio.wait_for(fut, timeout + _GRACE_S)
        except (TimeoutError, asyncio.TimeoutError):
            raise BatchTimeoutError(
                f"no answer from the engine {self.name!r} within the caller's timeout "
                f"({timeout:g} s)") from None

    # ------------------------------------------------------------- public surface

    async def process(self, requests: Any, *, priority: int = 0, timeout: float | None = None,
                      return_exceptions: bool = False) -> Any:
        """Process one request (a mapping) or a list of them in the engine.

        Args:
            requests: A request mapping, or a list of request mappings.
            priority: Higher goes first when the engine runs with ``enable_priorities``.
            timeout: Seconds this call waits at most, queueing and handling included.
            return_exceptions: For a list, put each failed request's exception in its place
                instead of raising the first one.

        Returns:
            The result for a single request; a list of results in the same order for a list.

        Raises:
            InvalidRequestError: A request is not a mapping, cannot be encoded, or has a bad
                ``"embedding"`` (nothing was sent).
            RequestTooLargeError: A request is over the engine's size limit.
            BatchTimeoutError: ``timeout`` or the engine's ``processing_timeout`` ran out.
            QueueFullError: Backpressure (the engine's queue or this client's ring).
            HandlerError: The handler failed this request or its batch.
            EngineUnavailableError: No engine serves the name, or it died meanwhile.
        """
        self._check_process()
        single = type(requests) is dict or isinstance(requests, Mapping)
        if single:
            return await self._process_one(requests, priority, timeout)
        if not isinstance(requests, (list, tuple)):
            raise InvalidRequestError("process() takes a request mapping or a list of them, "
                                      f"got {type(requests).__name__}")
        self._check_call_args(priority, timeout)
        if not requests:
            return []
        conn = self._connection()
        fut = asyncio.get_running_loop().create_future()
        call = _Call(requests, fut, return_exceptions, None, 0)
        ids = await self._send(requests, call, priority, timeout, return_exceptions, conn)
        if call.remaining == 0 and not fut.done():
            fut.set_result(call.results)
        try:
            return await self._wait(fut, timeout)
        except BaseException:
            conn.forget(call, ids)
            raise

    async def _process_one(self, request: Any, priority: int, timeout: float | None) -> Any:
        """``process`` of one request: the steps of a list, without the list."""
        if priority != 0 or timeout is not None:
            self._check_call_args(priority, timeout)
        conn = self._connection()
        deadline_ns = 0 if timeout is None else time.monotonic_ns() + int(timeout * 1e9)
        rid = conn.next_id
        conn.next_id += 1
        frame, _ = conn.encode(request, 0, rid, priority, deadline_ns)
        fut = asyncio.get_running_loop().create_future()
        one = _One(fut)
        conn.pending[rid] = (one, 0)
        try:
            if not conn.requests.try_push(frame):
                await self._push_slow(conn, frame, timeout, deadline_ns, [(0, rid, frame)])
            return await self._wait(fut, timeout)
        except BaseException:
            entry = conn.pending.get(rid)
            if entry is not None and entry[0] is one:
                del conn.pending[rid]
            raise

    async def process_streaming(self, requests: Sequence[Any], *, priority: int = 0,
                                timeout: float | None = None) -> AsyncIterator[Any]:
        """Process a list of requests; yield a ``Completed`` for each as it finishes.

        Failed requests are yielded with ``error`` set. Leaving the loop early stops waiting
        for the rest (the engine still answers them; the answers are dropped).
        """
        self._check_process()
        if isinstance(requests, Mapping) or not isinstance(requests, (list, tuple)):
            raise InvalidRequestError(
                f"process_streaming() takes a list of requests, got {type(requests).__name__}")
        self._check_call_args(priority, timeout)
        if not requests:
            return
        conn = self._connection()
        queue: asyncio.Queue = asyncio.Queue()
        call = _Call(requests, None, True, queue, 0)
        ids = await self._send(requests, call, priority, timeout, False, conn)
        loop = asyncio.get_running_loop()
        end = None if timeout is None else loop.time() + timeout + _GRACE_S
        try:
            for _ in range(len(requests)):
                if end is None:
                    yield await queue.get()
                    continue
                try:
                    yield await asyncio.wait_for(queue.get(), max(end - loop.time(), 0))
                except (TimeoutError, asyncio.TimeoutError):
                    raise BatchTimeoutError(
                        f"no answer from the engine {self.name!r} within the caller's "
                        f"timeout ({timeout:g} s)") from None
        finally:
            conn.forget(call, ids)

    def get_stats(self) -> Any:
        """The engine's statistics (all its clients together), as a ``Stats``.

        Raises:
            EngineUnavailableError: The engine is not running.
        """
        self._check_process()
        from .stats import Stats

        conn = self._conn
        if conn is None or conn.dead is not None:
            conn = self._conn = _Connection(self.name, self._timeout)
        raw = conn.stats(self._timeout)
        known = {f for f in Stats.__dataclass_fields__}
        values = {k: v for k, v in raw.items() if k in known}
        values["merge_similarity_histogram"] = tuple(values.get("merge_similarity_histogram", ()))
        return Stats(**values)

    async def close(self) -> None:
        """Wait for this client's calls to finish, then disconnect (idempotent)."""
        if self._closed or os.getpid() != self._pid:
            self._closed = True
            return
        conn = self._conn
        while conn is not None and conn.dead is None and conn.pending:
            await asyncio.sleep(0.005)
        self._closed = True
        if conn is not None:
            conn.close()
        self._conn = None
        _forget(self)

    async def __aenter__(self) -> EngineClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("connected" if self.connected else "disconnected")
        return f"<EngineClient {self.name!r} {state}>"


class SyncEngineClient:
    """A blocking client of a stratabatch engine (``stratabatch.connect(name, sync=True)``).

    For sync web workers, scripts and threads: the calls block the calling thread; any number
    of threads may call at once. Behind it one private event-loop thread runs an
    :class:`EngineClient`.
    """

    def __init__(self, name: str = "default", *, timeout: float = 5.0,
                 on_full: str | None = None) -> None:
        self.name = check_name(name)
        self._pid = os.getpid()
        self._loop = _new_loop()
        self._thread = threading.Thread(target=self._loop.run_forever,
                                        name=f"stratabatch-client-{name}", daemon=True)
        self._thread.start()
        try:
            self._client: EngineClient = self._run(self._make(name, timeout, on_full))
        except BaseException:
            self._stop_loop()
            raise
        self._closed = False

    @staticmethod
    async def _make(name: str, timeout: float, on_full: str | None) -> EngineClient:
        return EngineClient(name, timeout=timeout, on_full=on_full)

    def _run(self, coro: Any) -> Any:
        if os.getpid() != self._pid:
            coro.close()
            raise StratabatchError(
                f"this stratabatch client was connected in process {self._pid}; process "
                f"{os.getpid()} was forked from it and cannot share its rings: call "
                "stratabatch.connect() in the child")
        fut = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return fut.result()
        except concurrent.futures.CancelledError:
            raise StratabatchError("the call was cancelled (the client closed)") from None

    def process(self, requests: Any, *, priority: int = 0, timeout: float | None = None,
                return_exceptions: bool = False) -> Any:
        """Blocking :meth:`EngineClient.process`."""
        return self._run(self._client.process(requests, priority=priority, timeout=timeout,
                                              return_exceptions=return_exceptions))

    def process_streaming(self, requests: Sequence[Any], *, priority: int = 0,
                          timeout: float | None = None) -> Iterator[Any]:
        """Blocking :meth:`EngineClient.process_streaming`: yields ``Completed`` records."""
        agen = self._client.process_streaming(requests, priority=priority, timeout=timeout)
        try:
            while True:
                try:
                    yield self._run(agen.__anext__())
                except StopAsyncIteration:
                    return
        finally:
            if os.getpid() == self._pid and self._thread.is_alive():
                self._run(agen.aclose())

    def get_stats(self) -> Any:
        """The engine's statistics, as a ``Stats``."""
        async def stats() -> Any:
            return self._client.get_stats()

        return self._run(stats())

    def close(self) -> None:
        """Wait for pending calls, disconnect and stop the client's thread (idempotent)."""
        if getattr(self, "_closed", True) or os.getpid() != self._pid:
            self._closed = True
            return
        self._closed = True
        try:
            self._run(self._client.close())
        finally:
            self._stop_loop()
            _forget(self)

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5.0)
        if not self._thread.is_alive():
            self._loop.close()

    @property
    def connected(self) -> bool:
        """True while a live connection to the engine exists."""
        return self._client.connected

    def __enter__(self) -> SyncEngineClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<SyncEngineClient {self.name!r}>"


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


# ------------------------------------------------------------------------- connect()

_clients: dict[tuple[str, bool], Any] = {}
_lock = threading.Lock()


def _forget(client: Any) -> None:
    with _lock:
        for key, value in list(_clients.items()):
            if value is client:
                del _clients[key]


def _after_fork_in_child() -> None:
    # the child must not reuse its parent's clients (their calls raise a clear error)
    _clients.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


def connect(name: str = "default", *, sync: bool = False, timeout: float = 5.0,
            on_full: str | None = None) -> Any:
    """Connect to the running ``stratabatch-engine`` called ``name``.

    Returns this process's client of that engine (the same object on every call until it is
    closed): an :class:`EngineClient` (asyncio) or, with ``sync=True``, a
    :class:`SyncEngineClient` (blocking). Both have BatchProcessor's ``process``,
    ``process_streaming``, ``get_stats`` and ``close``.

    Args:
        name: The engine's ``--name``.
        sync: Return the blocking client.
        timeout: Seconds the handshake with the engine may take.
        on_full: When this client's request ring is full: "wait" or "reject"; None follows
            the engine's ``on_full``.

    Raises:
        EngineUnavailableError: No engine serves ``name`` (the message names the socket path),
            or it refused this client (another uid, all client slots taken).
    """
    check_name(name)
    key = (name, bool(sync))
    with _lock:
        client = _clients.get(key)
        if client is not None and not client._closed and client._pid == os.getpid():
            return client
        client = (SyncEngineClient if sync else EngineClient)(name, timeout=timeout,
                                                               on_full=on_full)
        _clients[key] = client
        return client


__all__ = ["EngineClient", "SyncEngineClient", "connect"]
