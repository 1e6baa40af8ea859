"""The asyncio client's books alone (engine/asyncbooks.py), over a transport double: the batch
send, answers reaching their callers, a full ring, the caller's timer, a corrupt ring."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest

from stratabatch.asyncbooks import LoopBooks
from stratabatch.clientcalls import ListCall, Packer
from stratabatch.errors import (
    BatchTimeoutError,
    InvalidRequestError,
    QueueFullError,
    RequestTooLargeError,
)
from stratabatch.ipc.errors import FrameError
from stratabatch.ipc.framelimits import DEFAULT_LIMITS
from stratabatch.ipc.frames import FrameDecoder, FrameEncoder
from stratabatch.requests import check_payload


class FakeTransport:
    """What the books use of a :class:`~stratabatch.transport.Transport`: frames pushed are
    kept, ``inbox`` holds the response frames the next drain reads."""

    def __init__(self, on_full: str = "wait", room: bool = True) -> None:
        self.limits = DEFAULT_LIMITS
        self.max_request_bytes = 1 << 20
        self.uses_vectors = False
        self.dim = 0
        self.on_full = on_full
        self.dead: str | None = None
        self.room = room
        self.pushed: list[bytes] = []
        self.inbox: list[bytes] = []
        self.corrupt = False

    def push(self, frame: bytes) -> bool:
        if self.room:
            self.pushed.append(frame)
        return self.room

    def sleep_for_room(self, frame_bytes: int) -> bool:
        return True

    def room_found(self) -> None:
        pass

    def frames(self) -> list[bytes]:
        if self.corrupt:
            raise FrameError("a record length past the ring's end")
        out, self.inbox = self.inbox, []
        return out

    def lease_row(self, vector: Any) -> int:
        return -1

    def free_row(self, row: int) -> None:
        pass


def _books(conn: FakeTransport, lost: list[str]) -> LoopBooks:
    books = LoopBooks("test", lost.append)
    books.use(conn, Packer(conn, None))  # type: ignore[arg-type]
    books.bind(asyncio.get_running_loop())
    return books


def _sent_ids(conn: FakeTransport) -> list[list[int]]:
    decode = FrameDecoder(conn.limits).requests
    return [[r.id for r in decode(frame)] for frame in conn.pushed]  # type: ignore[union-attr]


async def test_one_iterations_requests_leave_in_one_frame_and_answers_reach_their_callers():
    conn, lost = FakeTransport(), []
    books = _books(conn, lost)
    loop = asyncio.get_running_loop()
    futs = [loop.create_future() for _ in range(3)]
    rids = [books.enter_one({"query": f"q{i}"}, f, 0, 0) for i, f in enumerate(futs)]
    call_fut = loop.create_future()
    call = ListCall([{"query": "a"}, {"query": "b"}], call_fut, False)
    ids = books.enter(call.requests, call, 0, 0, False)
    assert conn.pushed == []  # nothing leaves before the iteration ends
    await asyncio.sleep(0)
    assert _sent_ids(conn) == [[*rids, *ids]]  # one frame, in the order entered
    enc = FrameEncoder(conn.limits)
    conn.inbox = [enc.ok(rid, f"answer {rid}") for rid in [*ids, *rids][::-1]]
    books.rung()
    assert [f.result() for f in futs] == [f"answer {rid}" for rid in rids]
    assert call_fut.result() == [f"answer {rid}" for rid in ids]
    assert not books.waiting and lost == []


async def test_a_full_ring_refuses_with_on_full_reject():
    conn, lost = FakeTransport(on_full="reject", room=False), []
    books = _books(conn, lost)
    fut = asyncio.get_running_loop().create_future()
    books.enter_one({"query": "x"}, fut, 0, 0)
    await asyncio.sleep(0)
    with pytest.raises(QueueFullError, match="on_full='reject'"):
        fut.result()
    assert not books.waiting


async def test_an_answer_in_the_ring_wins_over_the_callers_timer():
    conn, lost = FakeTransport(), []
    books = _books(conn, lost)
    loop = asyncio.get_running_loop()
    answered, late = loop.create_future(), loop.create_future()
    first = books.enter_one({"query": "in time"}, answered, 0, 0)
    second = books.enter_one({"query": "late"}, late, 0, 0)
    await asyncio.sleep(0)
    conn.inbox = [FrameEncoder(conn.limits).ok(first, "IN TIME")]
    books.expire(answered, (first,), 0.5)  # the timer ran before the doorbell's reader
    books.expire(late, (second,), 0.5)
    assert answered.result() == "IN TIME"
    with pytest.raises(BatchTimeoutError, match="0.5 s"):
        late.result()
    assert not books.waiting


async def test_a_caller_that_leaves_before_the_send_sends_nothing():
    conn, lost = FakeTransport(), []
    books = _books(conn, lost)
    call = ListCall([{"query": "a"}, {"query": "b"}], None, True, asyncio.Queue())
    ids = books.enter(call.requests, call, 0, 0, False)
    books.forget(call, ids)
    await asyncio.sleep(0)
    assert conn.pushed == [] and not books.waiting


async def test_a_corrupt_response_ring_tells_the_client_to_drop_the_engine():
    conn, lost = FakeTransport(), []
    books = _books(conn, lost)
    fut = asyncio.get_running_loop().create_future()
    books.enter_one({"query": "x"}, fut, 0, 0)
    await asyncio.sleep(0)
    conn.corrupt = True
    books.rung()
    assert len(lost) == 1 and "corrupt response ring" in lost[0]
    books.fail_all(RuntimeError("gone"))  # what the client does then
    with pytest.raises(RuntimeError, match="gone"):
        fut.result()


async def test_a_flat_request_leaves_as_the_full_checks_encoding_and_others_keep_their_errors():
    conn, lost = FakeTransport(), []
    conn.max_request_bytes = 64
    books = _books(conn, lost)
    loop = asyncio.get_running_loop()
    flat = {"query": "hi", "n": 2**40, "x": 1.5, "ok": True, "none": None, "b": b"\x00"}
    books.enter_one(flat, loop.create_future(), 0, 0)
    await asyncio.sleep(0)
    (sent,) = FrameDecoder(conn.limits).requests(conn.pushed[0])
    assert sent.payload == flat  # type: ignore[union-attr]
    assert conn.pushed[0].endswith(check_payload(flat, 0, 64))
    # the inline path takes only what the full check lets through, with the same messages
    for bad, error in [
        ({"query": "q" * 64}, "encodes to 73 bytes, over max_request_bytes=64"),
        ({"query": 2**64}, "not msgpack-serializable"),
        ({1: "int key"}, "not msgpack-serializable"),
        ({"query": object()}, "not msgpack-serializable"),
    ]:
        with pytest.raises(InvalidRequestError if "serial" in error else RequestTooLargeError) as e:
            check_payload(bad, 0, 64)
        assert error in str(e.value)
        with pytest.raises(type(e.value), match=re.escape(str(e.value))):
            books.enter_one(bad, loop.create_future(), 0, 0)
    assert len(books.pending) == 1  # only the flat request waits


async def test_a_call_from_another_threads_loop_is_refused_while_calls_wait(monkeypatch):
    import threading

    import stratabatch.client as client_mod

    class Conn(FakeTransport):
        path = "/nowhere"
        welcome = {"dedup_key": "query"}

        def __init__(self, name: str, timeout: float) -> None:
            super().__init__()

        def watch(self, loop: Any, on_bell: Any, on_lost: Any) -> None:
            pass

        def close(self, why: str = "was closed") -> None:
            self.dead = why

    monkeypatch.setattr(client_mod, "Transport", Conn)
    client = client_mod.EngineClient("test")
    waiting = asyncio.ensure_future(client.process({"query": "never answered"}))
    await asyncio.sleep(0.01)
    assert client._books.waiting
    seen: list[BaseException] = []

    def other_thread() -> None:
        async def call() -> None:
            await client.process({"query": "from another loop"})

        try:
            asyncio.run(call())
        except BaseException as exc:  # noqa: BLE001 - the test reads it
            seen.append(exc)

    thread = threading.Thread(target=other_thread)
    thread.start()
    thread.join(10)
    assert len(seen) == 1 and "one client per event loop" in str(seen[0])
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert not client._books.waiting


async def test_a_batch_of_plain_answers_reaches_single_and_list_callers():
    import msgpack

    conn, lost = FakeTransport(), []
    books = _books(conn, lost)
    loop = asyncio.get_running_loop()
    fut = loop.create_future()
    rid = books.enter_one({"query": "one"}, fut, 0, 0)
    call_fut = loop.create_future()
    call = ListCall([{"query": "a"}, {"query": "b"}], call_fut, False)
    ids = books.enter(call.requests, call, 0, 0, False)
    await asyncio.sleep(0)
    # one batch frame: plain ok answers (read as checked lists), one with a merge's meta
    conn.inbox = [
        msgpack.packb(
            [[ids[1], 0, "B"], [rid, 0, None], [ids[0], 0, "A", {"leader": ids[0]}], [999, 0, 1]]
        )
    ]
    books.rung()
    assert fut.result() is None and call_fut.result() == ["A", "B"]
    assert not books.waiting and lost == []


async def _four_singles_and_a_list(
    books: Any, requests: list[dict[str, str]]
) -> tuple[list[asyncio.Future[Any]], list[int], asyncio.Future[Any], list[int]]:
    """Four single calls ``{"query": "q<i>"}`` and one list call of ``requests``, entered
    and sent: their futures, ids, the list call's future and its ids."""
    loop = asyncio.get_running_loop()
    futs = [loop.create_future() for _ in range(4)]
    rids = [books.enter_one({"query": f"q{i}"}, f, 0, 0) for i, f in enumerate(futs)]
    call_fut = loop.create_future()
    call = ListCall(requests, call_fut, False)
    ids = books.enter(call.requests, call, 0, 0, False)
    await asyncio.sleep(0)
    return futs, rids, call_fut, ids


