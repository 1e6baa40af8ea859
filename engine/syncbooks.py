"""The blocking client's books: its calls, what is queued, and who wakes whom.

:class:`Books` is what :class:`~stratabatch.syncclient.BlockingClient` keeps of its calls, and
the rules its threads follow when they touch it, all under one short lock:

* the requests waiting for an answer, by id (each with its :class:`Waiter`, or its
  :class:`~stratabatch.clientcalls.ListCall` and index there), the arena rows they hold, and
  the requests queued and not in the ring yet;
* **the combining send**: the caller that finds nobody sending pushes everything queued as
  batch frames (:meth:`Books.send`); the others only queue. While callers answered together
  are still on their way back, a new request only queues: the last of them to come back
  pushes what they queued (:meth:`Books.back`), so a burst's next calls leave together;
* **the wake chain**: the reader thread (:meth:`Books.drain`) sets the answered one-request
  calls' outcomes and wakes only the first of them; each caller woken wakes the next as it
  leaves (:meth:`Books.back`), so a woken caller finds the GIL free instead of a herd of
  callers queueing for it. A chain never strands anyone: a caller whose timeout runs out
  takes its answer out of the chain (:meth:`Books.claim`); the reader breaks up a chain
  that has not moved for :data:`STALL_S` (:meth:`Books.watch_chain`: a caller interrupted
  between its wake-up and its hand-on), waking everyone answered at once, and so do the
  engine's loss and ``close()``;
* a full ring: ``on_full="wait"`` leaves the rest queued for the reader to send when the
  engine frees room (:meth:`Books.room`), ``reject`` fails it with ``QueueFullError``.

The books know the transport their requests are queued for (:meth:`Books.use`) but never read
the socket or sleep on a doorbell: that is the client's reader thread.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Sequence
from typing import Any

from stratabatch.ipc.errors import FrameError

from .clientcalls import ONE, CallBooks, Item, ListCall, Packer, answer, clean_ids
from .errors import (
    EngineUnavailableError,
    StratabatchError,
)
from .transport import Transport
from .wire import STATUS_OK, error_from_wire

__all__ = ["STALL_S", "Books", "Waiter"]

STALL_S = 0.05
"""A wake chain that has not moved for this long when the reader looks is broken up: every
caller answered and not woken yet is woken at once (a caller woken wakes the next within
microseconds, so only an exception between a wake-up and its hand-on stops a chain)."""


class Waiter:
    """Where a blocking call's outcome goes: the calling thread sleeps on ``lock`` (held from
    the start) until the outcome is set and the lock released.

    It is the call's future as far as the books go (``done``, ``set_result``,
    ``set_exception``), always set under the client's lock. ``counted``: the reader set it
    as part of a burst, whose sends wait until each of its callers is back
    (:meth:`Books.back`). ``chained``: its outcome is set, and its caller is woken
    by the caller woken before it (:meth:`Books.back`), not by the reader. ``epoch``: the
    burst it was counted in; a burst the reader broke up is owed nothing any more.
    """

    __slots__ = ("_done", "chained", "counted", "epoch", "error", "lock", "value")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.lock.acquire()
        self.value: Any = None
        self.error: BaseException | None = None
        self._done = False
        self.counted = False
        self.chained = False
        self.epoch = 0

    def done(self) -> bool:
        return self._done

    def reset(self) -> None:
        """Make a waiter whose outcome its caller took (its lock held again, nothing in the
        books refers to it) ready for the same thread's next call."""
        self.value = self.error = None
        self._done = self.counted = self.chained = False

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


