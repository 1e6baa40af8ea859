"""One live connection of a client process to a stratabatch engine.

:class:`Connection` is the transport under :class:`~stratabatch.client.EngineClient`: the
handshake over the engine's Unix socket, the attached ring segment and arena, the doorbell and
socket readers on the client's event loop, the pending requests and what happens to them when
the engine goes away. :class:`Call` and :class:`One` are where a call's outcomes go.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import socket
import time
import weakref
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .calls import Call as BookCall
from .calls import check_vector, settle
from .errors import (
    BatchTimeoutError,
    EngineUnavailableError,
    QueueFullError,
    RequestTooLargeError,
    StratabatchError,
)
from .requests import check_payload
from .wire import (
    ARENA_MAGIC,
    PROTOCOL_VERSION,
    RINGS_MAGIC,
    RINGS_VERSION,
    STATUS_OK,
    MessageBuffer,
    error_from_wire,
    pack_message,
    socket_path,
)

if TYPE_CHECKING:
    from stratabatch.ipc.segment import Segment


_MAX_BATCH = 4096  # requests in one batch frame at most


class Call(BookCall):
    """A ``process(list)``/``process_streaming`` call's book (:class:`stratabatch.calls.Call`,
    the one both front ends keep), plus what the wire adds: its first request id (a merge's
    ``leader`` id maps back to a position in the call) and whether some of its requests never
    left this process (the ring stayed full)."""

    __slots__ = ("first_id", "refused")

    def __init__(
        self,
        requests: Sequence[Any],
        fut: asyncio.Future | None,
        return_exceptions: bool,
        stream: asyncio.Queue | None = None,
    ) -> None:
        super().__init__(requests, fut, return_exceptions, stream)
        self.first_id = 0
        self.refused = False

    def answer(
        self, index: int, value: Any, error: BaseException | None, meta: dict[str, Any] | None
    ) -> None:
        """Request ``index``'s outcome as a response frame carries it (``meta``: the merge)."""
        merged = similarity = None
        if meta is not None:
            leader = meta.get("leader", -1)
            pos = leader - self.first_id if isinstance(leader, int) and leader >= 0 else -1
            merged = pos if 0 <= pos < len(self.requests) else -1
            s = meta.get("similarity")
            similarity = float(s) if isinstance(s, (int, float)) else 1.0
        self.deliver(index, value, error, merged, similarity)


class One:
    """A ``process`` call of one request: its outcome resolves the future."""

    __slots__ = ("fut",)

    def __init__(self, fut: asyncio.Future) -> None:
        self.fut = fut

    def answer(
        self, index: int, value: Any, error: BaseException | None, meta: dict[str, Any] | None
    ) -> None:
        settle(self.fut, value, error)


class RoomBell:
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


