"""Benchmark the shared-memory ring with eventfd doorbells against the usual IPC peers.

In one run, between two processes (parent and a forked child), for each transport:
  * one-way throughput: the child sends N messages of ``--size`` bytes one call at a time, the
    parent receives them all (as ``bytes`` objects); msgs/s over the whole transfer;
  * round trip: the parent sends one message, the child echoes it, ``--rtt`` times; per round
    trip latency p50/p99 in microseconds. The ring's two sides sleep on their doorbells while
    they wait (no spinning), as the engine and a sync client do.

Transports: ``ring`` (this package: try_push per message, batch drain), ``ring_push_many``
(the producer hands over batches of 64 with ``push_many``: what a busy client flushing its
queue does), ``mp_queue`` (multiprocessing.Queue), ``pipe`` (multiprocessing Pipe,
send_bytes/recv_bytes), ``unix_socket`` (AF_UNIX stream, u32 length prefix per message) and
``zmq`` (PUSH/PULL and PAIR over ipc://, when pyzmq is installed).

It also measures the CPU a consumer uses while idle, sleeping on its doorbell with the
engine's bounded safety-net timeout, over ``--idle-seconds``, and the floor any sleeping
transport pays here: the round trip of two bare blocking eventfds (two wake-ups, no Python
work around them).

Usage: python perf/bench_ipc.py [--messages 200000] [--size 100] [--rtt 20000]
                                [--repeats 3] [--idle-seconds 3] [--json FILE]
"""

from __future__ import annotations

import argparse
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
from collections.abc import Callable

from stratabatch.ipc.doorbell import Doorbell
from stratabatch.ipc.ring import Ring, wait_any_readable
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


def _ring_recv(ring: Ring, bell: Doorbell) -> list[bytes]:
    """Drain, sleeping on the doorbell (handshake included) while the ring is empty."""
    while True:
        frames = ring.drain()
        if frames:
            return frames
        wait_any_readable(bell, (ring,), SAFETY_TIMEOUT_S)


def _ring_send(ring: Ring, bell: Doorbell, msg: bytes) -> None:
    if not ring.try_push(msg):
        ring.push(msg, bell)


def _ring_oneway_child(pair: _RingPair, n: int, msg: bytes, batch: int, go) -> None:  # noqa: ANN001
    seg, _, out = pair.rings(child=True)
    go.wait()
    if batch == 1:
        for _ in range(n):
            if not out.try_push(msg):
                out.push(msg, pair.child_bell)
    else:
        chunk = [msg] * batch
        sent = 0
        while sent < n:
            k = out.push_many(chunk[: min(batch, n - sent)])
            sent += k
            if k == 0:
                out.push(msg, pair.child_bell)
                sent += 1
    out.close()
    seg.close()


def _ring_oneway(n: int, msg: bytes, batch: int = 1) -> float:
    pair = _RingPair()
    try:
        _, inbox, _ = pair.rings(child=False)
        go = CTX.Event()
        proc = CTX.Process(target=_ring_oneway_child, args=(pair, n, msg, batch, go))
        proc.start()
        time.sleep(0.2)  # let the child attach
        got = 0
        t0 = time.perf_counter_ns()
        go.set()
        while got < n:
            got += len(_ring_recv(inbox, pair.parent_bell))
        elapsed = time.perf_counter_ns() - t0
        proc.join()
        inbox.close()
        return n / elapsed * 1e9
    finally:
        pair.close()


def _ring_echo_child(pair: _RingPair, n: int) -> None:
    seg, inbox, out = pair.rings(child=True)
    done = 0
    while done < n:
        frames = _ring_recv(inbox, pair.child_bell)
        out.push_many(frames)
        done += len(frames)
    inbox.close()
    out.close()
    seg.close()


def _ring_rtt(n: int, msg: bytes) -> list[int]:
    pair = _RingPair()
    try:
        _, inbox, out = pair.rings(child=False)
        proc = CTX.Process(target=_ring_echo_child, args=(pair, n))
        proc.start()
        samples = []
        for _ in range(n):
            t0 = time.perf_counter_ns()
            _ring_send(out, pair.parent_bell, msg)
            _ring_recv(inbox, pair.parent_bell)
            samples.append(time.perf_counter_ns() - t0)
        proc.join()
        inbox.close()
        out.close()
        return samples
    finally:
        pair.close()


def _idle_child(pair: _RingPair, seconds: float, report) -> None:  # noqa: ANN001
    seg, inbox, _ = pair.rings(child=True)
    cpu0, t0 = time.process_time(), time.monotonic()
    while time.monotonic() - t0 < seconds:
        if not inbox.drain():
            wait_any_readable(pair.child_bell, (inbox,), SAFETY_TIMEOUT_S)
    report.send((time.process_time() - cpu0, time.monotonic() - t0))
    inbox.close()
    seg.close()


def ring_idle_cpu_percent(seconds: float) -> float:
    """CPU share of a consumer sleeping on an idle ring (engine-style bounded waits)."""
    pair = _RingPair()
    try:
        rx, tx = CTX.Pipe(duplex=False)
        proc = CTX.Process(target=_idle_child, args=(pair, seconds, tx))
        proc.start()
        cpu, wall = rx.recv()
        proc.join()
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