async def test_a_frame_of_plain_answers_reaches_its_callers_and_skips_the_ones_gone():
    conn, lost = FakeTransport(), []
    books = _books(conn, lost)
    futs, rids, call_fut, ids = await _four_singles_and_a_list(
        books, [{"query": "a"}, {"query": "b"}]
    )
    books.leave(rids[1], futs[1])  # its caller left (cancelled): its answer is dropped
    futs[1].cancel()
    futs[3].cancel()  # cancelled, its caller not run yet: still in the books
    enc = FrameEncoder(conn.limits)
    plain = [(ids[1], "B"), (rids[3], 3), (rids[2], 2.5), (ids[0], "A"), (rids[1], 1)]
    plain.append((rids[0], None))
    conn.inbox = [enc.join([enc.ok(rid, value) for rid, value in plain])[0]]
    assert FrameDecoder(conn.limits).response_rows(conn.inbox[0])[1]  # (all plain)
    books.rung()
    assert futs[0].result() is None and futs[2].result() == 2.5 and futs[3].cancelled()
    assert call_fut.result() == ["A", "B"]
    assert not books.waiting and lost == []


async def test_callers_answered_by_one_doorbell_send_their_next_requests_in_that_iteration():
    # the answered callers run in the next loop iteration; the flush queued behind them
    # (when the answers came) sends what they enter in that same iteration: one frame,
    # with no loop iteration of its own
    conn, lost = FakeTransport(), []
    books = _books(conn, lost)
    loop = asyncio.get_running_loop()
    answered: list[int] = []

    async def caller(i: int) -> None:
        for k in range(2):
            fut = loop.create_future()
            books.enter_one({"query": f"{i}-{k}"}, fut, 0, 0)
            answered.append(await fut)

    tasks = [asyncio.create_task(caller(i)) for i in range(3)]
    while not conn.pushed:
        await asyncio.sleep(0)
    first = _sent_ids(conn)[0]
    assert len(first) == 3
    enc = FrameEncoder(conn.limits)
    conn.inbox = [enc.join([enc.ok(rid, rid) for rid in first])[0]]
    books.rung()
    await asyncio.sleep(0)  # one iteration: the callers run, enter, and the flush sends
    assert sorted(answered) == sorted(first)
    assert len(conn.pushed) == 2 and len(_sent_ids(conn)[1]) == 3
    conn.inbox = [enc.join([enc.ok(rid, rid) for rid in _sent_ids(conn)[1]])[0]]
    books.rung()
    await asyncio.gather(*tasks)
    assert not books.waiting and lost == []


