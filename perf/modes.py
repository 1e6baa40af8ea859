"""Modes: ways to get a workload's requests answered by the backend, measured the same way.

A mode is an object with a ``name``, a ``batch_size`` (what one backend call can hold, for the
concurrency bound), ``unavailable()`` (None, or why it cannot run here) and ``async run(workload,
settings, progress) -> ModeRun``. ``run`` sends every request at its arrival time (open loop: a
late answer never delays the next arrival) and returns one :class:`Outcome` per answer it got,
with latency measured from the request's *scheduled* arrival, so a driver that falls behind
shows up in the latency instead of hiding it. The harness checks the outcomes against the ground
truth; a mode never judges itself.

This module holds the in-process modes: unbatched direct calls, and the embedded
``BatchProcessor`` with dedup off, exact, embedding or hybrid. The multiprocess ones live in
``mpqueue_server`` (the peer), ``modes_engine`` and ``modes_ray``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from .backend import CostModel, SimBackend
from .workload import Workload

Progress = Callable[[int], None]
"""Called with the number of outcomes just received."""

START_DELAY_S = 0.05
"""Time between the start signal and the first arrival, so every sender is ready."""


@dataclass(frozen=True)
class Outcome:
    """What one request got."""

    rid: int
    """The request's id."""
    result: Any
    """The backend's answer (a dict naming the request it answered), or None on error."""
    latency_s: float
    """From the request's scheduled arrival to the answer."""
    error: str | None = None
    """``Type: message`` of the error it got instead of a result."""


@dataclass
class ModeRun:
    """Raw measurements of one mode on one workload."""

    outcomes: list[Outcome]
    cpu_s: float | None = None
    """CPU seconds of the process(es) doing the batching, when the mode can tell."""
    notes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Settings:
    """Batching and backend settings shared by every mode of a run."""

    model: CostModel = CostModel()
    window_ms: float = 10.0
    max_size: int = 32
    time_scale: float = 1.0
    """Multiplies the backend's durations (tests shrink it)."""
    timeout_s: float = 120.0
    """Per-request bound on the wait, so a broken mode fails instead of hanging."""


class Mode(Protocol):
    """The interface every mode implements (see the module docstring)."""

    name: str
    batch_size: int

    def unavailable(self) -> str | None:
        """None when the mode can run here, else the reason it cannot."""

    async def run(self, workload: Workload, settings: Settings, progress: Progress) -> ModeRun:
        """Send the workload's requests at their times; return one outcome per answer."""


def error_text(exc: BaseException) -> str:
    """``Type: message`` of an exception, for an :class:`Outcome`."""
    return f"{type(exc).__name__}: {exc}"


async def send_at_times(
    work: Iterable[tuple[int, float, dict[str, Any]]],
    t0: float,
    call: Callable[[dict[str, Any]], Awaitable[Any]],
    done: Callable[[], None] | None = None,
) -> list[tuple[int, Any, float, str | None]]:
    """Send each ``(rid, t, payload)`` of ``work`` through ``call`` at ``t0 + t`` (the
    monotonic clock, the same in every process of the machine), one task per request: the
    open loop of the processes and actors that send a mode's requests.

    Returns:
        ``(rid, result, latency_s, error)`` per request, in completion order; a call that
        raised has its :func:`error_text` as ``error``. ``done`` is told of each outcome.
    """
    outcomes: list[tuple[int, Any, float, str | None]] = []

    async def one(rid: int, payload: dict[str, Any], due: float) -> None:
        try:
            res, err = await call(payload), None
        except Exception as exc:  # the outcome records it; the accounting judges it
            res, err = None, error_text(exc)
        outcomes.append((rid, res, time.monotonic() - due, err))
        if done is not None:
            done()

    tasks = []
    for rid, t, payload in work:
        due = t0 + t
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(rid, payload, due)))
    await asyncio.gather(*tasks)
    return outcomes


