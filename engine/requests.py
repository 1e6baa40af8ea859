"""Turning what a caller passes into a :class:`~stratabatch.records.Request`: one set of rules
for both modes.

The embedded :class:`~stratabatch.BatchProcessor` calls :func:`build_request` in the caller's
task; the engine's client calls :func:`check_payload` before encoding a frame, and the engine
calls :func:`build_request` again on what it decodes, so a request that one mode accepts the
other accepts too, and the size limit counts the same bytes in both: the msgpack encoding of
the request mapping (:func:`~stratabatch.dedup.encode_request`), not the frame around it.

What a request must be (the request rule):

* a mapping whose keys, at every depth, are ``str`` (msgpack would carry int keys, but a
  request must decode to the same dict in the engine, where maps are read with
  ``strict_map_key``);
* made only of str, bytes, int, float, bool, None, lists/tuples and such maps (numpy arrays and
  scalars are carried as lists of numbers: a request's own ``"embedding"`` is often one);
* at most ``max_request_bytes`` once encoded;
* nested at most :data:`MAX_DEPTH` containers deep, the request mapping being the first level
  (a numpy array counts one level per dimension: it travels as nested lists);
* if it carries ``"embedding"`` and dedup may use it: a flat vector of finite reals, not all
  zero, of the active embedder's dimension when that is known.

Container lengths need no rule of their own: every array item takes at least one encoded byte
and every map pair two, so a request within ``max_request_bytes`` holds no container, str or
bytes longer than ``max_request_bytes``. The engine's frame limits are derived from this rule
(:func:`stratabatch.server.frame_limits`: the frame adds its own array, one level, and at most
64 bytes), so the engine decodes every request its client let through.

Results follow the same shape rule in engine mode, where they cross a ring: at most
``max_result_bytes`` encoded and :data:`MAX_DEPTH` levels deep (a list or map result being
the first level); the engine's frame encoder checks both and the caller gets a
:class:`~stratabatch.HandlerError` naming ``max_result_bytes``. An embedded processor hands
results over by reference, so there they have no size or type limit.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import msgpack

from stratabatch.ipc.framelimits import FLAT_SCALARS, is_flat_map

from .calls import check_vector
from .dedup import encode_request
from .errors import InvalidRequestError, RequestTooLargeError
from .records import Request

if TYPE_CHECKING:
    from .config import BatchConfig

__all__ = [
    "FLAT_SCALARS",
    "MAX_DEPTH",
    "STR_KEYS",
    "build_request",
    "check_call_args",
    "check_payload",
    "check_str_keys",
    "flat_packer",
    "flat_size",
    "request_size",
]

MAX_DEPTH = 64
"""Deepest container nesting of a request (its mapping is level 1) or of a result (a list or
map result is level 1), in both modes."""


_SCALARS = frozenset({str, int, float, bool, type(None), bytes})

STR_KEYS = frozenset({str})
"""The key types of a flat request: ``STR_KEYS.issuperset(map(type, request))`` and
``FLAT_SCALARS.issuperset(map(type, request.values()))`` tell, in two C-level scans, that a
``dict`` holds the request rule's types, keys and depth by construction (the check a client
inlines before :func:`flat_packer`'s encoder)."""


def flat_packer() -> Callable[[Any], bytes]:
    """A msgpack encoder for flat requests: for a ``dict`` of str keys and plain scalars (str,
    int, float, bool, None, bytes; see :data:`STR_KEYS`), it writes
    :func:`~stratabatch.dedup.encode_request`'s bytes, without its per-thread lookup.

    A client keeps one per thread (or event loop) and takes a request's payload from it when
    the request is flat and the encoding succeeds within the size limit; any other request,
    or a failure of any kind, goes through :func:`check_payload`, which says what is wrong.
    """
    return msgpack.Packer(autoreset=True).pack


class _TooDeep(ValueError):
    """A value nests containers deeper than :data:`MAX_DEPTH`."""


