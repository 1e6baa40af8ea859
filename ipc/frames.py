"""Request and response frames: the msgpack messages carried by the rings.

A request frame (client -> engine) is a msgpack array of five or six items::

    [id, priority, deadline_ns, arena_row, payload]  or  [..., payload, options]

    id           int  in [0, 2**63 - 1]   the client's request id, unique per client
    priority     int  in [-2**31, 2**31 - 1]   higher runs first (with enable_priorities)
    deadline_ns  int  in [0, 2**63 - 1]   time.monotonic_ns() the caller gives up at; 0 = none
    arena_row    int  in [-1, 2**31 - 1]  arena row holding the request's vector; -1 = none
    payload      any msgpack value         the request itself (usually a map)
    options      optional map, str keys    per-call options (:data:`REQUEST_OPTIONS`: only
                                           ``{"reuse": false}`` so far); absent rather than
                                           empty, so it costs nothing when unused

A response frame (engine -> client) is a msgpack array of three or four items::

    [id, status, value]  or  [id, status, value, meta]

    status 0 (ok)       value is the handler's result, any msgpack value
    status 1 (error)    value is [type_name, message, details]: str (1-256 chars), str, map
                        with str keys; the client rebuilds its own exception from the name
    status 2 (timeout)  value is a str message
    meta                optional map with str keys (per-response data such as dedup merge
                        info); absent rather than empty, so it costs nothing when unused

A **batch frame** carries many requests, or many responses, in one ring message: a msgpack
array whose items are request (or response) arrays as above::

    [[id, priority, deadline_ns, arena_row, payload], [id, ...], ...]
    [[id, status, value], [id, status, value, meta], ...]

A frame is a batch when its first item is an array, a single request or response when it is an
integer (the id). Clients send every request of one event-loop iteration in one batch frame and
the engine answers each client once per pass, in one batch frame (split only where the frame
size limit requires): the ring, its doorbell and the decoder then work once per batch, not once
per request (:meth:`FrameEncoder.request_batch`, :meth:`FrameEncoder.response_batch`,
:meth:`FrameDecoder.requests`, :meth:`FrameDecoder.responses`). Each item of a batch is checked
as its own frame would be, and a bad item fails alone: the decoder returns a
:class:`~stratabatch.ipc.errors.FrameError` in its place (with the item's id when it has one).

**Column frames** carry the usual traffic without an array per item: a *text frame*
``[key, ids, texts]`` (client -> engine) stands for the batch of ``[id, 0, 0, NO_ROW, {key:
text}]`` (plain one-field requests), and ``[key, ids, texts, deadlines]`` for the same with
``deadline_ns`` ``deadlines[i]`` (0: none), an *answers frame* ``["ok", ids, values]`` (engine ->
client) for the batch of ``[id, STATUS_OK, value]`` (ok answers without meta). A frame is a
column frame when its first item is a str. The decoder reads each as the items it stands for
(:meth:`FrameDecoder.request_rows`, :meth:`FrameDecoder.response_rows`); an item that fails
a check fails alone, with the error the same item of a batch frame gets
(:meth:`FrameEncoder.request_texts`, :meth:`FrameEncoder.response_oks`).

Versioning: frames carry no version byte. Rings exist only after the engine's handshake, which
exchanges the layout version (:data:`FRAME_VERSION` is part of it), so both ends of a ring
always speak the same layout; a per-frame version would cost a byte and a check on every
message for information that never changes within a connection. A change to the layout bumps
:data:`FRAME_VERSION` and the handshake refuses a peer of another version.

Decoding treats every frame as hostile. Whatever the bytes, :class:`FrameDecoder` either
returns a well-formed :class:`Request` / :class:`Response` or raises
:class:`~stratabatch.ipc.errors.FrameError`. The limits both sides enforce (:class:`FrameLimits`),
the checks of outgoing values and the memory- and depth-bounded decoding of untrusted bytes live
in :mod:`stratabatch.ipc.framelimits`; this module holds the frame layout and its codec.

Besides the frame's own size, :class:`FrameLimits` may bound the encoded size of a request's
payload (``max_request_bytes``) and of an ok response's result (``max_result_bytes``): the
encoder refuses a payload or result over its bound with :class:`FrameTooLargeError` naming it,
and the decoder refuses a request frame whose payload is over it. Both count the value's own
msgpack bytes: the frame's size less its header (the array header and the integer fields,
counted at msgpack's shortest encoding, so a frame written with longer encodings only looks
larger).
"""

from __future__ import annotations

import operator
import struct
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import msgpack

from stratabatch.ipc.errors import FrameError, FrameTooLargeError
from stratabatch.ipc.framelimits import (
    DEFAULT_LIMITS,
    FLAT_SCALARS,
    BoundedUnpacker,
    FrameLimits,
    check_value,
    find_problem,
    int_size,
    is_flat_map,
)
from stratabatch.ipc.framelimits import short_repr as _short

FRAME_VERSION = 5
"""Layout version of the frames in this module; exchanged at the engine handshake (2: batch
frames; 3: text and answers frames; 4: text frames with a deadline column; 5: a request's
optional ``options`` map)."""

OLDEST_FRAME_VERSION = 4
"""The oldest client layout an engine of this version still serves: a version-4 client's
frames are version-5 frames without options (the answers did not change)."""

REQUEST_OPTIONS: dict[str, type] = {"reuse": bool}
"""The keys a request's ``options`` map may hold, each with the type of its value:
``reuse`` False bypasses the engine's reuse cache for that request (``process(...,
reuse=False)``). Any other key fails the request (both ends speak one frame version)."""

STATUS_OK = 0
"""Response status: ``value`` is the result."""
STATUS_ERROR = 1
"""Response status: ``value`` is an :class:`ErrorInfo`."""
STATUS_TIMEOUT = 2
"""Response status: the request's deadline passed; ``value`` is a message."""
STATUS_NAMES = {STATUS_OK: "ok", STATUS_ERROR: "error", STATUS_TIMEOUT: "timeout"}
"""Name of each status code, for messages and logs."""

OKS = "ok"
"""First item of an answers frame, ``["ok", ids, values]``: ok responses without meta as two
columns (:meth:`FrameEncoder.response_oks`)."""

NO_ROW = -1
"""``arena_row`` of a request that carries no vector in the arena."""
NO_DEADLINE = 0
"""``deadline_ns`` of a request without a deadline."""

MAX_ID = 2**63 - 1
"""Largest request id (ids fit an int64 so the engine can keep them in numpy arrays)."""
MIN_PRIORITY = -(2**31)
"""Smallest priority."""
MAX_PRIORITY = 2**31 - 1
"""Largest priority."""
MAX_DEADLINE_NS = 2**63 - 1
"""Largest deadline."""
MAX_ROW = 2**31 - 1
"""Largest arena row index."""
MAX_TYPE_NAME_LEN = 256
"""Longest error type name an error response may carry."""


class Request(NamedTuple):
    """A decoded request frame."""

    id: int
    """Request id, unique per client, in [0, 2**63 - 1]."""
    priority: int
    """Priority in [-2**31, 2**31 - 1]; higher goes first."""
    deadline_ns: int
    """``time.monotonic_ns()`` at which the caller gives up; 0 means no deadline."""
    arena_row: int
    """Arena row holding this request's vector, or -1 (:data:`NO_ROW`)."""
    payload: Any
    """The request: plain msgpack data (dict, list, str, bytes, int, float, bool, None)."""


