"""The engine's intake: requests from the clients' request rings into the core.

A component of :class:`~stratabatch.server.Engine`. One pass (:meth:`Intake.take`) drains
every request ring in batches, bounded by the room the core has under ``on_full="wait"`` (a
full queue leaves requests in the rings, so the client's own ``on_full`` applies), each
non-empty ring its fair share of that room; the ring served first turns from pass to pass.
Each frame (single or batch) is decoded once into the client's inbox; each decoded request
becomes a core ``Request`` whose sink is the client and whose index is the request id, or an
error answer. A frame nothing can be answered from (no readable id), a corrupt ring, drops
the client.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from stratabatch.ipc.errors import FrameError
from stratabatch.ipc.frames import (
    FrameDecoder,
    RequestWithOptions,
    TextColumns,
    peek_frame_id,
    split_frame,
)
from stratabatch.ipc.frames import Request as DecodedRequest

from .config import BatchConfig
from .errors import InvalidRequestError, QueueFullError, StratabatchError
from .outbox import Outbox
from .records import Request, plain_request
from .requests import build_request

log = logging.getLogger("stratabatch.engine")

if TYPE_CHECKING:
    from stratabatch.ipc.arena import Arena

    from .core import Core
    from .slots import Client

_new_tuple = tuple.__new__  # a NamedTuple from a checked list (as ipc/frames does)

MAX_DRAIN = 4096
"""Requests one client gets in per pass at most: one client cannot starve the others."""
MAX_BACKLOG = 4096
"""Answers waiting for room in a client's response ring before its intake pauses."""


