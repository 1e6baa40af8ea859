"""Eventfd doorbells: blocking and asyncio waits, fd passing, and a sleeping round-trip stress."""

from __future__ import annotations

import asyncio
import mmap
import os
import random
import socket
import subprocess
import sys
import textwrap
import time

import pytest
import uvloop

from stratabatch.ipc.doorbell import Doorbell, wait_any_readable, wait_any_readable_async
from stratabatch.ipc.ring import MAX_SPIN_US, Ring
from stratabatch.ipc.segment import Segment, segment_name
from tests.conftest import run_name


def test_ring_then_wait_returns_at_once_and_rings_coalesce():
    with Doorbell() as bell:
        assert not bell.clear()
        bell.ring()
        bell.ring()
        bell.ring()
        assert bell.wait(5.0)
        assert not bell.clear()  # one wait consumed all three rings


def test_wait_times_out():
    with Doorbell() as bell:
        t0 = time.monotonic()
        assert not bell.wait(0.05)
        assert 0.04 <= time.monotonic() - t0 < 5
        assert not bell.wait(0)


def test_close_is_idempotent():
    bell = Doorbell()
    fd = bell.fd
    bell.close()
    bell.close()
    assert bell.closed and bell.fd == -1
    with pytest.raises(OSError):
        os.fstat(fd)


def test_from_fd_adopts_only_eventfds():
    with Doorbell() as bell:
        with Doorbell.from_fd(bell.fd, dup=True) as copy:
            assert copy.fd != bell.fd
            copy.ring()
            assert bell.wait(1.0)  # same eventfd behind both descriptors
    r, w = os.pipe()
    try:
        with pytest.raises(ValueError, match="not an eventfd"):
            Doorbell.from_fd(r)
    finally:
        os.close(r)
        os.close(w)
    with pytest.raises(ValueError, match="not open"):
        Doorbell.from_fd(10_000)


async def _ring_later(bell: Doorbell, delay: float) -> None:
    await asyncio.sleep(delay)
    bell.ring()


async def _async_checks() -> None:
    with Doorbell() as bell:
        assert not await bell.wait_async(0.02)  # times out
        task = asyncio.create_task(_ring_later(bell, 0.01))
        assert await bell.wait_async(5.0)
        await task
        bell.ring()
        assert await bell.wait_async()  # already rung: immediate
        # a long-lived consumer registers the fd once
        loop = asyncio.get_running_loop()
        got = asyncio.Event()
        loop.add_reader(bell.fileno(), lambda: bell.clear() and got.set())
        try:
            bell.ring()
            await asyncio.wait_for(got.wait(), 5.0)
        finally:
            loop.remove_reader(bell.fileno())


async def test_wait_async_on_asyncio():
    await _async_checks()


def test_wait_async_on_uvloop():
    loop = uvloop.new_event_loop()
    try:
        loop.run_until_complete(_async_checks())
    finally:
        loop.close()


def _ring_pair(capacity: int = 1024) -> tuple[Ring, Ring]:
    buf = memoryview(mmap.mmap(-1, Ring.nbytes(capacity)))
    prod = Ring(buf, capacity=capacity, max_frame=100, init=True)
    return prod, Ring(buf, capacity=capacity, max_frame=100, init=False)


