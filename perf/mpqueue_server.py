"""The peer: a plain batching server on multiprocessing.Queue, what a user would otherwise write.

Client processes put ``(client, rid, request)`` on one shared queue. One server process takes
the first request, keeps taking until ``max_size`` or ``window_ms`` after the first, merges
requests whose text is exactly equal within that batch (a dict, the obvious dedup), hands the
batch to a thread pool as large as the backend's concurrency, and answers each member through its
client's own queue. Nothing more: no cross-batch dedup, no normalization, no timeouts, no stats.
``serve`` and ``client`` are the whole thing; ``MpQueuePeer`` only plugs them into the harness.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .backend import CostModel, SyncSimBackend
from .modes import ModeRun, Progress, Settings, error_text
from .procs import ClientKit, ClientWork, mp_context, run_clients
from .workload import Workload


def serve(
    inbox: Any,
    outboxes: list[Any],
    window_ms: float,
    max_size: int,
    model: CostModel,
    time_scale: float,
    stats: Any,
) -> None:
    """Server process: batch from ``inbox`` by window and size, answer through ``outboxes``.

    A ``None`` on the inbox stops it after the running batches finish; it then puts
    ``(cpu_s, calls, items)`` on ``stats``.
    """
    backend = SyncSimBackend(model, time_scale)
    pool = ThreadPoolExecutor(max_workers=model.concurrency)

    def run(batch: list[tuple[int, int, dict[str, Any]]]) -> None:
        groups: dict[str, list[tuple[int, int]]] = {}
        firsts: list[dict[str, Any]] = []
        for client, rid, req in batch:
            members = groups.setdefault(req["query"], [])
            if not members:
                firsts.append(req)
            members.append((client, rid))
        try:
            results: list[Any] = backend(firsts)
            errors: list[str | None] = [None] * len(firsts)
        except Exception as exc:
            results, errors = [None] * len(firsts), [error_text(exc)] * len(firsts)
        for members, res, err in zip(groups.values(), results, errors, strict=True):
            for client, rid in members:
                outboxes[client].put((rid, res, err))

    stop = False
    while not stop:
        first = inbox.get()
        if first is None:
            break
        batch = [first]
        deadline = time.monotonic() + window_ms / 1000
        while len(batch) < max_size:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                item = inbox.get(timeout=left)
            except queue.Empty:
                break
            if item is None:
                stop = True
                break
            batch.append(item)
        pool.submit(run, batch)
    pool.shutdown(wait=True)
    stats.put((time.process_time(), backend.calls, backend.items))


def client(
    cid: int, work: ClientWork, kit: ClientKit, inbox: Any, outbox: Any, timeout_s: float
) -> None:
    """Client process: send each request at its time, read answers on a thread, report."""
    t0 = kit.wait_for_start()
    due = {rid: t0 + t for rid, t, _ in work}
    outcomes: list[tuple[int, Any, float, str | None]] = []

    def read() -> None:
        end = t0 + (work[-1][1] if work else 0) + timeout_s
        while len(outcomes) < len(work) and time.monotonic() < end:
            try:
                rid, res, err = outbox.get(timeout=0.1)
            except queue.Empty:
                continue
            outcomes.append((rid, res, time.monotonic() - due[rid], err))
            kit.count()
        try:  # an answer delivered twice would be waiting: collect it too
            while True:
                rid, res, err = outbox.get(timeout=0.2)
                outcomes.append((rid, res, time.monotonic() - due[rid], err))
        except queue.Empty:
            pass

    reader = threading.Thread(target=read)
    reader.start()
    for rid, _, payload in work:
        delay = due[rid] - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        inbox.put((cid, rid, payload))
    reader.join()
    kit.results.put((cid, outcomes))


class MpQueuePeer:
    """The harness's view of the peer: one server process and one process per client."""

    name = "mp.Queue server (peer)"
    batch_size = 0

    def unavailable(self) -> str | None:
        """Always available."""
        return None

    async def run(self, workload: Workload, settings: Settings, progress: Progress) -> ModeRun:
        """Start the server and the clients, run the workload, stop the server."""
        ctx = mp_context()
        self.batch_size = settings.max_size
        inbox = ctx.Queue()
        outboxes = [ctx.Queue() for _ in range(workload.config.clients)]
        stats = ctx.Queue()
        server = ctx.Process(
            target=serve,
            daemon=True,
            args=(
                inbox,
                outboxes,
                settings.window_ms,
                settings.max_size,
                settings.model,
                settings.time_scale,
                stats,
            ),
        )
        server.start()

        def alive() -> str | None:
            return None if server.is_alive() else f"server exited with {server.exitcode}"

        try:
            outcomes = await run_clients(
                ctx,
                _client_for,
                (inbox, outboxes, settings.timeout_s),
                workload,
                progress,
                settings.timeout_s,
                alive,
            )
            inbox.put(None)
            cpu_s, calls, items = stats.get(timeout=30)
        finally:
            server.join(timeout=10)
            if server.is_alive():
                server.kill()
                server.join()
        return ModeRun(
            outcomes,
            cpu_s,
            {
                "server_calls": calls,
                "server_items": items,
                "cpu_is": "server process (with its backend threads)",
            },
        )


def _client_for(
    cid: int, work: ClientWork, kit: ClientKit, inbox: Any, outboxes: list[Any], timeout_s: float
) -> None:
    client(cid, work, kit, inbox, outboxes[cid], timeout_s)
