"""The asyncio client's books: its calls, what is queued, the batch send and the answers.

:class:`LoopBooks` is what :class:`~stratabatch.client.EngineClient` keeps of its calls, all
touched from the one event loop the client is bound to (no lock):

* the requests waiting for an answer, by id (each with its one-request call's future, or its
  :class:`~stratabatch.clientcalls.ListCall` and index there), the arena rows they hold, and
  the requests encoded by their callers and not in the ring yet;
* **the batch send**: every request entered in one event-loop iteration is queued, and one
  callback at the end of the iteration (:meth:`LoopBooks.flush`) pushes the queue as batch
  frames, so the ring, the doorbell and the engine's decoder work once per batch, not once
  per request. When the doorbell delivers answers, that callback is queued behind the
  callers it woke (:meth:`LoopBooks.rung`), so the requests they send next leave in the
  iteration they run in, not one later;
* a full ring: ``on_full="wait"`` keeps the rest queued until the engine's doorbell says it
  freed room (:meth:`LoopBooks.rung`), ``reject`` fails it with :class:`QueueFullError`;
* **the answers**: :meth:`LoopBooks.drain` delivers every answer in the response ring to its
  caller (and gives back its arena row), the plain ok answers straight from their decoded
  columns (:meth:`~stratabatch.ipc.frames.FrameDecoder.response_answers`); a caller's
  timer (:meth:`LoopBooks.timer`) fails its requests without an answer when its timeout
  runs out.

The books push frames through the transport they are given (:meth:`LoopBooks.use`) and
schedule on the loop they are bound to (:meth:`LoopBooks.bind`); the client owns both: it
connects, watches the transport and closes it. When the response ring turns out corrupt the
books call the client's ``lost`` (the engine is to be dropped), which closes the transport
and fails every waiting call through :meth:`LoopBooks.fail_all`.
"""

from __future__ import annotations

import asyncio
from asyncio import InvalidStateError
from collections.abc import Callable, Sequence
from typing import Any

from stratabatch.ipc.errors import FrameError

from .clientcalls import ONE, CallBooks, Item, ListCall, Packer, answer, clean_ids
from .errors import InvalidRequestError, StratabatchError
from .requests import flat_packer
from .transport import Transport
from .wire import STATUS_OK, error_from_wire

__all__ = ["TICK_HZ", "LoopBooks"]

TICK_HZ = 100
"""Ticks per second of the asyncio client's own call timers: a call's timeout ends it at
the first tick boundary after its deadline, so never early and at most 10 ms late (the
engine, which has the exact deadline in the frame, drops the work on time)."""


def _no_packer(request: Any, pack: Callable[[Any], bytes]) -> bytes:
    raise StratabatchError("this client's books have no transport (use() was not called)")


