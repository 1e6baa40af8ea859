"""What both engine clients share: a call's wire book, request packing, the deadline rule.

:class:`~stratabatch.client.EngineClient` (asyncio) and
:class:`~stratabatch.client.SyncEngineClient` (threads) keep their books differently (one
event loop; caller threads and a reader thread), but a request becomes a frame item, and a
response item becomes a caller's outcome, by the same rules:

* :class:`Packer` -- validate and encode one request into its batch-frame item (the request
  rule of :func:`stratabatch.requests.check_payload`, the engine's frame limit, a precomputed
  vector into an arena row), and cut queued items into as few batch frames as the limits allow;
* :class:`ListCall` -- a list or streaming call's book (:class:`stratabatch.calls.Call`) plus
  what the wire adds (its first request id, so a merge's ``leader`` maps back to a position);
* :func:`answer` -- give one waiting request its outcome, whatever its owner is;
* :class:`CallBooks` -- what both clients' books hold (the waiting requests by id, their arena
  rows, the queue not sent yet, the transport) and the operations on it that need no lock or
  loop of their own (callers leaving, timing out, failing all, requests never sent);
* :func:`call_deadline` and :data:`NO_DEADLINE_S` -- what a call's ``timeout`` means;
* :func:`stats_from_wire` -- the engine's stats answer as a ``Stats``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from stratabatch.ipc.counters_layout import STATS_HISTOGRAMS
from stratabatch.ipc.errors import FrameTooLargeError

from .calls import Call, check_vector
from .errors import BatchTimeoutError, QueueFullError, RequestTooLargeError
from .requests import FLAT_SCALARS as _FLAT
from .requests import check_payload, flat_packer
from .transport import Transport

__all__ = [
    "NO_DEADLINE_S",
    "ONE",
    "CallBooks",
    "Item",
    "ListCall",
    "Packer",
    "answer",
    "call_deadline",
    "forked_message",
    "stats_from_wire",
]

NO_DEADLINE_S = 1e9
"""A call ``timeout`` of this many seconds (about 31 years) or more, ``float("inf")``
included, means no deadline, as None does (a frame's deadline is an int64 of nanoseconds)."""

ONE = -1
"""The index under which a one-request call waits: its owner is its future itself."""

MAX_BATCH = 4096
"""Requests in one batch frame at most."""

Item = tuple[int, int, int, int, bytes] | tuple[int, int, int, int, bytes, bytes]
"""One request of a batch frame: ``(id, priority, deadline_ns, arena_row, payload_bytes)``
(the books append a sixth, ``options_bytes``, for a call with options: ``reuse=False``)."""


def clean_ids(first: int, n: int = 1) -> int:
    """The first id from ``first`` on that starts a run of ``n`` ids none of whose bytes above
    the lowest is 0xDC or 0xDD.

    Those bytes can open a msgpack ``array 16/32`` header, and the engine decodes a frame that
    holds more than a few of them with msgpack's pure-Python decoder, which is some twenty
    times slower (:data:`stratabatch.ipc.framelimits.FAST_PATH_BIG_ARRAYS`). A request id is
    written as eight bytes, so a client counting up would, for 512 ids in every 65,536 (and
    131,072 in every 16.7 million, and so on up), send frames of which every item holds one.
    The zones are skipped instead: ids are opaque to the engine, and the lowest byte's two
    values cost a batch frame at most two such bytes in 256 items.
    """
    while True:
        last = first + n - 1
        block = first >> 8
        bad = -1
        while block <= last >> 8:  # (one or two blocks of 256 for a run of one call)
            b, shift = block, 8
            while b:
                if (b & 0xFE) == 0xDC:
                    bad = shift
                b >>= 8
                shift += 8
            if bad >= 0:
                break
            block += 1
        if bad < 0:
            return first
        # the highest bad byte of that block to 0xDE, the bytes below it to zero
        at = block << 8
        first = ((at >> bad) + (0xDE - ((at >> bad) & 0xFF))) << bad


def call_deadline(timeout: float | None) -> float | None:
    """A checked call timeout as the clients use it: None for none or an unbounded one."""
    return None if timeout is None or timeout >= NO_DEADLINE_S else timeout


def forked_message(pid: int) -> str:
    """What a call made in a process forked from the client's own is told."""
    return (
        f"this stratabatch client was connected in process {pid}; process "
        f"{os.getpid()} was forked from it and cannot share its rings: call "
        "stratabatch.connect() in the child"
    )


def stats_from_wire(raw: dict[str, Any]) -> Any:
    """The engine's answer to a stats request, as a :class:`~stratabatch.Stats` (fields the
    engine sends and this version does not know are left out)."""
    from .stats import Stats

    known = set(Stats.__dataclass_fields__)
    values = {k: v for k, v in raw.items() if k in known}
    for f in STATS_HISTOGRAMS:
        if f in values or f == "merge_similarity_histogram":
            values[f] = tuple(values.get(f, ()))
    return Stats(**values)


class ListCall(Call):
    """A ``process(list)``/``process_streaming`` call's book (:class:`stratabatch.calls.Call`,
    the one both front ends keep), plus what the wire adds: its first request id (a merge's
    ``leader`` id maps back to a position in the call) and whether some of its requests never
    left this process (the ring stayed full)."""

    __slots__ = ("first_id", "refused")

    def __init__(
        self, requests: Sequence[Any], fut: Any, return_exceptions: bool, stream: Any = None
    ) -> None:
        super().__init__(requests, fut, return_exceptions, stream)
        self.first_id = 0
        self.refused = False

    def answer(
        self, index: int, value: Any, error: BaseException | None, meta: dict[str, Any] | None
    ) -> None:
        """Request ``index``'s outcome as a response frame carries it (``meta``: the merge)."""
        merged = similarity = None
        if meta is not None:
            leader = meta.get("leader", -1)
            pos = leader - self.first_id if isinstance(leader, int) and leader >= 0 else -1
            merged = pos if 0 <= pos < len(self.requests) else -1
            s = meta.get("similarity")
            similarity = float(s) if isinstance(s, (int, float)) else 1.0
        self.deliver(index, value, error, merged, similarity)


def answer(owner: Any, index: int, value: Any, error: BaseException | None) -> None:
    """Give one request its outcome: a one-request call's future (``index`` is :data:`ONE`),
    or request ``index`` of a :class:`ListCall`."""
    if index < 0:
        if not owner.done():
            if error is None:
                owner.set_result(value)
            else:
                owner.set_exception(error)
    else:
        owner.answer(index, value, error, None)


class CallBooks:
    """What the books of both clients hold, and what they do to it alike.

    The asyncio client's :class:`~stratabatch.asyncbooks.LoopBooks` runs these on its event
    loop; the blocking client's :class:`~stratabatch.syncbooks.Books` under its lock.

    Args:
        name: The engine's name (for messages).
    """

    def __init__(self, name: str) -> None:
        self.name = name
        # every request sent or queued and not answered yet, by id: (its call, its index
        # there), or (its future or waiter, ONE) for a one-request call
        self._pending: dict[int, tuple[Any, int]] = {}
        self._rows: dict[int, int] = {}  # request id -> the arena row holding its vector
        self._outq: list[Item] = []  # encoded by their callers, not in the ring yet
        self._waiting_room = False  # the ring was full: the rest goes when room appears
        self._next_id = 1
        self._conn: Transport | None = None
        self._packer: Packer | None = None

    @property
    def waiting(self) -> bool:
        """True while some request waits for an answer (or to be sent)."""
        return bool(self._pending)

    def fail_all(self, error: BaseException) -> None:
        """Every waiting request gets ``error``; nothing is left queued."""
        self._outq = []
        self._rows.clear()
        self._waiting_room = False
        pending, self._pending = self._pending, {}
        for owner, index in pending.values():
            answer(owner, index, None, error)

    def forget(self, owner: Any, ids: Sequence[int]) -> None:
        """The caller left: drop its pending entries (late answers are ignored); its requests
        not sent yet are not sent at all."""
        if self._outq:
            self._take_unsent(ids)
        pending = self._pending
        for rid in ids:
            entry = pending.get(rid)
            if entry is not None and entry[0] is owner:
                del pending[rid]

    def _refuse_unsent_of(self, owner: Any, ids: Sequence[int]) -> None:
        """The caller's timeout ran out: its requests still queued here (the ring stayed
        full, not a slow engine) get a :class:`QueueFullError`."""
        if self._outq:
            pending = self._pending
            self._refuse_unsent(
                f"the request ring to engine {self.name!r} was still full when the caller's "
                "timeout ran out",
                {rid for rid in ids if (e := pending.get(rid)) is not None and e[0] is owner},
            )

    def _time_out(self, owner: Any, ids: Sequence[int], timeout: float | None) -> None:
        """The caller's timeout ran out: each of its requests without an answer gets a
        :class:`BatchTimeoutError` (a list call with ``return_exceptions`` and a stream one
        per request, as in embedded mode)."""
        pending = self._pending
        for rid in ids:
            entry = pending.get(rid)
            if entry is not None and entry[0] is owner:
                del pending[rid]
                answer(
                    owner,
                    entry[1],
                    None,
                    BatchTimeoutError(
                        f"the caller's timeout ({timeout or 0:g} s) ran out before the engine "
                        f"{self.name!r} answered"
                    ),
                )

    def _take_unsent(self, rids: Any = None) -> list[int]:
        """Take the queued requests not sent yet (those of ``rids`` only, when given) out of
        the queue, freeing their arena rows; their ids."""
        keep, taken = [], []
        for item in self._outq:
            rid = item[0]
            if rids is not None and rid not in rids:
                keep.append(item)
            else:
                self._free_row(rid)
                taken.append(rid)
        self._outq = keep
        return taken

    def _refuse_unsent(self, message: str, rids: Any = None) -> None:
        """Fail the queued requests not sent yet (those of ``rids`` only, when given) with a
        :class:`QueueFullError`."""
        for rid in self._take_unsent(rids):
            entry = self._pending.pop(rid, None)
            if entry is not None:
                owner, index = entry
                if index >= 0:
                    owner.refused = True
                answer(owner, index, None, QueueFullError(message))

    def _free_row(self, rid: int) -> None:
        row = self._rows.pop(rid, -1)
        if row >= 0 and self._conn is not None:
            self._conn.free_row(row)

    def unsent(self, call: ListCall, ids: range) -> bool:
        """Whether part of ``call`` never left this process (the ring stayed full)."""
        return call.refused or any(item[0] in ids for item in self._outq)


class Packer:
    """Requests into batch-frame items, and items into frames, by one engine's limits.

    Args:
        transport: The live :class:`~stratabatch.transport.Transport` whose handshake gave
            the limits (and whose arena rows hold requests' own vectors).
        on_full: The client's ``on_full`` (None: the engine's).
    """

    def __init__(self, transport: Any, on_full: str | None) -> None:
        from stratabatch.ipc.frames import FrameDecoder, FrameEncoder

        limits = transport.limits
        self.encoder = FrameEncoder(limits)
        # a response frame's items: a plain ok answer as its checked list [id, ok, value],
        # any other as a Response or a FrameError
        decoder = FrameDecoder(limits)
        self.decode: Callable[[bytes], list[Any]] = decoder.response_items
        # the plain ok answers as two columns, ids and values, and the other items apart
        # (the asyncio client's drain)
        self.decode_answers: Callable[[bytes], tuple[list[Any], list[Any], list[Any]]] = (
            decoder.response_answers
        )
        self.max_request_bytes: int = transport.max_request_bytes
        # a payload this small always fits a frame of its own (no need to measure the frame)
        self.max_blob = limits.max_frame_bytes - 64
        # a flat request's payload this small needs no other check (size and frame limits)
        self.max_flat = min(self.max_request_bytes, self.max_blob)
        self.max_items = min(MAX_BATCH, limits.max_array_len)
        self.vectors: bool = transport.uses_vectors
        self.dim: int | None = transport.dim or None
        self.policy: str = on_full or transport.on_full
        self._transport = transport
        # a one-request call of the engine's dedup key alone, {key: text}, leaves in a text
        # frame (FrameEncoder.request_texts) when its text is ASCII of at most max_text
        # characters: then its payload is surely within the size and frame limits, and its
        # encoding cannot fail, without encoding it here (the frame encodes every text once)
        key = (getattr(transport, "welcome", None) or {}).get("dedup_key")
        self.text_key: str | None = None
        self.max_text = -1
        if type(key) is str and key and not (self.vectors and key == "embedding"):
            self.text_key = key
            # fixmap header, the key, the longest str header
            self.max_text = min(self.max_flat - 1 - len(flat_packer()(key)) - 5, limits.max_str_len)

    def item(self, request: Any, index: int, rid: int, priority: int, deadline_ns: int) -> Item:
        """Validate and encode one request: its item of a batch frame.

        The request is checked once, by the same rule as in embedded mode; its msgpack
        encoding then goes into the frame as is. A request's own vector goes into an arena
        row when one is free (else it travels in the payload): the item's row, which the
        caller must give back (:meth:`Transport.free_row`) once the request is answered or
        never sent.

        Raises:
            InvalidRequestError, RequestTooLargeError: The request breaks the request rule, or
                its frame would be over the engine's frame limit.
        """
        if self.vectors and isinstance(request, Mapping):
            emb = request.get("embedding")
            if emb is not None:
                vec = check_vector(emb, self.dim, index)
                payload = {k: v for k, v in request.items() if k != "embedding"}
                blob = check_payload(payload, index, self.max_request_bytes)
                if len(blob) > self.max_blob:
                    self.check_frame(blob, index)
                row = self._transport.lease_row(vec)
                if row >= 0:
                    return (rid, priority, deadline_ns, row, blob)
        blob = check_payload(request, index, self.max_request_bytes)
        if len(blob) > self.max_blob:  # (a smaller payload always fits a frame of its own)
            self.check_frame(blob, index)
        return (rid, priority, deadline_ns, -1, blob)

    def payload(self, request: Any, pack: Callable[[Any], bytes]) -> bytes:
        """The encoded payload of a one-request call without a vector of its own (the client
        sends none: :attr:`vectors` is off). The usual request inline: a flat dict (the
        request rule holds by construction) packed by ``pack`` (a :func:`flat_packer` of the
        calling thread: a packer is not thread-safe) that fits the size and frame limits;
        anything else, or any failure, takes the full check, which says what is wrong.

        Raises:
            InvalidRequestError, RequestTooLargeError: As :meth:`item`.
        """
        if type(request) is dict:
            # (a loop over the keys: for the few keys of a typical request it costs a third
            # of two C-level scans, whose map objects and calls dominate at that size)
            for key in request:
                if type(key) is not str or type(request[key]) not in _FLAT:
                    break
            else:
                try:
                    blob = pack(request)
                except (TypeError, ValueError, OverflowError):
                    pass
                else:
                    if len(blob) <= self.max_flat:
                        return blob
        blob = check_payload(request, 0, self.max_request_bytes)
        if len(blob) > self.max_blob:  # (a smaller payload always fits a frame of its own)
            self.check_frame(blob, 0)
        return blob

    def text_frame(
        self, ids: list[int], texts: list[str], deadlines: list[int] | None = None
    ) -> bytes | None:
        """The requests ``{text_key: texts[i]}`` of ids ``ids`` (each checked by the caller:
        an ASCII str of at most :attr:`max_text` characters), with ``deadline_ns``
        ``deadlines[i]`` if given (0: none), as one text frame, or None when the limits need
        more than one frame (then they go as batch frames' items)."""
        if len(ids) <= self.max_items:
            try:
                return self.encoder.request_texts(self.text_key, ids, texts, deadlines)  # type: ignore[arg-type]
            except FrameTooLargeError:
                pass
        return None

    def check_frame(self, blob: bytes, index: int) -> None:
        """Refuse a payload whose frame alone would be over the engine's frame limit.

        Raises:
            RequestTooLargeError: It would.
        """
        enc = self.encoder
        size = enc.request_item_bytes(len(blob)) + 1
        if size > enc.limits.max_frame_bytes:
            raise RequestTooLargeError(
                f"request {index}: its frame is {size} bytes, over the engine's frame "
                f"limit of {enc.limits.max_frame_bytes} bytes"
            )

    def one_frame(self, items: Sequence[Item]) -> bytes | None:
        """``items`` as one batch frame, or None when the limits need more than one (then
        :meth:`frames` cuts them)."""
        if len(items) <= self.max_items:
            try:
                return self.encoder.request_batch(items)
            except FrameTooLargeError:
                pass
        return None

    def frames(self, items: Sequence[Item]) -> Iterator[tuple[bytes, int]]:
        """Batch frames holding ``items`` in order, as few as the limits allow: each frame
        with the number of items it holds (encoded lazily: stop when the ring is full)."""
        enc = self.encoder
        n = len(items)
        if n <= self.max_items:  # the usual case: all of it in one frame
            try:
                frame = enc.request_batch(items)
            except FrameTooLargeError:
                pass
            else:
                yield frame, n
                return
        limit = enc.limits.max_frame_bytes - 5
        item_bytes = enc.request_item_bytes
        i = 0
        while i < n:
            j, size = i, 0
            while j < n and j - i < self.max_items:
                add = item_bytes(sum(map(len, items[j][4:])))  # (payload and any options)
                if j > i and size + add > limit:
                    break
                size += add
                j += 1
            yield enc.request_batch(items[i:j]), j - i
            i = j

    def room_for(self, item: Item) -> int:
        """Bytes of ring room the frame of ``item`` alone needs (to wait for)."""
        return self.encoder.request_item_bytes(sum(map(len, item[4:]))) + 5
