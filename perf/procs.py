"""Client processes for the multiprocess modes: start them, release them at one instant, collect.

Each client process gets its share of the workload (the requests whose ``client`` is its index)
as ``(rid, t, payload)`` tuples and a :class:`ClientKit`; it signals ``ready``, waits for ``go``,
sends each request at ``t0 + t`` (``time.monotonic`` is the same clock in every process on
Linux), counts answers in ``done`` (the progress bar reads it) and finally puts
``(client, [outcome tuples])`` on ``results``. An outcome tuple is ``(rid, result, latency_s,
error)``.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import queue
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .modes import START_DELAY_S, Outcome, Progress
from .workload import Workload

ClientWork = list[tuple[int, float, dict[str, Any]]]


@dataclass
class ClientKit:
    """What a client process needs to take part in a run (inherited by the forked children)."""

    ready: Any
    """Semaphore the client releases once it can send."""
    go: Any
    """Event set when ``t0`` holds the start time."""
    t0: Any
    """Shared double: monotonic time of arrival 0."""
    done: Any
    """Shared counter of answers received (all clients)."""
    results: Any
    """Queue for ``(client, outcome tuples)``."""

    def wait_for_start(self) -> float:
        """Signal ready, wait for the start; return ``t0``."""
        self.ready.release()
        self.go.wait()
        return float(self.t0.value)

    def count(self, n: int = 1) -> None:
        """Add ``n`` answers to the shared progress counter."""
        with self.done.get_lock():
            self.done.value += n


def split_by_client(workload: Workload) -> list[ClientWork]:
    """Each client's requests as ``(rid, t, payload)``, in arrival order."""
    out: list[ClientWork] = [[] for _ in range(workload.config.clients)]
    for r in workload.requests:
        out[r.client].append((r.rid, r.t, r.payload()))
    return out


def proc_cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system) used so far by process ``pid``, from /proc."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run_clients(
    ctx: Any,
    target: Callable[..., None],
    extra_args: tuple[Any, ...],
    workload: Workload,
    progress: Progress,
    timeout_s: float,
    alive: Callable[[], str | None] = lambda: None,
) -> list[Outcome]:
    """Run one process per client with ``target(client, work, kit, *extra_args)``.

    Args:
        ctx: the multiprocessing context (``fork``).
        target: the client function (module-level, importable by the children).
        extra_args: passed to every client after its work and kit.
        workload: split among the clients by ``Req.client``.
        progress: told of answers as the clients count them.
        timeout_s: bound on the whole run after the start.
        alive: called while waiting; a string means the server died (the run stops).

    Returns:
        Every outcome the clients reported.

    Raises:
        RuntimeError: a client did not start, did not report, or the server died.
    """
    work = split_by_client(workload)
    kit = ClientKit(
        ctx.Semaphore(0), ctx.Event(), ctx.Value("d", 0.0), ctx.Value("q", 0), ctx.Queue()
    )
    procs = [
        ctx.Process(target=target, args=(c, w, kit, *extra_args), daemon=True)
        for c, w in enumerate(work)
    ]
    for p in procs:
        p.start()
    outcomes: list[Outcome] = []
    try:
        for _ in procs:
            ok = await asyncio.to_thread(kit.ready.acquire, True, 60.0)
            if not ok:
                raise RuntimeError("a client process did not start within 60 s")
        kit.t0.value = time.monotonic() + START_DELAY_S
        kit.go.set()
        deadline = time.monotonic() + workload.requests[-1].t + timeout_s + 30
        reported, seen = 0, 0
        while reported < len(procs):
            try:
                _, tuples = kit.results.get_nowait()
            except queue.Empty:
                done = kit.done.value
                if done > seen:
                    progress(done - seen)
                    seen = done
                why = alive()
                if why:
                    raise RuntimeError(why) from None
                if time.monotonic() > deadline:
                    raise RuntimeError("client processes did not report in time") from None
                await asyncio.sleep(0.02)
                continue
            reported += 1
            outcomes += [Outcome(*t) for t in tuples]
        if kit.done.value > seen:
            progress(kit.done.value - seen)
    finally:
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
                p.join()
    return outcomes


def mp_context() -> Any:
    """The multiprocessing context of the multiprocess modes: ``fork``.

    Not ``spawn`` or ``forkserver``: with those, every Queue and Semaphore is registered with
    multiprocessing's resource-tracker process, which then outlives the run (and the children
    would re-import everything). The forked children use only multiprocessing primitives, sleep
    and sockets, never a lock another thread of the parent could hold.
    """
    return mp.get_context("fork")
