"""Turning what a caller passes into a :class:`~stratabatch.records.Request`: one set of rules
for both modes.

The embedded :class:`~stratabatch.BatchProcessor` calls :func:`build_request` in the caller's
task; the engine's client calls :func:`check_payload` before encoding a frame, and the engine
calls :func:`build_request` again on what it decodes, so a request that one mode accepts the
other accepts too, and the size limit counts the same bytes in both: the msgpack encoding of
the request mapping (:func:`~stratabatch.dedup.encode_request`), not the frame around it.

What a request must be:

* a mapping whose keys, at every depth, are ``str`` (msgpack would carry int keys, but a
  request must decode to the same dict in the engine, where maps are read with
  ``strict_map_key``);
* made only of str, bytes, int, float, bool, None, lists/tuples and such maps (numpy arrays and
  scalars are carried as lists of numbers: a request's own ``"embedding"`` is often one);
* at most ``max_request_bytes`` once encoded;
* if it carries ``"embedding"`` and dedup may use it: a flat vector of finite reals, not all
  zero, of the active embedder's dimension when that is known.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .dedup import encode_request
from .errors import InvalidRequestError, RequestTooLargeError
from .records import Request

if TYPE_CHECKING:
    from .config import BatchConfig

__all__ = ["build_request", "check_call_args", "check_payload", "check_str_keys"]

_MAX_DEPTH = 64


def check_str_keys(obj: Any, depth: int = 0) -> None:
    """Raise TypeError if a map anywhere in ``obj`` has a key that is not a str."""
    if depth > _MAX_DEPTH:
        raise TypeError(f"nested deeper than {_MAX_DEPTH} levels")
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            if type(k) is not str:
                raise TypeError(f"map key {k!r} is a {type(k).__name__}; map keys must be str")
            if isinstance(v, (Mapping, list, tuple)):
                check_str_keys(v, depth + 1)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            if isinstance(v, (Mapping, list, tuple)):
                check_str_keys(v, depth + 1)


def check_payload(request: Any, index: int, max_bytes: int) -> bytes:
    """Check the shape and size of one request and return its msgpack encoding.

    Args:
        request: What the caller passed.
        index: Its position in the caller's list (0 for a single request), for messages.
        max_bytes: ``max_request_bytes``.

    Raises:
        InvalidRequestError: not a mapping, a non-str map key, or not msgpack-serializable.
        RequestTooLargeError: encodes past ``max_bytes``.
    """
    if type(request) is not dict and not isinstance(request, Mapping):
        raise InvalidRequestError(
            f"request {index}: a request must be a mapping (e.g. a dict), "
            f"got {type(request).__name__}"
        )
    try:
        check_str_keys(request)
        blob = encode_request(request)
    except (TypeError, ValueError, OverflowError, RecursionError) as e:
        raise InvalidRequestError(
            f"request {index}: not msgpack-serializable ({e}); requests must hold only "
            "str, bytes, int, float, bool, None, lists and str-keyed maps"
        ) from None
    if len(blob) > max_bytes:
        raise RequestTooLargeError(
            f"request {index}: encodes to {len(blob)} bytes, over max_request_bytes={max_bytes}"
        )
    return blob


def build_request(request: Any, config: BatchConfig, *, index: int = 0, sink: Any = None,
                  priority: int = 0, deadline: float | None = None,
                  dim: int | None = None, checked: int | None = None) -> Request:
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
    size = checked if checked is not None else len(
        check_payload(request, index, config.max_request_bytes))
    text = request.get(config.dedup_key)
    vector = None
    if config.enable_dedup and (config.dedup_strategy != "exact" or
                                config.dedup_function is not None):
        vector = request.get("embedding")
    if vector is not None:
        from .embed import validate_vector

        try:
            vector = validate_vector(vector, dim)
        except ValueError as e:
            raise InvalidRequestError(f"request {index}: bad 'embedding' field: {e}") from None
    return Request(request, priority=priority, deadline=deadline, sink=sink, index=index,
                   text=text if isinstance(text, str) else None, vector=vector, size=size)


def check_call_args(priority: Any, timeout: Any) -> None:
    """Check a call's ``priority`` and ``timeout`` (both modes take the same ones).

    Raises:
        InvalidRequestError: ``priority`` is not an int in [-2**31, 2**31), or ``timeout`` is
            not a positive number of seconds or None.
    """
    if isinstance(priority, bool) or not isinstance(priority, int) or \
            not -(2**31) <= priority < 2**31:
        raise InvalidRequestError(f"priority must be an int in [-2**31, 2**31), got {priority!r}")
    if timeout is not None and (isinstance(timeout, bool) or
                                not isinstance(timeout, (int, float)) or not timeout > 0):
        raise InvalidRequestError(
            f"timeout must be a positive number of seconds or None, got {timeout!r}")
