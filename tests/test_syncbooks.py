"""The blocking client's books alone (engine/syncbooks.py), over a transport double: the wake
chain that answered callers are woken by, and the rules that keep it from stranding anyone (a
caller whose timeout ran out, a caller that never hands on, the engine's loss, close())."""

from __future__ import annotations

from typing import Any

from stratabatch.clientcalls import Packer
from stratabatch.errors import (
    BatchTimeoutError,
    EngineUnavailableError,
    QueueFullError,
    StratabatchError,
)
from stratabatch.ipc.framelimits import DEFAULT_LIMITS
from stratabatch.ipc.frames import FrameDecoder, FrameEncoder
from stratabatch.syncbooks import STALL_S, Books, Waiter
from stratabatch.wire import STATUS_OK


class FakeTransport:
    """What the books use of a :class:`~stratabatch.transport.Transport`: frames pushed are
    kept, ``inbox`` holds the response frames the next drain reads."""

    path = "/fake.sock"

    def __init__(self) -> None:
        self.limits = DEFAULT_LIMITS
        self.max_request_bytes = 1 << 20
        self.uses_vectors = False
        self.dim = 0
        self.on_full = "wait"
        self.dead: str | None = None
        self.pushed: list[bytes] = []
        self.inbox: list[bytes] = []

    def push(self, frame: bytes) -> bool:
        self.pushed.append(frame)
        return True

    def sleep_for_room(self, frame_bytes: int) -> bool:
        return True

    def room_found(self) -> None:
        pass

    def frames(self) -> list[bytes]:
        out, self.inbox = self.inbox, []
        return out

    def lease_row(self, vector: Any) -> int:
        return -1

    def free_row(self, row: int) -> None:
        pass

    def close(self, why: str = "was closed") -> None:
        if self.dead is None:
            self.dead = why


def _books() -> tuple[Books, FakeTransport]:
    conn = FakeTransport()
    books = Books("test")
    books.use(conn, Packer(conn, None))  # type: ignore[arg-type]
    return books, conn


def _call(books: Books, conn: FakeTransport, waiter: Waiter | None = None) -> tuple[Waiter, int]:
    """A one-request call entered as a caller thread enters it (its waiter's lock held)."""
    waiter = waiter or Waiter()
    rid = books.enter_one(conn, waiter, 0, 0, -1, b"\x81\xa1q\xa1x")  # type: ignore[arg-type]
    return waiter, rid


def _answer(conn: FakeTransport, rids: list[int]) -> None:
    """The engine answers ``rids`` in one batch frame."""
    frame = FrameEncoder(conn.limits).response_batch([(r, STATUS_OK, f"A{r}") for r in rids])
    assert frame is not None
    conn.inbox.append(frame)


def _woken(waiter: Waiter) -> bool:
    """Whether the waiter's caller was woken (its lock released); takes the wake-up."""
    return waiter.lock.acquire(blocking=False)


def _sent(conn: FakeTransport) -> list[list[int]]:
    decode = FrameDecoder(conn.limits).requests
    return [[r.id for r in decode(frame)] for frame in conn.pushed]  # type: ignore[union-attr]


def test_answered_callers_are_woken_one_at_a_time_each_by_the_one_before():
    books, conn = _books()
    calls = [_call(books, conn) for _ in range(3)]
    (w1, r1), (w2, r2), (w3, r3) = calls
    _answer(conn, [r1, r2, r3])
    assert books.drain(conn) is None  # type: ignore[arg-type]
    assert [w.value for w, _ in calls] == [f"A{r}" for _, r in calls]  # every outcome set
    assert _woken(w1) and w2.lock.locked() and w3.lock.locked()
    books.back(w1)  # the first caller, on its way back, wakes the second
    assert _woken(w2) and w3.lock.locked()
    _, r4 = _call(books, conn)  # a call made while the burst is on its way back only queues
    assert _sent(conn) == [[r1], [r2], [r3]]
    books.back(w2)
    assert _woken(w3)
    books.back(w3)  # the last one back sends what the burst queued
    assert _sent(conn) == [[r1], [r2], [r3], [r4]]


def test_a_caller_whose_timeout_ran_out_takes_its_answer_without_waiting_for_the_chain():
    books, conn = _books()
    (w1, r1), (w2, r2), (w3, r3) = (_call(books, conn) for _ in range(3))
    _answer(conn, [r1, r2, r3])
    books.drain(conn)  # type: ignore[arg-type]
    assert _woken(w1)  # ... and its caller does not hand on yet
    assert books.claim(w3)  # the third caller's timeout ran out: its answer is there
    assert w3.value == f"A{r3}" and w3.lock.locked()  # taken, not woken
    assert not books.claim(w1)  # (the woken one has nothing to claim)
    books.back(w1)
    assert _woken(w2)
    books.back(w2)  # the chain ends here: the third caller is not woken a second time
    assert w3.lock.locked()
    w3.reset()
    _, r5 = _call(books, conn, w3)  # its waiter serves its thread's next call
    _answer(conn, [r5])
    books.drain(conn)  # type: ignore[arg-type]
    assert _woken(w3) and w3.value == f"A{r5}"