def _has_zone_byte(rid: int) -> bool:
    rid >>= 8
    while rid:
        if rid & 0xFE == 0xDC:
            return True
        rid >>= 8
    return False


async def test_request_ids_skip_the_bytes_that_send_a_frame_to_the_slow_decoder():
    # An id byte 0xDC or 0xDD above the lowest could open a msgpack array 16/32 header; a
    # frame with more than a few of them is decoded by msgpack's pure-Python decoder in the
    # engine (~20x slower). A client counting up through 0xDC00-0xDDFF would send 512 ids
    # in a row like that: it skips them instead, for single and list calls.
    from msgpack import fallback

    from stratabatch.clientcalls import clean_ids

    conn, lost = FakeTransport(), []
    books = _books(conn, lost)
    loop = asyncio.get_running_loop()
    books._next_id = 0xDC00 - 40
    futs = [loop.create_future() for _ in range(100)]
    rids = [books.enter_one({"query": f"q{i}"}, f, 0, 0) for i, f in enumerate(futs)]
    call = ListCall([{"query": f"l{i}"} for i in range(64)], loop.create_future(), False)
    ids = books.enter(call.requests, call, 0, 0, False)
    assert list(ids) == list(range(ids[0], ids[0] + 64))  # a list's ids stay consecutive
    assert not any(_has_zone_byte(r) for r in [*rids, *ids])
    assert rids[:40] == list(range(0xDC00 - 40, 0xDC00)) and rids[40] == 0xDE00
    await asyncio.sleep(0)
    slow = []
    real = fallback.unpackb
    fallback.unpackb = lambda *a, **k: slow.append(1) or real(*a, **k)
    try:
        decoded = [FrameDecoder(conn.limits).requests(f) for f in conn.pushed]
    finally:
        fallback.unpackb = real
    assert slow == [] and sum(map(len, decoded)) == 164
    # the rule itself, on runs of any length
    for first, n in [(1, 1), (0xDBFF, 1), (0xDBF0, 32), (0xDC0000, 5), (0x1DCDC00, 300)]:
        got = clean_ids(first, n)
        assert got >= first and not any(_has_zone_byte(x) for x in range(got, got + n))