def check_str_keys(obj: Any, depth: int = 1) -> None:
    """Check the map keys and the nesting of ``obj`` (a container at level ``depth``).

    Raises:
        TypeError: A map anywhere in ``obj`` has a key that is not a str.
        ValueError: Containers nest deeper than :data:`MAX_DEPTH` levels.
    """
    if depth > MAX_DEPTH:
        raise _TooDeep(f"containers nest deeper than {MAX_DEPTH} levels")
    if isinstance(obj, Mapping):
        for k in obj:
            if type(k) is not str:
                raise TypeError(f"map key {k!r} is a {type(k).__name__}; map keys must be str")
        items: Any = obj.values()
    elif isinstance(obj, (list, tuple)):
        items = obj
    else:
        return
    for v in items:
        t = type(v)
        if t in _SCALARS:
            continue
        if t is dict or t is list or t is tuple or isinstance(v, (Mapping, list, tuple)):
            check_str_keys(v, depth + 1)
        elif t.__module__ == "numpy":
            _check_array_depth(v, depth + 1)


def _check_array_depth(arr: Any, depth: int) -> None:
    """A numpy array at level ``depth`` is encoded as ``ndim`` levels of nested lists."""
    ndim = getattr(arr, "ndim", 0)
    if isinstance(ndim, int) and ndim and depth + ndim - 1 > MAX_DEPTH:
        raise _TooDeep(
            f"containers nest deeper than {MAX_DEPTH} levels (a numpy array of "
            f"{ndim} dimensions at level {depth})"
        )


def check_payload(request: Any, index: int, max_bytes: int) -> bytes:
    """Check one request against the request rule and return its msgpack encoding.

    Args:
        request: What the caller passed.
        index: Its position in the caller's list (0 for a single request), for messages.
        max_bytes: ``max_request_bytes``.

    Raises:
        InvalidRequestError: not a mapping, a non-str map key, nested deeper than
            :data:`MAX_DEPTH`, or not msgpack-serializable.
        RequestTooLargeError: encodes past ``max_bytes``.
    """
    if type(request) is not dict and not isinstance(request, Mapping):
        raise InvalidRequestError(
            f"request {index}: a request must be a mapping (e.g. a dict), "
            f"got {type(request).__name__}"
        )
    try:
        # a flat dict of plain scalars (the usual request) holds the rule by construction
        if type(request) is not dict or not is_flat_map(request):
            check_str_keys(request)
    except _TooDeep as e:
        raise InvalidRequestError(
            f"request {index}: {e}; a request may nest at most {MAX_DEPTH} levels of "
            "containers, its own mapping being the first"
        ) from None
    except TypeError as e:
        raise _unserializable(index, e) from None
    try:
        blob = encode_request(request)
    except (TypeError, ValueError, OverflowError) as e:
        raise _unserializable(index, e) from None
    if len(blob) > max_bytes:
        raise RequestTooLargeError(
            f"request {index}: encodes to {len(blob)} bytes, over max_request_bytes={max_bytes}"
        )
    return blob


def _str_size(n: int) -> int:
    """msgpack bytes of a str (or bin) header for a payload of ``n`` bytes."""
    return 1 if n < 32 else 2 if n < 256 else 3 if n < 65536 else 5


def _int_size(v: int) -> int:
    """msgpack bytes of int ``v`` (0 when msgpack cannot carry it: the encoder must say why)."""
    if -32 <= v < 128:
        return 1
    if -128 <= v < 256:
        return 2
    if -32768 <= v < 65536:
        return 3
    if -(2**31) <= v < 2**32:
        return 5
    if -(2**63) <= v < 2**64:
        return 9
    return 0


