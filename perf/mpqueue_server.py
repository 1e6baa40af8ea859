"""The peer: a multiprocessing.Queue batching server, what a competent user writes instead.

Protocol, all through ``multiprocessing.Queue`` (pickle):

* client -> server, one inbox shared by all clients: ``(client, [(rid, request), ...])``. The
  client (:class:`QueueClient`, asyncio) puts each request as its own message, as a plain
  ``process()`` does (the peer of issue 19's targets); with ``coalesce=True`` it puts every
  request its callers issued in one event-loop iteration as one message instead (a stronger
  peer, reported beside it).
* server -> client, one outbox per client: ``[(rid, result, error), ...]``: once per batch,
  every answer of that batch for that client in one message.

The server (:func:`serve`, one process) takes the first message, keeps taking until
``max_size`` requests or ``window_ms`` after the first, merges requests whose ``request[key]``
is equal within the batch (a dict, the obvious dedup), calls the handler once with the distinct
requests (inline, or on a pool of ``workers`` threads for a blocking backend) and answers. A
message that overfills a batch leaves the rest for the next batch, which is dispatched at once
when it is already full. Nothing more: no normalization, no cross-batch dedup, no timeouts,
no backpressure, no stats beyond calls and items, nothing when a client dies.

With ``checked=True`` (both sides) the coalescing peer keeps the least of the engine's
contract, as a yardstick: the client checks each request with the request rule
(:func:`stratabatch.requests.request_size`'s cheapest form) and sends msgpack bytes, the server
decodes them with ``strict_map_key`` and skips an item that is no map, merges by the
normalized exact key (case and whitespace), keeps a latency ring, and answers in msgpack.

``serve`` and ``QueueClient`` are the peer; ``MpQueuePeer`` plugs them into stratabatch-perf's
harness and ``perf/bench_engine.py`` drives them with the same caller tasks as the engine.
"""

from __future__ import annotations

import asyncio
import itertools
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import msgpack

from .backend import SyncSimBackend
from .modes import ModeRun, Progress, Settings, send_at_times
from .procs import ClientKit, ClientWork, mp_context, run_clients
from .workload import Workload


def serve(
    inbox: Any,
    outboxes: list[Any],
    handler: Callable[[list[Any]], list[Any]],
    window_ms: float,
    max_size: int,
    workers: int = 0,
    stats: Any = None,
    key: str = "query",
    checked: bool = False,
) -> None:
    """Server process: batch what arrives on ``inbox``, answer through ``outboxes``.

    A ``None`` on the inbox stops it after the running batches finish; it then puts
    ``(cpu_s, calls, items)`` on ``stats`` when given. ``checked``: the messages and answers
    are msgpack bytes, and the server keeps the least of the contract (see
    :class:`QueueClient`).
    """
    pool = ThreadPoolExecutor(workers) if workers else None
    counts = [0, 0]  # handler calls, handler items
    lock = threading.Lock()  # pool threads count too
    latencies = [0.0] * 4096  # (checked: each answer's time since its message came)
    done = [0]

    def run(batch: list[tuple[int, int, Any]]) -> None:
        groups: dict[Any, list[tuple[int, int]]] = {}
        firsts: list[Any] = []
        for client, rid, req in batch:
            k = req.get(key, rid)
            if checked and type(k) is str:
                k = " ".join(k.lower().split())  # the exact key, normalized
            members = groups.setdefault(k, [])
            if not members:
                firsts.append(req)
            members.append((client, rid))
        try:
            results, error = handler(firsts), None
        except Exception as exc:
            results, error = [None] * len(firsts), f"{type(exc).__name__}: {exc}"
        with lock:
            counts[0] += 1
            counts[1] += len(firsts)
        answers: dict[int, list[tuple[int, Any, str | None]]] = {}
        for members, result in zip(groups.values(), results, strict=True):
            for client, rid in members:
                answers.setdefault(client, []).append((rid, result, error))
        if checked:
            now = time.monotonic()
            i, n = done[0] & 4095, len(batch)
            if i + n <= 4096:
                latencies[i : i + n] = [now - arrivals[client] for client, _, _ in batch]
            done[0] += n
            for client, mine in answers.items():
                outboxes[client].put(msgpack.packb(mine))
        else:
            for client, mine in answers.items():
                outboxes[client].put(mine)

    arrivals: dict[int, float] = {}  # (checked: each client's last message, a coarse arrival)

    def items(message: Any) -> list[tuple[int, int, Any]]:
        client, body = message
        if not checked:
            return [(client, rid, req) for rid, req in body]
        arrivals[client] = time.monotonic()
        out = []
        for rid, req in msgpack.unpackb(body, strict_map_key=True):
            if type(req) is not dict:  # (the engine answers such an item with an error)
                continue
            out.append((client, rid, req))
        return out

    pending: list[tuple[int, int, Any]] = []
    stop = False
    while not stop or pending:
        if not pending:
            message = inbox.get()
            if message is None:
                break
            pending = items(message)
        deadline = time.monotonic() + window_ms / 1000
        while len(pending) < max_size and not stop:
            left = deadline - time.monotonic()
            try:
                message = inbox.get(timeout=left) if left > 0 else inbox.get_nowait()
            except queue.Empty:
                break
            if message is None:
                stop = True
            else:
                pending += items(message)
        batch, pending = pending[:max_size], pending[max_size:]
        if pool is None:
            run(batch)
        else:
            pool.submit(run, batch)
    if pool is not None:
        pool.shutdown(wait=True)
    if stats is not None:
        stats.put((time.process_time(), counts[0], counts[1]))


