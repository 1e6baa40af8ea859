"""The blocking engine client: caller threads send, one reader thread answers; no event loop.

:class:`BlockingClient` is what ``stratabatch.connect(name, sync=True)`` returns (as
:class:`stratabatch.client.SyncEngineClient`). It holds its :class:`~stratabatch.syncbooks.Books`
(its calls, what is queued, the combining send and the wake chain) and the connection:

* **caller threads** validate and encode their own requests and enter them in the books,
  which send them in batch frames (the calls of threads answered together leave together);
  a caller then sleeps on a lock of its own (its :class:`~stratabatch.syncbooks.Waiter`):
  one futex wake ends its wait.
* **one reader thread** per connection sleeps in ``poll`` on the client's doorbell, the
  socket and the engine's pidfd; it drains the response ring into the books (which wake the
  answered callers), sends what the ring had no room for once the engine frees some
  (``on_full="wait"``), reads the socket's ``bye``, EOF and stats answers, and, when the
  engine goes away, delivers the answers already in the ring and fails every other waiting
  call with :class:`~stratabatch.EngineUnavailableError`.

Timeouts are the caller's own: a caller waits on its lock with its timeout; when it runs
out, the answers already in the ring are delivered first (one the engine gave in time wins),
then the call's requests without an answer fail with :class:`BatchTimeoutError` (or
:class:`QueueFullError` for those that never left the process: the ring stayed full). A
reconnect blocks only the caller that needs it, one at a time, within its timeout.
"""

from __future__ import annotations