class RequestWithOptions(NamedTuple):
    """A decoded request frame that carries an ``options`` map (six items)."""

    id: int
    """As :attr:`Request.id`."""
    priority: int
    """As :attr:`Request.priority`."""
    deadline_ns: int
    """As :attr:`Request.deadline_ns`."""
    arena_row: int
    """As :attr:`Request.arena_row`."""
    payload: Any
    """As :attr:`Request.payload`."""
    options: dict[str, Any]
    """Per-call options, checked against :data:`REQUEST_OPTIONS`."""


def encode_options(options: dict[str, Any]) -> bytes:
    """A request's ``options`` map, checked against :data:`REQUEST_OPTIONS` and encoded: the
    sixth item of :meth:`FrameEncoder.request_batch`'s items.

    Raises:
        FrameError: A key is not one of :data:`REQUEST_OPTIONS`, or its value's type is not.
    """
    _check_options(options, "request options")
    return _packb(options)


def _check_options(options: Any, what: str) -> dict[str, Any]:
    if type(options) is not dict:
        raise FrameError(f"{what} must be a map, got {_short(options)}")
    for key, value in options.items():
        want = REQUEST_OPTIONS.get(key) if type(key) is str else None
        if want is None:
            raise FrameError(
                f"{what}: unknown option {_short(key)}; known: {', '.join(REQUEST_OPTIONS)}"
            )
        if type(value) is not want:
            raise FrameError(
                f"{what}: option {key!r} must be a {want.__name__}, got {_short(value)}"
            )
    return options


class ErrorInfo(NamedTuple):
    """What an error response says about the failure, as plain data."""

    type_name: str
    """Name of the error type, e.g. ``"HandlerError"`` (the client maps it to a class)."""
    message: str
    """Human-readable message."""
    details: dict[str, Any] = {}
    """Extra plain-data attributes (e.g. the original exception type of a handler error);
    read-only (the default is shared)."""

    @classmethod
    def from_exception(cls, exc: BaseException, details: dict[str, Any] | None = None) -> ErrorInfo:
        """Describe ``exc`` by its class name and ``str()``."""
        return cls(type(exc).__name__, str(exc), dict(details) if details else {})


class Response(NamedTuple):
    """A decoded response frame."""

    id: int
    """Id of the request this answers."""
    status: int
    """:data:`STATUS_OK`, :data:`STATUS_ERROR` or :data:`STATUS_TIMEOUT`."""
    value: Any
    """Result (ok), :class:`ErrorInfo` (error) or message str (timeout)."""
    meta: dict[str, Any] | None
    """Optional per-response metadata (str keys), None when the frame carries none."""


class TextColumns:
    """A valid text frame's requests as its columns: ``{key: texts[i]}`` of id ``ids[i]``,
    each a plain request (priority 0, no arena row), every id an int in range and every text
    a str within the payload limit (:meth:`FrameDecoder.request_columns`); ``deadlines``:
    None (no request has a deadline), or each request's ``deadline_ns`` (0: none), every one
    an int in range. Its length is its number of requests."""

    __slots__ = ("key", "ids", "texts", "deadlines")

    def __init__(
        self, key: str, ids: list[int], texts: list[str], deadlines: list[int] | None = None
    ) -> None:
        self.key = key
        self.ids = ids
        self.texts = texts
        self.deadlines = deadlines

    def __len__(self) -> int:
        return len(self.ids)

    def rows(self) -> list[list[Any]]:
        """The plain items ``[id, 0, deadline_ns, NO_ROW, {key: text}]`` it stands for."""
        key = self.key
        if self.deadlines is None:
            return [
                [rid, 0, 0, NO_ROW, {key: text}]
                for rid, text in zip(self.ids, self.texts, strict=True)
            ]
        return [
            [rid, 0, dl, NO_ROW, {key: text}]
            for rid, text, dl in zip(self.ids, self.texts, self.deadlines, strict=True)
        ]


def _as_int(value: Any, name: str, lo: int, hi: int) -> int:
    """Return ``value`` as an int in [lo, hi] or raise FrameError (bool is refused)."""
    if type(value) is not int:
        if isinstance(value, bool):
            raise FrameError(f"{name} must be an integer, got bool {value!r}")
        try:
            value = operator.index(value)
        except TypeError:
            raise FrameError(
                f"{name} must be an integer, got {type(value).__name__} {_short(value)}"
            ) from None
    if not lo <= value <= hi:
        raise FrameError(f"{name} must be in [{lo}, {hi}], got {value}")
    return value


_new_tuple = tuple.__new__  # builds a NamedTuple from a checked list, skipping _make's checks


def _request_fields(
    rid: Any, priority: Any, deadline_ns: Any, arena_row: Any
) -> tuple[int, int, int, int]:
    """A request's integer fields, checked for the encoder (an int-like value is taken as its
    int; anything else, or out of range, raises :class:`FrameError` naming the field)."""
    if not (type(rid) is int and 0 <= rid <= MAX_ID):
        rid = _as_int(rid, "request id", 0, MAX_ID)
    if not (type(priority) is int and MIN_PRIORITY <= priority <= MAX_PRIORITY):
        priority = _as_int(priority, "priority", MIN_PRIORITY, MAX_PRIORITY)
    if not (type(deadline_ns) is int and 0 <= deadline_ns <= MAX_DEADLINE_NS):
        deadline_ns = _as_int(deadline_ns, "deadline_ns", 0, MAX_DEADLINE_NS)
    if not (type(arena_row) is int and NO_ROW <= arena_row <= MAX_ROW):
        arena_row = _as_int(arena_row, "arena_row", NO_ROW, MAX_ROW)
    return rid, priority, deadline_ns, arena_row


# a batch item's fixed-width header: fixarray(5), uint64 id, int32 priority, uint64 deadline,
# int32 arena row (any msgpack decoder reads them as the same integers as the shortest forms)
_REQ_HEAD = struct.Struct(">BBQBiBQBi")
# the same header of a plain item (priority 0, no deadline, no arena row): its first three
# fields, then the rest, which is constant
_PLAIN_HEAD = struct.Struct(">BBQ")
_PLAIN_TAIL = _REQ_HEAD.pack(0x95, 0xCF, 0, 0xD2, 0, 0xCF, 0, 0xD2, NO_ROW)[_PLAIN_HEAD.size :]
_packb = msgpack.Packer(use_bin_type=True, autoreset=True, datetime=False).pack


def _array_header(n: int) -> bytes:
    if n < 16:
        return bytes((0x90 | n,))
    if n < 1 << 16:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")