class ClockLoop:
    """The loop the books schedule on, with a virtual clock: ``call_at`` keeps the timers,
    :meth:`advance` runs the due ones in order (``early`` runs each that much before its
    time, as a loop whose timers have a coarse resolution may); ``call_soon`` goes to the
    running loop (the batch send)."""

    def __init__(self, start: float = 1000.0, early: float = 0.0) -> None:
        self.now = start
        self.early = early
        self.timers: list[tuple[float, int, Any, tuple[Any, ...]]] = []
        self.armed = 0
        self._real = asyncio.get_running_loop()

    def time(self) -> float:
        return self.now

    def call_soon(self, cb: Any, *args: Any) -> Any:
        return self._real.call_soon(cb, *args)

    def call_at(self, when: float, cb: Any, *args: Any) -> Any:
        self.armed += 1
        self.timers.append((when, self.armed, cb, args))
        return None

    def advance(self, to: float) -> None:
        """One loop iteration at ``to``: run the timers due (those armed meanwhile wait
        for the next iteration)."""
        due = sorted(t for t in self.timers if t[0] - self.early <= to)
        for timer in due:
            self.timers.remove(timer)
            self.now = max(self.now, min(timer[0] - self.early, to))
            timer[2](*timer[3])
        self.now = to


def _clock_books(conn: FakeTransport, clock: ClockLoop, tick_hz: int = 100) -> LoopBooks:
    books = LoopBooks("test", [].append, tick_hz=tick_hz)
    books.use(conn, Packer(conn, None))  # type: ignore[arg-type]
    books.bind(clock)  # type: ignore[arg-type]
    return books


async def test_callers_whose_deadlines_fall_in_one_tick_share_one_loop_timer():
    conn, clock = FakeTransport(), ClockLoop(start=1000.0)
    books = _clock_books(conn, clock)
    real = asyncio.get_running_loop()
    futs = []
    for i in range(50):  # deadlines 1000.0301 .. 1000.0399: one 10 ms tick
        fut = real.create_future()
        rid = books.enter_one({"query": f"q{i}"}, fut, 0, 0)
        books.timer(1000.0301 + i * 0.0002, fut, (rid,), 0.03)
        futs.append(fut)
    await asyncio.sleep(0)  # the batch send
    assert clock.armed == 1
    clock.advance(1000.0399)
    assert not any(f.done() for f in futs)
    clock.advance(1000.05)
    for f in futs:
        with pytest.raises(BatchTimeoutError, match=r"timeout \(0.03 s\) ran out"):
            f.result()
    assert not books.waiting


