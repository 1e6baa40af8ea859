"""Caller-side coalescing for :mod:`stratabatch.ray`: one Ray call per replica for the requests
an event loop submits together, instead of one call per request (issue 22).

A request through a Serve handle costs a Ray call: the caller's router, the task submission, the
replica's call handling and the answer's way back, about as much CPU as the whole stratabatch
core spends on it. :class:`CoalescingHandle` collects the requests its event loop submits in one
iteration (or within ``flush_ms``), groups them by the replica the twin router would send each
of them to (the same key and rendezvous choice, read from the process's router:
:func:`stratabatch.rayrouter.live_router`), and sends one ``process`` call a replica with the
group, which the router sends to that replica because it keys a list by its first request.
Each caller's future gets its own request's answer or error.

::

    from stratabatch.ray import coalescing_handle

    handle = coalescing_handle("answers")
    result = await handle.remote({"query": "hi"}, timeout=5.0)
    fresh = await handle.remote({"query": "hi"}, reuse=False)   # not from the reuse cache
    dropped = await handle.forget()                              # on every replica

Needs the ``ray`` extra; imported by :mod:`stratabatch.ray`, which re-exports its names.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Mapping
from typing import Any

import ray

from . import rayrouter
from .errors import BatchTimeoutError, InvalidRequestError, StratabatchError, copy_error
from .reusecontrol import check_forget_scope

__all__ = ["CoalescingHandle", "call_forget"]

# (request, its future, priority, timeout, the timeout's timer, reuse)
_Entry = tuple[
    Mapping[str, Any], "asyncio.Future[Any]", int, Any, "asyncio.TimerHandle | None", bool
]


async def call_forget(handle: Any, scope: Mapping[str, Any] | None, timeout: float) -> int:
    """``forget`` through a handle to the batch deployment: the replica that takes the call
    has the deployment's stats board order every replica to forget (docs/ray.md). A
    stratabatch error, or the ``TypeError`` of a bad argument, raised as itself."""
    try:
        # (keywords only: the twin router finds no request to key, and counts the call apart)
        return int(await handle.options(method_name="forget").remote(scope=scope, timeout=timeout))
    except ray.exceptions.RayTaskError as e:
        if isinstance(e.cause, (StratabatchError, TypeError)):
            raise copy_error(e.cause) from None
        raise


class CoalescingHandle:
    """A handle to a stratabatch batch deployment that sends the requests its event loop
    submits together as one ``process`` call per replica.

    Made by :func:`stratabatch.ray.coalescing_handle`. Use it from one event loop (the first
    that calls :meth:`remote`); it is not thread-safe.

    How requests are grouped, by what the process's router of the deployment is:

    * the twin router: by the replica it would send each request to (its key, rendezvous over
      the replicas it knows), so twins still meet on their key's replica and a group's call
      goes where each of its requests would;
    * Serve's own router (``route="serve"``): all in one call (Serve picks the replica);
    * not known yet (the handle's router is made after its first use, once Serve's controller
      has sent the deployment's configuration and replicas; and the near keys' kernels load):
      one call a request, as a plain handle.

    Args:
        handle: A ``DeploymentHandle`` to the batch deployment (what
            :func:`stratabatch.ray.batch_handle` returns).
        max_batch: The most requests in one call; a larger group is sent as several calls.
        flush_ms: How long the first request of a group waits for others; 0 (the default):
            until the loop has run what is ready now (the requests submitted in the same
            iteration: under load, every request that came in while the loop was busy).
    """

    def __init__(self, handle: Any, *, max_batch: int = 64, flush_ms: float = 0.0) -> None:
        if type(max_batch) is not int or max_batch < 1:
            raise ValueError(f"max_batch must be an int >= 1, got {max_batch!r}")
        if not isinstance(flush_ms, (int, float)) or not 0 <= flush_ms <= 1000:
            raise ValueError(f"flush_ms must be in [0, 1000], got {flush_ms!r}")
        self._handle = handle
        self._process = handle.options(method_name="process")  # (makes the handle's router)
        self._app: str = handle.app_name
        self._deployment: str = handle.deployment_name
        self.max_batch = max_batch
        self.flush_s = flush_ms / 1000.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: list[_Entry] = []
        self._calls: set[asyncio.Task[None]] = set()
        self._answered = False  # a call came back: the handle's router exists by now
        self.calls = 0
        """Ray calls sent so far."""
        self.requests = 0
        """Requests sent so far (``requests / calls``: the mean group)."""

    def remote(
        self,
        request: Mapping[str, Any],
        *,
        priority: int = 0,
        timeout: float | None = None,
        reuse: bool = True,
    ) -> asyncio.Future[Any]:
        """Submit one request; its future gets the result or the error, as
        ``batch_handle(...).remote(request)`` would (a stratabatch error raised as itself, a
        Ray error as Ray's: ``ActorDiedError`` when the replica died, "may have run").

        ``reuse=False`` asks for a fresh answer: the replica's reuse cache answers none of
        this request (it still merges with twins in the window, and its answer is stored),
        as ``BatchProcessor.process(..., reuse=False)``. Such requests go in calls of their
        own, with their priority and timeout.

        ``timeout`` bounds the wait from this call on: the replica gets what is left of it, and
        the future fails with ``BatchTimeoutError`` at the deadline if no answer came (the
        request may have run). Cancelling the future drops its answer; a request whose
        future is cancelled before its call is sent is not sent, and a call all of whose
        callers have gone is cancelled on its replica (Serve's cancellation); otherwise the
        request still runs, with the others of its call.
        """
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            if self._loop is not None and not self._loop.is_closed():
                raise RuntimeError("a CoalescingHandle serves the event loop that first used it")
            self._loop = loop
        fut = loop.create_future()
        if not isinstance(request, Mapping):
            fut.set_exception(
                InvalidRequestError(
                    f"a request is a mapping, got {type(request).__name__} "
                    "(submit a list's requests one by one)"
                )
            )
            return fut
        if reuse is not True and reuse is not False:
            fut.set_exception(
                InvalidRequestError(
                    f"reuse must be True or False, got {reuse!r} (per call, False bypasses "
                    "the reuse cache; the deployment's mode is its reuse option)"
                )
            )
            return fut
        timer = None
        if isinstance(timeout, (int, float)) and not isinstance(timeout, bool) and timeout > 0:
            timer = loop.call_at(loop.time() + timeout, _expire, fut)
        pending = self._pending
        pending.append((request, fut, priority, timeout, timer, reuse))
        if len(pending) == 1:
            if self.flush_s:
                loop.call_later(self.flush_s, self._flush)
            else:
                loop.call_soon(self._flush)
        return fut

    def _flush(self) -> None:
        batch = [e for e in self._pending if not e[1].done()]  # (not those gone already)
        self._pending = []
        if not batch:
            return
        router = rayrouter.live_router(self._app, self._deployment)
        groups: dict[Any, list[_Entry]] = {}
        if router is not None and router.replica_ids and router.keys_ready:
            ids = router.replica_ids
            rendezvous, key_of = rayrouter.rendezvous, router.key_of
            for i, e in enumerate(batch):
                key = key_of(e[0]) if _plain(e) else None
                if key is None:  # unkeyed, or a call argument the replica refuses: alone
                    groups[i] = [e]
                else:
                    groups.setdefault((rendezvous(key, ids), e[2], e[3], e[5]), []).append(e)
        elif router is None and self._answered:
            for i, e in enumerate(batch):  # Serve's own router: it picks each call's replica
                groups.setdefault((None, e[2], e[3], e[5]) if _plain(e) else i, []).append(e)
        else:
            groups = {i: [e] for i, e in enumerate(batch)}
        loop = self._loop
        assert loop is not None
        n = self.max_batch
        for entries in groups.values():
            for at in range(0, len(entries), n):
                chunk = entries[at : at + n]
                timeout = chunk[0][3]
                if chunk[0][4] is not None:  # what is left of the earliest deadline
                    timeout = max(1e-3, min(e[4].when() for e in chunk if e[4]) - loop.time())
                response = self._process.remote(
                    [e[0] for e in chunk],
                    priority=chunk[0][2],
                    timeout=timeout,
                    return_exceptions=True,
                    reuse=chunk[0][5],
                )
                call = _Call(response, len(chunk))
                for e in chunk:
                    e[1].add_done_callback(call.gone)
                task = loop.create_task(self._deliver(call, chunk))
                self._calls.add(task)
                task.add_done_callback(self._calls.discard)
                self.calls += 1
                self.requests += len(chunk)

    async def forget(self, scope: Mapping[str, Any] | None = None, *, timeout: float = 5.0) -> int:
        """Drop stored answers of the reuse cache on every replica of the deployment, as
        :func:`stratabatch.ray.forget` does, without blocking the event loop.

        Returns:
            The entries dropped, summed over the replicas (0 with reuse off).

        Raises:
            TypeError: ``scope`` is neither None nor a mapping with str keys (nothing sent).
            InvalidRequestError: ``scope`` names a field that is not a ``dedup_scope`` field.
            ForgetIncompleteError: A live replica failed to forget, or did not answer in
                ``timeout`` (from :mod:`stratabatch.ray`).
        """
        check_forget_scope(scope)
        return await call_forget(self._handle, scope, timeout)

    async def _deliver(self, call: _Call, entries: list[_Entry]) -> None:
        """Each entry's answer from the call's list, or the call's error for all of them."""
        try:
            results = await call.response
        except BaseException as e:  # noqa: BLE001 - every caller of the call gets it
            call.answered = self._answered = True
            if isinstance(e, ray.exceptions.RayTaskError) and isinstance(e.cause, StratabatchError):
                cause: BaseException = e.cause
                for _, fut, _, _, timer, _ in entries:
                    _settle(fut, timer, None, copy_error(cause))
            else:
                for _, fut, _, _, timer, _ in entries:
                    _settle(fut, timer, None, _fresh(e))
            if isinstance(e, (KeyboardInterrupt, SystemExit, asyncio.CancelledError)):
                raise
            return
        call.answered = self._answered = True
        if not isinstance(results, list) or len(results) != len(entries):
            wrong = StratabatchError(
                f"the replica answered {type(results).__name__} for a list of {len(entries)}"
            )
            for _, fut, _, _, timer, _ in entries:
                _settle(fut, timer, None, copy_error(wrong))
            return
        for (_, fut, _, _, timer, _), r in zip(entries, results, strict=True):
            if isinstance(r, BaseException):
                _settle(fut, timer, None, r)
            else:
                _settle(fut, timer, r, None)


def _plain(entry: _Entry) -> bool:
    """Whether the entry's priority and timeout are of the kinds the processor takes (any
    other goes alone: its call fails with the processor's ConfigError, and only its own)."""
    t = entry[3]
    return type(entry[2]) is int and (t is None or type(t) is float or type(t) is int)


class _Call:
    """One Ray call of a handle: cancelled on its replica when every caller in it has gone
    (cancelled, or timed out) before the answer came."""

    __slots__ = ("answered", "left", "response")

    def __init__(self, response: Any, callers: int) -> None:
        self.response = response
        self.left = callers
        self.answered = False

    def gone(self, _: asyncio.Future[Any]) -> None:
        self.left -= 1
        if self.left == 0 and not self.answered:
            self.response.cancel()


def _expire(fut: asyncio.Future[Any]) -> None:
    if not fut.done():
        fut.set_exception(
            BatchTimeoutError("the caller's timeout ran out before a result was ready")
        )


def _fresh(error: BaseException) -> BaseException:
    """A copy of ``error`` for one caller (a traceback is per exception object)."""
    try:
        return copy.copy(error)
    except Exception:
        return error


def _settle(
    fut: asyncio.Future[Any],
    timer: asyncio.TimerHandle | None,
    result: Any,
    error: BaseException | None,
) -> None:
    if timer is not None:
        timer.cancel()
    if fut.done():  # timed out, or cancelled by its caller
        return
    if error is None:
        fut.set_result(result)
    elif isinstance(error, asyncio.CancelledError):
        fut.cancel()
    else:
        fut.set_exception(error)