def flat_size(request: Any) -> int | None:
    """The exact msgpack size of ``request`` when it is a flat ``dict`` (at most 15 str keys)
    of ASCII str, int, float, bool, None and bytes values, computed without encoding it;
    None for any other request (the caller then encodes it to learn its size).

    Most requests are such a dict, and the rule (:func:`check_payload`) holds for one of
    them by construction: its keys are str and it nests one level. Its size counts the same
    bytes ``msgpack.packb`` writes (a fixmap header, each str or bin with its shortest
    header, ints in their shortest form, floats as float64), so the size limit is the
    encoder's, to the byte.
    """
    if type(request) is not dict or len(request) > 15:
        return None
    total = 1
    for k in request:  # (cheaper than items(): no pair a key)
        if type(k) is not str or not k.isascii():
            return None
        v = request[k]
        n = len(k)
        total += n + (1 if n < 32 else _str_size(n))
        t = type(v)
        if t is str:
            if not v.isascii():
                return None
            n = len(v)
            total += n + (1 if n < 32 else _str_size(n))
        elif t is int:
            n = _int_size(v)
            if not n:
                return None
            total += n
        elif t is float:
            total += 9
        elif v is None or t is bool:
            total += 1
        elif t is bytes:
            n = len(v)
            total += n + (2 if n < 256 else _str_size(n))
        else:
            return None
    return total


def request_size(request: Any, index: int, max_bytes: int) -> int:
    """Check one request against the request rule and return its encoded size: the size of
    :func:`check_payload`'s bytes, computed without encoding the common flat request
    (:func:`flat_size`).

    Raises:
        InvalidRequestError, RequestTooLargeError: as :func:`check_payload`.
    """
    size = flat_size(request)
    if size is None:
        return len(check_payload(request, index, max_bytes))
    if size > max_bytes:
        raise RequestTooLargeError(
            f"request {index}: encodes to {size} bytes, over max_request_bytes={max_bytes}"
        )
    return size


def _unserializable(index: int, e: Exception) -> InvalidRequestError:
    return InvalidRequestError(
        f"request {index}: not msgpack-serializable ({e}); requests must hold only "
        "str, bytes, int, float, bool, None, lists and str-keyed maps"
    )


def build_request(
    request: Any,
    config: BatchConfig,
    index: int = 0,
    sink: Any = None,
    priority: int = 0,
    deadline: float | None = None,
    dim: int | None = None,
    checked: int | None = None,
) -> Request:
    """Validate ``request`` and make the core's record of it.

    Args:
        request: The request mapping.
        config: The options in force (size limit, ``dedup_key``, strategy).
        index: Position within the caller's call (kept on the record for the caller's sink).
        sink: Whom to answer; opaque to the core.
        priority: Its priority.
        deadline: Loop time after which the caller gives up, or None.
        dim: The embedding dimension in force, if known: a request's own ``"embedding"`` of
            another dimension is refused here, before anything is queued.
        checked: The payload's encoded size, when it already passed :func:`check_payload`
            (a decoded frame); None to check it here.

    Raises:
        InvalidRequestError: see :func:`check_payload`, or a malformed ``"embedding"``.
        RequestTooLargeError: see :func:`check_payload`.
    """
    size: int | None = checked
    if size is None:
        size = flat_size(request)  # (request_size's first step, without its call)
        if size is None or size > config.max_request_bytes:
            size = request_size(request, index, config.max_request_bytes)
    text = request.get(config.dedup_key)
    vector = None
    if config.reads_vectors:
        vector = request.get("embedding")
    if vector is not None:
        vector = check_vector(vector, dim, index)
    return Request(
        request,
        priority,
        deadline,
        sink,
        index,
        text if type(text) is str or isinstance(text, str) else None,
        vector,
        size,
    )


def check_call_args(priority: Any, timeout: Any) -> None:
    """Check a call's ``priority`` and ``timeout`` (both modes take the same ones).

    Raises:
        InvalidRequestError: ``priority`` is not an int in [-2**31, 2**31), or ``timeout`` is
            not a positive number of seconds or None.
    """
    if (
        isinstance(priority, bool)
        or not isinstance(priority, int)
        or not -(2**31) <= priority < 2**31
    ):
        raise InvalidRequestError(f"priority must be an int in [-2**31, 2**31), got {priority!r}")
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0
    ):
        raise InvalidRequestError(
            f"timeout must be a positive number of seconds or None, got {timeout!r}"
        )