class Books(CallBooks):
    """The calls of one blocking client (see the module docstring).

    Args:
        name: The engine's name (for messages).
    """

    def __init__(self, name: str) -> None:
        super().__init__(name)  # (the reader sends the rest of a full ring when room comes)
        self.lock = threading.Lock()
        self._sending = False  # a thread is pushing _outq: the others only queue
        self._returning = 0  # callers the reader woke together, not back yet
        # answered one-request callers not woken yet: each caller woken wakes the next
        self._ready: collections.deque[Waiter] = collections.deque()
        self._chain = False  # a caller of _ready is awake and has not woken the next yet
        self._epoch = 1  # the current burst's: a hand-on owed to an older one is void
        self._passes = 0  # hand-ons so far (has the chain moved since the reader looked?)
        self._seen = -1  # (the reader's) _passes at its last look, and since when
        self._since = 0.0

    def use(self, conn: Transport, packer: Packer) -> None:
        """Queue requests for ``conn`` from now on, framed by ``packer``."""
        with self.lock:
            self._conn, self._packer = conn, packer

    def after_fork(self) -> None:
        """In a forked child: empty books, and new locks (one a parent thread held at the
        fork stays held in the child)."""
        self.lock = threading.Lock()
        self._pending, self._rows, self._outq = {}, {}, []
        self._ready = collections.deque()
        self._chain = self._sending = self._waiting_room = False
        self._returning = 0
        self._epoch += 1
        self._conn = None

    # ------------------------------------------------------------- requests out

    def enter_one(
        self,
        conn: Transport,
        waiter: Waiter,
        priority: int,
        deadline_ns: int,
        row: int,
        blob: bytes,
        options: bytes | None = None,
    ) -> int:
        """Enter a one-request call (its encoded payload ``blob``, its arena row or -1, its
        encoded options or None) and queue it, sending if this caller is to send; its id.

        Raises:
            EngineUnavailableError: The engine went away while the call started.
        """
        with self.lock:
            if conn.dead is None and self._conn is conn:
                rid = self._next_id
                nxt = rid + 1
                if not nxt & 0xFF:  # a new block of 256 ids: skip it if it is a zone
                    nxt = clean_ids(nxt)
                self._next_id = nxt
                self._pending[rid] = (waiter, ONE)
                if row >= 0:
                    self._rows[rid] = row
                if options is None:
                    self._outq.append((rid, priority, deadline_ns, row, blob))
                else:
                    self._outq.append((rid, priority, deadline_ns, row, blob, options))
                send = not (self._sending or self._waiting_room or self._returning)
                if send:
                    self._sending = True
            else:
                rid = 0
        if not rid:
            conn.free_row(row)
            raise self.gone(conn)
        if send:
            self.send(conn)
        return rid

    def enter(
        self,
        conn: Transport,
        owner: Any,
        items: list[Item],
        index_of: Any,
        span: int = 1,
        options: bytes | None = None,
    ) -> range:
        """Enter a call's encoded requests in the books and queue them; their ids: one
        contiguous range of ``span`` (a list's length: request ``i`` of a list has id
        ``first + i``, so a merge's leader id maps back to its position).
        ``index_of``: each item's index in its list (None: a one-request call);
        ``options``: the call's encoded request options, or None.

        Raises:
            EngineUnavailableError: The engine went away while the call started.
        """
        lock = self.lock
        with lock:
            if conn.dead is not None or self._conn is not conn:
                for item in items:
                    conn.free_row(item[3])
                raise self.gone(conn)
            first = clean_ids(self._next_id, span)  # (clientcalls.clean_ids)
            self._next_id = clean_ids(first + span)
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
                if options is None:
                    outq.append((rid, item[1], item[2], item[3], item[4]))
                else:
                    outq.append((rid, item[1], item[2], item[3], item[4], options))
            if isinstance(owner, ListCall):
                owner.first_id = first
            send = not self._sending and not self._waiting_room and not self._returning
            if send:
                self._sending = True
        if send:
            self.send(conn)
        return range(first, first + span)

    def gone(self, conn: Transport) -> EngineUnavailableError:
        """A call that started as the engine went away: what it raises."""
        return EngineUnavailableError(
            f"the stratabatch engine {self.name!r} ({conn.path}) {conn.dead or 'went away'}"
        )

    def send(self, conn: Transport | None) -> None:
        """Push everything queued (this thread holds the ``_sending`` role); while the ring
        is full, leave the rest to the reader (``on_full="wait"``) or fail it with
        :class:`QueueFullError`."""
        lock = self.lock
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
                frame = packer.one_frame(items)  # (the usual case: all of it in one frame)
                if frame is not None:
                    if conn.push(frame):
                        sent = len(items)
                else:
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

    def back(self, waiter: Waiter, interrupted: bool = False) -> None:
        """A caller the reader answered is back (``interrupted``: it left without waiting
        for its answer). Wake the next answered caller (one at a time: a woken caller then
        finds the GIL free, instead of a herd of them queueing for it); when it is the last
        of its burst, push what the burst queued meanwhile."""
        conn = nxt = None
        ready = self._ready
        with self.lock:
            if waiter.epoch != self._epoch:  # (its burst was broken up: nothing owed)
                waiter.chained = waiter.counted = False
            if waiter.chained:
                waiter.chained = False
                self._passes += 1
                if interrupted and waiter in ready:
                    ready.remove(waiter)  # not woken yet: the chain goes on without it
                elif ready:
                    nxt = ready.popleft()
                else:
                    self._chain = False
            if waiter.counted:
                conn = self._came_back(waiter)
        if nxt is not None:
            nxt.lock.release()
        if conn is not None:
            self.send(conn)

    def _came_back(self, waiter: Waiter) -> Transport | None:
        """(Under :attr:`lock`.) A caller of a burst is back: when it is the last, the
        transport to push what the burst queued meanwhile (this thread took the sending
        role), else None."""
        waiter.counted = False
        self._returning -= 1
        if not self._returning and self._outq and not self._sending and not self._waiting_room:
            self._sending = True
            return self._conn
        return None

    def claim(self, waiter: Waiter) -> bool:
        """A caller whose timeout ran out takes its outcome if the reader set it and the
        chain has not woken it yet (the chain goes on without it): True if it did (its lock
        is still held, as after a wake-up)."""
        conn = None
        with self.lock:
            ready = self._ready
            if not (waiter.chained and waiter in ready):
                return False
            ready.remove(waiter)
            waiter.chained = False
            if waiter.counted:
                conn = self._came_back(waiter)
        if conn is not None:
            self.send(conn)
        return True

    def watch_chain(self, conn: Transport, now: float) -> None:
        """(The reader, at every turn; ``now``: ``time.monotonic()``.) Break up a wake chain
        that has not moved for :data:`STALL_S`: every caller answered and not woken yet is
        woken now, and what the burst queued is sent."""
        if not self._chain:
            return
        passes = self._passes
        if passes != self._seen:
            self._seen, self._since = passes, now
            return
        if now - self._since < STALL_S:
            return
        with self.lock:
            if self._passes != passes or not self._chain:
                return
            ready = self._unchain()
            send = bool(self._outq) and not self._sending and not self._waiting_room
            if send:
                self._sending = True
        for waiter in ready:
            waiter.lock.release()
        if send:
            self.send(conn)

    def _unchain(self) -> collections.deque[Waiter]:
        """(Under :attr:`lock`.) End the current burst (no hand-on owed to it counts any
        more); the answered callers not woken yet, whom the caller of this wakes."""
        self._epoch += 1
        self._chain = False
        self._returning = 0
        ready, self._ready = self._ready, collections.deque()
        for waiter in ready:
            waiter.chained = waiter.counted = False
        return ready

    def room(self, conn: Transport) -> None:
        """The engine freed room in the request ring: send the rest."""
        with self.lock:
            if not self._waiting_room:
                return
            self._waiting_room = False
            conn.room_found()
            send = not self._sending
            if send:
                self._sending = True
        if send:
            self.send(conn)

    def kick(self, conn: Transport) -> None:
        """Send what is queued if nobody is sending (the reader's safety net)."""
        with self.lock:
            send = bool(self._outq) and not self._sending and not self._waiting_room
            if send:
                self._sending = True
        if send:
            self.send(conn)

    def drain(self, conn: Transport) -> str | None:
        """Deliver every answer in the response ring of ``conn`` (one thread at a time: the
        ring has one consumer); why the engine is to be dropped (a corrupt ring), else None.
        The one-request callers answered are woken in turn, starting with the first."""
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
        with self.lock:
            pending, rows = self._pending, self._rows
            epoch = self._epoch
            woken = 0
            for r in items:
                if isinstance(r, FrameError):
                    bad = getattr(r, "id", None)
                    entry = pending.pop(bad, None) if isinstance(bad, int) else None
                    if entry is not None:
                        error = StratabatchError(f"the engine's response could not be decoded: {r}")
                        answer(entry[0], entry[1], None, error)
                    continue
                if type(r) is list:  # a plain ok answer, [id, ok, value]: the usual one
                    rid, status, value = r
                    meta = None
                else:
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
                        owner.epoch = epoch
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
                    waiter.epoch = epoch
                    woken += 1
            self._returning += woken
            first = None
            if ready and not self._chain:
                self._chain = True
                self._passes += 1  # (a new chain: the reader's watch starts from here)
                first = ready.popleft()
        if first is not None:
            first.lock.release()
        return None

    # (fail_all, CallBooks's: the caller holds :attr:`lock`)

    def forget(self, owner: Any, ids: Sequence[int]) -> None:
        """The caller left: drop its requests from the books (late answers are ignored; what
        is not sent yet is not sent at all)."""
        with self.lock:
            super().forget(owner, ids)

    def expire(self, owner: Any, ids: range, timeout: Any) -> None:
        """A caller's timeout ran out (the answers already in the ring were delivered): fail
        its requests still without an answer: with QueueFullError those the full ring kept
        out, with BatchTimeoutError the others, also those still queued for their burst's
        send (:meth:`back`: the ring had room, the caller's timeout was just short), which are
        not sent at all."""
        with self.lock:
            if self._waiting_room:
                self._refuse_unsent_of(owner, ids)
            elif self._outq:
                self._take_unsent(ids)
            self._time_out(owner, ids, timeout)

    def unsent(self, call: ListCall, ids: range) -> bool:
        """Whether part of ``call`` never left this process (the ring stayed full)."""
        with self.lock:
            return super().unsent(call, ids)

    def lose(self, conn: Transport, why: str) -> None:
        """The engine of ``conn`` is gone: close it, and fail every call still waiting."""
        with self.lock:
            conn.close(why)
            if self._conn is conn:
                self.fail_all(
                    EngineUnavailableError(
                        f"the stratabatch engine {self.name!r} ({conn.path}) {why}"
                    )
                )
            for waiter in self._unchain():  # (answered before the loss: their answers stand)
                waiter.lock.release()

    def close(self, error: BaseException) -> None:
        """Close the transport; whatever still waits gets ``error``."""
        with self.lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                conn.close()
            self.fail_all(error)
            for waiter in self._unchain():
                waiter.lock.release()