@pytest.mark.parametrize("early", [0.0, 0.0004])
async def test_a_callers_timeout_never_fires_early_and_at_most_one_tick_late(early):
    import random

    seed = random.randrange(1 << 30)
    print("seed", seed)
    rand = random.Random(seed)
    conn, clock = FakeTransport(), ClockLoop(start=500.0, early=early)
    books = _clock_books(conn, clock)
    real = asyncio.get_running_loop()
    ends: dict[Any, float] = {}
    for i in range(200):
        fut = real.create_future()
        rid = books.enter_one({"query": f"q{i}"}, fut, 0, 0)
        end = 500.0 + rand.uniform(0.0, 0.2)
        books.timer(end, fut, (rid,), end - 500.0)
        ends[fut] = end
    await asyncio.sleep(0)  # the batch send
    fired: dict[Any, float] = {}
    t = 500.0
    while t < 500.3:
        t += 0.0001  # (steps of 0.1 ms)
        clock.advance(t)
        for fut in ends:
            if fut.done() and fut not in fired:
                fired[fut] = clock.now
    assert len(fired) == len(ends)
    for fut, end in ends.items():
        # one tick late at most, and the steps of 0.1 ms the clock is read in (a timer run
        # early is run again at the loop's next step)
        assert end <= fired[fut] <= end + 0.01 + 0.0003, (end, fired[fut])
        assert isinstance(fut.exception(), BatchTimeoutError)


async def test_an_answered_caller_leaves_its_tick_and_an_answer_in_the_ring_wins():
    conn, clock = FakeTransport(), ClockLoop(start=2000.0)
    books = _clock_books(conn, clock)
    real = asyncio.get_running_loop()
    left, answered, late = real.create_future(), real.create_future(), real.create_future()
    ids = [
        books.enter_one({"query": q}, f, 0, 0)
        for q, f in (("left", left), ("in the ring", answered), ("late", late))
    ]
    table = books.timer(2000.005, left, (ids[0],), 0.005)
    books.timer(2000.005, answered, (ids[1],), 0.005)
    books.timer(2000.005, late, (ids[2],), 0.005)
    assert clock.armed == 1
    left.set_result("ANSWERED")  # (as the drain does) and its caller leaves its tick
    books.leave(ids[0], left)
    table.pop(left, None)
    await asyncio.sleep(0)  # the batch send
    conn.inbox = [FrameEncoder(conn.limits).ok(ids[1], "IN TIME")]  # the doorbell not read yet
    clock.advance(2000.02)
    assert left.result() == "ANSWERED"
    assert answered.result() == "IN TIME"
    with pytest.raises(BatchTimeoutError, match="0.005 s"):
        late.result()
    assert not books.waiting and not table


async def test_a_list_call_times_out_in_its_tick_with_what_was_answered_kept():
    conn, clock = FakeTransport(), ClockLoop(start=3000.0)
    books = _clock_books(conn, clock)
    fut = asyncio.get_running_loop().create_future()
    call = ListCall([{"query": "a"}, {"query": "b"}], fut, True)
    ids = books.enter(call.requests, call, 0, 0, False)
    books.timer(3000.25, call, ids, 0.25)
    await asyncio.sleep(0)
    conn.inbox = [FrameEncoder(conn.limits).ok(ids[0], "A")]
    clock.advance(3000.2)
    assert not fut.done()
    books.drain()
    clock.advance(3000.3)
    a, b = fut.result()
    assert a == "A" and isinstance(b, BatchTimeoutError)


class TextEngine(FakeTransport):
    """A transport double whose engine's dedup key is ``query`` (its welcome says so)."""

    def __init__(self, on_full: str = "wait", room: bool = True, limits: Any = None) -> None:
        super().__init__(on_full, room)
        self.welcome = {"dedup_key": "query"}
        if limits is not None:
            self.limits = limits


def _frame_kinds(conn: FakeTransport) -> list[str]:
    import msgpack

    return ["text" if type(msgpack.unpackb(f)[0]) is str else "batch" for f in conn.pushed]