class Intake:
    """Takes the clients' requests from their rings into the core, fairly.

    Args:
        core: The batching core the requests go to.
        config: The batching options (``on_full``, ``max_queue``, dedup).
        clients: The connected clients by slot (the engine's table, shared, never copied).
        decoder: The request frames' decoder (the engine's frame limits).
        outbox: Where a refused request's error answer goes; a client's waiting answers
            are written before its ring is read (:data:`MAX_BACKLOG`).
        drop: Disconnects a client, with the reason (a corrupt ring, an unreadable frame).
    """

    def __init__(
        self,
        core: Core,
        config: BatchConfig,
        clients: Mapping[int, Client],
        decoder: FrameDecoder,
        outbox: Outbox,
        drop: Callable[[Client, str], None],
    ) -> None:
        self._core = core
        self._config = config
        self._clients = clients
        self._decoder = decoder
        self._outbox = outbox
        self._drop = drop
        self._next_first = 0  # the ring a pass serves first turns (fair admission)
        self._arena: Arena | None = None
        self._dim = 0
        self.closed = False
        """Whether new requests stay out (the engine is shutting down)."""

    def use_arena(self, arena: Arena | None, dim: int) -> None:
        """Read request vectors of ``dim`` floats from ``arena``'s rows (None: no arena)."""
        self._arena = arena
        self._dim = dim

    def close(self) -> None:
        """Take no new requests in from now on (the rings are drained by the shutdown)."""
        self.closed = True

    def take(self) -> int:
        """One pass: drain the request rings into the core, each non-empty ring its fair share
        of the room; returns how many requests were taken.

        Room is shared fairly: when ``on_full="wait"`` leaves less room in the queue than the
        rings hold, each non-empty ring gets an equal share of it, and the ring served first
        changes from pass to pass, so a client that keeps its ring full never starves the
        others (their requests wait in their rings, bounded by their callers' timeouts).
        """
        got = 0
        c = self._config
        core = self._core
        clients = list(self._clients.values())
        if len(clients) > 1:
            start = self._next_first % len(clients)
            self._next_first = start + 1
            clients = clients[start:] + clients[:start]
        ready: list[Client] = []
        flush_client = self._outbox.flush_client
        for client in clients:
            ring = client.requests
            if client.closed or ring is None:
                continue
            if client.frames or client.outbox or client.ok_ids:
                flush_client(client)
            if self.closed or len(client.frames) > MAX_BACKLOG:
                continue  # a client that does not read its answers gets no new work in
            if client.inbox or not ring.empty():
                ready.append(client)
        room = c.max_queue - core.waiting if c.on_full == "wait" else MAX_DRAIN * len(ready)
        for i, client in enumerate(ready):
            if client.closed:  # (a request of an earlier client cannot drop it; cheap to check)
                continue
            # an equal share of what is left, rounded up: the first rings of this pass's
            # order get the remainder, and that order turns every pass
            share = -(-room // (len(ready) - i)) if room > 0 else 0
            budget = min(MAX_DRAIN, share)
            if budget <= 0:
                break  # the queue is full: the requests wait in their rings
            try:
                n = self._take_client(client, budget)
            except Exception as exc:  # a bug of ours: its client goes, the engine stays
                # (a pass that raised would leave the rings' flags down and the engine deaf
                # to them; the frame that met the bug may still be in the ring)
                log.exception("internal error taking in the requests of client pid %d", client.pid)
                self._drop(client, f"internal error taking its requests in: {exc!r}")
                continue
            got += n
            room -= n
        return got

    def _take_client(self, client: Client, budget: int) -> int:
        """Take up to ``budget`` requests of ``client`` in (:meth:`take`); how many."""
        core = self._core
        inbox = client.inbox
        n = 0
        if not inbox:
            take_whole = self._take_rows if core.lane_open else self._take_records
            n = take_whole(client, min(budget, self._config.max_queue - core.waiting))
        # (the whole-frame way stops at an empty ring, the usual end of a pass: then
        # there is nothing for the item-by-item way to look at)
        ring = client.requests
        if n < budget and not client.closed and (inbox or (ring is not None and not ring.empty())):
            if len(inbox) < budget - n:
                self._take_frames(client, budget - n)
            n += self._admit(client, budget - n)
        return n

    def _take_rows(self, client: Client, budget: int) -> int:
        """The short way for frames whose every item is plain, while the core's row lane is
        open: each such frame's items go to the core whole (:meth:`Core.submit_rows`), with
        no inbox and no look at each item here. Stops at the first frame that is not all
        plain, or would take more than ``budget`` requests (it waits in the inbox for
        :meth:`_admit`), or an empty ring; returns how many requests were taken."""
        core = self._core
        n = 0
        while n < budget and core.lane_open:
            got = self._next_rows(client)
            if got is None:
                return n
            data, items, plain = got
            if not plain or n + len(items) > budget:
                self._shelve(client, _rows(items), len(data))
                return n
            self._submit_rows(client, items)
            n += len(items)
        return n

    def _take_records(self, client: Client, budget: int) -> int:
        """:meth:`_take_rows` for the general path (the row lane closed): a frame whose every
        item is plain, with new ids, goes to the core whole as records
        (:meth:`Core.submit_many`), made in one pass over it with no inbox; a frame that is
        not (a repeated id, an ``"embedding"`` field near dedup reads, over ``budget``) waits
        in the inbox for :meth:`_admit`, which says what is wrong item by item."""
        config = self._config
        key = config.dedup_key
        vectors = config.reads_vectors
        pending = client.pending
        n = 0
        while n < budget:
            got = self._next_rows(client)
            if got is None:
                return n
            data, columns, plain = got
            if isinstance(columns, TextColumns):  # (plain: a text frame's valid columns)
                ids = columns.ids
                if (
                    n + len(ids) > budget
                    or not pending.keys().isdisjoint(ids)
                    or len(set(ids)) != len(ids)
                    or (vectors and columns.key == "embedding")  # (a vector must be no str)
                ):
                    self._shelve(client, columns.rows(), len(data))
                    return n
                run = self._text_records(client, columns)
            else:
                items = columns
                ids = [item[0] for item in items] if plain else []
                if (
                    not plain
                    or n + len(items) > budget
                    or not pending.keys().isdisjoint(ids)
                    or len(set(ids)) != len(ids)
                    or (vectors and any("embedding" in item[4] for item in items))
                ):
                    self._shelve(client, items, len(data))
                    return n
                offset = self._core.deadline_from_monotonic_ns(0)  # (a deadline's loop time)
                run = [
                    plain_request(
                        payload, key, priority, offset + dl / 1e9 if dl else None, client, rid
                    )
                    for rid, priority, dl, _, payload in items
                ]
            pending.update(zip(ids, run, strict=True))
            self._submit_run(client, run)
            n += len(run)
        return n

    def _text_records(self, client: Client, columns: TextColumns) -> list[Request]:
        """The records of a text frame's requests (:meth:`_take_records`), made from its
        columns: the payload ``{key: text}``, its text the dedup text when ``key`` is the dedup
        key (as :func:`~stratabatch.records.plain_request` says), no list per item between."""
        key = columns.key
        texts = columns.texts
        dedup = texts if key == self._config.dedup_key else [None] * len(texts)
        dls = columns.deadlines
        if dls is None:
            return [
                Request({key: t}, 0, None, client, rid, d)
                for rid, t, d in zip(columns.ids, texts, dedup, strict=True)
            ]
        offset = self._core.deadline_from_monotonic_ns(0)  # (a deadline's loop time)
        return [
            Request({key: t}, 0, offset + dl / 1e9 if dl else None, client, rid, d)
            for rid, t, d, dl in zip(columns.ids, texts, dedup, dls, strict=True)
        ]

    def _next_rows(self, client: Client) -> tuple[bytes, list[Any] | TextColumns, bool] | None:
        """The next frame of ``client``'s request ring, decoded as
        :meth:`~stratabatch.ipc.frames.FrameDecoder.request_columns` does: ``(data, items,
        plain)``, a valid text frame's items as its columns; None when the ring is empty, or
        the frame does not decode (it is filed the long way, where its error is answered: it
        is decoded again there)."""
        data = self._next_frame(client)
        if data is None:
            return None
        try:
            items, plain = self._decoder.request_columns(data)
        except Exception:
            self._file(client, data)
            return None
        return data, items, plain

    def _next_frame(self, client: Client) -> bytes | None:
        """The next frame of ``client``'s request ring; None when it is empty, or corrupt
        (then the client is dropped)."""
        ring = client.requests
        assert ring is not None
        try:
            frames = ring.drain(1)
        except FrameError as exc:
            self._drop(client, f"corrupt request ring: {exc}")
            return None
        return frames[0] if frames else None

    def _take_frames(self, client: Client, budget: int) -> None:
        """Drain frames of ``client``'s request ring into its inbox until it holds ``budget``
        requests (or the ring is empty), decoding each frame (single or batch) once. Frames
        are taken one at a time, so what the queue has no room for stays in the ring (the
        client's backpressure) but for the rest of the last frame taken. A frame nothing can
        be answered from drops the client."""
        inbox = client.inbox
        while len(inbox) < budget and not client.closed:
            data = self._next_frame(client)
            if data is None:
                return
            self._file(client, data)

    def _file(self, client: Client, data: bytes) -> None:
        """Decode request frame ``data`` (single or batch) into ``client``'s inbox, or its
        error; a frame nothing can be answered from drops the client."""
        try:
            items = self._decoder.request_items(data)
        except FrameError as exc:
            rid = peek_frame_id(data)
            if rid is None:
                self._salvage(client, data, exc)
                return
            items = [exc]
            exc.id = rid  # type: ignore[attr-defined]
        except Exception as exc:  # a bug of ours: that frame fails, not the engine
            self._outbox.internal_error(client, peek_frame_id(data), exc, "decoding a frame")
            return
        self._shelve(client, items, len(data))

    def _salvage(self, client: Client, data: bytes, exc: FrameError) -> None:
        """File what can be answered of a frame that does not decode whole and shows no id
        (:func:`~stratabatch.ipc.frames.split_frame`): a batch's items one by one (a bad one
        fails alone), or an error for each id of a text frame; a frame that shows neither
        drops the client (its requests cannot be answered)."""
        parts = split_frame(data)
        if parts is None or not parts:
            self._drop(client, f"unreadable request frame: {exc}")
            return
        if type(parts[0]) is int:  # a text frame's ids: each fails with the frame's error
            errors = []
            for rid in parts:
                err = FrameError(str(exc))
                err.id = rid  # type: ignore[attr-defined]
                errors.append((err, 0))
            client.inbox.extend(errors)
            return
        for part in cast("list[bytes]", parts):
            try:
                items = self._decoder.request_items(part)
            except FrameError as item_exc:
                item_id = peek_frame_id(part)
                if item_id is None:
                    self._drop(client, f"unreadable request frame: {item_exc}")
                    return
                item_exc.id = item_id  # type: ignore[attr-defined]
                items = [item_exc]
            if len(items) != 1:  # (an item that is itself a batch)
                self._drop(client, "unreadable request frame: a batch item is a batch")
                return
            self._shelve(client, items, len(part))

    @staticmethod
    def _shelve(client: Client, items: list[Any], size: int) -> None:
        """Put a decoded frame's ``items`` (of ``size`` bytes) in ``client``'s inbox. An entry
        is a plain item as decoded (a list), a (request or error, size) pair, or a request or
        error of a batch (size 0: a batch's sizes were checked whole); the size is what a
        single frame's payload is bounded by."""
        if len(items) == 1:
            item = items[0]
            client.inbox.append(item if type(item) is list else (item, size))
        else:
            client.inbox.extend(items)

    def _admit(self, client: Client, budget: int) -> int:
        """Hand up to ``budget`` decoded requests of ``client``'s inbox to the core; returns
        how many were taken. The common request (no arena row, a new id, a mapping payload,
        room in the queue) takes the short way: its record is made here and the run of them
        goes to the core at once (:meth:`Core.submit_many`); any other goes through
        :meth:`_accept`, in arrival order, with the same outcome either way."""
        inbox = client.inbox
        pending = client.pending
        core = self._core
        config = self._config
        dim = self._dim or None
        key = config.dedup_key
        # an "embedding" in a payload is read (and checked) only by near dedup
        vectors = config.reads_vectors
        room = config.max_queue - core.waiting  # (make_room's own test, for the whole run)
        offset: float | None = None  # loop time of monotonic_ns 0 (a deadline's conversion)
        run: list[Request] = []
        # plain items go to the core's row lane while it is open (then nothing waits on its
        # general path); once a request of this client takes the general path, the rest of
        # the run follows it there
        lane = core.lane_open
        rows: list[list[Any]] = []
        n = 0
        while inbox and n < budget and not client.closed:
            n += 1
            entry = inbox.popleft()
            # the fields of a request that may take the short way: a plain item (the
            # decoder's list [id, priority, deadline_ns, NO_ROW, payload]) or a decoded
            # request without an arena row and with a mapping payload
            if type(entry) is list:
                rid, priority, deadline_ns, _, payload = entry
                size = 0
                short = room > 0 and rid not in pending
                if not short:
                    entry = (_new_tuple(DecodedRequest, entry), 0)
            else:
                if type(entry) is not tuple:  # a batch's request or error
                    entry = (entry, 0)
                fr = entry[0]
                short = (
                    room > 0
                    and type(fr) is DecodedRequest
                    and fr.arena_row < 0
                    and fr.id not in pending
                    and type(fr.payload) is dict
                )
                if short:
                    rid, priority, deadline_ns, _, payload = fr
                    size = entry[1]
            if not short:
                if rows:
                    self._submit_rows(client, rows)
                    rows = []
                if run:
                    self._submit_run(client, run)
                    run = []
                self._accept(client, entry)
                room = config.max_queue - core.waiting
                lane = core.lane_open
                continue
            if lane and vectors and "embedding" in payload:  # its own vector: read by the
                if rows:  # general path only (the near lane embeds the text)
                    self._submit_rows(client, rows)
                    rows = []
                self._accept(
                    client, (_new_tuple(DecodedRequest, entry), 0) if type(entry) is list else entry
                )
                room = config.max_queue - core.waiting
                lane = core.lane_open
                continue
            if lane:
                rows.append(
                    entry if type(entry) is list else [rid, priority, deadline_ns, -1, payload]
                )
                room -= 1
                continue
            deadline = None
            if deadline_ns:  # on the clients' clock: monotonic_ns
                if offset is None:
                    offset = core.deadline_from_monotonic_ns(0)
                deadline = offset + deadline_ns / 1e9
            if vectors and "embedding" in payload:
                try:
                    req = build_request(payload, config, rid, client, priority, deadline, dim, size)
                except (StratabatchError, ValueError) as exc:
                    self._outbox.error(client, rid, exc)
                    continue
            else:  # build_request's record of a checked payload without a vector
                req = plain_request(payload, key, priority, deadline, client, rid, size)
            pending[rid] = req  # (a twin id later in the run takes the long way)
            run.append(req)
            room -= 1
        if rows:
            self._submit_rows(client, rows)
        if run:
            self._submit_run(client, run)
        return n

    def _submit_rows(self, client: Client, rows: list[list[Any]] | TextColumns) -> None:
        """Queue plain items ``rows`` of ``client`` (or a text frame's columns) through the
        core's row lane; a repeated id is answered with its error, and if the core refuses,
        each of them gets the refusal."""
        core = self._core
        try:
            if isinstance(rows, TextColumns):
                repeated = core.submit_texts(
                    client, client.pending, rows.key, rows.ids, rows.texts, rows.deadlines
                )
            else:
                repeated = core.submit_rows(client, client.pending, rows)
        except Exception as exc:  # (nothing was queued)
            for item in _rows(rows):
                rid = item[0]
                if isinstance(exc, (StratabatchError, ValueError)):
                    self._outbox.error(client, rid, exc)
                else:  # a bug of ours: these requests fail, not the engine
                    self._outbox.internal_error(client, rid, exc, "on a request")
            return
        for rid in repeated:
            self._outbox.error(client, rid, _repeated_id(rid))
        client.counts[0] += len(rows) - len(repeated)
        client.dirty = True

    def _submit_run(self, client: Client, run: list[Request]) -> None:
        """Queue ``run`` (records already in ``client.pending``); if the core refuses, each
        of them gets the refusal."""
        try:
            self._core.submit_many(run)
        except Exception as exc:
            for req in run:
                del client.pending[req.index]
                if isinstance(exc, (StratabatchError, ValueError)):
                    self._outbox.error(client, req.index, exc)
                else:  # a bug of ours: these requests fail, not the engine
                    self._outbox.internal_error(client, req.index, exc, "on a request")
            return
        client.counts[0] += len(run)
        client.dirty = True

    def _accept(self, client: Client, entry: tuple[Any, int]) -> None:
        """Hand one decoded request to the core (or answer it with an error)."""
        fr, size = entry
        if isinstance(fr, FrameError):
            rid = getattr(fr, "id", None)
            if rid is None:
                self._drop(client, f"unreadable request frame: {fr}")
            elif rid not in client.pending:
                self._outbox.error(
                    client, rid, InvalidRequestError(f"malformed request frame: {fr}")
                )
            return
        try:
            self._submit(client, fr, size)
        except Exception as exc:  # a bug of ours: that request fails, not the engine
            self._outbox.internal_error(client, fr.id, exc, "on a request")

    def _submit(self, client: Client, fr: Any, size: int) -> None:
        rid = fr.id
        answer_error = self._outbox.error
        if rid in client.pending:
            answer_error(client, rid, _repeated_id(rid))
            return
        payload = fr.payload
        if type(payload) is not dict:
            answer_error(
                client,
                rid,
                InvalidRequestError(f"a request must be a mapping, got {type(payload).__name__}"),
            )
            return
        core = self._core
        try:
            if fr.arena_row >= 0:
                payload["embedding"] = self._arena_vector(client, fr.arena_row)
            deadline = None
            if fr.deadline_ns:
                deadline = core.deadline_from_monotonic_ns(fr.deadline_ns)
            # the frame's size bounds the payload's: the client checked the exact rule
            req = build_request(
                payload,
                self._config,
                index=rid,
                sink=client,
                priority=fr.priority,
                deadline=deadline,
                dim=self._dim or None,
                checked=size,
            )
            if type(fr) is RequestWithOptions and fr.options.get("reuse") is False:
                req.fresh = True  # (the general path: the row lane has no per-request flags)
            if not core.make_room(fr.priority):
                raise QueueFullError(f"queue full (max_queue={self._config.max_queue})")
            core.submit(req)
        except (StratabatchError, ValueError) as exc:
            answer_error(client, rid, exc)
            return
        client.pending[rid] = req
        client.counts[0] += 1
        client.dirty = True

    def _arena_vector(self, client: Client, row: int) -> np.ndarray:
        arena = self._arena
        if arena is None:
            raise InvalidRequestError(
                "this engine has no embedding arena; send the vector in the request"
            )
        own = arena.slot_range(client.slot)
        if row not in own:
            raise InvalidRequestError(
                f"arena row {row} is not this client's (slot {client.slot} owns rows "
                f"[{own.start}, {own.stop}))"
            )
        # a copy: the client may rewrite its row at any time, and what the core keeps must
        # stay what build_request checked
        return arena.matrix[row].copy()


def _rows(items: list[Any] | TextColumns) -> list[Any]:
    """A frame's items as a list: a text frame's columns as the plain items they stand for."""
    return items.rows() if isinstance(items, TextColumns) else items


def _repeated_id(rid: int) -> InvalidRequestError:
    return InvalidRequestError(f"request id {rid} is already pending for this client")
