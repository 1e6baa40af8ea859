"""Clients of a running ``stratabatch-engine``: ``stratabatch.connect()``.

``connect(name)`` returns an :class:`EngineClient` (asyncio, uvloop too; one per process,
shared by every task); ``connect(name, sync=True)`` a :class:`SyncEngineClient` for sync code
and threads. Both have BatchProcessor's surface: ``process`` (one request or a list,
``priority=``, ``timeout=``, ``return_exceptions=``, ``reuse=``), ``process_streaming``,
``get_stats``, ``forget``, ``close`` and context managers.

Shape: one client with its transport below it. :class:`EngineClient` holds the connection
(connect, reconnect, the loop it is watched from, losing the engine, forks) and the public
surface; it holds the books of its calls as a component,
:class:`~stratabatch.asyncbooks.LoopBooks` (the requests waiting for an answer, by id; the
requests not sent yet; the arena rows they hold; the timers; every frame built and read with
:mod:`stratabatch.ipc.frames`). A :class:`~stratabatch.transport.Transport` moves the frames
(rings, doorbells, the socket, the slot's arena rows) and tells the books when the client's
doorbell rings and the client when the engine is gone. A reconnect is a new transport under
the same client and books.

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
own timer ends the call at its deadline whatever the engine does (never before it, and at most
one 10 ms tick after it: the calls whose deadlines fall in one tick share one loop timer), and
the engine, which gets the same deadline in the frame, drops the work. ``None``, ``inf`` and
anything from :data:`NO_DEADLINE_S` up mean no deadline.

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
from threading import get_ident as _thread_id
from typing import Any, Literal, overload

from .asyncbooks import LoopBooks
from .clientcalls import (
    NO_DEADLINE_S,
    ListCall,
    Packer,
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
from .requests import check_call_args
from .reusecontrol import check_forget_scope, check_reuse_flag
from .syncclient import BlockingClient, reuse_options
from .transport import Transport
from .wire import check_name, socket_path

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
        # the books of the calls: waiting requests, the queue of one loop iteration, arena rows
        self._books = LoopBooks(self.name, self._on_lost)
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop watching _conn
        # the thread _loop last ran in, seen from a call on it: while _loop runs and a call
        # comes from that thread, _loop is the running loop (asyncio.get_running_loop makes
        # a getpid system call, about 0.2 us a request)
        self._thread = 0
        self._conn: Transport | None = None
        self._adopt(Transport(self.name, timeout))
        _clients_alive.add(self)

    # ------------------------------------------------------------- the transport

    def _adopt(self, conn: Transport) -> None:
        """Use ``conn`` from now on: frames are built and read by its engine's limits."""
        self._conn = conn
        self._loop = None
        self._books.use(conn, Packer(conn, self._on_full))

    def _bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Watch the transport from ``loop`` (the loop of the calls from now on)."""
        old = self._loop
        if old is loop:
            return
        if old is not None and not old.is_closed() and self._books.waiting:
            raise StratabatchError(
                "this client has calls waiting on another event loop; use one client per "
                "event loop (stratabatch.connect() in each)"
            )
        assert self._conn is not None
        books = self._books
        self._conn.watch(loop, books.rung, self._on_lost)
        self._loop = loop
        self._thread = _thread_id()
        books.bind(loop)
        books.drain()

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

    def _on_lost(self, why: str) -> None:
        """The engine is gone: deliver what it answered, fail every other waiting call."""
        conn = self._conn
        if conn is None or conn.dead is not None:
            return
        books = self._books
        books.drain()
        conn.close(why)
        books.fail_all(
            EngineUnavailableError(f"the stratabatch engine {self.name!r} ({conn.path}) {why}")
        )

    def _after_fork_in_child(self) -> None:
        """In a forked child: calls inherited mid-flight fail instead of waiting forever; the
        transport lets go of the parent's connection without ending it."""
        self._forked = True
        conn, self._conn = self._conn, None
        self._loop = None  # never touch the parent's loop (the child shares its epoll)
        if conn is not None:
            conn.let_go_after_fork()
        self._books.after_fork(StratabatchError(forked_message(self._pid)))

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

    def _refuse_use(self) -> None:
        if self._forked or os.getpid() != self._pid:
            raise StratabatchError(forked_message(self._pid))
        raise StratabatchError("this stratabatch client is closed")

    # ------------------------------------------------------------- public surface

    async def process(
        self,
        requests: Any,
        *,
        priority: int = 0,
        timeout: float | None = None,
        return_exceptions: bool = False,
        reuse: bool = True,
    ) -> Any:
        """Process one request (a mapping) or a list of them in the engine.

        Args:
            requests: A request mapping, or a list of request mappings.
            priority: Higher goes first when the engine runs with ``enable_priorities``.
            timeout: Seconds this call waits at most, reconnecting, queueing and handling
                included; None, ``inf`` or :data:`NO_DEADLINE_S` and more: no deadline.
            return_exceptions: For a list, put each failed request's exception in its place
                instead of raising the first one.
            reuse: False: the engine's reuse cache answers none of these requests (they
                still merge with twins that wait or run; their answers are stored), as
                ``BatchProcessor.process``'s.

        Returns:
            The result for a single request; a list of results in the same order for a list.

        Raises:
            InvalidRequestError: A request is not a mapping, cannot be encoded, or has a bad
                ``"embedding"`` (nothing was sent); ``timeout`` is not a positive number;
                ``reuse`` is not a bool.
            RequestTooLargeError: A request is over the engine's size limit.
            BatchTimeoutError: ``timeout`` ran out (also while reconnecting), or the engine's
                ``processing_timeout`` did (with the engine's message).
            QueueFullError: Backpressure (the engine's queue or this client's ring).
            HandlerError: The handler failed this request or its batch.
            EngineUnavailableError: No engine serves the name, or it died meanwhile.
        """
        if self._closed or self._forked:
            self._refuse_use()
        loop = self._loop
        if loop is None or _thread_id() != self._thread or not loop.is_running():
            loop = asyncio.get_running_loop()
            if loop is self._loop:
                self._thread = _thread_id()  # (it runs in another thread than before)
        options = None if reuse is True else reuse_options(check_reuse_flag(reuse))
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
            books = self._books
            fut = loop.create_future()
            rid = books.enter_one(requests, fut, priority, deadline_ns, options)
            if end is None:
                try:
                    return await fut
                except BaseException:
                    books.leave(rid, fut)
                    raise
            tick = books.timer(end, fut, (rid,), timeout)
            try:
                return await fut
            except BaseException:
                books.leave(rid, fut)
                raise
            finally:
                tick.pop(fut, None)
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
        books = self._books
        fut = loop.create_future()
        call = ListCall(requests, fut, return_exceptions)
        ids = books.enter(requests, call, priority, deadline_ns, return_exceptions, options)
        call.settle_if_done()
        table = None if end is None else books.timer(end, call, ids, timeout)
        try:
            return await fut
        except BatchTimeoutError:
            # part of the call never left this process (the ring stayed full): that is the
            # cause to report, not the engine's timeout of the part that got in
            if books.unsent(call, ids):
                books.forget(call, ids)
                raise QueueFullError(
                    f"the request ring to engine {self.name!r} was still full when the "
                    "caller's timeout ran out"
                ) from None
            books.forget(call, ids)
            raise
        except BaseException:
            books.forget(call, ids)
            raise
        finally:
            if table is not None:
                table.pop(call, None)

    @staticmethod
    def _clock(loop: asyncio.AbstractEventLoop, timeout: float | None) -> tuple[float | None, int]:
        """A call's deadline on the loop's clock and the frame's ``deadline_ns`` (0 for none),
        both taken once, when the call starts: the reconnect, the wait for ring room and the
        wait for the answer all come out of one timeout."""
        if timeout is None:
            return None, 0
        return loop.time() + timeout, time.monotonic_ns() + int(timeout * 1e9)

    async def process_streaming(
        self,
        requests: Sequence[Any],
        *,
        priority: int = 0,
        timeout: float | None = None,
        reuse: bool = True,
    ) -> AsyncGenerator[Any, None]:
        """Process a list of requests; yield a ``Completed`` for each as it finishes.

        Failed requests are yielded with ``error`` set, those without an answer when
        ``timeout`` runs out with a ``BatchTimeoutError``. Leaving the loop early stops waiting
        for the rest (the engine still answers them; the answers are dropped). ``priority``,
        ``timeout`` and ``reuse`` as for :meth:`process`.
        """
        if self._closed or self._forked:
            self._refuse_use()
        if isinstance(requests, Mapping) or not isinstance(requests, (list, tuple)):
            raise InvalidRequestError(
                f"process_streaming() takes a list of requests, got {type(requests).__name__}"
            )
        check_call_args(priority, timeout)
        options = None if reuse is True else reuse_options(check_reuse_flag(reuse))
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
        books = self._books
        ids = books.enter(requests, call, priority, deadline_ns, False, options)
        # when the timeout runs out, every request not answered yet is yielded with a
        # BatchTimeoutError, as in embedded mode
        tick = None if end is None else books.timer(end, call, ids, timeout)
        try:
            for _ in range(len(requests)):
                yield await queue.get()
        finally:
            if tick is not None:
                tick.pop(call, None)
            books.forget(call, ids)

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

    def forget(self, scope: Mapping[str, Any] | None = None) -> int:
        """Drop stored answers of the engine's reuse cache (shared by all its clients): every
        one (``scope=None``), or those of one scope, as ``BatchProcessor.forget``. A blocking
        round trip on the engine's socket, as :meth:`get_stats`.

        Returns:
            How many entries the engine dropped; 0 when it runs with reuse off.

        Raises:
            TypeError: ``scope`` is neither None nor a mapping with str keys (nothing is
                sent), or the engine cannot encode a value.
            InvalidRequestError: ``scope`` names a field that is not in the engine's
                ``dedup_scope`` (nothing is dropped).
            EngineUnavailableError: The engine is not running, or did not answer in time.
        """
        if self._closed or self._forked:
            self._refuse_use()
        wanted = check_forget_scope(scope)
        conn = self._conn
        if conn is None or conn.dead is not None:
            conn = Transport(self.name, self._timeout)
            self._adopt(conn)
        return conn.forget(wanted, self._timeout)

    async def close(self) -> None:
        """Wait for this client's calls to finish, then disconnect (idempotent)."""
        if self._closed or self._forked or os.getpid() != self._pid:
            self._closed = True
            return
        while self._conn is not None and self._conn.dead is None and self._books.waiting:
            await asyncio.sleep(0.005)
        self._closed = True
        task, self._connecting = self._connecting, None
        if task is not None and not task.done() and not task.get_loop().is_closed():
            task.cancel()  # its handshake closes the half-open connection
        conn, self._conn = self._conn, None
        self._loop = None
        self._books.release()
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
        return self._client._books.pending

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
    closed, so a web route may call it per request: a dict read, without the lock that a
    thread making a new client holds through its handshake): an :class:`EngineClient`
    (asyncio) or, with ``sync=True``, a
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
    if type(name) is str:
        # the usual call (a web route calls connect() on every request): this process's
        # client exists. One dict read, atomic, and no lock: a thread making a client holds
        # the lock through its handshake (up to `timeout`), and the callers of a live client
        # never wait for that; a name in the table was checked when its client was made
        client = _clients.get((name, bool(sync)))
        if client is not None and not client._closed and not client._forked:
            return client
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
