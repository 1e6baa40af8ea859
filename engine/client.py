"""Clients of a running ``stratabatch-engine``: ``stratabatch.connect()``.

``connect(name)`` returns an :class:`EngineClient` (asyncio, uvloop too; one per process,
shared by every task); ``connect(name, sync=True)`` a :class:`SyncEngineClient` for sync code
and threads. Both have BatchProcessor's surface: ``process`` (one request or a list,
``priority=``, ``timeout=``, ``return_exceptions=``), ``process_streaming``, ``get_stats``,
``close`` and context managers.

Shape: one client with its transport below it. :class:`EngineClient` keeps the books of its
calls (the requests waiting for an answer, by id; the requests not sent yet; the arena rows
they hold; the timers) and builds and parses every frame with :mod:`stratabatch.ipc.frames`;
a :class:`~stratabatch.transport.Transport` moves the frames (rings, doorbells, the socket,
the slot's arena rows) and tells the client when its doorbell rings and when the engine is
gone. A reconnect is a new transport under the same client.

Requests are validated and encoded in the caller, so a request that is not a mapping, holds
something msgpack cannot carry, is over the engine's size limit, or has a bad ``"embedding"``
fails before anything is sent. A precomputed vector travels through the embedding arena: the
client writes it into one of its slot's rows before pushing the frame that names the row.
Every request made in one event-loop iteration leaves in one batch frame.

Liveness: the client watches its socket and the engine's pid (a pidfd). When the engine dies,
every waiting call fails with :class:`~stratabatch.EngineUnavailableError` at once (after the
answers already in the response ring are delivered), and the next call connects again, to a
new engine of the same name if one serves it by then: through the event loop, never blocking
it, within that call's timeout.

Timeouts: a call's ``timeout`` bounds all of it (reconnect, ring room, answer); the client's
own timer ends the call at its deadline whatever the engine does, and the engine, which gets
the same deadline in the frame, drops the work. ``None``, ``inf`` and anything from
:data:`NO_DEADLINE_S` up mean no deadline.

Forks: closing a client shuts its socket down, which ends the connection for every process
holding a copy (a child forked after connect()); a forked child lets go of its copies at the
fork and connects itself if it needs the engine.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import weakref
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any, Literal, overload

from .clientcalls import (
    NO_DEADLINE_S,
    ONE,
    Item,
    ListCall,
    Packer,
    answer,
    call_deadline,
    forked_message,
    stats_from_wire,
)
from .errors import (
    BatchTimeoutError,
    EngineUnavailableError,
    InvalidRequestError,
    QueueFullError,
    StratabatchError,
)
from .requests import check_call_args, check_payload
from .syncclient import BlockingClient
from .transport import Transport
from .wire import STATUS_OK, check_name, error_from_wire, socket_path

_ON_FULL = ("wait", "reject")


def _retrieve(task: asyncio.Task) -> None:
    # the reconnect's outcome goes to whoever awaits it; nobody may be left to (timeouts)
    if not task.cancelled():
        task.exception()


class EngineClient:
    """An asyncio client of a stratabatch engine (from ``stratabatch.connect(name)``).

    One per process, safe to share among tasks of one event loop. Not usable in a process
    forked after it connected: the child calls ``stratabatch.connect()`` itself (it has let
    go of its copy of this client's connection at the fork).

    Args:
        name: The engine's name.
        timeout: Seconds the connection handshake may take.
        on_full: What to do when this client's request ring is full: "wait" (until the
            call's timeout) or "reject" (QueueFullError at once); None follows the engine's
            ``on_full`` ("drop_lowest" acts as "reject" at the ring: the ring cannot evict).
    """

    def __init__(
        self, name: str = "default", *, timeout: float = 5.0, on_full: str | None = None
    ) -> None:
        self.name = check_name(name)
        if on_full is not None and on_full not in _ON_FULL:
            raise StratabatchError(
                f"on_full must be one of {', '.join(_ON_FULL)} or None, got {on_full!r}"
            )
        self._timeout = timeout
        self._on_full = on_full
        self._pid = os.getpid()
        self._closed = False
        self._forked = False  # set in a child forked from this process (_after_fork_in_child)
        self._connecting: asyncio.Task | None = None
        # the books: every request sent or queued and not answered yet, by id: (its call, its
        # index there), or (its future, _ONE) for a one-request call
        self._pending: dict[int, tuple[Any, int]] = {}
        self._rows: dict[int, int] = {}  # request id -> the arena row holding its vector
        # requests encoded by their callers, not in the ring yet: sent as one batch frame per
        # event-loop iteration (_flush), so the ring, the doorbell and the engine's decoder
        # work once per batch, not once per request
        self._outq: list[Item] = []
        self._flush_scheduled = False
        self._waiting_room = False  # the ring was full: _on_bell sends the rest
        self._next_id = 1
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop watching _conn
        self._conn: Transport | None = None
        self._adopt(Transport(self.name, timeout))
        _clients_alive.add(self)

    # ------------------------------------------------------------- the transport

    def _adopt(self, conn: Transport) -> None:
        """Use ``conn`` from now on: frames are built and read by its engine's limits."""
        self._conn = conn
        self._loop = None
        packer = self._packer = Packer(conn, self._on_full)
        self._decode = packer.decode
        self._max_request_bytes = packer.max_request_bytes
        self._max_blob = packer.max_blob
        self._vectors = packer.vectors
        self._policy = packer.policy

    def _bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Watch the transport from ``loop`` (the loop of the calls from now on)."""
        old = self._loop
        if old is loop:
            return
        if old is not None and not old.is_closed() and self._pending:
            raise StratabatchError(
                "this client has calls waiting on another event loop; use one client per "
                "event loop (stratabatch.connect() in each)"
            )
        assert self._conn is not None
        self._conn.watch(loop, self._on_bell, self._on_lost)
        self._loop = loop
        self._drain()

    def _connection(self) -> Any:
        """The live transport, watched from the running loop (connecting, blocking, if
        needed), with this client's table of waiting requests as ``pending``: for tests that
        drive the rings by hand."""
        loop = asyncio.get_running_loop()
        if self._conn is None or self._conn.dead is not None:
            self._adopt(Transport(self.name, self._timeout))
        self._bind(loop)
        return _Probe(self)

    async def _live(
        self, loop: asyncio.AbstractEventLoop, end: float | None, timeout: float | None
    ) -> Transport:
        """The live transport, watched from ``loop``; reconnect without blocking it.

        One reconnect at a time, shared by every call that needs it; a call waits for it until
        its own deadline ``end`` (loop time) at most, and the handshake itself until the
        client's handshake timeout. A call that gives up leaves the reconnect running for the
        others (and the next call).

        Raises:
            BatchTimeoutError: The call's timeout ran out before the engine answered the
                handshake.
            EngineUnavailableError: No engine serves the name, it refused, or it did not
                answer within the handshake timeout.
        """
        conn = self._conn
        if conn is None or conn.dead is not None:
            task = self._connecting
            if task is None or task.done() or task.get_loop() is not loop:
                task = self._connecting = loop.create_task(self._reconnect())
                task.add_done_callback(_retrieve)
            left = None if end is None else max(end - loop.time(), 0.0)
            # asyncio.wait never cancels the reconnect: neither on timeout nor when this
            # caller is cancelled
            await asyncio.wait((task,), timeout=left)
            if not task.done():
                raise BatchTimeoutError(
                    f"the caller's timeout ({timeout:g} s) ran out while connecting to the "
                    f"engine {self.name!r} ({socket_path(self.name)}): it has not answered "
                    "the handshake"
                )
            conn = task.result()
        self._bind(loop)
        return conn

    async def _reconnect(self) -> Transport:
        conn = await Transport.open(self.name, self._timeout)
        if self._closed or self._forked:
            conn.close()
            raise StratabatchError("this stratabatch client is closed")
        old = self._conn
        if old is not None and old.dead is None:
            conn.close()  # connected meanwhile by a blocking path (get_stats)
            return old
        self._adopt(conn)
        return conn

    def _on_bell(self) -> None:
        """The engine rang: answers to deliver, or room in the request ring."""
        self._drain()
        if self._waiting_room:
            self._waiting_room = False
            conn = self._conn
            if conn is not None and conn.dead is None:
                conn.room_found()
                self._flush()

    def _on_lost(self, why: str) -> None:
        """The engine is gone: deliver what it answered, fail every other waiting call."""
        conn = self._conn
        if conn is None or conn.dead is not None:
            return
        self._drain()
        conn.close(why)
        self._fail_all(
            EngineUnavailableError(f"the stratabatch engine {self.name!r} ({conn.path}) {why}")
        )

    def _fail_all(self, error: BaseException) -> None:
        """Every waiting request gets ``error``; nothing is left queued."""
        self._outq.clear()
        self._rows.clear()
        self._waiting_room = False
        pending, self._pending = self._pending, {}
        for owner, index in pending.values():
            answer(owner, index, None, error)

    def _after_fork_in_child(self) -> None:
        """In a forked child: calls inherited mid-flight fail instead of waiting forever; the
        transport lets go of the parent's connection without ending it."""
        self._forked = True
        conn, self._conn = self._conn, None
        self._loop = None  # never touch the parent's loop (the child shares its epoll)
        if conn is not None:
            conn.let_go_after_fork()
        self._outq.clear()
        self._rows.clear()
        pending, self._pending = self._pending, {}
        if pending:
            error = StratabatchError(forked_message(self._pid))
            for owner, index in pending.values():
                answer(owner, index, None, error)

    @property
    def connected(self) -> bool:
        """True while a live connection to the engine exists."""
        return self._conn is not None and self._conn.dead is None

    @property
    def socket_path(self) -> str:
        """The socket this client connects to."""
        return socket_path(self.name)

    @property
    def dedup_key(self) -> str | None:
        """The engine's ``dedup_key``, as its last handshake with this client gave it (None
        when this client has no connection, e.g. after ``close()``)."""
        conn = self._conn
        return None if conn is None else str(conn.welcome["dedup_key"])

    # ------------------------------------------------------------- requests out

    def _refuse_use(self) -> None:
        if self._forked or os.getpid() != self._pid:
            raise StratabatchError(forked_message(self._pid))
        raise StratabatchError("this stratabatch client is closed")

    def _entry(self, request: Any, index: int, rid: int, priority: int, deadline_ns: int) -> Item:
        """Validate and encode one request (:meth:`Packer.item`): its item of a batch frame,
        its arena row (if its vector got one) recorded in the books.

        Raises:
            InvalidRequestError, RequestTooLargeError: The request breaks the request rule, or
                its frame would be over the engine's frame limit.
        """
        item = self._packer.item(request, index, rid, priority, deadline_ns)
        if item[3] >= 0:
            self._rows[rid] = item[3]
        return item

    def _send(
        self,
        items: Sequence[Any],
        call: ListCall,
        priority: int,
        deadline_ns: int,
        invalid_ok: bool,
    ) -> range:
        """Encode every request of a list (refusing before anything is sent), then queue them
        for this event-loop iteration's batch frame."""
        first = self._next_id
        self._next_id += len(items)
        call.first_id = first
        entries: list[Item] = []
        index_of: list[int] = []
        entry = self._entry
        try:
            for i, item in enumerate(items):
                try:
                    entries.append(entry(item, i, first + i, priority, deadline_ns))
                    index_of.append(i)
                except InvalidRequestError as exc:
                    if not invalid_ok:
                        raise
                    call.refuse(i, exc)
        except BaseException:
            for e in entries:
                self._free_row(e[0])
            raise
        pending = self._pending
        for e, i in zip(entries, index_of, strict=True):
            pending[e[0]] = (call, i)
        self._outq += entries
        if not self._flush_scheduled and entries:
            self._flush_scheduled = True
            assert self._loop is not None
            self._loop.call_soon(self._flush)
        return range(first, first + len(items))

    def _flush(self) -> None:
        """Push what was queued as batch frames (as few as the frame limit allows); while the
        ring is full, wait for the engine's doorbell (``on_full="wait"``) or fail what does
        not fit with :class:`QueueFullError` (``reject``, ``drop_lowest``)."""
        self._flush_scheduled = False
        outq = self._outq
        conn = self._conn
        if conn is None or conn.dead is not None or not outq or self._waiting_room:
            return
        sent = 0
        for frame, n in self._packer.frames(outq):
            if not conn.push(frame):
                break
            sent += n
        if sent == len(outq):
            outq.clear()
            return
        del outq[:sent]
        self._ring_full(conn)

    def _ring_full(self, conn: Transport) -> None:
        """The request ring has no room for what is queued: apply ``on_full``."""
        if self._policy != "wait":
            self._refuse_unsent(
                f"the request ring to engine {self.name!r} is full (on_full={self._policy!r})"
            )
        elif conn.sleep_for_room(self._packer.room_for(self._outq[0])):
            self._waiting_room = True  # _on_bell sends the rest
        else:
            self._flush_scheduled = True  # room appeared meanwhile
            assert self._loop is not None
            self._loop.call_soon(self._flush)

    def _take_unsent(self, rids: Any = None) -> list[int]:
        """Take the queued requests not sent yet (those of ``rids`` only, when given) out of
        the queue, freeing their arena rows; their ids."""
        keep, taken = [], []
        for item in self._outq:
            rid = item[0]
            if rids is not None and rid not in rids:
                keep.append(item)
            else:
                self._free_row(rid)
                taken.append(rid)
        self._outq = keep
        return taken

    def _refuse_unsent(self, message: str, rids: set[int] | None = None) -> None:
        """Fail the queued requests not sent yet (those of ``rids`` only, when given)."""
        for rid in self._take_unsent(rids):
            entry = self._pending.pop(rid, None)
            if entry is not None:
                owner, index = entry
                if index >= 0:
                    owner.refused = True
                answer(owner, index, None, QueueFullError(message))

    def _free_row(self, rid: int) -> None:
        row = self._rows.pop(rid, -1)
        if row >= 0 and self._conn is not None:
            self._conn.free_row(row)

    # ------------------------------------------------------------- answers in

    def _drain(self) -> None:
        """Deliver every answer in the response ring."""
        from stratabatch.ipc.errors import FrameError

        conn = self._conn
        if conn is None or conn.dead is not None:
            return
        try:
            frames = conn.frames()
        except FrameError as exc:
            self._on_lost(f"sent a corrupt response ring ({exc})")
            return
        if not frames:
            return
        pending = self._pending
        rows = self._rows
        decode = self._decode
        for data in frames:
            try:
                items = decode(data)
            except FrameError as exc:
                from stratabatch.ipc.frames import peek_frame_id

                exc.id = peek_frame_id(data)  # type: ignore[attr-defined]
                items = [exc]
            for r in items:
                if isinstance(r, FrameError):
                    self._undecodable(r)
                    continue
                rid, status, value, meta = r
                if rows:
                    row = rows.pop(rid, -1)
                    if row >= 0:
                        conn.free_row(row)
                entry = pending.pop(rid, None)
                if entry is None:
                    continue  # its caller left (timeout, cancellation)
                owner, index = entry
                if index < 0:  # a one-request call: its future
                    if not owner.done():
                        if status == STATUS_OK:
                            owner.set_result(value)
                        else:
                            owner.set_exception(error_from_wire(status, value))
                elif status == STATUS_OK:
                    owner.answer(index, value, None, meta)
                else:
                    owner.answer(index, None, error_from_wire(status, value), None)

    def _undecodable(self, error: Any) -> None:
        rid = getattr(error, "id", None)
        entry = self._pending.pop(rid, None) if rid is not None else None
        if entry is not None:
            answer(
                entry[0],
                entry[1],
                None,
                StratabatchError(f"the engine's response could not be decoded: {error}"),
            )

    def _expire(self, owner: Any, ids: Sequence[int], timeout: float | None) -> None:
        """The caller's timeout ran out: fail its requests that have no answer yet.

        Answers already in the response ring are delivered first, so an answer the engine gave
        in time is never turned into a timeout because this timer ran before the doorbell's
        reader. Each request without an answer gets a :class:`BatchTimeoutError` (a list call
        with ``return_exceptions`` and a stream get one per request, as in embedded mode);
        the engine drops the same requests itself, since their frames carry the deadline. A
        request still queued here (the ring stayed full) gets a :class:`QueueFullError`.
        """
        pending = self._pending
        if self._outq:  # still waiting for ring room: a full ring, not a slow engine
            self._refuse_unsent(
                f"the request ring to engine {self.name!r} was still full when the caller's "
                "timeout ran out",
                {rid for rid in ids if (e := pending.get(rid)) is not None and e[0] is owner},
            )
        self._drain()
        for rid in ids:
            entry = pending.get(rid)
            if entry is not None and entry[0] is owner:
                del pending[rid]
                answer(
                    owner,
                    entry[1],
                    None,
                    BatchTimeoutError(
                        f"the caller's timeout ({timeout or 0:g} s) ran out before the engine "
                        f"{self.name!r} answered"
                    ),
                )

    def _forget(self, owner: Any, ids: range) -> None:
        """The caller left: drop its pending entries (late answers are ignored)."""
        if self._outq:  # what is not sent yet is not sent at all
            self._take_unsent(ids)
        pending = self._pending
        for rid in ids:
            entry = pending.get(rid)
            if entry is not None and entry[0] is owner:
                del pending[rid]

    # ------------------------------------------------------------- public surface

    async def process(
        self,
        requests: Any,
        *,
        priority: int = 0,
        timeout: float | None = None,
        return_exceptions: bool = False,
    ) -> Any:
        """Process one request (a mapping) or a list of them in the engine.

        Args:
            requests: A request mapping, or a list of request mappings.
            priority: Higher goes first when the engine runs with ``enable_priorities``.
            timeout: Seconds this call waits at most, reconnecting, queueing and handling
                included; None, ``inf`` or :data:`NO_DEADLINE_S` and more: no deadline.
            return_exceptions: For a list, put each failed request's exception in its place
                instead of raising the first one.

        Returns:
            The result for a single request; a list of results in the same order for a list.

        Raises:
            InvalidRequestError: A request is not a mapping, cannot be encoded, or has a bad
                ``"embedding"`` (nothing was sent); ``timeout`` is not a positive number.
            RequestTooLargeError: A request is over the engine's size limit.
            BatchTimeoutError: ``timeout`` ran out (also while reconnecting), or the engine's
                ``processing_timeout`` did (with the engine's message).
            QueueFullError: Backpressure (the engine's queue or this client's ring).
            HandlerError: The handler failed this request or its batch.
            EngineUnavailableError: No engine serves the name, or it died meanwhile.
        """
        if self._closed or self._forked:
            self._refuse_use()
        loop = asyncio.get_running_loop()
        if type(requests) is dict or isinstance(requests, Mapping):
            # one request: the steps of a list, without the list (and inline: no second
            # coroutine, this is the path of every request of a typical caller); its future
            # is its own entry in the books
            end = None
            deadline_ns = 0
            if priority != 0 or timeout is not None:
                check_call_args(priority, timeout)
                timeout = call_deadline(timeout)
                if timeout is not None:
                    end = loop.time() + timeout
                    deadline_ns = time.monotonic_ns() + int(timeout * 1e9)
            conn = self._conn
            if conn is None or conn.dead is not None or self._loop is not loop:
                await self._live(loop, end, timeout)
            rid = self._next_id
            self._next_id = rid + 1
            if self._vectors:
                item = self._entry(requests, 0, rid, priority, deadline_ns)
            else:  # (_entry without a vector to look for)
                blob = check_payload(requests, 0, self._max_request_bytes)
                if len(blob) > self._max_blob:
                    self._packer.check_frame(blob, 0)
                item = (rid, priority, deadline_ns, -1, blob)
            fut = loop.create_future()
            pending = self._pending
            pending[rid] = (fut, ONE)
            self._outq.append(item)
            if not self._flush_scheduled:
                self._flush_scheduled = True
                loop.call_soon(self._flush)
            if end is None:
                try:
                    return await fut
                except BaseException:
                    entry = pending.get(rid)
                    if entry is not None and entry[0] is fut:
                        del pending[rid]
                    raise
            expiry = loop.call_at(end, self._expire, fut, (rid,), timeout)
            try:
                return await fut
            except BaseException:
                entry = pending.get(rid)
                if entry is not None and entry[0] is fut:
                    del pending[rid]
                raise
            finally:
                expiry.cancel()
        if not isinstance(requests, (list, tuple)):
            raise InvalidRequestError(
                "process() takes a request mapping or a list of them, "
                f"got {type(requests).__name__}"
            )
        check_call_args(priority, timeout)
        if not requests:
            return []
        timeout = call_deadline(timeout)
        end, deadline_ns = self._clock(loop, timeout)
        conn = self._conn
        if conn is None or conn.dead is not None or self._loop is not loop:
            await self._live(loop, end, timeout)
        fut = loop.create_future()
        call = ListCall(requests, fut, return_exceptions)
        ids = self._send(requests, call, priority, deadline_ns, return_exceptions)
        call.settle_if_done()
        timer = None if end is None else loop.call_at(end, self._expire, call, ids, timeout)
        try:
            return await fut
        except BatchTimeoutError:
            # part of the call never left this process (the ring stayed full): that is the
            # cause to report, not the engine's timeout of the part that got in
            if call.refused or any(item[0] in ids for item in self._outq):
                self._forget(call, ids)
                raise QueueFullError(
                    f"the request ring to engine {self.name!r} was still full when the "
                    "caller's timeout ran out"
                ) from None
            self._forget(call, ids)
            raise
        except BaseException:
            self._forget(call, ids)
            raise
        finally:
            if timer is not None:
                timer.cancel()

    @staticmethod
    def _clock(loop: asyncio.AbstractEventLoop, timeout: float | None) -> tuple[float | None, int]:
        """A call's deadline on the loop's clock and the frame's ``deadline_ns`` (0 for none),
        both taken once, when the call starts: the reconnect, the wait for ring room and the
        wait for the answer all come out of one timeout."""
        if timeout is None:
            return None, 0
        return loop.time() + timeout, time.monotonic_ns() + int(timeout * 1e9)

    async def process_streaming(
        self, requests: Sequence[Any], *, priority: int = 0, timeout: float | None = None
    ) -> AsyncGenerator[Any, None]:
        """Process a list of requests; yield a ``Completed`` for each as it finishes.

        Failed requests are yielded with ``error`` set, those without an answer when
        ``timeout`` runs out with a ``BatchTimeoutError``. Leaving the loop early stops waiting
        for the rest (the engine still answers them; the answers are dropped).
        """
        if self._closed or self._forked:
            self._refuse_use()
        if isinstance(requests, Mapping) or not isinstance(requests, (list, tuple)):
            raise InvalidRequestError(
                f"process_streaming() takes a list of requests, got {type(requests).__name__}"
            )
        check_call_args(priority, timeout)
        if not requests:
            return
        timeout = call_deadline(timeout)
        loop = asyncio.get_running_loop()
        end, deadline_ns = self._clock(loop, timeout)
        conn = self._conn
        if conn is None or conn.dead is not None or self._loop is not loop:
            await self._live(loop, end, timeout)
        queue: asyncio.Queue = asyncio.Queue()
        call = ListCall(requests, None, True, queue)
        ids = self._send(requests, call, priority, deadline_ns, False)
        # when the timeout runs out, every request not answered yet is yielded with a
        # BatchTimeoutError, as in embedded mode
        timer = None if end is None else loop.call_at(end, self._expire, call, ids, timeout)
        try:
            for _ in range(len(requests)):
                yield await queue.get()
        finally:
            if timer is not None:
                timer.cancel()
            self._forget(call, ids)

    def get_stats(self) -> Any:
        """The engine's statistics (all its clients together), as a ``Stats``.

        Raises:
            EngineUnavailableError: The engine is not running.
        """
        if self._closed or self._forked:
            self._refuse_use()
        conn = self._conn
        if conn is None or conn.dead is not None:
            conn = Transport(self.name, self._timeout)
            self._adopt(conn)
        return stats_from_wire(conn.stats(self._timeout))

    async def close(self) -> None:
        """Wait for this client's calls to finish, then disconnect (idempotent)."""
        if self._closed or self._forked or os.getpid() != self._pid:
            self._closed = True
            return
        while self._conn is not None and self._conn.dead is None and self._pending:
            await asyncio.sleep(0.005)
        self._closed = True
        task, self._connecting = self._connecting, None
        if task is not None and not task.done() and not task.get_loop().is_closed():
            task.cancel()  # its handshake closes the half-open connection
        conn, self._conn = self._conn, None
        self._loop = None
        if conn is not None:
            conn.close()
        _forget(self)

    async def __aenter__(self) -> EngineClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("connected" if self.connected else "disconnected")
        return f"<EngineClient {self.name!r} {state}>"


class _Probe:
    """What :meth:`EngineClient._connection` returns: the transport's attributes, and the
    client's table of waiting requests as ``pending``."""

    def __init__(self, client: EngineClient) -> None:
        self._client = client
        self._transport = client._conn

    @property
    def pending(self) -> dict[int, tuple[Any, int]]:
        return self._client._pending

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class SyncEngineClient(BlockingClient):
    """A blocking client of a stratabatch engine (``stratabatch.connect(name, sync=True)``).

    For sync web workers, scripts and threads: the calls block the calling thread; any number
    of threads may call at once. It runs no event loop: each caller thread encodes and sends
    its own requests (the calls of threads answered together leave together, in one batch
    frame), and one reader thread delivers the answers, waking exactly the callers answered.
    The machinery is :class:`stratabatch.syncclient.BlockingClient`; this subclass is its
    public name (and leaves ``connect()``'s registry when closed).

    Args:
        name: The engine's name.
        timeout: Seconds the connection handshake may take.
        on_full: When this client's request ring is full: "wait" (until the call's timeout)
            or "reject" (QueueFullError at once); None follows the engine's ``on_full``.
    """

    def close(self) -> None:
        """Wait for pending calls, disconnect and stop the client's reader thread
        (idempotent)."""
        try:
            super().close()
        finally:
            _forget(self)


# ------------------------------------------------------------------------- connect()

_clients: dict[tuple[str, bool], Any] = {}
_lock = threading.Lock()


def _forget(client: Any) -> None:
    with _lock:
        for key, value in list(_clients.items()):
            if value is client:
                del _clients[key]


_clients_alive: weakref.WeakSet[EngineClient] = weakref.WeakSet()
"""Every asyncio client this process made, for the fork hook (the blocking clients have
their own: :mod:`stratabatch.syncclient`)."""


def _after_fork_in_child() -> None:
    # the child must not reuse its parent's clients (their calls raise a clear error, and
    # the calls it inherited mid-flight fail instead of waiting forever)
    _clients.clear()
    for client in list(_clients_alive):
        client._after_fork_in_child()
    _clients_alive.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


@overload
def connect(
    name: str = "default",
    *,
    sync: Literal[False] = False,
    timeout: float = 5.0,
    on_full: Literal["wait", "reject"] | None = None,
) -> EngineClient: ...
@overload
def connect(
    name: str = "default",
    *,
    sync: Literal[True],
    timeout: float = 5.0,
    on_full: Literal["wait", "reject"] | None = None,
) -> SyncEngineClient: ...
@overload
def connect(
    name: str = "default",
    *,
    sync: bool,
    timeout: float = 5.0,
    on_full: Literal["wait", "reject"] | None = None,
) -> EngineClient | SyncEngineClient: ...
def connect(
    name: str = "default", *, sync: bool = False, timeout: float = 5.0, on_full: str | None = None
) -> EngineClient | SyncEngineClient:
    """Connect to the running ``stratabatch-engine`` called ``name``.

    Returns this process's client of that engine (the same object on every call until it is
    closed): an :class:`EngineClient` (asyncio) or, with ``sync=True``, a
    :class:`SyncEngineClient` (blocking); a type checker sees which from ``sync``. Both have
    BatchProcessor's ``process``, ``process_streaming``, ``get_stats`` and ``close``.

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
        if client is not None and not client._closed and not client._forked:
            return client
        client = (SyncEngineClient if sync else EngineClient)(
            name, timeout=timeout, on_full=on_full
        )
        _clients[key] = client
        return client


__all__ = ["NO_DEADLINE_S", "EngineClient", "ListCall", "SyncEngineClient", "connect"]