class Connection:
    """One live connection to an engine: its socket, rings, arena rows and pending calls."""

    def __init__(self, name: str, timeout: float) -> None:
        """Connect and run the handshake, blocking the calling thread for ``timeout`` s at most.

        :meth:`open` is the same without blocking an event loop.

        Raises:
            EngineUnavailableError: No engine serves ``name``, it refused this client, or it
                did not answer within ``timeout``.
        """
        self._start(name)
        try:
            self._connect_blocking(timeout)
            self._attach(self._read_welcome(timeout))
        except BaseException:
            self.close()
            raise

    @classmethod
    async def open(cls, name: str, timeout: float) -> Connection:
        """Connect from the running event loop without blocking it.

        The connect, the hello and the welcome (with its doorbells) go through the loop as
        non-blocking socket operations; the handshake takes ``timeout`` seconds at most.
        Cancelling the awaiting task closes the half-open connection.

        Raises:
            EngineUnavailableError: As for the blocking constructor.
        """
        self = cls.__new__(cls)
        self._start(name)
        try:
            await self._handshake_async(timeout)
        except BaseException:
            self.close()
            raise
        return self

    def _start(self, name: str) -> None:
        """The state of a connection before its handshake, and its (unconnected) socket."""
        self.name = name
        self.path = socket_path(name)
        self.pid = os.getpid()  # the process whose close() ends the connection for all holders
        self.dead: str | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.pending: dict[int, tuple[Call | One, int]] = {}
        self.rows_in_use: dict[int, int] = {}
        self.free_rows: list[int] = []
        self.room = RoomBell()
        # requests encoded by their callers, not in the ring yet: sent as one batch frame per
        # event-loop iteration (_send), so the ring, the doorbell and the engine's decoder
        # work once per batch, not once per request
        self.outq: list[tuple[int, int, int, int, bytes]] = []
        self.send_scheduled = False
        self.waiting_room = False  # the ring was full: _on_bell sends the rest
        self.on_full_policy: str | None = None  # the client's own on_full (None: the engine's)
        self.rbuf = MessageBuffer()
        self.stats_seq = 0
        self.next_id = 1
        # one Packer per connection: a connection is only used from its event loop's thread
        self.seg: Segment | None = None
        self.arena_seg: Segment | None = None
        self.arena: Any = None
        self.pidfd = -1
        self.fds: list[int] = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        _live.add(self)

    def _hello(self) -> bytes:
        from stratabatch.ipc.frames import FRAME_VERSION

        return pack_message(
            {
                "op": "hello",
                "protocol": PROTOCOL_VERSION,
                "frame_version": FRAME_VERSION,
                "pid": os.getpid(),
            }
        )

    def _nobody_listens(self) -> EngineUnavailableError:
        return EngineUnavailableError(
            f"no stratabatch engine named {self.name!r} is running: nothing listens at "
            f"{self.path} (start one with `stratabatch-engine --handler MODULE:ATTR "
            f"--name {self.name}`)"
        )

    def _no_answer(self, timeout: float) -> EngineUnavailableError:
        return EngineUnavailableError(
            f"the engine {self.name!r} at {self.path} did not answer within {timeout:g} s"
        )

    def _connect_blocking(self, timeout: float) -> None:
        sock = self.sock
        sock.settimeout(timeout)
        try:
            sock.connect(self.path)
        except (FileNotFoundError, ConnectionRefusedError):
            raise self._nobody_listens() from None
        except TimeoutError:
            raise self._no_answer(timeout) from None
        except OSError as exc:
            raise EngineUnavailableError(
                f"cannot connect to the engine {self.name!r} at {self.path}: {exc}"
            ) from None
        sock.sendall(self._hello())

    async def _handshake_async(self, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        end = time.monotonic() + timeout
        sock = self.sock
        sock.setblocking(False)
        while True:
            try:
                sock.connect(self.path)
                break
            except (BlockingIOError, InterruptedError):
                # a Unix socket says EAGAIN (no EINPROGRESS) while the engine's accept backlog
                # is full; the socket stays unconnected, so the connect is tried again
                if time.monotonic() >= end:
                    raise self._no_answer(timeout) from None
                await asyncio.sleep(0.01)
            except (FileNotFoundError, ConnectionRefusedError):
                raise self._nobody_listens() from None
            except OSError as exc:
                raise EngineUnavailableError(
                    f"cannot connect to the engine {self.name!r} at {self.path}: {exc}"
                ) from None
        view = memoryview(self._hello())
        while view:
            try:
                view = view[sock.send(view) :]
            except (BlockingIOError, InterruptedError):
                await self._until_ready(loop, end, timeout, write=True)
            except OSError as exc:
                raise EngineUnavailableError(
                    f"the engine {self.name!r} at {self.path} dropped the connection: {exc}"
                ) from None
        while True:
            try:
                data, fds, _, _ = socket.recv_fds(sock, 65536, 4)
            except (BlockingIOError, InterruptedError):
                await self._until_ready(loop, end, timeout)
                continue
            except OSError as exc:
                raise EngineUnavailableError(
                    f"the engine {self.name!r} at {self.path} dropped the connection: {exc}"
                ) from None
            welcome = self._handshake_data(data, fds)
            if welcome is not None:
                self._attach(welcome)
                return

    async def _until_ready(
        self, loop: asyncio.AbstractEventLoop, end: float, timeout: float, write: bool = False
    ) -> None:
        """Wait until the socket is readable (writable), at most until ``end``."""
        fd = self.sock.fileno()
        fut = loop.create_future()

        def ready(ok: bool) -> None:
            if not fut.done():
                fut.set_result(ok)

        if write:
            loop.add_writer(fd, ready, True)
        else:
            loop.add_reader(fd, ready, True)
        timer = loop.call_later(max(end - time.monotonic(), 0.0), ready, False)
        try:
            ok = await fut
        finally:
            timer.cancel()
            if write:
                loop.remove_writer(fd)
            else:
                loop.remove_reader(fd)
        if not ok:
            raise self._no_answer(timeout)

    def _read_welcome(self, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            self.sock.settimeout(max(deadline - time.monotonic(), 0.001))
            try:
                data, fds, _, _ = socket.recv_fds(self.sock, 65536, 4)
            except TimeoutError:
                raise self._no_answer(timeout) from None
            except OSError as exc:
                raise EngineUnavailableError(
                    f"the engine {self.name!r} at {self.path} dropped the connection: {exc}"
                ) from None
            welcome = self._handshake_data(data, fds)
            if welcome is not None:
                return welcome

    def _handshake_data(self, data: bytes, fds: list[int]) -> dict[str, Any] | None:
        """Take what the engine sent during the handshake; the welcome once it is complete.

        Raises:
            EngineUnavailableError: The engine refused this client, closed the connection or
                does not speak the protocol.
        """
        self.fds.extend(fds)
        if not data:
            raise EngineUnavailableError(
                f"the engine {self.name!r} at {self.path} closed the connection during "
                "the handshake"
            )
        try:
            msgs = self.rbuf.feed(data)
        except ValueError as exc:
            raise EngineUnavailableError(
                f"the engine at {self.path} is not speaking the stratabatch protocol: {exc}"
            ) from None
        if not msgs:
            return None
        msg = msgs[0]
        if msg.get("op") == "refused":
            raise EngineUnavailableError(
                f"the engine {self.name!r} at {self.path} refused this client: {msg.get('reason')}"
            )
        if msg.get("op") != "welcome":
            raise EngineUnavailableError(
                f"the engine at {self.path} answered {msg.get('op')!r}, not welcome"
            )
        return msg

    def _attach(self, welcome: dict[str, Any]) -> None:
        """Attach what the welcome names: doorbells, rings, arena; watch the engine's pid."""
        from stratabatch.ipc.arena import Arena
        from stratabatch.ipc.doorbell import Doorbell
        from stratabatch.ipc.frames import FrameDecoder, FrameEncoder, FrameLimits
        from stratabatch.ipc.ring import Ring
        from stratabatch.ipc.segment import Segment

        name = self.name
        self.welcome = welcome
        if len(self.fds) != 2:
            raise EngineUnavailableError(
                f"the engine {name!r} at {self.path} sent {len(self.fds)} doorbells, not 2"
            )
        self.engine_bell = Doorbell.attach(self.fds[0])
        self.bell = Doorbell.attach(self.fds[1])
        self.fds = []
        self.engine_pid = int(welcome["engine_pid"])
        self.slot = int(welcome["slot"])
        cap, max_frame = int(welcome["capacity"]), int(welcome["max_frame"])
        self.seg = Segment.attach(welcome["rings"], magic=RINGS_MAGIC, version=RINGS_VERSION)
        buf = self.seg.buf
        n = Ring.nbytes(cap)
        self.requests = Ring.attach(
            buf[:n], capacity=cap, max_frame=max_frame, wake_consumer=self.engine_bell
        )
        self.responses = Ring.attach(
            buf[n : 2 * n], capacity=cap, max_frame=max_frame, wake_producer=self.engine_bell
        )
        if welcome.get("arena"):
            self.arena_seg = Segment.attach(welcome["arena"], magic=ARENA_MAGIC, version=1)
            self.arena = Arena.attach(self.arena_seg.buf, owner=self.slot)
            self.free_rows = list(reversed(self.arena.own_range))
        limits = FrameLimits(**welcome["limits"])
        self.encoder = FrameEncoder(limits)
        self.decoder = FrameDecoder(limits)
        self.max_request_bytes = int(welcome["max_request_bytes"])
        # a payload this small always fits a frame of its own (no need to measure the frame)
        self.max_blob = self.encoder.limits.max_frame_bytes - 64
        self.on_full = welcome["on_full"]
        self.uses_vectors = bool(welcome["uses_vectors"])
        self.dim = int(welcome.get("dim") or 0)
        try:
            self.pidfd = os.pidfd_open(self.engine_pid)
        except (OSError, AttributeError):
            self.pidfd = -1
        self.sock.setblocking(False)

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
                    "event loop (stratabatch.connect() in each)"
                )
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
        for fd in (
            self.bell.fileno() if self.bell is not None else -1,
            self.sock.fileno(),
            self.pidfd,
        ):
            if fd >= 0:
                with contextlib.suppress(Exception):
                    loop.remove_reader(fd)

    def _on_bell(self) -> None:
        self.bell.clear()
        self._drain()
        if self.waiting_room:
            self.waiting_room = False
            self.requests.producer_awake()
            self._send()
        self.room.wake()

    def _drain(self) -> None:
        from stratabatch.ipc.errors import FrameError

        ring = self.responses
        decode = self.decoder.responses
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
                    items = decode(data)
                except FrameError as exc:
                    from stratabatch.ipc.frames import peek_frame_id

                    items = [exc]
                    exc.id = peek_frame_id(data)  # type: ignore[attr-defined]
                for r in items:
                    if isinstance(r, FrameError):
                        rid = getattr(r, "id", None)
                        entry = pending.pop(rid, None) if rid is not None else None
                        if entry is not None:
                            entry[0].answer(
                                entry[1],
                                None,
                                StratabatchError(
                                    f"the engine's response could not be decoded: {r}"
                                ),
                                None,
                            )
                        continue
                    rid = r.id
                    if rows:
                        row = rows.pop(rid, None)
                        if row is not None:
                            self.free_rows.append(row)
                    entry = pending.pop(rid, None)
                    if entry is None:
                        continue  # its caller left (timeout, cancellation)
                    if r.status == STATUS_OK:
                        entry[0].answer(entry[1], r.value, None, r.meta)
                    else:
                        entry[0].answer(entry[1], None, error_from_wire(r.status, r.value), None)

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
        self.outq.clear()
        pending, self.pending = self.pending, {}
        for call, index in pending.values():
            call.answer(index, None, EngineUnavailableError(err_text), None)
        self.room.wake(EngineUnavailableError(err_text))
        self.close()

    def close(self) -> None:
        """Release everything this connection holds (the engine sees EOF and frees the slot).

        The socket is shut down before it is closed: a process forked after the handshake
        holds a duplicate of it, and a mere close would leave the connection (and the
        engine's slot for it) open for as long as that child lives. The shutdown ends it for
        every holder. Only the process that connected shuts it down; a forked child that
        inherited the connection only closes its own copies (:func:`_after_fork_in_child`).
        """
        self._unwatch()
        for fd in self.fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.fds = []
        if self.pid == os.getpid():
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_RDWR)
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

    def let_go_after_fork(self) -> None:
        """In a forked child: drop this (the parent's) connection without ending it.

        The child's copies of the descriptors (socket, doorbells, pidfd) are closed and the
        segments unmapped; nothing is shut down and nothing is sent, so the parent's connection
        goes on and the engine sees it end when the parent closes it or exits. The parent's
        event loop is not touched (a forked child shares its epoll instance). Calls the child
        inherited mid-flight fail with :class:`StratabatchError` instead of waiting forever.
        """
        self.loop = None  # never remove the parent's readers from the shared epoll instance
        if self.dead is None:
            self.dead = f"belongs to process {self.pid} (this process was forked from it)"
        self.outq.clear()
        pending, self.pending = self.pending, {}
        if pending:
            error = StratabatchError(
                f"this stratabatch client was connected in process {self.pid}; process "
                f"{os.getpid()} was forked from it and cannot share its rings: call "
                "stratabatch.connect() in the child"
            )
            for call, index in pending.values():
                call.answer(index, None, error, None)
            self.room.wake(error)
        # nothing in this process pushes or drains the rings: their views go, so the
        # segments are unmapped here (a view still held elsewhere keeps its mapping valid)
        self.__dict__.pop("requests", None)
        self.__dict__.pop("responses", None)
        self.close()

    # ------------------------------------------------------------- requests

    def entry(
        self, request: Any, index: int, rid: int, priority: int, deadline_ns: int
    ) -> tuple[int, int, int, int, bytes]:
        """Validate and encode one request: its item of a batch frame, ``(id, priority,
        deadline_ns, arena_row, payload_bytes)``, for :meth:`queue`.

        The request is checked by the same rules as in embedded mode
        (:func:`stratabatch.requests.check_payload`); its msgpack encoding then goes into the
        frame as is, so the payload is encoded once.

        Raises:
            InvalidRequestError, RequestTooLargeError: The request breaks the request rule, or
                its frame would be over the engine's frame limit.
        """
        row = -1
        payload = request
        emb = request.get("embedding") if isinstance(request, Mapping) else None
        if emb is not None and self.uses_vectors:
            vec = check_vector(emb, self.dim or None, index)
            if self.arena is not None and self.free_rows:
                payload = {k: v for k, v in request.items() if k != "embedding"}
                blob = check_payload(payload, index, self.max_request_bytes)
                if len(blob) > self.max_blob:
                    self._check_frame(blob, index)
                row = self.free_rows.pop()
                self.arena.write_row(row, vec)
                self.rows_in_use[rid] = row
                return (rid, priority, deadline_ns, row, blob)
        blob = check_payload(payload, index, self.max_request_bytes)
        if len(blob) > self.max_blob:  # (a smaller payload always fits a frame of its own)
            self._check_frame(blob, index)
        return (rid, priority, deadline_ns, row, blob)

    def _check_frame(self, blob: bytes, index: int) -> None:
        size = self.encoder.request_item_bytes(len(blob)) + 1
        if size > self.encoder.limits.max_frame_bytes:
            raise RequestTooLargeError(
                f"request {index}: its frame is {size} bytes, over the engine's frame "
                f"limit of {self.encoder.limits.max_frame_bytes} bytes"
            )

    def queue(self, item: tuple[int, int, int, int, bytes]) -> None:
        """Send ``item`` with the other requests of this event-loop iteration."""
        self.outq.append(item)
        if not self.send_scheduled:
            self.send_scheduled = True
            assert self.loop is not None
            self.loop.call_soon(self._send)

    def queue_many(self, items: list[tuple[int, int, int, int, bytes]]) -> None:
        """:meth:`queue` for a list's requests."""
        self.outq.extend(items)
        if not self.send_scheduled:
            self.send_scheduled = True
            assert self.loop is not None
            self.loop.call_soon(self._send)

    def _send(self) -> None:
        """Push what was queued as batch frames (as few as the frame limit allows); while the
        ring is full, wait for the engine's doorbell (``on_full="wait"``) or fail what does
        not fit with :class:`QueueFullError` (``reject``, ``drop_lowest``)."""
        self.send_scheduled = False
        outq = self.outq
        if self.dead is not None or not outq or self.waiting_room:
            return
        ring = self.requests
        enc = self.encoder
        limit = enc.limits.max_frame_bytes - 5
        item_bytes = enc.request_item_bytes
        n = len(outq)
        i = 0
        while i < n:
            j, size = i, 0
            while j < n and j - i < _MAX_BATCH:
                add = item_bytes(len(outq[j][4]))
                if j > i and size + add > limit:
                    break
                size += add
                j += 1
            frame = enc.request_batch(outq[i:j])
            if not ring.try_push(frame):
                break
            i = j
        del outq[:i]
        if not outq:
            return
        if (self.on_full_policy or self.on_full) != "wait":
            self._refuse_unsent(
                f"the request ring to engine {self.name!r} is full "
                f"(on_full={self.on_full_policy or self.on_full!r})"
            )
        elif ring.producer_sleep_check(item_bytes(len(outq[0][4])) + 5):
            self.waiting_room = True  # _on_bell sends the rest
        else:
            self.send_scheduled = True  # room appeared meanwhile
            assert self.loop is not None
            self.loop.call_soon(self._send)

    def _take_unsent(self, rids: Any = None) -> list[int]:
        """Take the queued requests not sent yet (those of ``rids`` only, when given) out of
        the queue, freeing their arena rows; their ids."""
        keep, taken = [], []
        for item in self.outq:
            rid = item[0]
            if rids is not None and rid not in rids:
                keep.append(item)
            else:
                self._free_row(self.rows_in_use.pop(rid, -1))
                taken.append(rid)
        self.outq = keep
        return taken

    def _refuse_unsent(self, message: str, rids: set[int] | None = None) -> None:
        """Fail the queued requests not sent yet (those of ``rids`` only, when given)."""
        for rid in self._take_unsent(rids):
            entry = self.pending.pop(rid, None)
            if entry is not None:
                if type(entry[0]) is Call:
                    entry[0].refused = True
                entry[0].answer(entry[1], None, QueueFullError(message), None)

    def _free_row(self, row: int) -> None:
        if row >= 0:
            self.free_rows.append(row)

    def expire(self, owner: Call | One, ids: Sequence[int], timeout: float | None) -> None:
        """The caller's timeout ran out: fail its requests that have no answer yet.

        Answers already in the response ring are delivered first, so an answer the engine gave
        in time is never turned into a timeout because this timer ran before the doorbell's
        reader. Each request without an answer gets a :class:`BatchTimeoutError` (a list call
        with ``return_exceptions`` and a stream get one per request, as in embedded mode);
        the engine drops the same requests itself, since their frames carry the deadline.
        """
        if self.outq:  # still waiting for ring room: a full ring, not a slow engine
            self._refuse_unsent(
                f"the request ring to engine {self.name!r} was still full when the caller's "
                "timeout ran out",
                {rid for rid in ids if (e := self.pending.get(rid)) is not None and e[0] is owner},
            )
        if self.dead is None and self.loop is not None:
            self._drain()
        pending = self.pending
        for rid in ids:
            entry = pending.get(rid)
            if entry is not None and entry[0] is owner:
                del pending[rid]
                owner.answer(
                    entry[1],
                    None,
                    BatchTimeoutError(
                        f"the caller's timeout ({timeout or 0:g} s) ran out before the engine "
                        f"{self.name!r} answered"
                    ),
                    None,
                )

    def forget(self, call: Call, ids: range) -> None:
        """The caller left: drop its pending entries (late answers are ignored)."""
        if self.outq:  # what is not sent yet is not sent at all
            self._take_unsent(ids)
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
                        f"{timeout:g} s"
                    )
                data = sock.recv(1 << 20)
                if not data:
                    self.die("closed the connection (it stopped or died)")
                    raise EngineUnavailableError(
                        f"the stratabatch engine {self.name!r} ({self.path}) {self.dead}"
                    )
                for msg in self.rbuf.feed(data):
                    if msg.get("op") == "bye":
                        self.die(f"shut down ({msg.get('reason')})")
                        raise EngineUnavailableError(
                            f"the stratabatch engine {self.name!r} ({self.path}) {self.dead}"
                        )
                    if msg.get("op") == "stats" and msg.get("seq") == seq:
                        return msg["stats"]
        except (OSError, ValueError) as exc:
            self.die(f"dropped the connection ({exc})")
            raise EngineUnavailableError(
                f"the stratabatch engine {self.name!r} ({self.path}) {self.dead}"
            ) from None
        finally:
            if self.dead is None:
                with contextlib.suppress(OSError):
                    sock.setblocking(False)


_live: weakref.WeakSet[Connection] = weakref.WeakSet()
"""Every connection this process opened (and has not dropped)."""


def _after_fork_in_child() -> None:
    """In a forked child, let go of the parent's connections without ending them."""
    for conn in list(_live):
        with contextlib.suppress(Exception):
            conn.let_go_after_fork()
    _live.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


__all__ = ["Call", "Connection", "One", "RoomBell"]