async def _async_spin_checks() -> None:
    prod, cons = _ring_pair()
    with Doorbell() as bell:
        prod.wake_consumer = bell
        prod.try_push(b"warm")
        assert cons.drain() == [b"warm"]  # activity: the next wait spins
        seen_flag = []

        async def publish_after_some_turns() -> None:
            for _ in range(20):
                await asyncio.sleep(0)
            seen_flag.append(cons._h64[16])  # is the consumer asleep?
            prod.try_push(b"spun")

        task = asyncio.create_task(publish_after_some_turns())
        assert await wait_any_readable_async(bell, [cons], 10.0, spin_us=MAX_SPIN_US)
        await task
        # the other task got its 20 loop turns while the consumer was still spinning (a spin
        # that blocked the loop would have run out, disarmed and slept first), and the frame
        # was found by polling, without the handshake or a ring
        assert seen_flag == [0] and cons.spin_armed
        assert not bell.clear() and cons._h64[16] == 0
        assert cons.drain() == [b"spun"]

        # nothing comes: the spin runs out, the task sleeps until the timeout
        assert not await wait_any_readable_async(bell, [cons], 0.05, spin_us=5_000)
        assert not cons.spin_armed
        # idle now: it sleeps at once, and the handshake's doorbell wakes it
        loop = asyncio.get_running_loop()
        loop.call_later(0.02, prod.try_push, b"rung")
        t0 = time.perf_counter()
        assert await wait_any_readable_async(bell, [cons], 10.0)
        assert time.perf_counter() - t0 < 5
        assert cons.drain() == [b"rung"] and cons._h64[16] == 0
        with pytest.raises(ValueError, match="spin_us must be"):
            await wait_any_readable_async(bell, [cons], 1.0, spin_us=-1)


async def test_async_wait_spins_without_blocking_asyncio():
    await _async_spin_checks()


def test_async_wait_spins_without_blocking_uvloop():
    loop = uvloop.new_event_loop()
    try:
        loop.run_until_complete(_async_spin_checks())
    finally:
        loop.close()


def test_fd_passed_over_unix_socket_wakes_us():
    """SCM_RIGHTS: another process receives the eventfd, adopts it and rings it."""
    child = textwrap.dedent(
        """
        import socket, sys
        from stratabatch.ipc.doorbell import Doorbell
        sock = socket.socket(fileno=int(sys.argv[1]))
        msg, fds, _, _ = socket.recv_fds(sock, 16, 1)
        with Doorbell.from_fd(fds[0]) as bell:
            bell.ring()
        sock.sendall(b"rang")
        """
    )
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with Doorbell() as bell, ours:
        proc = subprocess.Popen(
            [sys.executable, "-c", child, str(theirs.fileno())], pass_fds=(theirs.fileno(),)
        )
        theirs.close()
        try:
            socket.send_fds(ours, [b"bell"], [bell.fd])
            assert bell.wait(60.0)
            assert ours.recv(4) == b"rang"
        finally:
            assert proc.wait(60) == 0


# ------------------------------------------------------------------ round-trip stress

ROUND_TRIPS = 100_000
WAIT_S = 5.0  # safety net; a wait that ends by timeout is a lost wake-up and fails the test
CAPACITY = 1 << 16

SERVER = """
import sys
from stratabatch.ipc.doorbell import Doorbell
from stratabatch.ipc.ring import Ring
from stratabatch.ipc.segment import Segment

name, my_fd, client_fd, count, wait_s = sys.argv[1], *map(int, sys.argv[2:5]), float(sys.argv[5])
seg = Segment.attach(name, magic=b"SBDBTEST", version=1)
me, client = Doorbell.from_fd(my_fd), Doorbell.from_fd(client_fd)
n = Ring.nbytes(1 << 16)
req = Ring(seg.buf[:n], capacity=1 << 16, max_frame=64, init=False)
resp = Ring(seg.buf[n : 2 * n], capacity=1 << 16, max_frame=64, init=False, wake_consumer=client)
print("ready", flush=True)
done = sleeps = timeouts = 0
while done < count:
    frames = req.drain()
    if frames:
        assert resp.push_many(frames) == len(frames)  # echo
        done += len(frames)
        continue
    if req.consumer_sleep_check():
        sleeps += 1
        if not me.wait(wait_s):
            timeouts += 1
    req.consumer_awake()
print(sleeps, timeouts, flush=True)
req.close()
resp.close()
seg.close()
"""