def _answer_each(conn: Any, books: Any, rids: list[int], futs: list[Any], lost: list[str]) -> None:
    """The engine answers each id with ``"answer <id>"``: each caller gets its own, and the
    books end empty."""
    enc = FrameEncoder(conn.limits)
    conn.inbox = [enc.ok(rid, f"answer {rid}") for rid in rids]
    books.rung()
    assert [f.result() for f in futs] == [f"answer {rid}" for rid in rids]
    assert not books.waiting and lost == []


async def test_single_calls_of_the_key_alone_leave_in_one_text_frame():
    conn, lost = TextEngine(), []
    books = _books(conn, lost)
    loop = asyncio.get_running_loop()
    futs = [loop.create_future() for _ in range(5)]
    rids = [books.enter_one({"query": f"q{i}"}, f, 0, 0) for i, f in enumerate(futs)]
    await asyncio.sleep(0)
    assert _frame_kinds(conn) == ["text"]
    decode = FrameDecoder(conn.limits).requests
    assert [(r.id, r.payload) for r in decode(conn.pushed[0])] == [  # type: ignore[union-attr]
        (rid, {"query": f"q{i}"}) for i, rid in enumerate(rids)
    ]
    _answer_each(conn, books, rids, futs, lost)


async def test_single_calls_with_a_timeout_leave_in_a_text_frame_with_their_deadlines():
    """A call with a timeout is a text frame's request too: the frame gets a deadline column,
    0 for the calls of the iteration without one, and the engine reads each call's own."""
    import msgpack

    conn, lost = TextEngine(), []
    books = _books(conn, lost)
    loop = asyncio.get_running_loop()
    futs = [loop.create_future() for _ in range(4)]
    dls = [0, 5_000_000_000, 0, 7_000_000_000]
    rids = [
        books.enter_one({"query": f"q{i}"}, f, 0, d)
        for i, (f, d) in enumerate(zip(futs, dls, strict=True))
    ]
    await asyncio.sleep(0)
    assert _frame_kinds(conn) == ["text"] and len(msgpack.unpackb(conn.pushed[0])) == 4
    decode = FrameDecoder(conn.limits).requests
    assert [(r.id, r.deadline_ns, r.payload) for r in decode(conn.pushed[0])] == [  # type: ignore[union-attr]
        (rid, d, {"query": f"q{i}"}) for i, (rid, d) in enumerate(zip(rids, dls, strict=True))
    ]
    _answer_each(conn, books, rids, futs, lost)
    # the next iteration's calls, none with a timeout: the three-column frame again
    futs = [loop.create_future() for _ in range(2)]
    rids = [books.enter_one({"query": f"r{i}"}, f, 0, 0) for i, f in enumerate(futs)]
    await asyncio.sleep(0)
    assert len(msgpack.unpackb(conn.pushed[-1])) == 3
    _answer_each(conn, books, rids, futs, lost)


async def test_an_iteration_with_other_requests_leaves_in_batch_frames_only():
    """Beside requests a text frame cannot carry, the text ones go as batch items with them:
    the iteration's requests still leave in one frame where the limits allow (here the long
    text takes a frame of its own), each request once, with its own payload and fields."""
    conn, lost = TextEngine(), []
    books = _books(conn, lost)
    loop = asyncio.get_running_loop()
    texts = [{"query": f"q{i}"} for i in range(5)]
    others = [
        {"query": "x", "user": 1},  # another field
        {"query": "héllo"},  # not ASCII
        {"query": 7},  # not a str
        {"prompt": "y"},  # another key
        {"query": "z" * (books._packer.max_text + 1)},  # over the length that surely fits
    ]
    futs = [loop.create_future() for _ in range(len(texts) + len(others) + 1)]
    rids = [books.enter_one(r, f, 0, 0) for r, f in zip(texts + others, futs, strict=False)]
    rids.append(books.enter_one({"query": "p"}, futs[-1], 3, 0))  # a priority
    await asyncio.sleep(0)
    assert set(_frame_kinds(conn)) == {"batch"}
    decode = FrameDecoder(conn.limits).requests
    sent = [r for frame in conn.pushed for r in decode(frame)]
    by_id = {r.id: r for r in sent}  # type: ignore[union-attr]
    assert sorted(by_id) == sorted(rids) and len(sent) == len(rids)  # every request once
    for rid, req, pri in zip(rids, [*texts, *others, {"query": "p"}], [0] * 10 + [3], strict=True):
        assert (by_id[rid].payload, by_id[rid].priority, by_id[rid].arena_row) == (req, pri, -1)
    _answer_each(conn, books, rids, futs, lost)


