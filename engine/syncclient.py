"""The blocking engine client's machinery: caller threads send, one reader thread answers.

:class:`BlockingClient` is what ``stratabatch.connect(name, sync=True)`` returns (as
:class:`stratabatch.client.SyncEngineClient`). It runs no event loop. Its books (the requests
waiting for an answer, by id; the requests not sent yet; the arena rows they hold) are guarded
by one short lock, and two kinds of threads touch them:

* **caller threads** validate and encode their own requests and queue them; the caller that
  finds nobody sending pushes everything queued, as few batch frames as the limits allow
  (the others only queue: a combining send). While callers answered together are still on
  their way back (see below), a new request only queues: the last of them to come back
  pushes what the burst queued, so the calls of threads answered together leave together,
  in one frame, as an asyncio client's calls of one loop iteration do. A caller then
  sleeps on a lock of its own (its ``_Waiter``): one futex wake ends its wait.
* **one reader thread** per connection sleeps in ``poll`` on the client's doorbell, the
  socket and the engine's pidfd; it drains the response ring, sets each answered call's
  outcome and wakes exactly those callers. It also sends what the ring had no room for
  once the engine frees some (``on_full="wait"``), reads the socket's ``bye``, EOF and stats
  answers, and, when the engine goes away, delivers the answers already in the ring and
  fails every other waiting call with :class:`~stratabatch.EngineUnavailableError`.

Timeouts are the caller's own: a caller waits on its lock with its timeout; when it runs
out, the answers already in the ring are delivered first (one the engine gave in time wins),
then the call's requests without an answer fail with :class:`BatchTimeoutError` (or
:class:`QueueFullError` for those that never left the process: the ring stayed full). A
reconnect is blocking, one at a time, within the caller's timeout.
"""

from __future__ import annotations