def _check_str_keys(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise FrameError(f"{what} must be a map, got {type(value).__name__} {_short(value)}")
    for key in value:
        if type(key) is not str:
            raise FrameError(f"{what} keys must be str, got {type(key).__name__} {_short(key)}")
    return value


class FrameEncoder:
    """Encode request and response frames with one reused msgpack ``Packer``.

    Every frame is checked against the same :class:`FrameLimits` the decoder enforces, so a
    bad request fails in the caller, before anything is sent. Not thread-safe: use one
    encoder per thread (the Packer keeps an internal buffer).

    Args:
        limits: Limits the encoded frames must respect.
    """

    def __init__(self, limits: FrameLimits = DEFAULT_LIMITS) -> None:
        self.limits = limits
        self._pack = msgpack.Packer(use_bin_type=True, autoreset=True, datetime=False).pack
        self._length_bound = min(
            limits.max_str_len, limits.max_bin_len, limits.max_array_len, limits.max_map_len
        )
        # a batch of ok answers this large or smaller holds no str, value or result over its
        # own limit (response_batch, response_oks)
        self._batch_bound = min(limits.max_frame_bytes, self._length_bound)
        if limits.max_result_bytes is not None:
            self._batch_bound = min(self._batch_bound, limits.max_result_bytes)

    def _finish(
        self,
        frame: tuple[Any, ...],
        what: str,
        names: tuple[str, ...],
        bound: tuple[int, str, int] | None = None,
    ) -> bytes:
        """Pack ``frame``; ``names`` label its last items (the free-form ones) in errors.

        ``bound`` is ``(position, name, limit)``: the item at ``position`` may encode to at
        most ``limit`` bytes, ``name`` being the limit's name in the error.
        """
        try:
            data = self._pack(frame)
        except (TypeError, ValueError, OverflowError) as exc:
            raise FrameError(f"{what} is not msgpack-serializable: {exc}") from exc
        size = len(data)
        if bound is not None and size > bound[2]:
            # only a frame this large can hold a value over the bound: measure the value
            position, name, limit = bound
            value_size = size - self._other_bytes(frame, position)
            if value_size > limit:
                label = "payload" if name == "max_request_bytes" else "result"
                raise FrameTooLargeError(
                    f"{label} is {value_size} bytes encoded, over {name}={limit}",
                    size=value_size,
                    limit=limit,
                )
        if size > self.limits.max_frame_bytes:
            raise FrameTooLargeError(
                f"{what} frame is {size} bytes, over the frame limit of "
                f"{self.limits.max_frame_bytes} bytes",
                size=size,
                limit=self.limits.max_frame_bytes,
            )
        if size > self._length_bound:
            # only a frame this large can hold a str, bin, array or map over its own limit
            for value, name in zip(frame[len(frame) - len(names) :], names, strict=True):
                problem = find_problem(value, self.limits, 2, name)
                if problem is not None:
                    raise FrameError(f"{what} frame: {problem}")
        return data

    def _other_bytes(self, frame: tuple[Any, ...], position: int) -> int:
        """Bytes of ``frame``'s encoding that are not its item at ``position``."""
        size = 1  # the fixarray header of a frame of 3 to 6 items
        for i, item in enumerate(frame):
            if i != position:
                size += int_size(item) if type(item) is int else len(self._pack(item))
        return size

    def request(
        self,
        id: int,
        priority: int,
        deadline_ns: int,
        arena_row: int,
        payload: Any,
        options: dict[str, Any] | None = None,
    ) -> bytes:
        """Encode one request frame.

        Args:
            id: Request id in [0, 2**63 - 1].
            priority: Priority in [-2**31, 2**31 - 1].
            deadline_ns: ``time.monotonic_ns()`` deadline, or 0 for none.
            arena_row: Arena row of the request's vector, or -1 for none.
            payload: The request, plain msgpack-serializable data.
            options: Per-call options (:data:`REQUEST_OPTIONS`), sent as the sixth item when
                not empty.

        Returns:
            The encoded frame.

        Raises:
            FrameError: A field is out of range or the payload cannot be carried.
            FrameTooLargeError: The payload encodes past ``limits.max_request_bytes`` or the
                frame exceeds ``limits.max_frame_bytes``.
        """
        id, priority, deadline_ns, arena_row = _request_fields(id, priority, deadline_ns, arena_row)
        check_value(payload, self.limits, 2, "payload")
        limit = self.limits.max_request_bytes
        if options:
            _check_options(options, f"request {id}: options")
            return self._finish(
                (id, priority, deadline_ns, arena_row, payload, options),
                "request",
                ("payload", "options"),
                None if limit is None else (4, "max_request_bytes", limit),
            )
        return self._finish(
            (id, priority, deadline_ns, arena_row, payload),
            "request",
            ("payload",),
            None if limit is None else (4, "max_request_bytes", limit),
        )

    def requests(self, items: Iterable[Sequence[Any]]) -> list[bytes]:
        """Encode many requests; each item is ``(id, priority, deadline_ns, arena_row, payload)``.

        Raises:
            FrameError: An item is invalid; the message names its index and nothing is
                returned, so a caller sends all of a call's requests or none.
            FrameTooLargeError: An item's frame is over the limit (message names the index).
        """
        out = []
        request = self.request
        for index, item in enumerate(items):
            try:
                out.append(request(*item))
            except FrameTooLargeError as exc:
                raise FrameTooLargeError(
                    f"request {index}: {exc}", size=exc.size, limit=exc.limit
                ) from exc
            except FrameError as exc:
                raise FrameError(f"request {index}: {exc}") from exc
            except TypeError as exc:  # wrong number of fields in the item
                raise FrameError(
                    f"request {index}: expected (id, priority, deadline_ns, arena_row, "
                    f"payload), got {_short(item)}"
                ) from exc
        return out

    def request_batch(self, items: Sequence[tuple[Any, ...]]) -> bytes:
        """Encode a batch frame of requests whose payloads are already encoded and checked.

        The client encodes each payload once, when the caller submits it (that is how it
        checks the request rule and ``max_request_bytes`` before anything is sent); the frame
        is then assembled from those bytes without encoding them again. The integer fields are
        written at fixed widths (uint64 id and deadline, int32 priority and row), which every
        msgpack decoder reads as the same integers.

        Args:
            items: ``(id, priority, deadline_ns, arena_row, payload_bytes)`` per request,
                ``payload_bytes`` being one complete msgpack value; or the same with a sixth,
                ``options_bytes`` (:func:`encode_options`), for a request with options.

        Raises:
            FrameError: A field is out of range, or no items.
            FrameTooLargeError: The frame exceeds ``limits.max_frame_bytes`` (split the batch).
        """
        try:
            return self._request_batch(items)
        except ValueError as exc:
            if isinstance(exc, FrameError) or isinstance(exc, FrameTooLargeError):
                raise
            # an item of six (a request with options) does not unpack into five: the
            # batch goes the general way (the usual batch pays nothing for options)
            return self._request_batch_with_options(items)

    def _request_batch_with_options(self, items: Sequence[tuple[Any, ...]]) -> bytes:
        """:meth:`request_batch` of items of five or six (the sixth: encoded options)."""
        n = len(items)
        if not 0 < n <= self.limits.max_array_len:
            raise FrameError(
                f"a batch frame holds 1 to {self.limits.max_array_len} requests, got {n}"
            )
        parts = [_array_header(n)]
        size = len(parts[0])
        head = _REQ_HEAD.pack
        for item in items:
            if len(item) not in (5, 6):
                raise FrameError(
                    "a batch item is (id, priority, deadline_ns, arena_row, payload_bytes"
                    f"[, options_bytes]), got {len(item)} fields"
                )
            rid, priority, deadline_ns, arena_row = _request_fields(*item[:4])
            parts += (
                head(
                    0x90 | len(item), 0xCF, rid, 0xD2, priority, 0xCF, deadline_ns, 0xD2, arena_row
                ),
                *item[4:],
            )
            size += _REQ_HEAD.size + sum(len(b) for b in item[4:])
        if size > self.limits.max_frame_bytes:
            raise FrameTooLargeError(
                f"batch frame of {n} requests is {size} bytes, over the frame limit of "
                f"{self.limits.max_frame_bytes} bytes",
                size=size,
                limit=self.limits.max_frame_bytes,
            )
        return b"".join(parts)

    def _request_batch(self, items: Sequence[tuple[Any, ...]]) -> bytes:
        n = len(items)
        if not 0 < n <= self.limits.max_array_len:
            raise FrameError(
                f"a batch frame holds 1 to {self.limits.max_array_len} requests, got {n}"
            )
        parts = [_array_header(n)]
        head = _REQ_HEAD.pack
        plain_head = _PLAIN_HEAD.pack
        plain_tail = _PLAIN_TAIL
        max_id = MAX_ID
        zero, no_row = 0, NO_ROW
        size = len(parts[0]) + n * _REQ_HEAD.size
        for rid, priority, deadline_ns, arena_row, blob in items:
            # the plain item (no priority, deadline or arena row: the usual request) as its
            # id and a constant tail, the same bytes as the full header's. Being the
            # interpreter's one int 0 (and -1) says value and type at once; any other 0
            # (a bool, a float, an int made otherwise) takes the checked path below
            if (
                priority is zero
                and deadline_ns is zero
                and arena_row is no_row
                and type(rid) is int
                and 0 <= rid <= max_id
            ):
                parts += (plain_head(0x95, 0xCF, rid), plain_tail, blob)
                size += len(blob)
                continue
            if not (  # (the other common cases inline; _request_fields says what is wrong)
                type(rid) is int
                and 0 <= rid <= MAX_ID
                and type(priority) is int
                and MIN_PRIORITY <= priority <= MAX_PRIORITY
                and type(deadline_ns) is int
                and 0 <= deadline_ns <= MAX_DEADLINE_NS
                and type(arena_row) is int
                and NO_ROW <= arena_row <= MAX_ROW
            ):
                rid, priority, deadline_ns, arena_row = _request_fields(
                    rid, priority, deadline_ns, arena_row
                )
            parts += (
                head(0x95, 0xCF, rid, 0xD2, priority, 0xCF, deadline_ns, 0xD2, arena_row),
                blob,
            )
            size += len(blob)
        if size > self.limits.max_frame_bytes:
            raise FrameTooLargeError(
                f"batch frame of {n} requests is {size} bytes, over the frame limit of "
                f"{self.limits.max_frame_bytes} bytes",
                size=size,
                limit=self.limits.max_frame_bytes,
            )
        return b"".join(parts)

    def request_texts(
        self,
        key: str,
        ids: Sequence[int],
        texts: Sequence[str],
        deadlines: Sequence[int] | None = None,
    ) -> bytes:
        """Encode a text frame: plain requests that are each the one-key map ``{key: text}``
        (no priority or arena row), as two columns ``[key, ids, texts]``, or with a third,
        ``deadlines``, each request's ``deadline_ns`` (0: none): ``[key, ids, texts,
        deadlines]``.

        It stands for the batch frame of ``[id, 0, deadline_ns, NO_ROW, {key: text}]`` items,
        in a third of the bytes and without an array and a map per request to write or to
        decode. The caller has checked each request (its payload's size among it) when it was
        submitted.

        Raises:
            FrameError: ``key`` is not a str, the columns differ in length or hold 0 or more
                than ``max_array_len`` items, an id is out of range, a text is not a str, or
                a deadline is not an int in [0, :data:`MAX_DEADLINE_NS`].
            FrameTooLargeError: The frame exceeds ``limits.max_frame_bytes`` (split the batch).
        """
        n = len(ids)
        if (
            not 0 < n <= self.limits.max_array_len
            or len(texts) != n
            or (deadlines is not None and len(deadlines) != n)
        ):
            raise FrameError(
                f"a text frame holds 1 to {self.limits.max_array_len} requests in columns "
                f"of the same length, got {n} ids and {len(texts)} texts"
                + ("" if deadlines is None else f" and {len(deadlines)} deadlines")
            )
        if type(key) is not str:
            raise FrameError(f"a text frame's key must be a str, got {_short(key)}")
        if not _valid_ids(ids):
            bad = next(i for i in ids if type(i) is not int or not 0 <= i <= MAX_ID)
            raise FrameError(f"request id must be an int in [0, {MAX_ID}], got {_short(bad)}")
        if set(map(type, texts)) != _STR_ONLY:
            odd = next(t for t in texts if type(t) is not str)
            raise FrameError(f"a text frame carries str texts, got {_short(odd)}")
        if deadlines is None:
            data = self._pack((key, ids, texts))
        else:
            if not _ints_within(deadlines, MAX_DEADLINE_NS):
                bad = next(
                    d for d in deadlines if type(d) is not int or not 0 <= d <= MAX_DEADLINE_NS
                )
                raise FrameError(
                    f"deadline_ns must be an int in [0, {MAX_DEADLINE_NS}], got {_short(bad)}"
                )
            data = self._pack((key, ids, texts, deadlines))
        if len(data) > self.limits.max_frame_bytes:
            raise FrameTooLargeError(
                f"text frame of {n} requests is {len(data)} bytes, over the frame limit of "
                f"{self.limits.max_frame_bytes} bytes",
                size=len(data),
                limit=self.limits.max_frame_bytes,
            )
        return data

    @staticmethod
    def request_item_bytes(blob_len: int) -> int:
        """Bytes one request of :meth:`request_batch` adds to its frame (header + payload)."""
        return _REQ_HEAD.size + blob_len

    def response_batch(self, items: Sequence[Sequence[Any]]) -> bytes | None:
        """Encode responses ``(id, status, value[, meta])`` as one batch frame with one msgpack
        call, when that is safe: every item an ok response with a valid id and a flat plain
        value (and meta), and the frame within every limit. None otherwise: then encode each
        with :meth:`response` (which says what is wrong with one) and join them with
        :meth:`join`.
        """
        limits = self.limits
        if not items or len(items) > limits.max_array_len or not self._plain_responses(items):
            return None
        try:
            data = self._pack(items)
        except (TypeError, ValueError, OverflowError):
            return None
        return data if len(data) <= self._batch_bound else None

    def response_oks(self, ids: Sequence[int], values: Sequence[Any]) -> bytes | None:
        """Encode ok responses without meta as one answers frame, ``["ok", ids, values]``,
        when that is safe: every value flat plain data (a scalar, a map of str keys to
        scalars, or an array of scalars), and the frame within every limit. None otherwise:
        then encode them as :meth:`response_batch` says.

        It stands for the batch frame of ``[id, STATUS_OK, value]`` items, without an array per
        answer to write or to decode. ``ids`` are request ids as a request frame's decoder
        returned them (ints in [0, :data:`MAX_ID`]: the engine answers only those), so they
        are not checked again here (a decoder checks every frame it reads anyway).
        """
        n = len(ids)
        if not 0 < n <= self.limits.max_array_len or len(values) != n:
            return None
        if not FLAT_SCALARS.issuperset(map(type, values)) and not all(map(_flat_value, values)):
            return None
        try:
            data = self._pack((OKS, ids, values))
        except (TypeError, ValueError, OverflowError):
            return None
        return data if len(data) <= self._batch_bound else None

    def join(self, frames: Sequence[bytes]) -> list[bytes]:
        """Join single frames (each a complete request or response frame) into as few batch
        frames as the frame limit allows, in order."""
        limits = self.limits
        out: list[bytes] = []
        chunk: list[bytes] = []
        size = 5  # the largest array header
        for one in frames:
            if chunk and (
                size + len(one) > limits.max_frame_bytes or len(chunk) >= limits.max_array_len
            ):
                out.append(_array_header(len(chunk)) + b"".join(chunk))
                chunk, size = [], 5
            chunk.append(one)
            size += len(one)
        if chunk:
            out.append(_array_header(len(chunk)) + b"".join(chunk))
        return out

    def _plain_responses(self, items: Sequence[Sequence[Any]]) -> bool:
        """Whether every item is an ok (or timeout) response of a flat plain value with a
        valid id and no meta, or with a plain meta: then one pack call encodes the batch."""
        for item in items:
            if len(item) == 3:
                rid, status, value = item
            elif len(item) == 4:
                rid, status, value, meta = item
                if type(meta) is not dict or not is_flat_map(meta):
                    return False
            else:
                return False
            if type(rid) is not int or not 0 <= rid <= MAX_ID or status != STATUS_OK:
                return False
            if type(value) not in FLAT_SCALARS and not _flat_value(value):
                return False
        return True

    def response(
        self,
        id: int,
        status: int,
        value: Any,
        meta: dict[str, Any] | None = None,
    ) -> bytes:
        """Encode one response frame.

        Args:
            id: Id of the request answered.
            status: :data:`STATUS_OK`, :data:`STATUS_ERROR` or :data:`STATUS_TIMEOUT`.
            value: The result (ok); an :class:`ErrorInfo` or ``(type_name, message[,
                details])`` (error); a message str (timeout).
            meta: Optional map with str keys, sent as the fourth item when not empty.

        Raises:
            FrameError: A field is invalid or the value cannot be carried.
            FrameTooLargeError: An ok response's value encodes past
                ``limits.max_result_bytes``, or the frame exceeds ``limits.max_frame_bytes``.
        """
        if not (type(id) is int and 0 <= id <= MAX_ID):
            id = _as_int(id, "response id", 0, MAX_ID)
        if type(status) is not int or status not in STATUS_NAMES:
            raise FrameError(f"status must be one of {sorted(STATUS_NAMES)}, got {_short(status)}")
        if status == STATUS_OK:
            check_value(value, self.limits, 2, "result")
        elif status == STATUS_ERROR:
            value = _outgoing_error(value)
            check_value(value, self.limits, 2, "error value")
        else:
            if not isinstance(value, str):
                raise FrameError(f"a timeout response carries a str message, got {_short(value)}")
            check_value(value, self.limits, 2, "timeout message")
        limit = self.limits.max_result_bytes
        bound = None if limit is None or status != STATUS_OK else (2, "max_result_bytes", limit)
        if meta:
            _check_str_keys(meta, "response meta")
            check_value(meta, self.limits, 2, "meta")
            return self._finish((id, status, value, meta), "response", ("value", "meta"), bound)
        return self._finish((id, status, value), "response", ("value",), bound)

    def ok(self, id: int, value: Any, meta: dict[str, Any] | None = None) -> bytes:
        """Encode an ok response carrying ``value``."""
        return self.response(id, STATUS_OK, value, meta)

    def error(
        self,
        id: int,
        type_name: str,
        message: str,
        details: dict[str, Any] | None = None,
        meta: dict[str, Any] | None = None,
    ) -> bytes:
        """Encode an error response."""
        return self.response(id, STATUS_ERROR, ErrorInfo(type_name, message, details or {}), meta)

    def timeout(self, id: int, message: str = "") -> bytes:
        """Encode a timeout response."""
        return self.response(id, STATUS_TIMEOUT, message)

    def responses(self, items: Iterable[Sequence[Any]]) -> list[bytes]:
        """Encode many responses; each item is ``(id, status, value[, meta])``.

        A response that cannot be encoded (a result that is not plain data, too deep, or
        over the frame limit) is replaced by an error response for the same id whose type
        name is ``FrameError`` or ``FrameTooLargeError``, so one bad result fails only its own
        request and every request still gets exactly one answer.

        Raises:
            FrameError: An item has an invalid id or the wrong shape (a bug in the caller;
                there is no id to answer).
        """
        out = []
        response = self.response
        for index, item in enumerate(items):
            if not 3 <= len(item) <= 4:
                raise FrameError(
                    f"response {index}: expected (id, status, value[, meta]), got {_short(item)}"
                )
            try:
                out.append(response(*item))
            except (FrameError, FrameTooLargeError) as exc:
                rid = _as_int(item[0], f"response {index} id", 0, MAX_ID)
                out.append(
                    self.error(rid, type(exc).__name__, f"the response could not be encoded: {exc}")
                )
        return out


def _outgoing_error(value: Any) -> tuple[str, str, dict[str, Any]]:
    if not isinstance(value, (tuple, list)) or not 2 <= len(value) <= 3:
        raise FrameError(
            f"an error response carries ErrorInfo(type_name, message, details), got {_short(value)}"
        )
    type_name, message = value[0], value[1]
    details = value[2] if len(value) == 3 else {}
    if not isinstance(type_name, str) or not 1 <= len(type_name) <= MAX_TYPE_NAME_LEN:
        raise FrameError(
            f"error type_name must be a str of 1-{MAX_TYPE_NAME_LEN} chars, got {_short(type_name)}"
        )
    if not isinstance(message, str):
        raise FrameError(f"error message must be a str, got {_short(message)}")
    _check_str_keys(details, "error details")
    return (type_name, message, details)


def _flat_value(value: Any) -> bool:
    """Whether ``value`` is flat plain data: a scalar, a map of str keys to scalars, or an
    array of scalars (one msgpack call encodes it, within the depth limit by construction)."""
    t = type(value)
    if t in FLAT_SCALARS:
        return True
    if t is dict:
        return is_flat_map(value)
    if t is list or t is tuple:
        return FLAT_SCALARS.issuperset(map(type, value))
    return False


_INT_ONLY = {int}
_STR_ONLY = {str}


def _ints_within(values: Sequence[Any], hi: int) -> bool:
    """Whether a column (non-empty) holds only ints (no bool) in [0, ``hi``], told by three
    C-level passes: a column frame's ids (``hi`` :data:`MAX_ID`) or a text frame's deadlines
    (:data:`MAX_DEADLINE_NS`)."""
    return set(map(type, values)) == _INT_ONLY and min(values) >= 0 and max(values) <= hi


def _valid_ids(ids: Sequence[Any]) -> bool:
    """Whether a column frame's ids (non-empty) are all request ids (see :func:`_ints_within`)."""
    return _ints_within(ids, MAX_ID)


def _plain_ok_columns(ids: list[Any], values: list[Any]) -> bool:
    """Whether an answers frame's columns (non-empty, of one length) are all plain ok answers:
    every id an int in range, every value a plain scalar (no container)."""
    return _valid_ids(ids) and FLAT_SCALARS.issuperset(map(type, values))


def _flat_values(payload: dict[Any, Any]) -> bool:
    """Whether no value of ``payload`` is a map or an array (then no depth limit can bite)."""
    for v in payload.values():
        t = type(v)
        if t is dict or t is list:
            return False
    return True


class FrameDecoder:
    """Decode request and response frames from untrusted bytes.

    Every failure, whatever its cause, raises :class:`~stratabatch.ipc.errors.FrameError`
    with a message saying what was wrong. The input is copied to private ``bytes`` first:
    a ring's frame lives in shared memory its producer could still scribble on, and the
    checks and the decode must see the same bytes.

    Args:
        limits: Limits every frame must respect.
    """

    def __init__(self, limits: FrameLimits = DEFAULT_LIMITS) -> None:
        self.limits = limits
        bounded = BoundedUnpacker(limits)
        # bound methods kept as attributes, like the encoder's _pack: one lookup per frame
        self._unpack = bounded.unpack
        self._check_depth = bounded.check_depth
        self._max_payload = limits.max_request_bytes

    def request(self, data: bytes | bytearray | memoryview) -> Request:
        """Decode a request frame.

        Raises:
            FrameError: The bytes are not a valid request frame.
        """
        return self._request(self._unpack(data, "request"), data)

    def requests(self, data: bytes | bytearray | memoryview) -> list[Request | FrameError]:
        """Decode a request frame, single or batch: one :class:`Request` per item, or, for an
        item that is not a valid request, a :class:`FrameError` (its ``id`` attribute is the
        item's id when the item shows one, else None).

        Raises:
            FrameError: The bytes are not a msgpack array of requests at all (nothing in it
                can be answered).
        """
        return [
            _new_tuple(Request, item) if type(item) is list else item
            for item in self.request_items(data)
        ]

    def request_items(self, data: bytes | bytearray | memoryview) -> list[Any]:
        """:meth:`requests`, but a batch's plain item (valid, no arena row, a map payload whose
        values are no containers: the common request) stays the checked list
        ``[id, priority, deadline_ns, NO_ROW, payload]`` it was decoded as. The engine's
        intake reads those without a record per item; every other item is a
        :class:`Request` or a :class:`FrameError`, as from :meth:`requests`.

        Raises:
            FrameError: As :meth:`requests`.
        """
        return self.request_rows(data)[0]

    def request_rows(self, data: bytes | bytearray | memoryview) -> tuple[list[Any], bool]:
        """:meth:`request_items`, and whether every item is a plain one (the engine's intake
        then hands the frame's items on whole).

        Raises:
            FrameError: As :meth:`requests`.
        """
        items, plain = self.request_columns(data)
        return (items.rows(), True) if isinstance(items, TextColumns) else (items, plain)

    def request_columns(
        self, data: bytes | bytearray | memoryview
    ) -> tuple[list[Any] | TextColumns, bool]:
        """:meth:`request_rows`, but a text frame whose every request is valid comes back as
        its :class:`TextColumns` (plain: True), with no list per item: the engine's intake
        hands them on as they are.

        Raises:
            FrameError: As :meth:`requests`.
        """
        frame = self._unpack(data, "request")
        if type(frame) is not list or not frame:
            raise FrameError(
                _shape_message(frame, "request", "a request array, or an array of them")
            )
        first = frame[0]
        if type(first) is str:  # a text frame: plain one-key requests as two columns
            columns = self._text_columns(frame, data)
            if type(columns) is TextColumns:
                return columns, True
            frame = columns  # (each item checked in full below: one may say what is wrong)
        elif type(first) is not list:  # a single request
            req = self._request(frame, data)
            if (
                type(req) is Request
                and req.arena_row == NO_ROW
                and type(req.payload) is dict
                and _flat_values(req.payload)
            ):
                return [frame], True  # a plain one (checked whole by _request)
            return [req], False
        limit = self._max_payload
        size = len(data) if type(data) is bytes else memoryview(data).nbytes
        small = limit is None or size <= limit  # no payload in it can be over the limit
        if small:
            # the usual frame first: every item [id, 0, 0, NO_ROW, a flat map], the three
            # constants known by identity (a decoded 0 or -1 is the interpreter's own int;
            # any other, a bool or a float among them, takes the checks below)
            zero, no_row, max_id = 0, NO_ROW, MAX_ID
            for item in frame:
                if type(item) is list and len(item) == 5:
                    rid, priority, deadline_ns, arena_row, payload = item
                    if (
                        priority is zero
                        and deadline_ns is zero
                        and arena_row is no_row
                        and type(rid) is int
                        and 0 <= rid <= max_id
                        and type(payload) is dict
                    ):
                        for v in payload.values():
                            t = type(v)
                            if t is dict or t is list:
                                break
                        else:
                            continue
                break
            else:
                return frame, True  # every item plain: the decoded list itself
        out: list[Any] = []  # (not the usual frame: each item checked in full)
        plain = True
        for item in frame:
            # the common item, checked inline (the same rules as _request, which any other
            # item goes through for its error): five fields in range, a flat map payload
            if small and type(item) is list and len(item) == 5:
                rid, priority, deadline_ns, arena_row, payload = item
                if (
                    type(rid) is int
                    and 0 <= rid <= MAX_ID
                    and type(priority) is int
                    and MIN_PRIORITY <= priority <= MAX_PRIORITY
                    and type(payload) is dict
                    and _flat_values(payload)
                ):
                    if (
                        arena_row == NO_ROW
                        and type(arena_row) is int
                        and type(deadline_ns) is int
                        and 0 <= deadline_ns <= MAX_DEADLINE_NS
                    ):
                        out.append(item)  # the plain item, as decoded
                        continue
                    if (
                        type(deadline_ns) is int
                        and 0 <= deadline_ns <= MAX_DEADLINE_NS
                        and type(arena_row) is int
                        and NO_ROW <= arena_row <= MAX_ROW
                    ):
                        out.append(_new_tuple(Request, item))
                        plain = False
                        continue
            plain = False
            try:
                # only a frame over the limit can hold a payload over it: measure those
                out.append(self._request(item, None if small else b""))
            except FrameError as exc:
                rid = item[0] if type(item) is list and item else None
                exc.id = rid if type(rid) is int and 0 <= rid <= MAX_ID else None  # type: ignore[attr-defined]
                out.append(exc)
        return out, plain

    def _text_columns(
        self, frame: list[Any], data: bytes | bytearray | memoryview
    ) -> TextColumns | list[Any]:
        """A text frame ``[key, ids, texts]`` or ``[key, ids, texts, deadlines]`` as its
        :class:`TextColumns` when every request in it is valid: ids in range, texts str,
        deadlines ints in range, and (in a frame over ``max_request_bytes``) no payload over
        it. Else the plain items it stands for, ``[id, 0, deadline_ns, NO_ROW, {key: text}]``,
        which the caller checks each in full (a bad one gets its own error).

        Raises:
            FrameError: The frame is not three or four items ``[str, array, array(, array)]``
                of equally long columns (no item can be told from it).
        """
        n = len(frame)
        if n == 3:
            key, ids, texts = frame
            deadlines = None
        elif n == 4:
            key, ids, texts, deadlines = frame
            if type(deadlines) is not list or len(deadlines) != len(ids):
                raise FrameError(
                    "a text frame's deadlines are an array as long as its ids, got "
                    f"{_short(deadlines)}"
                )
        else:
            raise FrameError(
                f"a text frame is [key, ids, texts] or [key, ids, texts, deadlines], got an "
                f"array of {n} items"
            )
        if type(ids) is not list or type(texts) is not list or len(ids) != len(texts) or not ids:
            raise FrameError(
                "a text frame is [key, ids, texts] with ids and texts arrays of the same "
                f"length (at least 1), got {_short(ids)} and {_short(texts)}"
            )
        columns = TextColumns(key, ids, texts, deadlines)
        limit = self._max_payload
        if (
            _valid_ids(ids)
            and set(map(type, texts)) == _STR_ONLY
            and (deadlines is None or _ints_within(deadlines, MAX_DEADLINE_NS))
            and (
                limit is None
                or (len(data) if type(data) is bytes else memoryview(data).nbytes) <= limit
            )
        ):
            return columns
        return columns.rows()

    def _request(self, frame: Any, data: Any) -> Request:
        """Check one decoded request array (a frame's, or a batch item's); ``data``: the
        frame's bytes when the payload size is measured from them, ``b""`` to measure it by
        encoding, None to skip. An array of six (with options) comes back as a
        :class:`RequestWithOptions`."""
        if type(frame) is not list or len(frame) != 5:
            if type(frame) is list and len(frame) == 6:
                return self._request_with_options(frame, data)  # type: ignore[return-value]
            raise FrameError(
                _shape_message(
                    frame,
                    "request",
                    "an array of 5 items [id, priority, deadline_ns, arena_row, payload] "
                    "(6 with options)",
                )
            )
        rid, priority, deadline_ns, arena_row, payload = frame
        if type(rid) is not int or not 0 <= rid <= MAX_ID:
            raise FrameError(f"request id must be an integer in [0, {MAX_ID}], got {_short(rid)}")
        if type(priority) is not int or not MIN_PRIORITY <= priority <= MAX_PRIORITY:
            raise FrameError(
                f"request {rid}: priority must be an integer in [{MIN_PRIORITY}, "
                f"{MAX_PRIORITY}], got {_short(priority)}"
            )
        if type(deadline_ns) is not int or not 0 <= deadline_ns <= MAX_DEADLINE_NS:
            raise FrameError(
                f"request {rid}: deadline_ns must be an integer in [0, {MAX_DEADLINE_NS}], "
                f"got {_short(deadline_ns)}"
            )
        if type(arena_row) is not int or not NO_ROW <= arena_row <= MAX_ROW:
            raise FrameError(
                f"request {rid}: arena_row must be an integer in [{NO_ROW}, {MAX_ROW}], "
                f"got {_short(arena_row)}"
            )
        t = type(payload)
        if t is dict or t is list:
            for item in payload.values() if t is dict else payload:
                t = type(item)
                if t is dict or t is list:  # nested: only then can the depth limit bite
                    # (a batch item counts from its own array: the batch's adds no level)
                    self._check_depth(frame, f"request {rid}:")
                    break
        limit = self._max_payload
        if limit is not None and data is not None:
            if data:
                size = len(data) if type(data) is bytes else memoryview(data).nbytes
                if size > limit:  # only a frame this large can hold a payload over the limit
                    size -= (
                        1
                        + int_size(rid)
                        + int_size(priority)
                        + int_size(deadline_ns)
                        + int_size(arena_row)
                    )
            else:
                size = len(_packb(payload))
            if size > limit:
                raise FrameError(
                    f"request {rid}: payload is {size} bytes, over max_request_bytes={limit}"
                )
        return _new_tuple(Request, frame)

    def _request_with_options(self, frame: list[Any], data: Any) -> RequestWithOptions:
        """:meth:`_request` of a six-item array: the five checked as ever (a payload measured
        from ``data`` then counts the options too: a frame over the limit by its options
        alone is refused), the options against :data:`REQUEST_OPTIONS`."""
        options = frame[5]
        req = self._request(frame[:5], data)
        _check_options(options, f"request {req.id}: options")
        return _new_tuple(RequestWithOptions, (*req, options))

    def responses(self, data: bytes | bytearray | memoryview) -> list[Response | FrameError]:
        """Decode a response frame, single or batch: one :class:`Response` per item, or a
        :class:`FrameError` for an item that is not a valid response (``id`` attribute as in
        :meth:`requests`).

        Raises:
            FrameError: The bytes are not a msgpack array of responses at all.
        """
        return [
            _new_tuple(Response, (item[0], item[1], item[2], None)) if type(item) is list else item
            for item in self.response_items(data)
        ]

    def response_items(self, data: bytes | bytearray | memoryview) -> list[Any]:
        """:meth:`responses`, but a batch's plain ok answer (``[id, ok, a value that is not a
        container]``, without meta: the usual answer) stays the checked list it was decoded
        as, so a client delivers it without a record per answer; every other item is a
        :class:`Response` or a :class:`FrameError`, as from :meth:`responses`.

        Raises:
            FrameError: As :meth:`responses`.
        """
        return self.response_rows(data)[0]

    def response_rows(self, data: bytes | bytearray | memoryview) -> tuple[list[Any], bool]:
        """:meth:`response_items`, and whether every item is a plain ok answer (then the
        list holds ``[id, STATUS_OK, value]`` lists only, and the client delivers them
        without looking at each one's kind again).

        Raises:
            FrameError: As :meth:`responses`.
        """
        return self._rows(self._unpack(data, "response"))

    def response_answers(
        self, data: bytes | bytearray | memoryview
    ) -> tuple[list[Any], list[Any], list[Any]]:
        """A response frame's answers as ``(ids, values, others)``: its plain ok answers (as
        :meth:`response_rows` tells them) as two columns, ids and values, and every other
        item as :meth:`responses` gives it (a :class:`Response` or a :class:`FrameError`).

        An answers frame of plain answers gives its own decoded columns: the asyncio client
        resolves each caller from them without a list per answer.

        Raises:
            FrameError: As :meth:`responses`.
        """
        frame = self._unpack(data, "response")
        if type(frame) is list and len(frame) == 3 and frame[0] == OKS:
            ids, values = frame[1], frame[2]
            if (
                type(ids) is list
                and type(values) is list
                and len(ids) == len(values)
                and ids
                and _plain_ok_columns(ids, values)
            ):
                return ids, values, []
        items, plain = self._rows(frame)
        if plain:
            return [item[0] for item in items], [item[2] for item in items], []
        ids, values, others = [], [], []
        for item in items:
            if type(item) is list:
                ids.append(item[0])
                values.append(item[2])
            else:
                others.append(item)
        return ids, values, others

    def _rows(self, frame: Any) -> tuple[list[Any], bool]:
        """:meth:`response_rows` of a decoded frame."""
        if type(frame) is not list or not frame:
            raise FrameError(
                _shape_message(frame, "response", "a response array, or an array of them")
            )
        first = frame[0]
        if type(first) is str:  # an answers frame: ok responses as two columns
            rows, plain = self._ok_rows(frame)
            if plain:
                return rows, True
            frame = rows  # (each item checked in full below: one may say what is wrong)
        elif type(first) is not list:
            return [self._response(frame, frame)], False
        max_id = MAX_ID
        ok = STATUS_OK
        for item in frame:
            # the common item, checked inline (the same rules as _response, which any other
            # item goes through for its error): [id, ok, a value that is not a container];
            # the status is the interpreter's one int 0 (as decoded; any other goes through
            # the full checks)
            if type(item) is list and len(item) == 3:
                rid, status, value = item
                if (
                    type(rid) is int
                    and status is ok
                    and type(value) is not dict
                    and type(value) is not list
                    and 0 <= rid <= max_id
                ):
                    continue
            break
        else:
            return frame, True  # every item plain: the decoded list itself
        out: list[Any] = []  # (not the usual frame: it is read again, item by item)
        for item in frame:
            if type(item) is list and len(item) == 3:
                rid, status, value = item
                if (
                    type(rid) is int
                    and 0 <= rid <= MAX_ID
                    and status == STATUS_OK
                    and type(status) is int
                    and type(value) is not dict
                    and type(value) is not list
                ):
                    out.append(item)
                    continue
            try:
                out.append(self._response(item, frame))
            except FrameError as exc:
                rid = item[0] if type(item) is list and item else None
                exc.id = rid if type(rid) is int and 0 <= rid <= MAX_ID else None  # type: ignore[attr-defined]
                out.append(exc)
        return out, False

    @staticmethod
    def _ok_rows(frame: list[Any]) -> tuple[list[Any], bool]:
        """The items of an answers frame ``["ok", ids, values]`` as the ok responses they
        stand for, ``[id, STATUS_OK, value]``, and whether every one of them is a plain ok
        answer (a valid id, a value that is not a container). When one is not, the caller
        checks each item in full.

        Raises:
            FrameError: The frame is not ``["ok", array, array]`` of two equally long columns.
        """
        if len(frame) != 3 or frame[0] != OKS:
            raise FrameError(f"an answers frame is [{OKS!r}, ids, values], got {_short(frame)}")
        _, ids, values = frame
        if type(ids) is not list or type(values) is not list or len(ids) != len(values) or not ids:
            raise FrameError(
                "an answers frame's ids and values are arrays of the same length (at least "
                f"1), got {_short(ids)} and {_short(values)}"
            )
        rows = [[rid, STATUS_OK, value] for rid, value in zip(ids, values, strict=True)]
        return rows, _plain_ok_columns(ids, values)

    def response(self, data: bytes | bytearray | memoryview) -> Response:
        """Decode a response frame.

        Raises:
            FrameError: The bytes are not a valid response frame.
        """
        frame = self._unpack(data, "response")
        return self._response(frame, frame)

    def _response(self, frame: Any, whole: Any) -> Response:
        if type(frame) is not list or not 3 <= len(frame) <= 4:
            raise FrameError(
                _shape_message(
                    frame, "response", "an array of 3 or 4 items [id, status, value, meta]"
                )
            )
        rid, status, value = frame[0], frame[1], frame[2]
        if type(rid) is not int or not 0 <= rid <= MAX_ID:
            raise FrameError(f"response id must be an integer in [0, {MAX_ID}], got {_short(rid)}")
        meta = None
        if len(frame) == 4:
            meta = frame[3]
            if type(meta) is not dict:
                raise FrameError(f"response {rid}: meta must be a map, got {_short(meta)}")
            for key in meta:
                if type(key) is not str:
                    raise FrameError(f"response {rid}: meta keys must be str, got {_short(key)}")
        if type(status) is not int or status not in STATUS_NAMES:
            raise FrameError(
                f"response {rid}: unknown status {_short(status)}; known: "
                + ", ".join(f"{code} ({name})" for code, name in STATUS_NAMES.items())
            )
        if status == STATUS_ERROR:
            value = _incoming_error(value, rid)
        elif status == STATUS_TIMEOUT and type(value) is not str:
            raise FrameError(
                f"response {rid}: a timeout carries a str message, got {_short(value)}"
            )
        if whole is frame or type(frame[2]) in (dict, list) or meta is not None:
            # (a batch item counts from its own array: the batch's adds no level)
            self._check_depth(frame, f"response {rid}:")
        return _new_tuple(Response, (rid, status, value, meta))


def _shape_message(frame: Any, what: str, expected: str) -> str:
    if type(frame) is list:
        return f"a {what} frame must be {expected}, got an array of {len(frame)} items"
    return f"a {what} frame must be {expected}, got {type(frame).__name__} {_short(frame)}"


def _incoming_error(value: Any, rid: int) -> ErrorInfo:
    if type(value) is not list or len(value) != 3:
        raise FrameError(
            f"response {rid}: an error carries [type_name, message, details], got {_short(value)}"
        )
    type_name, message, details = value
    if type(type_name) is not str or not 1 <= len(type_name) <= MAX_TYPE_NAME_LEN:
        raise FrameError(
            f"response {rid}: error type_name must be a str of 1-{MAX_TYPE_NAME_LEN} chars, "
            f"got {_short(type_name)}"
        )
    if type(message) is not str:
        raise FrameError(f"response {rid}: error message must be a str, got {_short(message)}")
    if type(details) is not dict:
        raise FrameError(f"response {rid}: error details must be a map, got {_short(details)}")
    for key in details:
        if type(key) is not str:
            raise FrameError(f"response {rid}: error details keys must be str, got {_short(key)}")
    return ErrorInfo(type_name, message, details)


def split_frame(data: bytes | bytearray | memoryview) -> list[bytes] | list[int] | None:
    """What can still be answered of a request frame that does not decode whole (one item
    holds a map with a non-str key, too deep a value, an ext type...): a batch frame's items,
    each as its own frame's bytes (to be decoded alone: a bad one fails alone), or a text
    frame's ids (each to be answered with the frame's error). None when neither can be read:
    not an array, an item that cannot be skipped, ids that are not a list of ints.

    Nothing is built from the items but the ids (msgpack skips them), so a hostile frame
    costs no more than its size.
    """
    buf = bytes(data)
    unpacker = msgpack.Unpacker(
        raw=False,
        strict_map_key=True,
        max_buffer_size=max(len(buf), 1),
        max_bin_len=0,
        max_str_len=len(buf),
        max_array_len=len(buf),
        max_map_len=0,
        max_ext_len=0,
    )
    unpacker.feed(buf)
    try:
        n = unpacker.read_array_header()
        if not n:
            return None
        start = unpacker.tell()
        first = buf[start]
        if 0x90 <= first <= 0x9F or first in (0xDC, 0xDD):  # a batch: an array of arrays
            parts = []
            for _ in range(n):
                unpacker.skip()
                end = unpacker.tell()
                parts.append(buf[start:end])
                start = end
            return parts if start == len(buf) else None
        if n in (3, 4) and type(unpacker.unpack()) is str:  # a text frame [key, ids, ...]
            ids = unpacker.unpack()
            if type(ids) is list and all(type(i) is int and 0 <= i <= MAX_ID for i in ids):
                return ids
    except Exception:  # (as far as it reads)
        return None
    return None


def peek_frame_id(data: bytes | bytearray | memoryview) -> int | None:
    """Read the id of a frame that failed to decode, if its first bytes still show one.

    Lets the engine answer a malformed request with an error instead of dropping it: the id
    is trusted only as far as it parses (an array header followed by an unsigned integer in
    the id range); otherwise None.
    """
    head = bytes(data[:14]) if isinstance(data, (bytes, bytearray, memoryview)) else b""
    if not head:
        return None
    first = head[0]
    if 0x90 <= first <= 0x9F:
        pos = 1
    elif first == 0xDC:
        pos = 3
    elif first == 0xDD:
        pos = 5
    else:
        return None
    if len(head) <= pos:
        return None
    tag = head[pos]
    if tag <= 0x7F:
        return tag
    width = {0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8}.get(tag)
    if width is None or len(head) < pos + 1 + width:
        return None
    value = int.from_bytes(head[pos + 1 : pos + 1 + width], "big")
    return value if value <= MAX_ID else None


__all__ = [
    "DEFAULT_LIMITS",
    "FRAME_VERSION",
    "MAX_DEADLINE_NS",
    "MAX_ID",
    "MAX_PRIORITY",
    "MAX_ROW",
    "MAX_TYPE_NAME_LEN",
    "MIN_PRIORITY",
    "NO_DEADLINE",
    "NO_ROW",
    "OLDEST_FRAME_VERSION",
    "REQUEST_OPTIONS",
    "STATUS_ERROR",
    "STATUS_NAMES",
    "STATUS_OK",
    "STATUS_TIMEOUT",
    "ErrorInfo",
    "FrameDecoder",
    "FrameEncoder",
    "FrameLimits",
    "Request",
    "RequestWithOptions",
    "Response",
    "encode_options",
    "peek_frame_id",
    "split_frame",
]