class ServerError(Exception):
    """The handler failed the batch this request was in (the message is the server's)."""


class QueueClient:
    """An asyncio client of :func:`serve`: ``await client.process(request)``.

    Each request goes as one message, or with ``coalesce`` the requests issued in one
    event-loop iteration go as one message; a reader thread takes the answer lists from
    ``outbox`` and resolves the waiting futures on the loop.
    """

    def __init__(
        self, client: int, inbox: Any, outbox: Any, coalesce: bool = False, checked: bool = False
    ) -> None:
        self.client, self.inbox, self.outbox = client, inbox, outbox
        self.coalesce = coalesce or checked
        self.checked = checked
        if checked:
            from stratabatch.requests import flat_size, request_size

            self.flat_size, self.request_size = flat_size, request_size
            self.packer = msgpack.Packer()
        self.loop = asyncio.get_running_loop()
        self.waiting: dict[int, asyncio.Future[Any]] = {}
        self.unsent: list[tuple[int, Any]] = []
        self.ids = itertools.count()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    async def process(self, request: Any) -> Any:
        """Send ``request`` (with this iteration's others) and wait for its answer."""
        if self.checked:  # the request rule, in the caller (its cheapest form)
            size = self.flat_size(request)
            if size is None or size > 1 << 20:
                self.request_size(request, 0, 1 << 20)
        rid = next(self.ids)
        self.waiting[rid] = future = self.loop.create_future()
        if not self.coalesce:
            self.inbox.put((self.client, [(rid, request)]))
        elif not self.unsent:
            self.loop.call_soon(self._flush)
        if self.coalesce:
            self.unsent.append((rid, request))
        return await future

    def _flush(self) -> None:
        body = self.packer.pack(self.unsent) if self.checked else self.unsent
        self.inbox.put((self.client, body))
        self.unsent = []

    def _read(self) -> None:
        while (answers := self.outbox.get()) is not None:
            self.loop.call_soon_threadsafe(self._deliver, answers)

    def _deliver(self, answers: Any) -> None:
        if self.checked:
            answers = msgpack.unpackb(answers)
        for rid, result, error in answers:
            future = self.waiting.pop(rid)
            if future.done():
                continue
            if error is None:
                future.set_result(result)
            else:
                future.set_exception(ServerError(error))

    def close(self) -> None:
        """Stop the reader thread (after the last answer)."""
        self.outbox.put(None)
        self.reader.join()


# --------------------------------------------------------------------------- the harness's view


async def _harness_client(
    cid: int, work: ClientWork, kit: ClientKit, inbox: Any, outbox: Any, timeout_s: float
) -> list[tuple[int, Any, float, str | None]]:
    client = QueueClient(cid, inbox, outbox)
    t0 = kit.wait_for_start()
    outcomes = await send_at_times(
        work, t0, lambda payload: asyncio.wait_for(client.process(payload), timeout_s), kit.count
    )
    await asyncio.to_thread(client.close)
    return outcomes


def _client_for(
    cid: int, work: ClientWork, kit: ClientKit, inbox: Any, outboxes: list[Any], timeout_s: float
) -> None:
    outcomes = asyncio.run(_harness_client(cid, work, kit, inbox, outboxes[cid], timeout_s))
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
        backend = SyncSimBackend(settings.model, settings.time_scale)
        server = ctx.Process(
            target=serve,
            daemon=True,
            args=(inbox, outboxes, backend, settings.window_ms, settings.max_size),
            kwargs={"workers": settings.model.concurrency, "stats": stats},
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