import collections
import os
import queue
import select
import threading
import time
import weakref
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from .clientcalls import (
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
from .transport import Transport
from .wire import STATUS_OK, check_name, error_from_wire, socket_path

__all__ = ["BlockingClient"]

_ON_FULL = ("wait", "reject")
_SAFETY_MS = 200
"""The reader wakes at least this often: a safety net for a lost doorbell or send."""

_CLOSED = "the call was cancelled (the client closed)"


class _Waiter:
    """Where a blocking call's outcome goes: the calling thread sleeps on ``lock`` (held from
    the start) until the outcome is set and the lock released.

    It is the call's future as far as the books go (``done``, ``set_result``,
    ``set_exception``), always set under the client's lock. ``counted``: the reader set it
    as part of a burst, whose sends wait until each of its callers is back
    (:meth:`BlockingClient._back`). ``chained``: its outcome is set, and its caller is woken
    by the caller woken before it (:meth:`BlockingClient._back`), not by the reader.
    """

    __slots__ = ("_done", "chained", "counted", "error", "lock", "value")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.lock.acquire()
        self.value: Any = None
        self.error: BaseException | None = None
        self._done = False
        self.counted = False
        self.chained = False

    def done(self) -> bool:
        return self._done

    def set_result(self, value: Any) -> None:
        if not self._done:
            self.value = value
            self._done = True
            self.lock.release()

    def set_exception(self, error: BaseException) -> None:
        if not self._done:
            self.error = error
            self._done = True
            self.lock.release()


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
        self._lock = threading.Lock()  # the books below
        self._read_lock = threading.Lock()  # one consumer of the response ring; close()
        self._connect_lock = threading.Lock()  # one reconnect at a time
        self._stats = threading.Condition()  # answers to get_stats, posted by the reader
        self._stats_answers: dict[int, dict[str, Any]] = {}
        # every request sent or queued and not answered yet, by id: (its call, its index
        # there), or (its waiter, ONE) for a one-request call
        self._pending: dict[int, tuple[Any, int]] = {}
        self._rows: dict[int, int] = {}  # request id -> the arena row holding its vector
        self._outq: list[Item] = []  # queued, not in the ring yet
        self._sending = False  # a thread is pushing _outq: the others only queue
        self._waiting_room = False  # the ring was full: the reader sends the rest
        self._returning = 0  # callers the reader woke together, not back yet
        # answered one-request callers not woken yet: each caller woken wakes the next
        self._ready: collections.deque[_Waiter] = collections.deque()
        self._chain = False  # a caller of _ready is awake and has not woken the next yet
        self._next_id = 1
        self._conn: Transport | None = None
        self._packer: Packer | None = None
        self._reader: threading.Thread | None = None
        self._adopt(Transport(self.name, timeout))
        _alive.add(self)

    # ------------------------------------------------------------- the connection

    def _adopt(self, conn: Transport) -> None:
        """Use ``conn`` from now on, with a reader thread of its own."""
        packer = Packer(conn, self._on_full)
        with self._lock:
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

    def _enter(
        self, conn: Transport, owner: Any, items: list[Item], index_of: Any, span: int = 1
    ) -> range:
        """Enter a call's encoded requests in the books and queue them; their ids: one
        contiguous range of ``span`` (a list's length: request ``i`` of a list has id
        ``first + i``, so a merge's leader id maps back to its position).
        ``index_of``: each item's index in its list (None: a one-request call).

        Raises:
            EngineUnavailableError: The engine went away while the call started.
        """
        lock = self._lock
        with lock:
            if conn.dead is not None or self._conn is not conn:
                for item in items:
                    conn.free_row(item[3])
                raise self._gone(conn)
            first = self._next_id
            self._next_id = first + span
            pending, rows, outq = self._pending, self._rows, self._outq
            for k, item in enumerate(items):
                if index_of is None:
                    rid = first
                    pending[rid] = (owner, ONE)
                else:
                    rid = first + index_of[k]
                    pending[rid] = (owner, index_of[k])
                if item[3] >= 0:
                    rows[rid] = item[3]
                outq.append((rid, item[1], item[2], item[3], item[4]))
            if isinstance(owner, ListCall):
                owner.first_id = first
            send = not self._sending and not self._waiting_room and not self._returning
            if send:
                self._sending = True
        if send:
            self._send(conn)
        return range(first, first + span)

    def _gone(self, conn: Transport) -> EngineUnavailableError:
        """A call that started as the engine went away: what it raises."""
        return EngineUnavailableError(
            f"the stratabatch engine {self.name!r} ({conn.path}) {conn.dead or 'went away'}"
        )

    def _send(self, conn: Transport | None) -> None:
        """Push everything queued (this thread holds the ``_sending`` role); while the ring
        is full, leave the rest to the reader (``on_full="wait"``) or fail it with
        :class:`QueueFullError`."""
        lock = self._lock
        while True:
            with lock:
                items = self._outq
                if not items or conn is None or conn.dead is not None or self._waiting_room:
                    self._sending = False
                    return
                self._outq = []
                packer = self._packer
            assert packer is not None
            sent = 0
            try:
                for frame, n in packer.frames(items):
                    if not conn.push(frame):
                        break
                    sent += n
            except (OSError, ValueError):  # the engine went away meanwhile: the reader fails all
                with lock:
                    self._sending = False
                return
            if sent == len(items):
                continue
            with lock:
                self._outq[:0] = items[sent:]
                if packer.policy != "wait":
                    self._sending = False
                    self._refuse_unsent(
                        f"the request ring to engine {self.name!r} is full "
                        f"(on_full={packer.policy!r})"
                    )
                    return
                if conn.sleep_for_room(packer.room_for(self._outq[0])):
                    self._waiting_room = True  # the reader sends the rest
                    self._sending = False
                    return
            # room appeared meanwhile: push again

    def _back(self, waiter: _Waiter, interrupted: bool = False) -> None:
        """A caller the reader answered is back (``interrupted``: it left without waiting
        for its answer). Wake the next answered caller (one at a time: a woken caller then
        finds the GIL free, instead of a herd of them queueing for it); when it is the last
        of its burst, push what the burst queued meanwhile."""
        conn = nxt = None
        ready = self._ready
        with self._lock:
            if waiter.chained:
                waiter.chained = False
                if interrupted and waiter in ready:
                    ready.remove(waiter)  # not woken yet: the chain goes on without it
                elif ready:
                    nxt = ready.popleft()
                else:
                    self._chain = False
            if waiter.counted:
                waiter.counted = False
                self._returning -= 1
                if (
                    not self._returning
                    and self._outq
                    and not self._sending
                    and not self._waiting_room
                ):
                    self._sending = True
                    conn = self._conn
        if nxt is not None:
            nxt.lock.release()
        if conn is not None:
            self._send(conn)

    def _take_unsent(self, rids: Any = None) -> list[int]:
        """(Under the lock.) Take the queued requests not sent yet (those of ``rids`` only,
        when given) out of the queue, freeing their arena rows; their ids."""
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

    def _refuse_unsent(self, message: str, rids: Any = None) -> None:
        """(Under the lock.) Fail the queued requests not sent yet with QueueFullError."""
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

    def _read(self, conn: Transport) -> None:
        """The reader thread of ``conn``: until it ends, deliver answers as they come."""
        poller = select.poll()
        bell = conn.bell
        bell_fd, sock_fd, pidfd = bell.fileno(), conn.sock.fileno(), conn.pidfd
        for fd in (bell_fd, sock_fd, pidfd):
            if fd >= 0:
                poller.register(fd, select.POLLIN)
        events: list[tuple[int, int]] = []
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
                why = self._drain(conn) or why
                if why is not None:
                    self._lose(conn, why)
                    break
                if self._waiting_room:
                    self._room(conn)
                elif not events:  # the safety net: something queued that nobody sends
                    self._back_stuck(conn)
            events = poller.poll(_SAFETY_MS)

    def _room(self, conn: Transport) -> None:
        """The engine freed room in the request ring: send the rest."""
        with self._lock:
            if not self._waiting_room:
                return
            self._waiting_room = False
            conn.room_found()
            send = not self._sending
            if send:
                self._sending = True
        if send:
            self._send(conn)

    def _back_stuck(self, conn: Transport) -> None:
        with self._lock:
            send = bool(self._outq) and not self._sending and not self._waiting_room
            if send:
                self._sending = True
        if send:
            self._send(conn)

    def _post_stats(self, msgs: list[dict[str, Any]]) -> None:
        for msg in msgs:
            if msg.get("op") == "stats":
                with self._stats:
                    self._stats_answers[msg.get("seq", -1)] = msg.get("stats", {})
                    self._stats.notify_all()

    def _drain(self, conn: Transport) -> str | None:
        """(Under the read lock.) Deliver every answer in the response ring; why the engine
        is to be dropped (a corrupt ring), else None."""
        from stratabatch.ipc.errors import FrameError

        try:
            frames = conn.frames()
        except FrameError as exc:
            return f"sent a corrupt response ring ({exc})"
        if not frames:
            return None
        packer = self._packer
        assert packer is not None
        items: list[Any] = []
        for data in frames:
            try:
                items += packer.decode(data)
            except FrameError as exc:
                from stratabatch.ipc.frames import peek_frame_id

                exc.id = peek_frame_id(data)  # type: ignore[attr-defined]
                items.append(exc)
        ready = self._ready
        with self._lock:
            pending, rows = self._pending, self._rows
            woken = 0
            for r in items:
                if isinstance(r, FrameError):
                    bad = getattr(r, "id", None)
                    entry = pending.pop(bad, None) if isinstance(bad, int) else None
                    if entry is not None:
                        error = StratabatchError(f"the engine's response could not be decoded: {r}")
                        answer(entry[0], entry[1], None, error)
                    continue
                rid, status, value, meta = r
                if rows:
                    row = rows.pop(rid, -1)
                    if row >= 0:
                        conn.free_row(row)
                entry = pending.pop(rid, None)
                if entry is None:
                    continue  # its caller left (timeout, interrupt)
                owner, index = entry
                if index < 0:  # a one-request call: its waiter, woken in turn (_back)
                    if not owner._done:
                        if status == STATUS_OK:
                            owner.value = value
                        else:
                            owner.error = error_from_wire(status, value)
                        owner._done = owner.counted = owner.chained = True
                        ready.append(owner)
                        woken += 1
                    continue
                waiter = owner.fut
                before = waiter is None or waiter._done
                if status == STATUS_OK:
                    owner.answer(index, value, None, meta)
                else:
                    owner.answer(index, None, error_from_wire(status, value), None)
                if not before and waiter._done:
                    waiter.counted = True
                    woken += 1
            self._returning += woken
            first = None
            if ready and not self._chain:
                self._chain = True
                first = ready.popleft()
        if first is not None:
            first.lock.release()
        return None

    def _lose(self, conn: Transport, why: str) -> None:
        """(Under the read lock.) The engine is gone: fail every call still waiting."""
        with self._lock:
            conn.close(why)
            if self._conn is conn:
                self._fail_all(
                    EngineUnavailableError(
                        f"the stratabatch engine {self.name!r} ({conn.path}) {why}"
                    )
                )
        with self._stats:
            self._stats.notify_all()

    def _fail_all(self, error: BaseException) -> None:
        """(Under the lock.) Every waiting request gets ``error``; nothing stays queued."""
        self._outq = []
        self._rows.clear()
        self._waiting_room = False
        pending, self._pending = self._pending, {}
        for owner, index in pending.values():
            answer(owner, index, None, error)

    # ------------------------------------------------------------- waiting

    def _wait(
        self, waiter: _Waiter, owner: Any, ids: range, end: float | None, timeout: Any
    ) -> Any:
        """Sleep until ``waiter`` has the call's outcome (or its deadline ``end`` passed:
        then the call's requests without an answer fail); the outcome."""
        lock = waiter.lock
        try:
            if end is None:
                lock.acquire()
            elif not lock.acquire(timeout=max(end - time.monotonic(), 0)):
                self._expire(owner, ids, timeout)
                lock.acquire()
        except BaseException:  # an interrupt: the call is dropped (late answers ignored)
            self._forget(owner, ids)
            self._back(waiter, interrupted=True)
            raise
        if waiter.counted or waiter.chained:
            self._back(waiter)
        if waiter.error is not None:
            raise waiter.error
        return waiter.value

    def _expire(self, owner: Any, ids: range, timeout: Any) -> None:
        """The caller's timeout ran out: deliver the answers already in the ring, then fail
        the call's requests still without one (QueueFullError for those never sent)."""
        conn = self._conn
        if conn is not None:
            with self._read_lock:
                if conn.dead is None:
                    why = self._drain(conn)
                    if why is not None:
                        self._lose(conn, why)
        with self._lock:
            pending = self._pending
            if self._outq:
                self._refuse_unsent(
                    f"the request ring to engine {self.name!r} was still full when the "
                    "caller's timeout ran out",
                    {rid for rid in ids if (e := pending.get(rid)) is not None and e[0] is owner},
                )
            for rid in ids:
                entry = pending.get(rid)
                if entry is not None and entry[0] is owner:
                    del pending[rid]
                    answer(
                        owner,
                        entry[1],
                        None,
                        BatchTimeoutError(
                            f"the caller's timeout ({timeout or 0:g} s) ran out before the "
                            f"engine {self.name!r} answered"
                        ),
                    )

    def _forget(self, owner: Any, ids: range) -> None:
        """The caller left: drop its requests from the books (late answers are ignored)."""
        with self._lock:
            if self._outq:  # what is not sent yet is not sent at all
                self._take_unsent(ids)
            pending = self._pending
            for rid in ids:
                entry = pending.get(rid)
                if entry is not None and entry[0] is owner:
                    del pending[rid]

    # ------------------------------------------------------------- public surface

    def process(
        self,
        requests: Any,
        *,
        priority: int = 0,
        timeout: float | None = None,
        return_exceptions: bool = False,
    ) -> Any:
        """Process one request (a mapping) or a list of them in the engine, blocking.

        Args:
            requests: A request mapping, or a list of request mappings.
            priority: Higher goes first when the engine runs with ``enable_priorities``.
            timeout: Seconds this call waits at most, reconnecting, queueing and handling
                included; None, ``inf`` or ``NO_DEADLINE_S`` and more: no deadline.
            return_exceptions: For a list, put each failed request's exception in its place
                instead of raising the first one.

        Returns:
            The result for a single request; a list of results in the same order for a list.

        Raises:
            InvalidRequestError: A request is not a mapping, cannot be encoded, or has a bad
                ``"embedding"`` (nothing was sent); ``timeout`` is not a positive number.
            RequestTooLargeError: A request is over the engine's size limit.
            BatchTimeoutError: ``timeout`` ran out (also while reconnecting), or the engine's
                ``processing_timeout`` did.
            QueueFullError: Backpressure (the engine's queue or this client's ring).
            HandlerError: The handler failed this request or its batch.
            EngineUnavailableError: No engine serves the name, or it died meanwhile.
        """
        if self._closed or self._forked:  # (the fork hook sets _forked in a child)
            self._refuse_use()
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
            if packer.vectors:
                item = packer.item(requests, 0, 0, priority, deadline_ns)
            else:  # (item() without a vector to look for)
                blob = check_payload(requests, 0, packer.max_request_bytes)
                if len(blob) > packer.max_blob:
                    packer.check_frame(blob, 0)
                item = (0, priority, deadline_ns, -1, blob)
            waiter = _Waiter()
            row = item[3]
            with self._lock:  # (_enter, inlined for the one-request call)
                if conn.dead is None and self._conn is conn:
                    rid = self._next_id
                    self._next_id = rid + 1
                    self._pending[rid] = (waiter, ONE)
                    if row >= 0:
                        self._rows[rid] = row
                    self._outq.append((rid, priority, deadline_ns, row, item[4]))
                    send = not (self._sending or self._waiting_room or self._returning)
                    if send:
                        self._sending = True
                else:
                    rid = 0
            if not rid:
                conn.free_row(row)
                raise self._gone(conn)
            if send:
                self._send(conn)
            return self._wait(waiter, waiter, range(rid, rid + 1), end, timeout)
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
        waiter = _Waiter()
        call = ListCall(requests, waiter, return_exceptions)
        ids = self._enter_list(conn, requests, call, priority, deadline_ns, return_exceptions)
        try:
            return self._wait(waiter, call, ids, end, timeout)
        except BatchTimeoutError:
            # part of the call never left this process (the ring stayed full): that is the
            # cause to report, not the engine's timeout of the part that got in
            with self._lock:
                unsent = call.refused or any(item[0] in ids for item in self._outq)
            self._forget(call, ids)
            if unsent:
                raise QueueFullError(
                    f"the request ring to engine {self.name!r} was still full when the "
                    "caller's timeout ran out"
                ) from None
            raise
        except BaseException:
            self._forget(call, ids)
            raise

    def _enter_list(
        self,
        conn: Transport,
        requests: Sequence[Any],
        call: ListCall,
        priority: int,
        deadline_ns: int,
        invalid_ok: bool,
    ) -> range:
        """Encode every request of a list (refusing before anything is sent), then enter and
        queue them; their ids."""
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
        return self._enter(conn, call, items, index_of, len(requests))

    def process_streaming(
        self, requests: Sequence[Any], *, priority: int = 0, timeout: float | None = None
    ) -> Iterator[Any]:
        """Process a list of requests; yield a ``Completed`` for each as it finishes.

        Failed requests are yielded with ``error`` set, those without an answer when
        ``timeout`` runs out with a ``BatchTimeoutError``. Leaving the loop early stops waiting
        for the rest (the engine still answers them; the answers are dropped).
        """
        if self._closed or self._forked:  # (the fork hook sets _forked in a child)
            self._refuse_use()
        if isinstance(requests, Mapping) or not isinstance(requests, (list, tuple)):
            raise InvalidRequestError(
                f"process_streaming() takes a list of requests, got {type(requests).__name__}"
            )
        check_call_args(priority, timeout)
        if not requests:
            return
        timeout = call_deadline(timeout)
        end, deadline_ns = _clock(timeout)
        conn = self._conn
        if conn is None or conn.dead is not None:
            conn = self._live(end, timeout)
        stream: queue.SimpleQueue[Any] = queue.SimpleQueue()
        call = ListCall(requests, None, True, stream)
        ids = self._enter_list(conn, requests, call, priority, deadline_ns, False)
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
            self._forget(call, ids)

    def get_stats(self) -> Any:
        """The engine's statistics (all its clients together), as a ``Stats``.

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
                seq = conn.ask_stats()
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
                        f"the engine {self.name!r} did not answer a stats request within "
                        f"{self._timeout:g} s"
                    )
                cond.wait(left)
            raw = self._stats_answers.pop(seq)
        return stats_from_wire(raw)

    def close(self) -> None:
        """Wait for this client's calls to finish, disconnect and stop its reader thread
        (idempotent)."""
        if self._closed or self._forked or os.getpid() != self._pid:
            self._closed = True
            return
        while self._conn is not None and self._conn.dead is None and self._pending:
            time.sleep(0.005)
        self._closed = True
        with self._read_lock, self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                conn.close()
            self._fail_all(StratabatchError(_CLOSED))
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
        self._lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._connect_lock = threading.Lock()
        self._pending = {}
        self._rows = {}
        self._outq = []
        self._ready = collections.deque()
        self._chain = self._sending = self._waiting_room = False
        self._returning = 0


_alive: weakref.WeakSet[BlockingClient] = weakref.WeakSet()
"""Every blocking client this process made, for the fork hook."""


def _after_fork_in_child() -> None:
    for client in list(_alive):
        client._after_fork_in_child()
    _alive.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)