def _transports() -> dict[str, tuple[Oneway, Rtt | None]]:
    table: dict[str, tuple[Oneway, Rtt | None]] = {
        "ring": (_ring_oneway, _ring_rtt),
        "ring_push_many": (lambda n, m: _ring_oneway(n, m, batch=64), None),
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


def run(args: argparse.Namespace) -> dict[str, dict[str, float | None]]:
    """Run every transport, interleaved repeat by repeat so drifting load hits all alike."""
    msg = os.urandom(args.size)
    table = _transports()
    rates: dict[str, list[float]] = {k: [] for k in table}
    p50s: dict[str, list[float]] = {k: [] for k in table}
    p99s: dict[str, list[float]] = {k: [] for k in table}
    floor50: list[float] = []
    floor99: list[float] = []
    for oneway, rtt in table.values():  # warm-up: imports, JIT cache, page faults
        oneway(min(args.messages, 20_000), msg)
        if rtt is not None:
            rtt(min(args.rtt, 2_000), msg)
    for rep in range(args.repeats):
        for name, (oneway, rtt) in table.items():
            rates[name].append(oneway(args.messages, msg))
            if rtt is not None:
                samples = rtt(args.rtt, msg)[args.rtt // 20 :]  # drop the ramp-up
                p50s[name].append(_percentile(samples, 0.50))
                p99s[name].append(_percentile(samples, 0.99))
        samples = eventfd_floor_rtt(args.rtt)[args.rtt // 20 :]
        floor50.append(_percentile(samples, 0.50))
        floor99.append(_percentile(samples, 0.99))
        print(f"repeat {rep + 1}/{args.repeats} done", file=sys.stderr)
    results: dict[str, dict[str, float | None]] = {}
    for name in table:
        results[name] = {
            "msgs_per_s": statistics.median(rates[name]),
            "rtt_us_p50": statistics.median(p50s[name]) if p50s[name] else None,
            "rtt_us_p99": statistics.median(p99s[name]) if p99s[name] else None,
            "messages": args.messages,
            "payload_bytes": args.size,
            "repeats": args.repeats,
        }
    results["ring"]["idle_cpu_percent"] = ring_idle_cpu_percent(args.idle_seconds)
    results["ring"]["eventfd_floor_rtt_us_p50"] = statistics.median(floor50)
    results["ring"]["eventfd_floor_rtt_us_p99"] = statistics.median(floor99)
    return results


def print_table(results: dict[str, dict[str, float | None]]) -> None:
    """Print the results with ratios to multiprocessing.Queue."""
    base = results["mp_queue"]

    def cell(value: float | None, fmt: str, width: int) -> str:
        return f"{'-':>{width}}" if value is None else f"{value:>{width}{fmt}}"

    print(
        f"{'transport':<16}{'msgs/s':>12}{'x mp.Queue':>12}{'rtt p50 us':>12}"
        f"{'rtt p99 us':>12}{'p50 / Queue':>13}"
    )
    for name, r in results.items():
        p50 = r["rtt_us_p50"]
        print(
            f"{name:<16}{r['msgs_per_s']:>12,.0f}{r['msgs_per_s'] / base['msgs_per_s']:>12.2f}"
            + cell(p50, ".1f", 12)
            + cell(r["rtt_us_p99"], ".1f", 12)
            + cell(None if p50 is None else p50 / base["rtt_us_p50"], ".2f", 13)
        )
    ring = results["ring"]
    print(
        "\nfloor: two bare blocking eventfds ping-ponging (no ring, no Python around them): "
        f"p50 {ring['eventfd_floor_rtt_us_p50']:.1f} us, "
        f"p99 {ring['eventfd_floor_rtt_us_p99']:.1f} us"
    )
    print(f"idle consumer sleeping on its doorbell: {ring['idle_cpu_percent']:.3f} % CPU")
    checks = [
        ("one-way >= 6x mp.Queue", ring["msgs_per_s"] >= 6 * base["msgs_per_s"]),
        ("round trip p50 <= 10 us", ring["rtt_us_p50"] <= 10),
        ("round trip p99 <= 50 us", ring["rtt_us_p99"] <= 50),
        ("idle CPU < 1 %", ring["idle_cpu_percent"] < 1),
    ]
    if "zmq" in results:
        checks.insert(1, ("one-way >= zmq", ring["msgs_per_s"] >= results["zmq"]["msgs_per_s"]))
    print("targets (ring): " + ", ".join(f"{c}: {'met' if ok else 'MISSED'}" for c, ok in checks))


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the benchmark, print the table, optionally write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=200_000, help="one-way messages per run")
    parser.add_argument("--size", type=int, default=100, help="payload bytes per message")
    parser.add_argument("--rtt", type=int, default=20_000, help="round trips per run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per transport (median)")
    parser.add_argument("--idle-seconds", type=float, default=3.0, help="idle CPU window")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args(argv)
    if not 1 <= args.size <= MAX_FRAME:
        parser.error(f"--size must be in [1, {MAX_FRAME}], got {args.size}")
    results = run(args)
    print_table(results)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
