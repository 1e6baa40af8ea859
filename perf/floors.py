"""What the machine itself charges for two of bench_engine's workloads, with no stratabatch in them.

Two of issue 19's targets sit near a cost that no batching design can avoid on a given machine,
and that cost moves by 2-3x between machines and sessions. bench_engine measures these floors in
the same run as the engine, so a target that is out of reach can be told apart from one that is
missed:

* :func:`trickle_floor`: a bare uvloop server that does what any batching server must do for one
  request arriving alone into an empty window of 1 ms: wake on an eventfd (the arrival), wait
  for the window on a loop timer, run the batch as one task, and write an eventfd back (the
  answer). Its client is paced like bench_engine's trickle client (one request at a time, one
  per ms). The figure is the server's CPU per request: what the VM charges for the two wake-ups
  of a window, with the least Python around them.
* :func:`handoff_floor`: processes (as many as bench_engine's clients) of ``threads`` caller
  threads that each hand a request to a responder thread and block until it answers (a
  ``queue.SimpleQueue`` in, a ``threading.Lock`` per caller out, CPython's cheapest wake-up
  pair), with no encoding, no ring and no engine.
  The figure is the process's CPU per request: the least a threaded blocking client pays per
  call before it does any work of its own.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import queue
import threading
import time
from typing import Any

from stratabatch.perf.benchutil import proc_cpu_s


def _waker_server(req_fd: int, resp_fd: int, window_s: float) -> None:
    import uvloop

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop = loop.create_future()

        async def batch() -> None:
            os.eventfd_write(resp_fd, 1)

        def close_window() -> None:
            loop.create_task(batch())

        def arrival() -> None:
            try:
                n = os.eventfd_read(req_fd)
            except BlockingIOError:
                return
            if n > 1_000_000:  # the parent's stop signal
                stop.set_result(None)
                return
            loop.call_later(window_s, close_window)

        loop.add_reader(req_fd, arrival)
        await stop

    uvloop.run(main())


def _waker_client(req_fd: int, resp_fd: int, n: int, out: Any) -> None:
    import uvloop

    async def main() -> None:
        loop = asyncio.get_running_loop()
        waiter: list[asyncio.Future[None]] = []

        def answered() -> None:
            try:
                os.eventfd_read(resp_fd)
            except BlockingIOError:
                return
            if waiter and not waiter[0].done():
                waiter[0].set_result(None)

        loop.add_reader(resp_fd, answered)

        async def call() -> None:
            waiter[:] = [loop.create_future()]
            os.eventfd_write(req_fd, 1)
            await waiter[0]

        await call()
        t0 = start = time.perf_counter()
        for _ in range(n):
            await call()
            start += 0.001
            delay = start - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        out.put(time.perf_counter() - t0)

    uvloop.run(main())


def trickle_floor(n: int, window_s: float = 0.001) -> dict[str, float]:
    """CPU per request of a bare uvloop server under bench_engine's trickle (see the module)."""
    ctx = mp.get_context("fork")
    req_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
    resp_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
    out = ctx.Queue()
    server = ctx.Process(target=_waker_server, args=(req_fd, resp_fd, window_s), daemon=True)
    client = ctx.Process(target=_waker_client, args=(req_fd, resp_fd, n, out), daemon=True)
    try:
        server.start()
        time.sleep(0.2)  # the server's loop is up before the first arrival
        before = proc_cpu_s(server.pid)
        client.start()
        wall = out.get(timeout=60 + n / 100)
        cpu = proc_cpu_s(server.pid) - before
        os.eventfd_write(req_fd, 2_000_000)
        server.join(10)
        client.join(10)
    finally:
        for p in (server, client):
            if p.is_alive():
                p.kill()
                p.join()
        os.close(req_fd)
        os.close(resp_fd)
    return {"requests": n, "rps": n / wall, "server_cpu_us": cpu / n * 1e6}


def _handoff_process(threads: int, per_thread: int, out: Any) -> None:
    inbox: queue.SimpleQueue[threading.Lock | None] = queue.SimpleQueue()

    def responder() -> None:
        while True:
            lock = inbox.get()
            if lock is None:
                return
            lock.release()

    def caller() -> None:
        lock = threading.Lock()
        lock.acquire()
        for _ in range(per_thread):
            inbox.put(lock)
            lock.acquire()

    r = threading.Thread(target=responder)
    r.start()
    callers = [threading.Thread(target=caller) for _ in range(threads)]
    cpu0, t0 = time.process_time(), time.perf_counter()
    for t in callers:
        t.start()
    for t in callers:
        t.join()
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    inbox.put(None)
    r.join()
    out.put((wall, cpu))


def handoff_floor(processes: int, threads: int, requests: int) -> dict[str, float]:
    """CPU per request of ``processes`` processes at once, each of ``threads`` callers handing
    requests to one responder thread; ``requests`` in all."""
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    per = max(requests // (threads * processes), 1)
    procs = [
        ctx.Process(target=_handoff_process, args=(threads, per, out), daemon=True)
        for _ in range(processes)
    ]
    for p in procs:
        p.start()
    try:
        results = [out.get(timeout=120) for _ in procs]
        for p in procs:
            p.join(10)
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join()
    n = per * threads * processes
    wall = max(w for w, _ in results)
    return {"requests": n, "rps": n / wall, "cpu_us": sum(c for _, c in results) / n * 1e6}
