"""A caller's call, as both front ends keep it: where each request's outcome goes.

:class:`~stratabatch.BatchProcessor` and the engine client take the same calls (one request,
a list, a stream) and give the same answers; this module is the one place that keeps a call's
books:

* :class:`Call` -- a ``process(list)`` or ``process_streaming`` call: one future for the
  whole list (never one per request), the results in the caller's order, or a stream of
  :class:`Completed` records in completion order;
* a ``process`` of one request needs no book: its outcome resolves its future
  (:func:`settle`);
* :func:`check_vector` -- a request's own ``"embedding"`` checked, with one set of messages
  in both modes.

How a front end uses it::

    call = Call(requests, loop.create_future(), return_exceptions, None)
    ...                                   # submit each request i of the list
    call.refuse(i, error)                 # request i was refused before it was queued
    call.deliver(i, value, error)         # request i has its outcome
    call.deliver(i, value, None, merged=j, similarity=0.97)  # answered by request j's item
    results = await call.fut              # the list, in order (or the first error)

For a stream, pass ``stream=asyncio.Queue()`` and ``fut=None``: every :meth:`Call.deliver`
puts one :class:`Completed` on it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .errors import InvalidRequestError

__all__ = ["Call", "Completed", "check_vector", "settle"]


@dataclass(frozen=True)
class Completed:
    """One outcome yielded by ``process_streaming``, in completion order."""

    index: int
    """Position of the request in the list passed to ``process_streaming``."""
    request: Any
    """The request itself."""
    result: Any
    """The handler's result for it (None when ``error`` is set)."""
    merged_into: int | None
    """None if this request itself went to the handler; else the index (in the same list) of
    the request whose handler item answered it, or -1 if that request came from another call."""
    similarity: float | None
    """Similarity to the request that answered it (1.0 for exact twins); None if not merged."""
    error: BaseException | None = None
    """The error this request failed with, or None."""
    reused_age_s: float | None = None
    """None, or the age in seconds of the stored answer it was served from (``reuse``);
    ``merged_into`` is -1 and ``similarity`` 1.0 then."""

    @property
    def ok(self) -> bool:
        """True when the request has a result rather than an error."""
        return self.error is None


class Call:
    """One ``process(list)`` or ``process_streaming`` call: where its requests' outcomes go.

    Args:
        requests: The caller's list (a stream's :class:`Completed` records carry them).
        fut: The call's one future (``process``), or None for a stream.
        return_exceptions: Put a failed request's error in its place instead of failing the
            whole call with it.
        stream: Where a stream's :class:`Completed` records go, or None.

    Attributes:
        results: The outcomes so far, in the caller's order.
        remaining: Requests without an outcome yet.
    """

    __slots__ = ("fut", "requests", "results", "remaining", "return_exceptions", "stream")

    def __init__(
        self,
        requests: Sequence[Any],
        fut: asyncio.Future | None,
        return_exceptions: bool,
        stream: asyncio.Queue | None = None,
    ) -> None:
        self.requests = requests
        self.fut = fut
        self.results: list[Any] = [None] * len(requests)
        self.remaining = len(requests)
        self.return_exceptions = return_exceptions
        self.stream = stream

    def deliver(
        self,
        index: int,
        value: Any,
        error: BaseException | None,
        merged: int | None = None,
        similarity: float | None = None,
        age: float | None = None,
    ) -> None:
        """Request ``index`` has its outcome: ``value``, or ``error``.

        ``merged``: None if it went to the handler itself, else the index in this call of the
        request whose handler item answered it, or -1 for a request of another call;
        ``similarity`` then says how close it was (1.0 for an exact twin).
        """
        if self.stream is not None:
            self.stream.put_nowait(
                Completed(
                    index,
                    self.requests[index],
                    value,
                    merged,
                    None if merged is None else similarity,
                    error,
                    age,
                )
            )
            return
        fut = self.fut
        if fut is None or fut.done():
            return
        if error is not None and not self.return_exceptions:
            fut.set_exception(error)
            return
        self.results[index] = error if error is not None else value
        self.remaining -= 1
        if self.remaining == 0:
            fut.set_result(self.results)

    def refuse(self, index: int, error: BaseException) -> None:
        """Request ``index`` was refused before it was queued (``return_exceptions``): its
        error takes its place (:meth:`settle_if_done` then answers a call left empty)."""
        self.results[index] = error
        self.remaining -= 1

    def settle_if_done(self) -> None:
        """Answer the call now if none of its requests is still out (all were refused)."""
        fut = self.fut
        if self.remaining == 0 and fut is not None and not fut.done():
            fut.set_result(self.results)


def settle(fut: asyncio.Future, value: Any, error: BaseException | None) -> None:
    """The outcome of a one-request call: resolve its future (unless the caller left)."""
    if not fut.done():
        if error is not None:
            fut.set_exception(error)
        else:
            fut.set_result(value)


def check_vector(vec: Any, dim: int | None, index: int) -> Any:
    """A request's own ``"embedding"``, checked and returned as a unit float32 vector.

    Args:
        vec: What the request carries under ``"embedding"``.
        dim: The dimension the active embedder uses, if known (None: any).
        index: The request's position in its call, for the message.

    Raises:
        InvalidRequestError: ``request {index}: bad 'embedding' field: ...`` -- not a flat
            list or 1-D array of real numbers, the wrong dimension, NaN or infinite values,
            or the zero vector (the messages of :func:`stratabatch.embed.validate_vector`).
    """
    from .embed import validate_vector  # (numpy: only when a request carries a vector)

    try:
        return validate_vector(vec, dim)
    except ValueError as e:
        raise InvalidRequestError(f"request {index}: bad 'embedding' field: {e}") from None