async def drive_open_loop(
    workload: Workload,
    submit: Callable[[dict[str, Any]], Awaitable[Any]],
    progress: Progress,
    timeout_s: float,
) -> list[Outcome]:
    """Send each request at its arrival time through ``submit``, one task per request.

    Args:
        workload: the requests and their arrival times.
        submit: sends one request mapping and returns its result.
        progress: told of every outcome.
        timeout_s: bound on each request's wait.

    Returns:
        The outcomes, in completion order.
    """
    outcomes: list[Outcome] = []
    t0 = time.monotonic() + START_DELAY_S

    async def one(rid: int, payload: dict[str, Any], due: float) -> None:
        try:
            result = await asyncio.wait_for(submit(payload), timeout_s)
            err = None
        except Exception as exc:  # the outcome records it; the harness judges it
            result, err = None, error_text(exc)
        outcomes.append(Outcome(rid, result, time.monotonic() - due, err))
        progress(1)

    tasks = []
    for req in workload.requests:
        due = t0 + req.t
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(req.rid, req.payload(), due)))
    await asyncio.gather(*tasks)
    return outcomes


class Unbatched:
    """Every request is its own backend call (the backend's concurrency limit still applies)."""

    name = "unbatched"
    batch_size = 1

    def unavailable(self) -> str | None:
        """Always available."""
        return None

    async def run(self, workload: Workload, settings: Settings, progress: Progress) -> ModeRun:
        """Call the backend once per request."""
        backend = SimBackend(settings.model, settings.time_scale)

        async def submit(payload: dict[str, Any]) -> Any:
            return (await backend([payload]))[0]

        c0 = time.process_time()
        outcomes = await drive_open_loop(workload, submit, progress, settings.timeout_s)
        return ModeRun(
            outcomes,
            time.process_time() - c0,
            {
                "backend_max_running": backend.max_running,
                "cpu_is": "this process: sender tasks and simulated backend",
            },
        )


class Embedded:
    """The embedded ``BatchProcessor`` in this process.

    Args:
        dedup: ``"off"`` (batching only), ``"exact"``, ``"embedding"`` or ``"hybrid"``.
        max_size: overrides the run's ``max_size`` (the sweep uses it).
        window_ms: overrides the run's ``window_ms``.
    """

    def __init__(
        self, dedup: str, max_size: int | None = None, window_ms: float | None = None
    ) -> None:
        self.dedup = dedup
        self._max_size = max_size
        self._window_ms = window_ms
        self.name = "batching, no dedup" if dedup == "off" else f"stratabatch {dedup}"
        self.batch_size = max_size or 0

    def unavailable(self) -> str | None:
        """Always available."""
        return None

    async def run(self, workload: Workload, settings: Settings, progress: Progress) -> ModeRun:
        """Drive a fresh BatchProcessor whose handler is the simulated backend."""
        from stratabatch import BatchProcessor

        max_size = self._max_size or settings.max_size
        window_ms = self._window_ms or settings.window_ms
        self.batch_size = max_size
        backend = SimBackend(settings.model, settings.time_scale)
        options: dict[str, Any] = {
            "window_ms": window_ms,
            "max_size": max_size,
            "max_inflight_batches": settings.model.concurrency,
            "max_queue": max(10_000, 2 * len(workload)),
            "processing_timeout": settings.timeout_s,
            "cold_start": "wait",  # every kernel in warm_up(), before the clock starts
        }
        if self.dedup == "off":
            options["enable_dedup"] = False
        else:
            options["dedup_strategy"] = self.dedup
        batch = BatchProcessor(backend, **options)
        await batch.warm_up()
        c0 = time.process_time()
        try:
            outcomes = await drive_open_loop(workload, batch.process, progress, settings.timeout_s)
        finally:
            await batch.close()
        stats = batch.get_stats()
        return ModeRun(
            outcomes,
            time.process_time() - c0,
            {
                "window_ms": window_ms,
                "max_size": max_size,
                "core_unique_requests": stats.unique_requests,
                "core_duplicates": stats.duplicates,
                "core_inflight_coalesced": stats.inflight_coalesced,
                "core_exact_merges": stats.exact_merges,
                "core_near_merges": stats.near_merges,
                "core_batches": stats.total_batches,
                "backend_max_running": backend.max_running,
                "cpu_is": "this process: sender tasks, the core and the simulated backend",
            },
        )