import os
import queue
import select
import threading
import time
import weakref
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from .clientcalls import (
    Item,
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
from .requests import check_call_args, flat_packer
from .reusecontrol import check_forget_scope, check_reuse_flag
from .syncbooks import Books, Waiter
from .transport import Transport
from .wire import check_name, socket_path

__all__ = ["BlockingClient", "reuse_options"]

_ON_FULL = ("wait", "reject")
_SAFETY_MS = 200
"""The reader wakes at least this often: a safety net for a lost doorbell or send."""

_CLOSED = "the call was cancelled (the client closed)"


_REUSE_OFF: list[bytes] = []


def reuse_options(reuse: bool) -> bytes | None:
    """The encoded request options (:func:`stratabatch.ipc.frames.encode_options`) of a call's
    checked ``reuse=`` flag: None for True (the frame then carries none)."""
    if reuse:
        return None
    if not _REUSE_OFF:
        from stratabatch.ipc.frames import encode_options

        _REUSE_OFF.append(encode_options({"reuse": False}))
    return _REUSE_OFF[0]


def _clock(timeout: float | None) -> tuple[float | None, int]:
    """A call's deadline (``time.monotonic``) and the frame's ``deadline_ns`` (0: none)."""
    if timeout is None:
        return None, 0
    now = time.monotonic_ns()
    return now / 1e9 + timeout, now + int(timeout * 1e9)


class BlockingClient:
    """A blocking client of a stratabatch engine: see the module docstring.

    Any number of threads may call at once. Not usable in a process forked after it
    connected: the child calls ``stratabatch.connect()`` itself.

    Args:
        name: The engine's name.
        timeout: Seconds the connection handshake may take.
        on_full: When this client's request ring is full: "wait" (until the call's timeout)
            or "reject" (QueueFullError at once); None follows the engine's ``on_full``.
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
        self._forked = False
        self._books = Books(self.name)
        self._read_lock = threading.Lock()  # one consumer of the response ring; close()
        self._connect_lock = threading.Lock()  # one reconnect at a time
        self._stats = threading.Condition()  # answers to get_stats, posted by the reader
        self._stats_answers: dict[int, dict[str, Any]] = {}
        self._conn: Transport | None = None
        self._packer: Packer | None = None
        self._reader: threading.Thread | None = None
        self._mine = threading.local()  # per caller thread: its encoder, its idle Waiter
        self._adopt(Transport(self.name, timeout))
        _alive.add(self)

    # ------------------------------------------------------------- the connection

    def _adopt(self, conn: Transport) -> None:
        """Use ``conn`` from now on, with a reader thread of its own."""
        packer = Packer(conn, self._on_full)
        self._books.use(conn, packer)
        self._conn, self._packer = conn, packer
        self._reader = threading.Thread(
            target=self._read, args=(conn,), name=f"stratabatch-reader-{self.name}", daemon=True
        )
        self._reader.start()

    def _live(self, end: float | None, timeout: float | None) -> Transport:
        """The live transport; connect again (blocking this caller only) if the engine went
        away. One reconnect at a time; a caller waits for it until its deadline ``end``.

        Raises:
            BatchTimeoutError: The caller's timeout ran out while connecting.
            EngineUnavailableError: No engine serves the name, it refused, or it did not
                answer within the handshake timeout.
        """
        lock = self._connect_lock
        if not lock.acquire(timeout=-1 if end is None else max(end - time.monotonic(), 0)):
            raise self._connect_timeout(timeout)
        try:
            conn = self._conn
            if conn is not None and conn.dead is None:
                return conn
            if self._closed or self._forked:
                self._refuse_use()
            wait = self._timeout
            if end is not None:
                wait = min(wait, max(end - time.monotonic(), 0.001))
            try:
                conn = Transport(self.name, wait)
            except EngineUnavailableError:
                if wait < self._timeout and end is not None and time.monotonic() >= end:
                    raise self._connect_timeout(timeout) from None
                raise
            self._adopt(conn)
            return conn
        finally:
            lock.release()

    def _connect_timeout(self, timeout: float | None) -> BatchTimeoutError:
        return BatchTimeoutError(
            f"the caller's timeout ({timeout or 0:g} s) ran out while connecting to the "
            f"engine {self.name!r} ({socket_path(self.name)}): it has not answered the "
            "handshake"
        )

    def _refuse_use(self) -> None:
        if self._forked or os.getpid() != self._pid:
            raise StratabatchError(forked_message(self._pid))
        raise StratabatchError("this stratabatch client is closed")

    # ------------------------------------------------------------- requests out

    # ------------------------------------------------------------- answers in

    def _read(self, conn: Transport) -> None:
        """The reader thread of ``conn``: until it ends, deliver answers as they come."""
        poller = select.poll()
        bell = conn.bell
        bell_fd, sock_fd, pidfd = bell.fileno(), conn.sock.fileno(), conn.pidfd
        for fd in (bell_fd, sock_fd, pidfd):
            if fd >= 0:
                poller.register(fd, select.POLLIN)
        events: list[tuple[int, int]] = []
        books = self._books
        while True:
            why = None
            with self._read_lock:
                if conn.dead is not None:
                    break
                for fd, _ in events:
                    if fd == bell_fd:
                        bell.clear()
                    elif fd == sock_fd:
                        msgs, why = conn.read_socket()
                        self._post_stats(msgs)
                    elif fd == pidfd:
                        why = "died"
                why = books.drain(conn) or why
                if why is not None:
                    self._lose(conn, why)
                    break
                books.room(conn)  # (when the ring was full and the engine freed room)
                if not events:  # the safety net: something queued that nobody sends
                    books.kick(conn)
                books.watch_chain(conn, time.monotonic())  # (a chain nobody carries on)
            events = poller.poll(_SAFETY_MS)

    def _lose(self, conn: Transport, why: str) -> None:
        """(Under the read lock.) The engine is gone: fail every call still waiting."""
        self._books.lose(conn, why)
        with self._stats:
            self._stats.notify_all()

    def _expire(self, owner: Any, ids: range, timeout: Any) -> None:
        """The caller's timeout ran out: deliver the answers already in the ring (one the
        engine gave in time wins), then fail the call's requests still without one."""
        conn = self._conn
        if conn is not None:
            with self._read_lock:
                if conn.dead is None:
                    why = self._books.drain(conn)
                    if why is not None:
                        self._lose(conn, why)
        self._books.expire(owner, ids, timeout)

    def _post_stats(self, msgs: list[dict[str, Any]]) -> None:
        """Post the engine's answers to socket requests (stats, forget) for their callers."""
        for msg in msgs:
            if msg.get("op") in ("stats", "forget"):
                with self._stats:
                    self._stats_answers[msg.get("seq", -1)] = msg
                    self._stats.notify_all()

    # ------------------------------------------------------------- waiting

    def _wait(self, waiter: Waiter, owner: Any, ids: range, end: float | None, timeout: Any) -> Any:
        """Sleep until ``waiter`` has the call's outcome (or its deadline ``end`` passed:
        then the call's requests without an answer fail); the outcome."""
        lock = waiter.lock
        try:
            if end is None:
                lock.acquire()
            elif not lock.acquire(timeout=max(end - time.monotonic(), 0)):
                self._expire(owner, ids, timeout)
                if not self._books.claim(waiter):  # (answered: not waiting for the chain)
                    lock.acquire()
        except BaseException:  # an interrupt: the call is dropped (late answers ignored)
            self._books.forget(owner, ids)
            self._books.back(waiter, interrupted=True)
            raise
        if waiter.counted or waiter.chained:
            self._books.back(waiter)
        if waiter.error is not None:
            raise waiter.error
        return waiter.value

    # ------------------------------------------------------------- public surface

    def process(
        self,
        requests: Any,
        *,
        priority: int = 0,
        timeout: float | None = None,
        return_exceptions: bool = False,
        reuse: bool = True,
    ) -> Any:
        """Process one request (a mapping) or a list of them in the engine, blocking.

        Args:
            requests: A request mapping, or a list of request mappings.
            priority: Higher goes first when the engine runs with ``enable_priorities``.
            timeout: Seconds this call waits at most, reconnecting, queueing and handling
                included; None, ``inf`` or ``NO_DEADLINE_S`` and more: no deadline.
            return_exceptions: For a list, put each failed request's exception in its place
                instead of raising the first one.
            reuse: False: the engine's reuse cache answers none of these requests (they
                still merge with twins that wait or run; their answers are stored).

        Returns:
            The result for a single request; a list of results in the same order for a list.

        Raises:
            InvalidRequestError: A request is not a mapping, cannot be encoded, or has a bad
                ``"embedding"`` (nothing was sent); ``timeout`` is not a positive number;
                ``reuse`` is not a bool.
            RequestTooLargeError: A request is over the engine's size limit.
            BatchTimeoutError: ``timeout`` ran out (also while reconnecting), or the engine's
                ``processing_timeout`` did.
            QueueFullError: Backpressure (the engine's queue or this client's ring).
            HandlerError: The handler failed this request or its batch.
            EngineUnavailableError: No engine serves the name, or it died meanwhile.
        """
        if self._closed or self._forked:  # (the fork hook sets _forked in a child)
            self._refuse_use()
        options = None if reuse is True else reuse_options(check_reuse_flag(reuse))
        if type(requests) is dict or isinstance(requests, Mapping):
            end = None
            deadline_ns = 0
            if priority != 0 or timeout is not None:
                check_call_args(priority, timeout)
                timeout = call_deadline(timeout)
                end, deadline_ns = _clock(timeout)
            conn = self._conn
            if conn is None or conn.dead is not None:
                conn = self._live(end, timeout)
            packer = self._packer
            assert packer is not None
            mine = self._mine  # this thread's encoder, and the waiter of its last call
            try:
                pack = mine.pack
            except AttributeError:
                pack = mine.pack = flat_packer()
                mine.waiter = None
            row = -1
            if packer.vectors:
                item = packer.item(requests, 0, 0, priority, deadline_ns)
                row, blob = item[3], item[4]
            else:
                blob = packer.payload(requests, pack)
            waiter = mine.waiter
            if waiter is None:
                waiter = Waiter()
            else:
                mine.waiter = None  # (taken; given back only when its call ends with a value)
            rid = self._books.enter_one(conn, waiter, priority, deadline_ns, row, blob, options)
            value = self._wait(waiter, waiter, range(rid, rid + 1), end, timeout)
            # its call ended with a value: the books hold nothing of it, its lock is held
            # again, so it serves this thread's next call
            waiter.reset()
            mine.waiter = waiter
            return value
        if not isinstance(requests, (list, tuple)):
            raise InvalidRequestError(
                "process() takes a request mapping or a list of them, "
                f"got {type(requests).__name__}"
            )
        check_call_args(priority, timeout)
        if not requests:
            return []
        timeout = call_deadline(timeout)
        end, deadline_ns = _clock(timeout)
        conn = self._conn
        if conn is None or conn.dead is not None:
            conn = self._live(end, timeout)
        waiter = Waiter()
        call = ListCall(requests, waiter, return_exceptions)
        ids = self._enter_list(
            conn, requests, call, priority, deadline_ns, return_exceptions, options
        )
        try:
            return self._wait(waiter, call, ids, end, timeout)
        except BatchTimeoutError:
            # part of the call never left this process (the ring stayed full): that is the
            # cause to report, not the engine's timeout of the part that got in
            unsent = self._books.unsent(call, ids)
            self._books.forget(call, ids)
            if unsent:
                raise QueueFullError(
                    f"the request ring to engine {self.name!r} was still full when the "
                    "caller's timeout ran out"
                ) from None
            raise
        except BaseException:
            self._books.forget(call, ids)
            raise

    def _enter_list(
        self,
        conn: Transport,
        requests: Sequence[Any],
        call: ListCall,
        priority: int,
        deadline_ns: int,
        invalid_ok: bool,
        options: bytes | None = None,
    ) -> range:
        """Encode every request of a list (refusing before anything is sent), then enter and
        queue them (with the call's encoded ``options``, if any); their ids."""
        packer = self._packer
        assert packer is not None
        items: list[Item] = []
        index_of: list[int] = []
        try:
            for i, request in enumerate(requests):
                try:
                    items.append(packer.item(request, i, 0, priority, deadline_ns))
                    index_of.append(i)
                except InvalidRequestError as exc:
                    if not invalid_ok:
                        raise
                    call.refuse(i, exc)
        except BaseException:
            for item in items:
                conn.free_row(item[3])
            raise
        if not items:
            call.settle_if_done()
            return range(0)
        return self._books.enter(conn, call, items, index_of, len(requests), options)

    def process_streaming(
        self,
        requests: Sequence[Any],
        *,
        priority: int = 0,
        timeout: float | None = None,
        reuse: bool = True,
    ) -> Iterator[Any]:
        """Process a list of requests; yield a ``Completed`` for each as it finishes.

        Failed requests are yielded with ``error`` set, those without an answer when
        ``timeout`` runs out with a ``BatchTimeoutError``. Leaving the loop early stops waiting
        for the rest (the engine still answers them; the answers are dropped). ``priority``,
        ``timeout`` and ``reuse`` as for :meth:`process`.
        """
        if self._closed or self._forked:  # (the fork hook sets _forked in a child)
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
        end, deadline_ns = _clock(timeout)
        conn = self._conn
        if conn is None or conn.dead is not None:
            conn = self._live(end, timeout)
        stream: queue.SimpleQueue[Any] = queue.SimpleQueue()
        call = ListCall(requests, None, True, stream)
        ids = self._enter_list(conn, requests, call, priority, deadline_ns, False, options)
        try:
            for _ in range(len(requests)):
                if end is None:
                    yield stream.get()
                    continue
                try:
                    done = stream.get(timeout=max(end - time.monotonic(), 0.0))
                except queue.Empty:
                    # every request without an answer is yielded with a BatchTimeoutError,
                    # as in embedded mode
                    self._expire(call, ids, timeout)
                    done = stream.get()
                yield done
        finally:
            self._books.forget(call, ids)

    def get_stats(self) -> Any:
        """The engine's statistics (all its clients together), as a ``Stats``.

        Raises:
            EngineUnavailableError: The engine is not running, or did not answer in time.
        """
        return stats_from_wire(self._ask("stats").get("stats", {}))

    def forget(self, scope: Mapping[str, Any] | None = None) -> int:
        """Drop stored answers of the engine's reuse cache (shared by all its clients): every
        one (``scope=None``), or those of one scope, as ``BatchProcessor.forget``.

        Returns:
            How many entries the engine dropped; 0 when it runs with reuse off.

        Raises:
            TypeError: ``scope`` is neither None nor a mapping with str keys (nothing is
                sent), or a value cannot be encoded.
            InvalidRequestError: ``scope`` names a field that is not in the engine's
                ``dedup_scope`` (nothing is dropped).
            EngineUnavailableError: The engine is not running, or did not answer in time.
        """
        from .transport import forget_answer

        wanted = check_forget_scope(scope)
        return forget_answer(self._ask("forget", scope=wanted))

    def _ask(self, op: str, **fields: Any) -> dict[str, Any]:
        """Send the socket request ``op`` and wait for the answer the reader thread posts.

        Raises:
            EngineUnavailableError: The engine is not running, or did not answer in time.
        """
        if self._closed or self._forked:  # (the fork hook sets _forked in a child)
            self._refuse_use()
        conn = self._conn
        if conn is None or conn.dead is not None:
            conn = self._live(None, None)
        cond = self._stats
        with cond:
            try:
                seq = conn.send_op(op, **fields)
            except OSError as exc:
                raise EngineUnavailableError(
                    f"the stratabatch engine {self.name!r} ({conn.path}) dropped the "
                    f"connection ({exc})"
                ) from None
            end = time.monotonic() + self._timeout
            while seq not in self._stats_answers:
                if conn.dead is not None:
                    raise EngineUnavailableError(
                        f"the stratabatch engine {self.name!r} ({conn.path}) {conn.dead}"
                    )
                left = end - time.monotonic()
                if left <= 0:
                    raise EngineUnavailableError(
                        f"the engine {self.name!r} did not answer a {op} request within "
                        f"{self._timeout:g} s"
                    )
                cond.wait(left)
            return self._stats_answers.pop(seq)

    def close(self) -> None:
        """Wait for this client's calls to finish, disconnect and stop its reader thread
        (idempotent)."""
        if self._closed or self._forked or os.getpid() != self._pid:
            self._closed = True
            return
        while self._conn is not None and self._conn.dead is None and self._books.waiting:
            time.sleep(0.005)
        self._closed = True
        with self._read_lock:
            self._conn = None
            self._books.close(StratabatchError(_CLOSED))
        reader = self._reader
        if reader is not None and reader is not threading.current_thread():
            reader.join(5.0)

    @property
    def connected(self) -> bool:
        """True while a live connection to the engine exists."""
        return self._conn is not None and self._conn.dead is None

    @property
    def socket_path(self) -> str:
        """The socket this client connects to."""
        return socket_path(self.name)

    def __enter__(self) -> BlockingClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("connected" if self.connected else "disconnected")
        return f"<{type(self).__name__} {self.name!r} {state}>"

    def _after_fork_in_child(self) -> None:
        """In a forked child: nothing of the parent's connection is used (the transport lets
        go of its copies itself); calls raise a clear error."""
        self._forked = True
        self._conn = None
        self._reader = None
        # a lock held by a parent thread at the fork stays held in the child: new ones
        self._read_lock = threading.Lock()
        self._connect_lock = threading.Lock()
        self._books.after_fork()


_alive: weakref.WeakSet[BlockingClient] = weakref.WeakSet()
"""Every blocking client this process made, for the fork hook."""


def _after_fork_in_child() -> None:
    for client in list(_alive):
        client._after_fork_in_child()
    _alive.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)