@pytest.mark.slow
def test_round_trips_with_both_sides_sleeping_never_stall():
    name = segment_name(run_name("db"), "rtt")
    n = Ring.nbytes(CAPACITY)
    with (
        Segment.create(name, 2 * n, magic=b"SBDBTEST", version=1) as seg,
        Doorbell() as server_bell,
        Doorbell() as client_bell,
    ):
        req = Ring(seg.buf[:n], capacity=CAPACITY, max_frame=64, init=True)
        resp = Ring(seg.buf[n : 2 * n], capacity=CAPACITY, max_frame=64, init=True)
        req.wake_consumer = server_bell
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                SERVER,
                name,
                str(server_bell.fd),
                str(client_bell.fd),
                str(ROUND_TRIPS),
                str(WAIT_S),
            ],
            pass_fds=(server_bell.fd, client_bell.fd),
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout.readline().strip() == "ready"
            sleeps = timeouts = 0
            t0 = time.perf_counter()
            for i in range(ROUND_TRIPS):
                msg = i.to_bytes(8, "little")
                assert req.try_push(msg)
                while True:
                    got = resp.drain()
                    if got:
                        assert got == [msg], (i, got)
                        break
                    if resp.consumer_sleep_check():
                        sleeps += 1
                        if not client_bell.wait(WAIT_S):
                            timeouts += 1
                    resp.consumer_awake()
            elapsed = time.perf_counter() - t0
            out, _ = proc.communicate(timeout=60)
            server_sleeps, server_timeouts = map(int, out.split())
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            req.close()
            resp.close()
        print(
            f"{ROUND_TRIPS} round trips in {elapsed:.2f} s "
            f"({elapsed / ROUND_TRIPS * 1e6:.1f} us each); sleeps: client {sleeps}, "
            f"server {server_sleeps}"
        )
        assert proc.returncode == 0
        assert timeouts == 0 and server_timeouts == 0, (timeouts, server_timeouts)
        # the sleeping path really was the one exercised, on both sides
        assert sleeps >= ROUND_TRIPS // 4 and server_sleeps >= ROUND_TRIPS // 4


# Both sides wait with wait_any_readable and a short spin, and the client pauses a random
# 0..2*SPIN_US before each request, so the server's spin runs out about half the time: the
# round trips mix "caught while spinning", "spin ran out just as the frame landed" and "slept
# and was rung", which is where a spin in front of the handshake could lose a wake-up.
SPIN_US = 20
LONG_PAUSE_EVERY = 100
LONG_PAUSE_NS = 1_000_000  # 1 ms: 50x the spin window
CONSUMER_ASLEEP = 16  # the index of the consumer's asleep flag in a ring's 64-bit header words

SPIN_SERVER = """
import sys
from stratabatch.ipc.doorbell import Doorbell, wait_any_readable
from stratabatch.ipc.ring import Ring
from stratabatch.ipc.segment import Segment


class CountingSleeps:
    def __init__(self, bell):
        self.bell, self.sleeps, self.timeouts = bell, 0, 0

    def wait(self, timeout):
        self.sleeps += 1
        rang = self.bell.wait(timeout)
        self.timeouts += not rang
        return rang


name, my_fd, client_fd, count = sys.argv[1], *map(int, sys.argv[2:5])
wait_s, spin_us = float(sys.argv[5]), float(sys.argv[6])
seg = Segment.attach(name, magic=b"SBDBTEST", version=1)
me, client = CountingSleeps(Doorbell.from_fd(my_fd)), Doorbell.from_fd(client_fd)
n = Ring.nbytes(1 << 16)
req = Ring(seg.buf[:n], capacity=1 << 16, max_frame=64, init=False)
resp = Ring(seg.buf[n : 2 * n], capacity=1 << 16, max_frame=64, init=False, wake_consumer=client)
print("ready", flush=True)
done = waits = 0
while done < count:
    frames = req.drain()
    if frames:
        assert resp.push_many(frames) == len(frames)  # echo
        done += len(frames)
        continue
    waits += 1
    wait_any_readable(me, (req,), wait_s, spin_us=spin_us)
print(waits, me.sleeps, me.timeouts, flush=True)
req.close()
resp.close()
seg.close()
"""


