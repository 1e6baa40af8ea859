"""Benchmark the shared-memory ring with eventfd doorbells against the usual IPC peers.

In one run, between two processes (parent and a forked child), for each transport:
  * one-way throughput: the child sends N messages of ``--size`` bytes one call at a time, the
    parent receives them all (as ``bytes`` objects); msgs/s over the whole transfer;
  * round trip: the parent sends one message, the child echoes it, ``--rtt`` times; per round
    trip latency p50/p99 in microseconds. The ring's two sides wait as the engine and a sync
    client do: spin for up to ``spin_us`` after activity, then sleep on their doorbells.

Transports: ``ring`` (this package: try_push per message, batch drain, waits that spin for
``--spin-us``, default ``DEFAULT_SPIN_US``, then sleep), ``ring_nospin`` (the same with
``spin_us=0``: every wait sleeps in the kernel), ``ring_push_many`` (the producer hands over
batches of 64 with ``push_many``: what a busy client flushing its queue does), ``mp_queue``
(multiprocessing.Queue), ``pipe`` (multiprocessing Pipe, send_bytes/recv_bytes),
``unix_socket`` (AF_UNIX stream, u32 length prefix per message) and ``zmq`` (PUSH/PULL and
PAIR over ipc://, when pyzmq is installed).

It also measures the floor any sleeping transport pays here, the round trip of two bare
blocking eventfds (two wake-ups, no Python work around them), and the CPU a ring consumer
uses, with and without the spin:
  * idle: after a burst of traffic, ``--idle-seconds`` with nothing to read, sleeping with
    the engine's bounded safety-net timeout (the spin follows activity only);
  * sparse: one message every ``--sparse-interval-us`` for ``--idle-seconds``, the worst case
    of a spin (it runs out after every message).

The ring round trips are measured a second time while a third process keeps one core busy
(``*_busy_core`` in the JSON): the machine is rarely the two processes' alone, and that is
where a spin that does not yield the CPU falls over.

``--sweep`` adds a table of ring round trips (free and with a busy core) and sparse-traffic
CPU for several ``spin_us`` values, and for spinning without ``sched_yield``: how the
defaults were chosen.

Usage: python perf/bench_ipc.py [--messages 200000] [--size 100] [--rtt 20000]
                                [--repeats 3] [--idle-seconds 3] [--spin-us US]
                                [--sparse-interval-us 1000] [--sweep] [--json FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import socket
import statistics
import struct
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from functools import partial

import stratabatch.ipc.wait as wait_module
from stratabatch.ipc.doorbell import Doorbell, wait_any_readable
from stratabatch.ipc.ring import DEFAULT_SPIN_US, MAX_SPIN_US, Ring
from stratabatch.ipc.segment import Segment, segment_name

try:
    import zmq
except ImportError:  # pyzmq is an optional peer
    zmq = None

CAPACITY = 1 << 20
MAX_FRAME = 1 << 16
MAGIC = b"SBBENCH1"
SAFETY_TIMEOUT_S = 1.0
CTX = mp.get_context("fork")  # children inherit eventfds and sockets; no pickling of handles

# --------------------------------------------------------------------------- ring


class _RingPair:
    """A request ring and a response ring in one segment, with a doorbell per side."""

    def __init__(self) -> None:
        self.name = segment_name("bench" + uuid.uuid4().hex[:8], "rings")
        self.nbytes = Ring.nbytes(CAPACITY)
        self.seg = Segment.create(self.name, 2 * self.nbytes, magic=MAGIC, version=1)
        self.parent_bell = Doorbell()
        self.child_bell = Doorbell()
        for i in range(2):
            Ring(self._buf(self.seg, i), capacity=CAPACITY, max_frame=MAX_FRAME, init=True).close()

    def _buf(self, seg: Segment, i: int) -> memoryview:
        return seg.buf[i * self.nbytes : (i + 1) * self.nbytes]

    def rings(self, *, child: bool) -> tuple[Segment, Ring, Ring]:
        """(segment, ring this side consumes, ring this side produces)."""
        seg = Segment.attach(self.name, magic=MAGIC, version=1) if child else self.seg
        to_parent = Ring(
            self._buf(seg, 0),
            capacity=CAPACITY,
            max_frame=MAX_FRAME,
            init=False,
            wake_consumer=self.parent_bell,
            wake_producer=self.child_bell,
        )
        to_child = Ring(
            self._buf(seg, 1),
            capacity=CAPACITY,
            max_frame=MAX_FRAME,
            init=False,
            wake_consumer=self.child_bell,
            wake_producer=self.parent_bell,
        )
        return (seg, to_child, to_parent) if child else (seg, to_parent, to_child)

    def close(self) -> None:
        self.seg.close()
        self.parent_bell.close()
        self.child_bell.close()


def _ring_recv(ring: Ring, bell: Doorbell, spin_us: float) -> list[bytes]:
    """Drain, waiting (spin, then handshake and sleep) while the ring is empty."""
    while True:
        frames = ring.drain()
        if frames:
            return frames
        wait_any_readable(bell, (ring,), SAFETY_TIMEOUT_S, spin_us=spin_us)


def _ring_send(ring: Ring, bell: Doorbell, msg: bytes, spin_us: float) -> None:
    if not ring.try_push(msg):
        ring.push(msg, bell, spin_us=spin_us)


def _ring_oneway_child(  # noqa: ANN001
    pair: _RingPair, n: int, msg: bytes, batch: int, spin_us: float, go
) -> None:
    seg, _, out = pair.rings(child=True)
    go.wait()
    if batch == 1:
        for _ in range(n):
            if not out.try_push(msg):
                out.push(msg, pair.child_bell, spin_us=spin_us)
    else:
        chunk = [msg] * batch
        sent = 0
        while sent < n:
            k = out.push_many(chunk[: min(batch, n - sent)])
            sent += k
            if k == 0:
                out.push(msg, pair.child_bell, spin_us=spin_us)
                sent += 1
    out.close()
    seg.close()


def _ring_oneway(n: int, msg: bytes, batch: int = 1, spin_us: float = DEFAULT_SPIN_US) -> float:
    pair = _RingPair()
    try:
        _, inbox, _ = pair.rings(child=False)
        go = CTX.Event()
        proc = CTX.Process(target=_ring_oneway_child, args=(pair, n, msg, batch, spin_us, go))
        proc.start()
        time.sleep(0.2)  # let the child attach
        got = 0
        t0 = time.perf_counter_ns()
        go.set()
        while got < n:
            got += len(_ring_recv(inbox, pair.parent_bell, spin_us))
        elapsed = time.perf_counter_ns() - t0
        proc.join()
        inbox.close()
        return n / elapsed * 1e9
    finally:
        pair.close()


def _ring_echo_child(pair: _RingPair, n: int, spin_us: float) -> None:
    seg, inbox, out = pair.rings(child=True)
    done = 0
    while done < n:
        frames = _ring_recv(inbox, pair.child_bell, spin_us)
        out.push_many(frames)
        done += len(frames)
    inbox.close()
    out.close()
    seg.close()


def _ring_rtt(n: int, msg: bytes, spin_us: float = DEFAULT_SPIN_US) -> list[int]:
    pair = _RingPair()
    try:
        _, inbox, out = pair.rings(child=False)
        proc = CTX.Process(target=_ring_echo_child, args=(pair, n, spin_us))
        proc.start()
        samples = []
        for _ in range(n):
            t0 = time.perf_counter_ns()
            _ring_send(out, pair.parent_bell, msg, spin_us)
            _ring_recv(inbox, pair.parent_bell, spin_us)
            samples.append(time.perf_counter_ns() - t0)
        proc.join()
        inbox.close()
        out.close()
        return samples
    finally:
        pair.close()


_START, _STOP = b"start", b"stop"


def _cpu_child(pair: _RingPair, spin_us: float, report) -> None:  # noqa: ANN001
    """Consume until ``stop``; report CPU and wall seconds from ``start`` to ``stop``."""
    seg, inbox, _ = pair.rings(child=True)
    cpu0 = t0 = 0.0
    while True:
        for frame in _ring_recv(inbox, pair.child_bell, spin_us):
            if frame == _START:
                cpu0, t0 = time.process_time(), time.monotonic()
            elif frame == _STOP:
                report.send((time.process_time() - cpu0, time.monotonic() - t0))
                inbox.close()
                seg.close()
                return


def ring_consumer_cpu_percent(spin_us: float, seconds: float, interval_s: float | None) -> float:
    """CPU share of a ring consumer after a burst: idle, or one message per ``interval_s``.

    The consumer waits as the engine does (spin after activity, then sleep with a bounded
    safety-net timeout). The burst before ``start`` makes the first wait follow activity.
    """
    pair = _RingPair()
    try:
        _, _, out = pair.rings(child=False)
        rx, tx = CTX.Pipe(duplex=False)
        proc = CTX.Process(target=_cpu_child, args=(pair, spin_us, tx))
        proc.start()
        for _ in range(1000):
            _ring_send(out, pair.parent_bell, b"burst", spin_us)
        _ring_send(out, pair.parent_bell, _START, spin_us)
        end = time.monotonic() + seconds
        if interval_s is None:
            time.sleep(seconds)
        else:
            while time.monotonic() < end:
                time.sleep(interval_s)
                _ring_send(out, pair.parent_bell, b"tick", spin_us)
        _ring_send(out, pair.parent_bell, _STOP, spin_us)
        cpu, wall = rx.recv()
        proc.join()
        out.close()
        return 100.0 * cpu / wall
    finally:
        pair.close()


def _eventfd_floor_child(ping: int, pong: int, n: int) -> None:
    for _ in range(n):
        os.eventfd_read(ping)
        os.eventfd_write(pong, 1)


def eventfd_floor_rtt(n: int) -> list[int]:
    """Round trips of two bare blocking eventfds: what the kernel (and VM) wake-ups cost."""
    ping, pong = os.eventfd(0), os.eventfd(0)
    try:
        proc = CTX.Process(target=_eventfd_floor_child, args=(ping, pong, n))
        proc.start()
        samples = []
        for _ in range(n):
            t0 = time.perf_counter_ns()
            os.eventfd_write(ping, 1)
            os.eventfd_read(pong)
            samples.append(time.perf_counter_ns() - t0)
        proc.join()
        return samples
    finally:
        os.close(ping)
        os.close(pong)


def _burn(stop) -> None:  # noqa: ANN001
    while not stop.is_set():
        for _ in range(100_000):
            pass


@contextlib.contextmanager
def _busy_core() -> Iterator[None]:
    """Keep one core busy with a third process: the machine is rarely ours alone."""
    stop = CTX.Event()
    proc = CTX.Process(target=_burn, args=(stop,))
    proc.start()
    time.sleep(0.05)
    try:
        yield
    finally:
        stop.set()
        proc.join()


@contextlib.contextmanager
def _spin_yields(enabled: bool) -> Iterator[None]:
    """Spin with sched_yield between polls (the library's choice) or without (the alternative).

    Swaps the wait module's private yield hook, so only the sweep's own runs (and the
    children they fork) see the alternative.
    """
    saved = wait_module._yield_cpu
    wait_module._yield_cpu = saved if enabled else _no_yield
    try:
        yield
    finally:
        wait_module._yield_cpu = saved


def _no_yield() -> None:
    pass


# --------------------------------------------------------------------------- mp.Queue


def _queue_oneway_child(q, n: int, msg: bytes, go) -> None:  # noqa: ANN001
    go.wait()
    for _ in range(n):
        q.put(msg)
    q.close()
    q.join_thread()


def _queue_oneway(n: int, msg: bytes) -> float:
    q, go = CTX.Queue(), CTX.Event()
    proc = CTX.Process(target=_queue_oneway_child, args=(q, n, msg, go))
    proc.start()
    time.sleep(0.2)
    t0 = time.perf_counter_ns()
    go.set()
    for _ in range(n):
        q.get()
    elapsed = time.perf_counter_ns() - t0
    proc.join()
    return n / elapsed * 1e9


def _queue_echo_child(qin, qout, n: int) -> None:  # noqa: ANN001
    for _ in range(n):
        qout.put(qin.get())
    qout.close()
    qout.join_thread()


def _queue_rtt(n: int, msg: bytes) -> list[int]:
    qin, qout = CTX.Queue(), CTX.Queue()
    proc = CTX.Process(target=_queue_echo_child, args=(qin, qout, n))
    proc.start()
    samples = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        qin.put(msg)
        qout.get()
        samples.append(time.perf_counter_ns() - t0)
    proc.join()
    return samples


# --------------------------------------------------------------------------- Pipe


def _pipe_oneway_child(conn, n: int, msg: bytes, go) -> None:  # noqa: ANN001
    go.wait()
    for _ in range(n):
        conn.send_bytes(msg)


def _pipe_oneway(n: int, msg: bytes) -> float:
    rx, tx = CTX.Pipe(duplex=False)
    go = CTX.Event()
    proc = CTX.Process(target=_pipe_oneway_child, args=(tx, n, msg, go))
    proc.start()
    time.sleep(0.2)
    t0 = time.perf_counter_ns()
    go.set()
    for _ in range(n):
        rx.recv_bytes()
    elapsed = time.perf_counter_ns() - t0
    proc.join()
    return n / elapsed * 1e9


def _pipe_echo_child(conn, n: int) -> None:  # noqa: ANN001
    for _ in range(n):
        conn.send_bytes(conn.recv_bytes())


def _pipe_rtt(n: int, msg: bytes) -> list[int]:
    a, b = CTX.Pipe()
    proc = CTX.Process(target=_pipe_echo_child, args=(b, n))
    proc.start()
    samples = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        a.send_bytes(msg)
        a.recv_bytes()
        samples.append(time.perf_counter_ns() - t0)
    proc.join()
    return samples


# --------------------------------------------------------------------------- AF_UNIX

_LEN = struct.Struct("<I")


class _FrameReader:
    """Length-prefixed frames from a stream socket, read in large chunks."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def frames(self) -> list[bytes]:
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise EOFError("peer closed")
        buf = self.buf + chunk if self.buf else chunk
        out = []
        pos, end = 0, len(buf)
        unpack = _LEN.unpack_from
        while end - pos >= 4:
            (n,) = unpack(buf, pos)
            if end - pos - 4 < n:
                break
            out.append(buf[pos + 4 : pos + 4 + n])
            pos += 4 + n
        self.buf = buf[pos:]
        return out


def _unix_oneway_child(sock: socket.socket, n: int, msg: bytes, go) -> None:  # noqa: ANN001
    pack = _LEN.pack
    go.wait()
    for _ in range(n):
        sock.sendall(pack(len(msg)) + msg)  # framing is the sender's work in a real protocol
    sock.close()


def _unix_oneway(n: int, msg: bytes) -> float:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    go = CTX.Event()
    proc = CTX.Process(target=_unix_oneway_child, args=(b, n, msg, go))
    proc.start()
    b.close()
    reader = _FrameReader(a)
    time.sleep(0.2)
    got = 0
    t0 = time.perf_counter_ns()
    go.set()
    while got < n:
        got += len(reader.frames())
    elapsed = time.perf_counter_ns() - t0
    proc.join()
    a.close()
    return n / elapsed * 1e9


def _unix_echo_child(sock: socket.socket, n: int) -> None:
    reader = _FrameReader(sock)
    done = 0
    while done < n:
        for f in reader.frames():
            sock.sendall(_LEN.pack(len(f)) + f)
            done += 1
    sock.close()


def _unix_rtt(n: int, msg: bytes) -> list[int]:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    proc = CTX.Process(target=_unix_echo_child, args=(b, n))
    proc.start()
    b.close()
    reader = _FrameReader(a)
    samples = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        a.sendall(_LEN.pack(len(msg)) + msg)
        while not reader.frames():
            pass
        samples.append(time.perf_counter_ns() - t0)
    proc.join()
    a.close()
    return samples


# --------------------------------------------------------------------------- zmq


def _zmq_addr() -> str:
    return f"ipc://{tempfile.gettempdir()}/stratabatch-bench-{uuid.uuid4().hex[:8]}.zmq"


def _zmq_oneway_child(addr: str, n: int, msg: bytes, go) -> None:  # noqa: ANN001
    ctx = zmq.Context()
    s = ctx.socket(zmq.PUSH)
    s.connect(addr)
    go.wait()
    for _ in range(n):
        s.send(msg, copy=len(msg) > 4096)
    s.close(linger=-1)
    ctx.term()


def _zmq_oneway(n: int, msg: bytes) -> float:
    ctx = zmq.Context()
    s = ctx.socket(zmq.PULL)
    addr = _zmq_addr()
    s.bind(addr)
    go = CTX.Event()
    proc = CTX.Process(target=_zmq_oneway_child, args=(addr, n, msg, go))
    proc.start()
    time.sleep(0.3)
    t0 = time.perf_counter_ns()
    go.set()
    for _ in range(n):
        s.recv()
    elapsed = time.perf_counter_ns() - t0
    proc.join()
    s.close(linger=0)
    ctx.term()
    _unlink_ipc(addr)
    return n / elapsed * 1e9


def _zmq_echo_child(addr: str, n: int) -> None:
    ctx = zmq.Context()
    s = ctx.socket(zmq.PAIR)
    s.connect(addr)
    for _ in range(n):
        s.send(s.recv())
    s.close(linger=-1)
    ctx.term()


def _zmq_rtt(n: int, msg: bytes) -> list[int]:
    ctx = zmq.Context()
    s = ctx.socket(zmq.PAIR)
    addr = _zmq_addr()
    s.bind(addr)
    proc = CTX.Process(target=_zmq_echo_child, args=(addr, n))
    proc.start()
    samples = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        s.send(msg)
        s.recv()
        samples.append(time.perf_counter_ns() - t0)
    proc.join()
    s.close(linger=0)
    ctx.term()
    _unlink_ipc(addr)
    return samples


def _unlink_ipc(addr: str) -> None:
    try:
        os.unlink(addr[len("ipc://") :])
    except FileNotFoundError:
        pass


# --------------------------------------------------------------------------- driver

Oneway = Callable[[int, bytes], float]
Rtt = Callable[[int, bytes], list[int]]


def _transports(spin_us: float) -> dict[str, tuple[Oneway, Rtt | None]]:
    table: dict[str, tuple[Oneway, Rtt | None]] = {
        "ring": (partial(_ring_oneway, spin_us=spin_us), partial(_ring_rtt, spin_us=spin_us)),
        "ring_nospin": (partial(_ring_oneway, spin_us=0), partial(_ring_rtt, spin_us=0)),
        "ring_push_many": (partial(_ring_oneway, batch=64, spin_us=spin_us), None),
        "mp_queue": (_queue_oneway, _queue_rtt),
        "pipe": (_pipe_oneway, _pipe_rtt),
        "unix_socket": (_unix_oneway, _unix_rtt),
    }
    if zmq is not None:
        table["zmq"] = (_zmq_oneway, _zmq_rtt)
    return table


def _percentile(samples: list[int], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000.0


def _median_rtt(samples: list[list[int]]) -> tuple[float, float]:
    """Median over repeats of each repeat's p50 and p99, ramp-up dropped."""
    cut = [run[len(run) // 20 :] for run in samples]
    return (
        statistics.median(_percentile(run, 0.50) for run in cut),
        statistics.median(_percentile(run, 0.99) for run in cut),
    )


def run(args: argparse.Namespace) -> dict[str, dict[str, float | None]]:
    """Run every transport, interleaved repeat by repeat so drifting load hits all alike."""
    msg = os.urandom(args.size)
    table = _transports(args.spin_us)
    rates: dict[str, list[float]] = {k: [] for k in table}
    rtts: dict[str, list[list[int]]] = {k: [] for k in table}
    floor: list[list[int]] = []
    for oneway, rtt in table.values():  # warm-up: imports, JIT cache, page faults
        oneway(min(args.messages, 20_000), msg)
        if rtt is not None:
            rtt(min(args.rtt, 2_000), msg)
    busy: dict[str, list[list[int]]] = {"ring": [], "ring_nospin": []}
    for rep in range(args.repeats):
        for name, (oneway, rtt) in table.items():
            rates[name].append(oneway(args.messages, msg))
            if rtt is not None:
                rtts[name].append(rtt(args.rtt, msg))
            if name in busy:
                with _busy_core():
                    busy[name].append(rtt(args.rtt, msg))
        floor.append(eventfd_floor_rtt(args.rtt))
        print(f"repeat {rep + 1}/{args.repeats} done", file=sys.stderr)
    results: dict[str, dict[str, float | None]] = {}
    for name in table:
        p50, p99 = _median_rtt(rtts[name]) if rtts[name] else (None, None)
        results[name] = {
            "msgs_per_s": statistics.median(rates[name]),
            "rtt_us_p50": p50,
            "rtt_us_p99": p99,
            "messages": args.messages,
            "payload_bytes": args.size,
            "repeats": args.repeats,
        }
    sparse = args.sparse_interval_us / 1e6
    for name, spin in (("ring", args.spin_us), ("ring_nospin", 0)):
        r = results[name]
        r["spin_us"] = spin
        r["idle_cpu_percent"] = ring_consumer_cpu_percent(spin, args.idle_seconds, None)
        r["sparse_cpu_percent"] = ring_consumer_cpu_percent(spin, args.idle_seconds, sparse)
        r["sparse_interval_us"] = args.sparse_interval_us
        r["rtt_us_p50_busy_core"], r["rtt_us_p99_busy_core"] = _median_rtt(busy[name])
    floor50, floor99 = _median_rtt(floor)
    results["ring"]["eventfd_floor_rtt_us_p50"] = floor50
    results["ring"]["eventfd_floor_rtt_us_p99"] = floor99
    return results


def run_sweep(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """Ring round trips (free and with a busy core) and sparse-traffic CPU per spin variant."""
    msg = os.urandom(args.size)
    spins = sorted({0, 10, 25, 50, 100, 200, args.spin_us})
    variants = [(spin, True) for spin in spins] + [(50, False), (100, False)]
    free: dict[tuple[float, bool], list[list[int]]] = {v: [] for v in variants}
    busy: dict[tuple[float, bool], list[list[int]]] = {v: [] for v in variants}
    _ring_rtt(min(args.rtt, 2_000), msg)
    for rep in range(args.repeats):
        for spin, yields in variants:
            with _spin_yields(yields):
                free[spin, yields].append(_ring_rtt(args.rtt, msg, spin))
                with _busy_core():
                    busy[spin, yields].append(_ring_rtt(args.rtt, msg, spin))
        print(f"sweep repeat {rep + 1}/{args.repeats} done", file=sys.stderr)
    out = {}
    for spin, yields in variants:
        with _spin_yields(yields):
            cpu = ring_consumer_cpu_percent(spin, args.idle_seconds, args.sparse_interval_us / 1e6)
        p50, p99 = _median_rtt(free[spin, yields])
        b50, b99 = _median_rtt(busy[spin, yields])
        out[f"{spin:g}" + ("" if yields else " no yield")] = {
            "rtt_us_p50": p50,
            "rtt_us_p99": p99,
            "rtt_us_p50_busy_core": b50,
            "rtt_us_p99_busy_core": b99,
            "sparse_cpu_percent": cpu,
        }
    return out


def print_table(results: dict[str, dict[str, float | None]]) -> None:
    """Print the results with ratios to multiprocessing.Queue, then the targets."""
    base = results["mp_queue"]

    def cell(value: float | None, fmt: str, width: int) -> str:
        return f"{'-':>{width}}" if value is None else f"{value:>{width}{fmt}}"

    print(
        f"{'transport':<16}{'msgs/s':>12}{'x mp.Queue':>12}{'rtt p50 us':>12}"
        f"{'rtt p99 us':>12}{'p50 / Queue':>13}"
    )
    for name, r in results.items():
        if name == "sweep":
            continue
        p50 = r["rtt_us_p50"]
        print(
            f"{name:<16}{r['msgs_per_s']:>12,.0f}{r['msgs_per_s'] / base['msgs_per_s']:>12.2f}"
            + cell(p50, ".1f", 12)
            + cell(r["rtt_us_p99"], ".1f", 12)
            + cell(None if p50 is None else p50 / base["rtt_us_p50"], ".2f", 13)
        )
    ring, nospin = results["ring"], results["ring_nospin"]
    print(
        "\nfloor: two bare blocking eventfds ping-ponging (no ring, no Python around them): "
        f"p50 {ring['eventfd_floor_rtt_us_p50']:.1f} us, "
        f"p99 {ring['eventfd_floor_rtt_us_p99']:.1f} us"
    )
    print(f"ring spin_us = {ring['spin_us']:g} (ring_nospin: 0)")
    print(
        f"consumer CPU, idle after a burst: ring {ring['idle_cpu_percent']:.3f} %, "
        f"ring_nospin {nospin['idle_cpu_percent']:.3f} %"
    )
    print(
        "round trip with a third process keeping one core busy: "
        f"ring p50 {ring['rtt_us_p50_busy_core']:.1f} / p99 {ring['rtt_us_p99_busy_core']:.1f} us, "
        f"ring_nospin p50 {nospin['rtt_us_p50_busy_core']:.1f} / "
        f"p99 {nospin['rtt_us_p99_busy_core']:.1f} us"
    )
    print(
        f"consumer CPU, one message every {ring['sparse_interval_us']:g} us: "
        f"ring {ring['sparse_cpu_percent']:.1f} %, ring_nospin {nospin['sparse_cpu_percent']:.1f} %"
    )

    def verdicts(r: dict[str, float | None], one_way: bool) -> str:
        checks = [
            ("round trip p50 <= 10 us", r["rtt_us_p50"] <= 10),
            ("round trip p99 <= 50 us", r["rtt_us_p99"] <= 50),
            ("idle CPU < 1 %", r["idle_cpu_percent"] < 1),
        ]
        if one_way:
            checks.insert(0, ("one-way >= 6x mp.Queue", r["msgs_per_s"] >= 6 * base["msgs_per_s"]))
            if "zmq" in results:
                checks.insert(
                    1, ("one-way >= zmq", r["msgs_per_s"] >= results["zmq"]["msgs_per_s"])
                )
        return ", ".join(f"{c}: {'met' if ok else 'MISSED'}" for c, ok in checks)

    print("targets (ring): " + verdicts(ring, True))
    print("for comparison (ring_nospin): " + verdicts(nospin, False))
    if "sweep" in results:
        print(
            f"\n{'spin_us':<16}{'rtt p50 us':>12}{'rtt p99 us':>12}{'busy p50':>10}"
            f"{'busy p99':>10}{'sparse CPU %':>14}"
        )
        for spin, r in results["sweep"].items():
            print(
                f"{spin:<16}{r['rtt_us_p50']:>12.1f}{r['rtt_us_p99']:>12.1f}"
                f"{r['rtt_us_p50_busy_core']:>10.1f}{r['rtt_us_p99_busy_core']:>10.1f}"
                f"{r['sparse_cpu_percent']:>14.1f}"
            )
        print("busy: with a third process keeping one core busy")


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the benchmark, print the table, optionally write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=200_000, help="one-way messages per run")
    parser.add_argument("--size", type=int, default=100, help="payload bytes per message")
    parser.add_argument("--rtt", type=int, default=20_000, help="round trips per run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per transport (median)")
    parser.add_argument("--idle-seconds", type=float, default=3.0, help="CPU-share window")
    parser.add_argument(
        "--spin-us",
        type=float,
        default=DEFAULT_SPIN_US,
        help="spin before sleeping for the 'ring' rows (microseconds)",
    )
    parser.add_argument(
        "--sparse-interval-us",
        type=float,
        default=1000.0,
        help="gap between messages for the sparse-traffic CPU figure",
    )
    parser.add_argument("--sweep", action="store_true", help="also sweep spin_us values")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args(argv)
    if not 1 <= args.size <= MAX_FRAME:
        parser.error(f"--size must be in [1, {MAX_FRAME}], got {args.size}")
    if not 0 <= args.spin_us <= MAX_SPIN_US:
        parser.error(f"--spin-us must be in [0, {MAX_SPIN_US}], got {args.spin_us}")
    results = run(args)
    if args.sweep:
        results["sweep"] = run_sweep(args)
    print_table(results)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