def test_a_chain_its_holder_never_carries_on_is_broken_up_by_the_reader():
    """A caller interrupted between its wake-up and its hand-on (an exception there) would
    leave every caller answered after it asleep: the reader's watch wakes them."""
    books, conn = _books()
    (w1, r1), (w2, r2), (w3, r3) = (_call(books, conn) for _ in range(3))
    _answer(conn, [r1, r2, r3])
    books.drain(conn)  # type: ignore[arg-type]
    assert _woken(w1)  # w1 never hands on
    _, r4 = _call(books, conn)  # queued: the burst is not back
    assert _sent(conn) == [[r1], [r2], [r3]]
    t0 = 1000.0
    books.watch_chain(conn, t0)  # type: ignore[arg-type]
    books.watch_chain(conn, t0 + STALL_S / 2)  # type: ignore[arg-type]
    assert w2.lock.locked() and w3.lock.locked()  # not stalled for long enough yet
    books.watch_chain(conn, t0 + STALL_S * 1.5)  # type: ignore[arg-type]
    assert _woken(w2) and _woken(w3)  # everyone answered is woken at once
    assert _sent(conn) == [[r1], [r2], [r3], [r4]]  # and what the burst queued is sent
    books.back(w2)  # hand-ons owed to the broken-up burst are void: nobody woken twice
    books.back(w1)
    books.back(w3)
    (w6, r6), (w7, r7) = (_call(books, conn) for _ in range(2))
    assert _sent(conn)[-2:] == [[r6], [r7]]  # sends are not held back by the old burst
    _answer(conn, [r6, r7])
    books.drain(conn)  # type: ignore[arg-type]
    assert _woken(w6) and w7.lock.locked()  # the next burst chains again
    books.back(w6)
    assert _woken(w7)


def test_a_moving_chain_is_left_alone_by_the_reader():
    books, conn = _books()
    calls = [_call(books, conn) for _ in range(4)]
    _answer(conn, [r for _, r in calls])
    books.drain(conn)  # type: ignore[arg-type]
    now = 1000.0
    for k, (w, _) in enumerate(calls):
        assert _woken(w)
        for later in calls[k + 1 :]:
            assert later[0].lock.locked()
        books.watch_chain(conn, now)  # type: ignore[arg-type]
        now += STALL_S * 0.9  # slow, but it moves
        books.back(w)


def test_the_engines_loss_and_close_wake_the_answered_callers_not_woken_yet():
    for end in ("lose", "close"):
        books, conn = _books()
        (w1, r1), (w2, r2), (w3, r3) = (_call(books, conn) for _ in range(3))
        w4, _ = _call(books, conn)  # never answered
        _answer(conn, [r1, r2, r3])
        books.drain(conn)  # type: ignore[arg-type]
        assert _woken(w1)  # (its caller is still on its way back)
        if end == "lose":
            books.lose(conn, "died")  # type: ignore[arg-type]
            assert isinstance(w4.error, EngineUnavailableError)
        else:
            books.close(StratabatchError("closed"))
            assert isinstance(w4.error, StratabatchError)
        assert _woken(w2) and _woken(w3) and _woken(w4)
        assert (w2.value, w3.value) == (f"A{r2}", f"A{r3}")  # answered before: kept
        books.back(w1)  # late: nobody is woken a second time
        assert w2.lock.locked() and w3.lock.locked()


def test_request_ids_skip_the_zones_of_bytes_0xdc_and_0xdd():
    # as the asyncio client's (tests/test_asyncbooks.py): an id byte 0xDC or 0xDD above the
    # lowest would send whole frames to the engine's careful decoder
    books, conn = _books()
    books._next_id = 0xDC00 - 3
    rids = [_call(books, conn)[1] for _ in range(5)]
    assert rids == [0xDC00 - 3, 0xDC00 - 2, 0xDC00 - 1, 0xDE00, 0xDE01]
    ids = books.enter(conn, object(), [(0, 0, 0, -1, b"\x80")] * 3, [0, 1, 2], span=3)
    assert list(ids) == [0xDE02, 0xDE03, 0xDE04]
    books._next_id = 0xDBFE
    ids = books.enter(conn, object(), [(0, 0, 0, -1, b"\x80")] * 4, [0, 1, 2, 3], span=4)
    assert list(ids) == [0xDE00, 0xDE01, 0xDE02, 0xDE03]  # a list's run stays consecutive


def test_a_timeout_while_queued_for_the_burst_is_a_timeout_not_a_full_ring():
    # a caller of a burst is still on its way back, so a new request only queues (the ring
    # has room): its caller's timeout running out then is a BatchTimeoutError, and the
    # request is not sent later
    books, conn = _books()
    first, rid1 = _call(books, conn)
    _answer(conn, [rid1])
    assert books.drain(conn) is None  # (first is answered: its burst is on its way back)
    assert _woken(first)
    queued, rid2 = _call(books, conn)
    assert len(conn.pushed) == 1  # held for the burst
    books.expire(queued, range(rid2, rid2 + 1), 0.001)
    assert isinstance(queued.error, BatchTimeoutError)
    assert not isinstance(queued.error, QueueFullError)
    books.back(first)  # the burst is back: nothing is left to send
    assert len(conn.pushed) == 1
    assert not books.waiting


def test_a_timeout_while_the_full_ring_keeps_a_request_out_is_a_full_ring():
    books, conn = _books()
    conn.push = lambda frame: False  # type: ignore[method-assign]
    waiter, rid = _call(books, conn)  # the ring is full: it waits for room
    books.expire(waiter, range(rid, rid + 1), 0.001)
    assert isinstance(waiter.error, QueueFullError)
    assert not books.waiting
