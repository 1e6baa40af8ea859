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
import concurrent.futures
import os
import threading
import time
from collections.abc import AsyncGenerator, Iterator, Mapping, Sequence
from typing import Any, Literal, overload

from .connection import Call, Connection, One
from .errors import (
    BatchTimeoutError,
    InvalidRequestError,
    QueueFullError,
    StratabatchError,
)
from .requests import check_call_args
from .wire import (
    check_name,
    socket_path,
)

_ON_FULL = ("wait", "reject")
NO_DEADLINE_S = 1e9
"""A call ``timeout`` of this many seconds (about 31 years) or more, ``float("inf")``
included, means no deadline, as None does (a frame's deadline is an int64 of nanoseconds)."""


def _deadline(timeout: float | None) -> float | None:
    """A checked call timeout as the client uses it: None for none or an unbounded one."""
    return None if timeout is None or timeout >= NO_DEADLINE_S else timeout


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
        self._connecting: asyncio.Task | None = None
        self._conn: Connection | None = Connection(self.name, timeout)
        self._conn.on_full_policy = on_full

    # ------------------------------------------------------------- plumbing

    def _check_process(self) -> None:
        if os.getpid() != self._pid:
            raise StratabatchError(
                f"this stratabatch client was connected in process {self._pid}; process "
                f"{os.getpid()} was forked from it and cannot share its rings: call "
                "stratabatch.connect() in the child"
            )
        if self._closed:
            raise StratabatchError("this stratabatch client is closed")

    def _connection(self) -> Connection:
        """The live connection, bound to the running loop (connecting, blocking, if needed)."""
        loop = asyncio.get_running_loop()
        conn = self._conn
        if conn is None or conn.dead is not None:
            conn = self._conn = Connection(self.name, self._timeout)
            conn.on_full_policy = self._on_full
        conn.bind(loop)
        return conn

    async def _live(self, end: float | None, timeout: float | None) -> Connection:
        """The live connection, bound to the running loop; reconnect without blocking it.

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
        loop = asyncio.get_running_loop()
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
        conn.bind(loop)
        return conn

    async def _reconnect(self) -> Connection:
        conn = await Connection.open(self.name, self._timeout)
        conn.on_full_policy = self._on_full
        if self._closed or os.getpid() != self._pid:
            conn.close()
            raise StratabatchError("this stratabatch client is closed")
        old = self._conn
        if old is not None and old.dead is None:
            conn.close()  # connected meanwhile by a blocking path (get_stats)
            return old
        self._conn = conn
        return conn

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
        welcome = getattr(self._conn, "welcome", None)
        return None if welcome is None else str(welcome["dedup_key"])

    _check_call_args = staticmethod(check_call_args)

    def _send(
        self,
        items: Sequence[Any],
        call: Call,
        priority: int,
        deadline_ns: int,
        invalid_ok: bool,
        conn: Connection,
    ) -> range:
        """Encode every request (refusing before anything is sent), then queue them for this
        event-loop iteration's batch frame."""
        first = conn.next_id
        conn.next_id += len(items)
        call.first_id = first
        entries: list[tuple[int, int, int, int, bytes]] = []
        index_of: list[int] = []
        try:
            for i, item in enumerate(items):
                try:
                    entries.append(conn.entry(item, i, first + i, priority, deadline_ns))
                    index_of.append(i)
                except InvalidRequestError as exc:
                    if not invalid_ok:
                        raise
                    call.refuse(i, exc)
        except BaseException:
            for e in entries:
                row = conn.rows_in_use.pop(e[0], None)
                if row is not None:
                    conn.free_rows.append(row)
            raise
        pending = conn.pending
        for e, i in zip(entries, index_of, strict=True):
            pending[e[0]] = (call, i)
        conn.queue_many(entries)
        return range(first, first + len(items))

    @staticmethod
    def _start(timeout: float | None) -> tuple[asyncio.AbstractEventLoop, float | None, int]:
        """A call's clock: its loop, its deadline on the loop's clock and the frame's
        ``deadline_ns`` (0 for none), both taken once, when the call starts: the reconnect,
        the wait for ring room and the wait for the answer all come out of one timeout."""
        loop = asyncio.get_running_loop()
        if timeout is None:
            return loop, None, 0
        return loop, loop.time() + timeout, time.monotonic_ns() + int(timeout * 1e9)

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
        self._check_process()
        if type(requests) is dict or isinstance(requests, Mapping):
            # one request: the steps of a list, without the list (and inline: no second
            # coroutine, this is the path of every request of a typical caller)
            if priority != 0 or timeout is not None:
                self._check_call_args(priority, timeout)
                timeout = _deadline(timeout)
            loop, end, deadline_ns = self._start(timeout)
            conn = self._conn
            if conn is None or conn.loop is not loop or conn.dead is not None:
                conn = await self._live(end, timeout)
            rid = conn.next_id
            conn.next_id = rid + 1
            item = conn.entry(requests, 0, rid, priority, deadline_ns)
            fut = loop.create_future()
            one = One(fut)
            conn.pending[rid] = (one, 0)
            conn.queue(item)
            expiry = None if end is None else loop.call_at(end, conn.expire, one, (rid,), timeout)
            try:
                return await fut
            except BaseException:
                entry = conn.pending.get(rid)
                if entry is not None and entry[0] is one:
                    del conn.pending[rid]
                raise
            finally:
                if expiry is not None:
                    expiry.cancel()
        if not isinstance(requests, (list, tuple)):
            raise InvalidRequestError(
                "process() takes a request mapping or a list of them, "
                f"got {type(requests).__name__}"
            )
        self._check_call_args(priority, timeout)
        if not requests:
            return []
        timeout = _deadline(timeout)
        loop, end, deadline_ns = self._start(timeout)
        conn = self._conn
        if conn is None or conn.loop is not loop or conn.dead is not None:
            conn = await self._live(end, timeout)
        fut = loop.create_future()
        call = Call(requests, fut, return_exceptions)
        ids = self._send(requests, call, priority, deadline_ns, return_exceptions, conn)
        call.settle_if_done()
        timer = None if end is None else loop.call_at(end, conn.expire, call, ids, timeout)
        try:
            return await fut
        except BatchTimeoutError:
            # part of the call never left this process (the ring stayed full): that is the
            # cause to report, not the engine's timeout of the part that got in
            if call.refused or any(item[0] in ids for item in conn.outq):
                conn.forget(call, ids)
                raise QueueFullError(
                    f"the request ring to engine {self.name!r} was still full when the "
                    "caller's timeout ran out"
                ) from None
            conn.forget(call, ids)
            raise
        except BaseException:
            conn.forget(call, ids)
            raise
        finally:
            if timer is not None:
                timer.cancel()

    async def process_streaming(
        self, requests: Sequence[Any], *, priority: int = 0, timeout: float | None = None
    ) -> AsyncGenerator[Any, None]:
        """Process a list of requests; yield a ``Completed`` for each as it finishes.

        Failed requests are yielded with ``error`` set, those without an answer when
        ``timeout`` runs out with a ``BatchTimeoutError``. Leaving the loop early stops waiting
        for the rest (the engine still answers them; the answers are dropped).
        """
        self._check_process()
        if isinstance(requests, Mapping) or not isinstance(requests, (list, tuple)):
            raise InvalidRequestError(
                f"process_streaming() takes a list of requests, got {type(requests).__name__}"
            )
        self._check_call_args(priority, timeout)
        if not requests:
            return
        timeout = _deadline(timeout)
        loop, end, deadline_ns = self._start(timeout)
        conn = self._conn
        if conn is None or conn.loop is not loop or conn.dead is not None:
            conn = await self._live(end, timeout)
        queue: asyncio.Queue = asyncio.Queue()
        call = Call(requests, None, True, queue)
        ids = self._send(requests, call, priority, deadline_ns, False, conn)
        # when the timeout runs out, every request not answered yet is yielded with a
        # BatchTimeoutError, as in embedded mode
        timer = None if end is None else loop.call_at(end, conn.expire, call, ids, timeout)
        try:
            for _ in range(len(requests)):
                yield await queue.get()
        finally:
            if timer is not None:
                timer.cancel()
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
            conn = self._conn = Connection(self.name, self._timeout)
            conn.on_full_policy = self._on_full
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
        task, self._connecting = self._connecting, None
        if task is not None and not task.done() and not task.get_loop().is_closed():
            task.cancel()  # its handshake closes the half-open connection
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

    def __init__(
        self, name: str = "default", *, timeout: float = 5.0, on_full: str | None = None
    ) -> None:
        self.name = check_name(name)
        self._pid = os.getpid()
        self._loop = _new_loop()
        # calls waiting to be started on the loop thread: every call made while the loop
        # thread was busy starts with one wake-up of it (one self-pipe write), not one each
        self._inq: list[tuple[Any, ...]] = []
        self._inq_lock = threading.Lock()
        self._inq_scheduled = False
        self._thread = threading.Thread(
            target=self._loop.run_forever, name=f"stratabatch-client-{name}", daemon=True
        )
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
                "stratabatch.connect() in the child"
            )
        fut = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return fut.result()
        except concurrent.futures.CancelledError:
            raise StratabatchError("the call was cancelled (the client closed)") from None

    def process(
        self,
        requests: Any,
        *,
        priority: int = 0,
        timeout: float | None = None,
        return_exceptions: bool = False,
    ) -> Any:
        """Blocking :meth:`EngineClient.process`.

        The call is handed to the client's loop thread with the others made meanwhile (one
        wake-up of that thread for all of them), and the calling thread sleeps on a lock of
        its own until its outcome is set: the requests of every thread calling at once leave
        in one batch frame, as an asyncio caller's do.
        """
        if os.getpid() != self._pid or self._closed:
            return self._run(  # (the message of a forked child, or a closed client)
                self._client.process(
                    requests,
                    priority=priority,
                    timeout=timeout,
                    return_exceptions=return_exceptions,
                )
            )
        waiter = _Waiter()
        with self._inq_lock:
            self._inq.append((requests, priority, timeout, return_exceptions, waiter))
            wake = not self._inq_scheduled
            self._inq_scheduled = True
        if wake:
            try:
                self._loop.call_soon_threadsafe(self._start_calls)
            except RuntimeError:  # the loop thread stopped (the client closed meanwhile)
                with self._inq_lock:
                    self._inq_scheduled = False
                    if waiter in (w for *_, w in self._inq):
                        self._inq = [c for c in self._inq if c[-1] is not waiter]
                raise StratabatchError("the call was cancelled (the client closed)") from None
        waiter.lock.acquire()
        if waiter.error is not None:
            raise waiter.error
        return waiter.value

    def _start_calls(self) -> None:
        """On the loop thread: start every call handed over since the last wake-up."""
        with self._inq_lock:
            calls, self._inq = self._inq, []
            self._inq_scheduled = False
        client = self._client
        loop = self._loop
        for requests, priority, timeout, return_exceptions, waiter in calls:
            task = loop.create_task(
                client.process(
                    requests,
                    priority=priority,
                    timeout=timeout,
                    return_exceptions=return_exceptions,
                )
            )
            task.add_done_callback(waiter.settle)

    def process_streaming(
        self, requests: Sequence[Any], *, priority: int = 0, timeout: float | None = None
    ) -> Iterator[Any]:
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
            with self._inq_lock:  # calls handed over too late to start: they fail, not hang
                calls, self._inq = self._inq, []
            for *_, waiter in calls:
                waiter.error = StratabatchError("the call was cancelled (the client closed)")
                waiter.lock.release()

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


class _Waiter:
    """Where a blocking call's outcome goes: the calling thread sleeps on ``lock`` (held from
    the start) until the loop thread sets the outcome and releases it."""

    __slots__ = ("error", "lock", "value")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.lock.acquire()
        self.value: Any = None
        self.error: BaseException | None = None

    def settle(self, task: asyncio.Task) -> None:
        if task.cancelled():
            self.error = StratabatchError("the call was cancelled (the client closed)")
        else:
            self.error = task.exception()
            if self.error is None:
                self.value = task.result()
        self.lock.release()


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
        if client is not None and not client._closed and client._pid == os.getpid():
            return client
        client = (SyncEngineClient if sync else EngineClient)(
            name, timeout=timeout, on_full=on_full
        )
        _clients[key] = client
        return client


__all__ = ["NO_DEADLINE_S", "EngineClient", "SyncEngineClient", "connect"]