class CountingSleeps:
    """Wraps a doorbell: counts the waits that really sleep, and those that time out."""

    def __init__(self, bell: Doorbell) -> None:
        self.bell, self.sleeps, self.timeouts = bell, 0, 0

    def wait(self, timeout: float | None) -> bool:
        self.sleeps += 1
        rang = self.bell.wait(timeout)
        self.timeouts += not rang
        return rang


@pytest.mark.slow
def test_round_trips_with_spinning_then_sleeping_sides_never_stall():
    seed = int.from_bytes(os.urandom(4), "little")
    print(f"seed={seed}")
    pauses = random.Random(seed)
    name = segment_name(run_name("ds"), "rtt")
    n = Ring.nbytes(CAPACITY)
    with (
        Segment.create(name, 2 * n, magic=b"SBDBTEST", version=1) as seg,
        Doorbell() as server_bell,
        Doorbell() as client_bell,
    ):
        req = Ring(seg.buf[:n], capacity=CAPACITY, max_frame=64, init=True)
        resp = Ring(seg.buf[n : 2 * n], capacity=CAPACITY, max_frame=64, init=True)
        req.wake_consumer = server_bell
        me = CountingSleeps(client_bell)
        argv = [name, server_bell.fd, client_bell.fd, ROUND_TRIPS, WAIT_S, SPIN_US]
        proc = subprocess.Popen(
            [sys.executable, "-c", SPIN_SERVER, *map(str, argv)],
            pass_fds=(server_bell.fd, client_bell.fd),
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout.readline().strip() == "ready"
            waits = 0
            clock = time.perf_counter_ns
            t0 = time.perf_counter()
            asleep = req._h64  # (the ring's header: the consumer's asleep flag)
            for i in range(ROUND_TRIPS):
                # mostly around the spin window (either side of the race); every
                # LONG_PAUSE_EVERY-th only once the server has declared itself asleep, and a
                # long pause more, so it must be rung: whatever holds the cores (a server
                # descheduled through a pause finds the message without sleeping)
                if i % LONG_PAUSE_EVERY == 0:
                    give_up = clock() + 5_000_000_000
                    while not asleep[CONSUMER_ASLEEP] and clock() < give_up:
                        pass
                    pause = LONG_PAUSE_NS
                else:
                    pause = pauses.randrange(2 * SPIN_US * 1000)
                until = clock() + pause
                while clock() < until:
                    pass
                msg = i.to_bytes(8, "little")
                assert req.try_push(msg)
                while True:
                    got = resp.drain()
                    if got:
                        assert got == [msg], (i, got)
                        break
                    waits += 1
                    wait_any_readable(me, (resp,), WAIT_S, spin_us=SPIN_US)
            elapsed = time.perf_counter() - t0
            out, _ = proc.communicate(timeout=60)
            server_waits, server_sleeps, server_timeouts = map(int, out.split())
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            req.close()
            resp.close()
        print(
            f"{ROUND_TRIPS} round trips in {elapsed:.2f} s; waits (slept): "
            f"client {waits} ({me.sleeps}), server {server_waits} ({server_sleeps})"
        )
        assert proc.returncode == 0
        assert me.timeouts == 0 and server_timeouts == 0, (me.timeouts, server_timeouts)
        # both ends of the race were exercised on the server: waits that the spin answered,
        # and waits that slept and were rung
        assert server_sleeps >= ROUND_TRIPS // LONG_PAUSE_EVERY // 2, server_sleeps
        assert server_waits - server_sleeps >= ROUND_TRIPS // 20, server_waits
        assert waits - me.sleeps >= ROUND_TRIPS // 20, waits