class LoopBooks(CallBooks):
    """The calls of one asyncio client (see the module docstring).

    Args:
        name: The engine's name (for messages).
        lost: Called with why, when the engine is to be dropped (its response ring is
            corrupt): the client closes the transport and fails every waiting call.
        tick_hz: Ticks per second of the callers' timers (:meth:`timer`).
    """

    def __init__(self, name: str, lost: Callable[[str], None], tick_hz: int = TICK_HZ) -> None:
        super().__init__(name)  # (the queue is sent as one batch frame per loop iteration)
        self._lost = lost
        self._flush_scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None  # where flushes and timers run
        self._decode: Callable[[bytes], tuple[list[Any], list[Any], list[Any]]] | None = None
        self._payload: Callable[[Any, Callable[[Any], bytes]], bytes] = _no_packer
        self._vectors = False
        self._policy = "wait"
        # the one-request calls {key: text} of this iteration, for its text frame (Packer)
        self._text_key: str | None = None
        self._max_text = -1
        self._text_ids: list[int] = []
        self._texts: list[str] = []
        self._text_dls: list[int] | None = None  # their deadlines, once one has one
        self._pack = flat_packer()  # (used on the loop's thread only)
        self._tick_hz = tick_hz
        # the callers' timers, by tick (the tick's end is tick / tick_hz, loop time): each
        # tick's table holds its callers, owner -> (their request ids, their timeout)
        self._ticks: dict[int, dict[Any, tuple[Sequence[int], float | None]]] = {}

    # ------------------------------------------------------------- the client's side

    def use(self, conn: Transport, packer: Packer) -> None:
        """Queue requests for ``conn`` from now on, framed and read by ``packer`` (the
        limits of its engine); flushes and timers wait for :meth:`bind`."""
        self._conn = conn
        self._loop = None
        self._packer = packer
        self._decode = packer.decode_answers
        self._payload = packer.payload
        self._vectors = packer.vectors
        self._policy = packer.policy
        self._text_key = packer.text_key
        self._max_text = packer.max_text

    def release(self) -> None:
        """Let go of the transport and the loop (the client closed it, or this process was
        forked from the client's: never touch the parent's loop, whose epoll it shares)."""
        self._conn = None
        self._loop = None
        self._ticks = {}

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Run flushes and timers on ``loop`` (the loop watching the transport)."""
        if loop is not self._loop:
            self._ticks = {}  # (a tick armed on another loop fires there)
        self._loop = loop

    @property
    def pending(self) -> dict[int, tuple[Any, int]]:
        """The table of waiting requests itself, by id (for tests that drive the rings by
        hand, through the client's probe)."""
        return self._pending

    def fail_all(self, error: BaseException) -> None:
        """Every waiting request gets ``error``; nothing is left queued."""
        self._text_ids, self._texts, self._text_dls = [], [], None
        super().fail_all(error)

    def after_fork(self, error: BaseException) -> None:
        """In a forked child: let go of the transport and the parent's loop; the calls
        inherited mid-flight get ``error`` instead of waiting forever."""
        self.release()
        self.fail_all(error)

    # ------------------------------------------------------------- requests out

    def enter_one(
        self,
        request: Any,
        fut: Any,
        priority: int,
        deadline_ns: int,
        options: bytes | None = None,
    ) -> int:
        """Validate, encode and queue a one-request call, whose future ``fut`` is its own
        entry in the books; its id. ``options``: the request's encoded options
        (:func:`stratabatch.ipc.frames.encode_options`), or None.

        Raises:
            InvalidRequestError, RequestTooLargeError: The request breaks the request rule, or
                its frame would be over the engine's frame limit (nothing is queued).
        """
        rid = self._next_id
        nxt = rid + 1
        if not nxt & 0xFF:  # a new block of 256 ids: skip it if it is a zone (clean_ids)
            nxt = clean_ids(nxt)
        self._next_id = nxt
        key = self._text_key
        text = None
        if (
            key is not None
            and type(request) is dict
            and len(request) == 1
            and priority == 0
            and type(priority) is int
            and options is None
        ):
            text = request.get(key)
            if not (type(text) is str and len(text) <= self._max_text and text.isascii()):
                text = None
        if text is not None:
            # the usual request, {key: text}: its text goes in this iteration's text frame,
            # unencoded (it is within every limit, and encodes, as it is)
            self._text_ids.append(rid)
            self._texts.append(text)
            dls = self._text_dls
            if deadline_ns:  # (the frame gets a deadline column: 0 for those without)
                if dls is None:
                    dls = self._text_dls = [0] * (len(self._texts) - 1)
                dls.append(deadline_ns)
            elif dls is not None:
                dls.append(0)
        else:
            if self._vectors:
                item = self._entry(request, 0, rid, priority, deadline_ns)
            else:
                item = (rid, priority, deadline_ns, -1, self._payload(request, self._pack))
            if options is not None:
                item = (item[0], item[1], item[2], item[3], item[4], options)
            self._outq.append(item)
        self._pending[rid] = (fut, ONE)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            assert self._loop is not None
            self._loop.call_soon(self.flush)
        return rid

    def enter(
        self,
        items: Sequence[Any],
        call: ListCall,
        priority: int,
        deadline_ns: int,
        invalid_ok: bool,
        options: bytes | None = None,
    ) -> range:
        """Encode every request of a list (refusing before anything is queued, unless
        ``invalid_ok``: then a bad request is refused in ``call`` and the rest go), then queue
        them for this event-loop iteration's batch frame; their ids (request ``i`` has id
        ``first + i``, so a merge's leader id maps back to its position).

        Raises:
            InvalidRequestError, RequestTooLargeError: A request breaks the request rule, or
                its frame would be over the engine's frame limit.
        """
        first = clean_ids(self._next_id, len(items))  # (consecutive: index = id - first)
        self._next_id = clean_ids(first + len(items))
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
        if options is not None:  # (the sixth item of each: stratabatch.ipc.frames)
            entries = [(e[0], e[1], e[2], e[3], e[4], options) for e in entries]
        self._outq += entries
        if not self._flush_scheduled and entries:
            self._flush_scheduled = True
            assert self._loop is not None
            self._loop.call_soon(self.flush)
        return range(first, first + len(items))

    def _entry(self, request: Any, index: int, rid: int, priority: int, deadline_ns: int) -> Item:
        """Validate and encode one request (:meth:`Packer.item`): its item of a batch frame,
        its arena row (if its vector got one) recorded in the books."""
        packer = self._packer
        assert packer is not None
        item = packer.item(request, index, rid, priority, deadline_ns)
        if item[3] >= 0:
            self._rows[rid] = item[3]
        return item

    def flush(self) -> None:
        """Push what was queued as batch frames (as few as the frame limit allows); while the
        ring is full, wait for the engine's doorbell (``on_full="wait"``) or fail what does
        not fit with :class:`QueueFullError` (``reject``, ``drop_lowest``)."""
        self._flush_scheduled = False
        conn = self._conn
        if conn is None or conn.dead is not None or self._waiting_room:
            return
        packer = self._packer
        assert packer is not None
        if self._text_ids:
            ids, texts, dls = self._text_ids, self._texts, self._text_dls
            self._text_ids, self._texts, self._text_dls = [], [], None
            # alone in this iteration, a text frame; beside other requests, batch items with
            # them, so the iteration still leaves in one frame (one doorbell at most)
            frame = None if self._outq else packer.text_frame(ids, texts, dls)
            if frame is None or not conn.push(frame):
                # with others, over a frame's limits, or no room in the ring: they go as
                # batch items, which the limits and on_full cut and queue one by one
                pack, key = self._pack, self._text_key
                self._outq[:0] = [
                    (rid, 0, dl, -1, pack({key: t}))
                    for rid, t, dl in zip(ids, texts, dls or [0] * len(ids), strict=True)
                ]
        outq = self._outq
        if not outq:
            return
        sent = 0
        frame = packer.one_frame(outq)  # (the usual case: all of it in one frame)
        if frame is not None:
            if conn.push(frame):
                outq.clear()
                return
        else:
            for frame, n in packer.frames(outq):
                if not conn.push(frame):
                    break
                sent += n
            if sent == len(outq):
                outq.clear()
                return
        del outq[:sent]
        self._ring_full(conn, packer)

    def _ring_full(self, conn: Transport, packer: Packer) -> None:
        """The request ring has no room for what is queued: apply ``on_full``."""
        if self._policy != "wait":
            self._refuse_unsent(
                f"the request ring to engine {self.name!r} is full (on_full={self._policy!r})"
            )
        elif conn.sleep_for_room(packer.room_for(self._outq[0])):
            self._waiting_room = True  # rung() sends the rest
        else:
            self._flush_scheduled = True  # room appeared meanwhile
            assert self._loop is not None
            self._loop.call_soon(self.flush)

    # ------------------------------------------------------------- answers in

    def rung(self) -> None:
        """The engine rang: answers to deliver, or room in the request ring."""
        if self.drain() and not self._flush_scheduled and self._loop is not None:
            # the callers just answered run next, in the order answered, and most of them
            # send their next request at once: a flush queued behind them sends those in
            # the same loop iteration (queued by their first request, it would wait for
            # the next one)
            self._flush_scheduled = True
            self._loop.call_soon(self.flush)
        if self._waiting_room:
            self._waiting_room = False
            conn = self._conn
            if conn is not None and conn.dead is None:
                conn.room_found()
                self.flush()

    def drain(self) -> bool:
        """Deliver every answer in the response ring; whether there were any."""
        conn = self._conn
        if conn is None or conn.dead is not None:
            return False
        try:
            frames = conn.frames()
        except FrameError as exc:
            self._lost(f"sent a corrupt response ring ({exc})")
            return False
        if not frames:
            return False
        pending = self._pending
        pop = pending.pop
        rows = self._rows
        decode = self._decode
        assert decode is not None
        for data in frames:
            try:
                ids, values, others = decode(data)
            except FrameError as exc:
                from stratabatch.ipc.frames import peek_frame_id

                exc.id = peek_frame_id(data)  # type: ignore[attr-defined]
                ids, values, others = [], [], [exc]
            if rows:
                for rid in ids:
                    row = rows.pop(rid, -1)
                    if row >= 0:
                        conn.free_row(row)
            if ids:
                # the usual answers: plain ok ones, straight from the decoded columns
                for rid, value in zip(ids, values, strict=True):
                    entry = pop(rid, None)
                    if entry is None:
                        continue  # its caller left (timeout, cancellation)
                    owner, index = entry
                    if index < 0:  # a one-request call: its future
                        try:
                            owner.set_result(value)
                        except InvalidStateError:
                            pass  # cancelled: its caller leaves the books when it runs
                    else:
                        owner.answer(index, value, None, None)
            for r in others:
                if isinstance(r, FrameError):
                    self._undecodable(r)
                    continue
                rid, status, value, meta = r
                if rows:
                    row = rows.pop(rid, -1)
                    if row >= 0:
                        conn.free_row(row)
                entry = pop(rid, None)
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
        return True

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

    # ------------------------------------------------------------- callers leaving

    def timer(
        self, end: float, owner: Any, ids: Sequence[int], timeout: float | None
    ) -> dict[Any, tuple[Sequence[int], float | None]]:
        """From ``end`` (loop time) on, :meth:`expire` the requests ``ids`` of ``owner``, at
        the end of the tick ``end`` falls in (:data:`TICK_HZ`); the tick's table, from which
        the caller removes ``owner`` (``table.pop(owner, None)``) once it is answered.

        The calls whose deadlines fall in one tick share one loop timer: arming a call's
        timer is a dict insert, and cancelling it a dict removal, where a ``call_at`` and a
        ``cancel`` of its own cost a timer handle and a heap entry (a libuv timer on uvloop)
        for every call. A timer never fires before ``end``, and at most one tick after it.
        """
        hz = self._tick_hz
        tick = int(end * hz) + 1  # the first tick boundary after end
        table = self._ticks.get(tick)
        if table is None:
            table = self._ticks[tick] = {}
            loop = self._loop
            assert loop is not None
            loop.call_at(tick / hz, self._tick, tick, table, loop)
        table[owner] = (ids, timeout)
        return table

    def _tick(
        self,
        tick: int,
        table: dict[Any, tuple[Sequence[int], float | None]],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        """A tick's end: expire every caller still in its table (as :meth:`expire`, with one
        drain of the response ring for all of them)."""
        when = tick / self._tick_hz
        if loop.time() < when:  # a loop may run a timer a hair early (its clock's resolution)
            loop.call_at(when, self._tick, tick, table, loop)
            return
        if self._ticks.get(tick) is table:
            del self._ticks[tick]
        if not table:
            return
        entries = list(table.items())
        table.clear()
        for owner, (ids, _) in entries:
            self._refuse_unsent_of(owner, ids)
        self.drain()
        for owner, (ids, timeout) in entries:
            self._time_out(owner, ids, timeout)

    def expire(self, owner: Any, ids: Sequence[int], timeout: float | None) -> None:
        """The caller's timeout ran out: fail its requests that have no answer yet.

        Answers already in the response ring are delivered first, so an answer the engine gave
        in time is never turned into a timeout because this timer ran before the doorbell's
        reader. Each request without an answer gets a :class:`BatchTimeoutError` (a list call
        with ``return_exceptions`` and a stream get one per request, as in embedded mode);
        the engine drops the same requests itself, since their frames carry the deadline. A
        request still queued here (the ring stayed full) gets a :class:`QueueFullError`.
        """
        self._refuse_unsent_of(owner, ids)
        self.drain()
        self._time_out(owner, ids, timeout)

    def leave(self, rid: int, fut: Any) -> None:
        """A one-request caller left: drop its entry (its answer is ignored when it comes)."""
        entry = self._pending.get(rid)
        if entry is not None and entry[0] is fut:
            del self._pending[rid]