async def test_a_text_request_that_cannot_be_carried_fails_in_its_caller_as_before():
    conn, lost = TextEngine(), []
    books = _books(conn, lost)
    fut = asyncio.get_running_loop().create_future()
    with pytest.raises(InvalidRequestError):
        books.enter_one({"query": "\ud800"}, fut, 0, 0)  # a lone surrogate: no UTF-8
    assert not books.waiting
    await asyncio.sleep(0)
    assert conn.pushed == []


async def test_text_requests_over_a_frames_limits_or_without_ring_room_go_as_batch_items():
    from stratabatch.ipc.framelimits import FrameLimits

    # frames of 4 KiB: 300 texts of 20 characters need two frames or more
    conn, lost = TextEngine(limits=FrameLimits(max_frame_bytes=4096)), []
    books = _books(conn, lost)
    loop = asyncio.get_running_loop()
    futs = [loop.create_future() for _ in range(300)]
    # (every other one with a deadline: batch items keep each one's)
    rids = [
        books.enter_one({"query": f"q{i:019d}"}, f, 0, i % 2 * (10**9 + i))
        for i, f in enumerate(futs)
    ]
    await asyncio.sleep(0)
    assert len(conn.pushed) >= 2 and set(_frame_kinds(conn)) == {"batch"}
    assert all(len(f) <= 4096 for f in conn.pushed)
    assert [i for ids in _sent_ids(conn) for i in ids] == rids  # all, once, in order
    decode = FrameDecoder(conn.limits).requests
    sent = [r for frame in conn.pushed for r in decode(frame)]
    assert [r.deadline_ns for r in sent] == [i % 2 * (10**9 + i) for i in range(300)]  # type: ignore[union-attr]
    # no room in the ring: with on_full="reject" the text requests get QueueFullError
    conn = TextEngine(on_full="reject", room=False)
    books = _books(conn, lost)
    fut = loop.create_future()
    books.enter_one({"query": "x"}, fut, 0, 0)
    await asyncio.sleep(0)
    with pytest.raises(QueueFullError, match="on_full='reject'"):
        fut.result()
    assert not books.waiting and lost == []


async def test_answers_reach_their_callers_from_an_answers_frames_columns_and_a_mixed_frame():
    import msgpack

    from stratabatch.errors import StratabatchError
    from stratabatch.ipc.frames import STATUS_ERROR, STATUS_OK, Response

    conn, lost = FakeTransport(), []
    books = _books(conn, lost)
    futs, rids, call_fut, ids = await _four_singles_and_a_list(
        books, [{"query": "a"}, {"query": "a"}]
    )
    books.leave(rids[3], futs[3])  # its caller left: its answer is dropped
    answers = msgpack.packb(["ok", [rids[1], ids[0], rids[3], rids[0]], ["b", "x", "d", "a"]])
    mixed = msgpack.packb(
        [
            [ids[1], STATUS_OK, "x", {"leader": ids[0], "similarity": 1.0}],
            [rids[2], STATUS_ERROR, ["ValueError", "boom", {}]],
        ]
    )
    dec = FrameDecoder(conn.limits)
    assert dec.response_answers(answers) == (
        [rids[1], ids[0], rids[3], rids[0]],
        ["b", "x", "d", "a"],
        [],
    )
    plain_ids, plain_values, others = dec.response_answers(mixed)
    assert (plain_ids, plain_values) == ([], [])
    assert others == [
        Response(ids[1], STATUS_OK, "x", {"leader": ids[0], "similarity": 1.0}),
        dec.responses(mixed)[1],
    ]
    conn.inbox = [answers, mixed]
    books.rung()
    assert [f.result() for f in futs[:2]] == ["a", "b"]
    with pytest.raises(StratabatchError, match="ValueError: boom"):
        futs[2].result()
    assert not futs[3].done()
    assert call_fut.result() == ["x", "x"]
    assert not books.waiting and lost == []
