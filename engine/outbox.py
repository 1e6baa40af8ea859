"""The engine's answers to its clients: each outcome into the client's outbox, then its ring.

A component of :class:`~stratabatch.server.Engine`. The core's ``on_complete``
(:meth:`Outbox.on_complete`) and the engine's own refusals (:meth:`Outbox.error`) append
``(id, status, value[, meta])`` to the client's outbox; once per loop iteration
(:meth:`Outbox.flush`) each outbox is encoded as batch frames and written with one
``push_many`` per client. A full response ring keeps the rest of the frames and the producer
flag raised: the client's drain rings the engine's doorbell, and a ring that got room
meanwhile wakes a pass at once (the ``wake`` given to :meth:`Outbox.start`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from itertools import repeat
from typing import TYPE_CHECKING, Any

from stratabatch.ipc.errors import FrameError, FrameTooLargeError
from stratabatch.ipc.frames import FrameEncoder

from .errors import BatchTimeoutError, HandlerError, StratabatchError
from .lane import ROW, LaneGroup
from .records import Request
from .wire import STATUS_OK, error_to_wire

if TYPE_CHECKING:
    from .core import Core
    from .slots import Client

log = logging.getLogger("stratabatch.engine")


class Outbox:
    """Every client's answers, from an outcome to the bytes in its response ring.

    Args:
        clients: The connected clients by slot (the engine's table, shared, never copied).
        encoder: The response frames' encoder (the engine's frame limits).
    """

    def __init__(self, clients: Mapping[int, Client], encoder: FrameEncoder) -> None:
        self._clients = clients
        self._encoder = encoder
        self._loop: asyncio.AbstractEventLoop | None = None
        self._core: Core | None = None
        self._wake: Callable[[], None] = _nothing
        self._drop: Callable[[Client, str], None] | None = None
        self._flush_scheduled = False

    def start(
        self,
        loop: asyncio.AbstractEventLoop,
        core: Core,
        wake: Callable[[], None],
        drop: Callable[[Client, str], None] | None = None,
    ) -> None:
        """Bind what serving needs: the loop a flush is scheduled on, the core (an answer that
        cannot be sent counts as its error), ``wake``, which schedules a pass over the rings
        (a response ring got room), and ``drop``, which disconnects a client with a reason
        (a bug of ours met while writing its answers)."""
        self._loop = loop
        self._core = core
        self._wake = wake
        self._drop = drop

    def on_complete(self, req: Request, value: Any, error: BaseException | None) -> None:
        """The core's ``on_complete``: queue ``req``'s outcome for its client, flush soon (a
        value as :meth:`on_complete_many` answers it)."""
        if error is None:
            self.on_complete_many([req], [value])
            return
        client = req.sink
        if client.closed or client.pending.get(req.index) is not req:
            return  # answered already (the engine failed it while stopping)
        del client.pending[req.index]
        self._count_error(client, error)
        client.outbox.append((req.index, *error_to_wire(error)))
        self._flush_soon()

    def on_complete_many(self, reqs: list[Request], values: list[Any]) -> None:
        """The core's ``on_complete_many``: :meth:`on_complete` for a batch's successes, in
        one call (the same checks and answers, one loop instead of a call per request)."""
        for req, value in zip(reqs, values, strict=True):
            client = req.sink
            pending = client.pending
            rid = req.index
            if client.closed or pending.get(rid) is not req:
                continue  # answered already (the engine failed it while stopping)
            del pending[rid]
            lead = req.merged_with
            if lead is None:
                client.ok_ids.append(rid)
                client.ok_values.append(value)
            else:
                meta = {
                    "leader": lead.index if lead.sink is client else -1,
                    "similarity": 1.0 if req.similarity is None else float(req.similarity),
                }
                client.outbox.append((rid, STATUS_OK, value, meta))
        self._flush_soon()

    def lane_deliver(self, groups: list[LaneGroup], values: list[Any]) -> list[float]:
        """The core's row lane delivers a batch's values (:class:`~stratabatch.lane.Deliver`):
        each group's callers get its value, a twin with the merge meta (its similarity as the
        general path sends it: a near twin's from :meth:`LaneGroup.similarity_of`). Returns
        the arrival times of every caller answered (the core's stats: the counters block
        reads the latencies from there)."""
        arrivals: list[float] = []
        for g, value in zip(groups, values, strict=True):
            client = g.sink
            if client is not None:
                rid = g.rid
                arrivals.append(g.arrival)
                pending = client.pending
                if not client.closed and pending.get(rid) is g:
                    del pending[rid]
                    client.ok_ids.append(rid)
                    client.ok_values.append(value)
            more = g.more
            if more is not None:
                for i in range(0, len(more), ROW):
                    client = more[i]
                    if client is None:
                        continue
                    rid = more[i + 1]
                    arrivals.append(more[i + 2])
                    pending = client.pending
                    if client.closed or pending.get(rid) is not g:
                        continue
                    del pending[rid]
                    meta = {
                        "leader": g.rid if g.lead is client else -1,
                        "similarity": g.similarity_of(client, rid),  # (1.0 for an exact twin)
                    }
                    client.outbox.append((rid, STATUS_OK, value, meta))
        self._flush_soon()
        return arrivals

    def lane_fail(
        self, group: LaneGroup, client: Client, rid: int, arrival: float, error: BaseException
    ) -> None:
        """The core's row lane answers caller ``rid`` of ``group`` with ``error``
        (:class:`~stratabatch.lane.Fail`)."""
        pending = client.pending
        if client.closed or pending.get(rid) is not group:
            return  # answered already (the engine failed it while stopping)
        del pending[rid]
        self._count_error(client, error)
        client.outbox.append((rid, *error_to_wire(error)))
        self._flush_soon()

    @staticmethod
    def lane_repoint(client: Client, rid: int, record: Request) -> None:
        """The core's row lane handed caller ``rid`` over to ``record``
        (:class:`~stratabatch.lane.Repoint`)."""
        if client.pending.get(rid) is not None:
            client.pending[rid] = record

    def _flush_soon(self) -> None:
        """Schedule one :meth:`flush` on the loop's next iteration (once, however often)."""
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self.flush)  # type: ignore[union-attr]

    def error(self, client: Client, rid: int, error: BaseException) -> None:
        """Answer ``client``'s request ``rid`` with ``error`` (written by the next flush)."""
        self._count_error(client, error)
        client.outbox.append((rid, *error_to_wire(error)))

    def internal_error(self, client: Client, rid: int | None, exc: Exception, where: str) -> None:
        """A bug of ours met a client's request ``rid``: log it, and answer that request with
        an error unless it has no readable id or already waits for its answer."""
        log.error("internal error %s of client pid %d: %r", where, client.pid, exc)
        if rid is not None and rid not in client.pending:
            self.error(
                client,
                rid,
                StratabatchError(f"internal error in the engine: {type(exc).__name__}: {exc}"),
            )

    def _count_error(self, client: Client, error: BaseException) -> None:
        client.counts[2 if isinstance(error, BatchTimeoutError) else 1] += 1
        client.dirty = True

    def flush(self) -> None:
        """Write every client's waiting answers into its response ring, as far as it has room."""
        self._flush_scheduled = False
        for client in list(self._clients.values()):
            if client.outbox or client.ok_ids or client.frames:
                self.flush_client(client)

    def flush_client(self, client: Client) -> None:
        """Write ``client``'s waiting answers into its response ring, as far as it has room.

        A bug of ours met on the way drops that client (logged as an internal error; its
        callers hear that the engine is gone) rather than escape: an exception out of a pass
        would leave the rings' flags down and the engine deaf to every client."""
        try:
            self._flush_client(client)
        except Exception as exc:
            log.exception("internal error writing the answers of client pid %d", client.pid)
            if self._drop is None:
                raise
            self._drop(client, f"internal error writing its answers: {exc!r}")

    def _flush_client(self, client: Client) -> None:
        ring = client.responses
        if client.closed or ring is None:
            client.outbox.clear()
            client.ok_ids.clear()
            client.ok_values.clear()
            return
        if client.ok_ids:
            self._encode_ok(client)
        if client.outbox:
            self._encode(client)
        if client.frames:
            n = ring.push_many(client.frames)
            if n:
                del client.frames[:n]
            if client.frames and not ring.producer_sleep_check(len(client.frames[0])):
                self._wake()  # room appeared meanwhile

    def _encode_ok(self, client: Client) -> None:
        """Encode ``client``'s ok answers as one answers frame; those it cannot carry (a
        value that is not flat plain data, a frame over a limit) go through :meth:`_encode`
        one by one instead."""
        ids, values = client.ok_ids, client.ok_values
        data = self._encoder.response_oks(ids, values)
        if data is not None:
            client.frames.append(data)
        else:
            client.outbox += zip(ids, repeat(STATUS_OK), values)
        ids.clear()
        values.clear()

    def _encode(self, client: Client) -> None:
        """Encode ``client``'s answers as batch frames (one, unless the frame limit splits
        them); an answer that cannot be sent becomes an error answer of its own."""
        enc = self._encoder
        data = enc.response_batch(client.outbox)
        if data is not None:
            client.frames.append(data)
            client.outbox.clear()
            return
        singles: list[bytes] = []
        for item in client.outbox:
            try:
                singles.append(enc.response(*item))
            except (FrameError, FrameTooLargeError) as exc:
                ok = item[1] == STATUS_OK
                hint = (
                    " (raise it with --max-result-bytes, or return less)"
                    if ok and isinstance(exc, FrameTooLargeError)
                    else ""
                )
                err = HandlerError(
                    f"the handler's {'result' if ok else 'error'} for request {item[0]} "
                    f"cannot be sent to the client: {exc}{hint}",
                    exc_type=type(exc).__name__,
                    exc_message=str(exc),
                )
                self._count_error(client, err)
                if self._core is not None:
                    self._core.record_error()  # answered with an error after all
                singles.append(enc.response(item[0], *error_to_wire(err)))
        client.outbox.clear()
        client.frames.extend(enc.join(singles))


def _nothing() -> None:
    pass
