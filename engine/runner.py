"""The handler runner: one handler call per batch, bounded by ``processing_timeout``.

A component the core holds. It runs the user's batch handler on a list of payloads, async
(as a task of the core's loop) or sync (in a daemon thread of its own, so the loop keeps
collecting), and reports exactly once per call, on the loop, through the ``done`` callback
given to :meth:`Runner.start`: ``done(results, error, cancelled, elapsed)``.

Per call it makes one task and, for a sync handler, one thread: no task waits on another, so
a batch costs the loop a handful of callbacks, not a chain of tasks and futures. The calls'
``processing_timeout`` deadlines share one timer (a timer made and cancelled per call cost the
engine ~0.2 us a request at 32 a batch): it is set for the earliest deadline of the calls in
flight and, when it fires, times out every call due and is set again for the next.

A call that ends by returning or raising reports from inside its own task's last step, in the
loop iteration the handler returns in: the batch's callers (in the engine, its answer frames)
are answered then, not one iteration later from a done callback. The done callback stays for
a task cancelled before its first step (its coroutine never runs) and reports only what the
task could not.

A call ends in one of four ways:

* the handler returns: ``(results, None, False)`` (the core checks the count);
* the handler raises, or is cancelled from outside: ``(None, HandlerError, False)``;
* ``processing_timeout`` runs out first: ``(None, BatchTimeoutError, False)``, and the
  handler call is abandoned (:meth:`Runner.abandon`);
* every waiter of the batch left (:meth:`Call.cancel`): ``(None, None, True)`` in a later
  loop callback, and the handler call is abandoned.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from .errors import BatchTimeoutError, ConfigError, HandlerError

__all__ = ["Call", "Done", "Runner"]

Done = Callable[[Any, "BaseException | None", bool, float], None]
"""``done(results, error, cancelled, elapsed_s)``: how a call ends (see the module doc)."""


class Call:
    """One handler call in flight."""

    __slots__ = ("_runner", "task", "deadline", "timeout", "done", "started", "size", "over")

    def __init__(self, runner: Runner, done: Done, started: float, size: int) -> None:
        self._runner = runner
        self.task: asyncio.Task | None = None
        self.deadline = math.inf  # (the runner's clock: started + timeout, when it has one)
        self.timeout = 0.0
        self.done = done
        self.started = started
        self.size = size
        self.over = False

    def cancel(self) -> None:
        """Nobody waits for this call's results any more: abandon it, and report
        ``cancelled`` in a later loop callback (never from inside the caller's own step)."""
        if self.over:
            return
        self.over = True
        runner = self._runner
        runner.ended(self)
        if self.task is not None:
            runner.abandon(self.task)
        loop = runner.loop
        assert loop is not None
        loop.call_soon(self.done, None, None, True, runner.now() - self.started)


class Runner:
    """Runs the batch handler; see the module doc.

    Attributes:
        loop: The core's loop (set by the core when it binds).
        clock: The core's clock (set by the core when it binds: :attr:`Core.clock
            <stratabatch.core.Core.clock>`), or None for the loop's ``time()``: a call's
            start, its ``processing_timeout`` deadline and its elapsed time are read from it.
        on_start: Called on the loop with the batch size as each handler call starts, or
            None (the engine publishes batch sizes from it).
    """

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.clock: Callable[[], float] | None = None
        self.on_start: Callable[[int], None] | None = None
        self._handler: Any = None
        self._is_async = False
        self._abandoned: set[asyncio.Task] = set()  # handler calls cancelled, maybe running
        # the calls with a deadline, in start order (those over leave from the front), and
        # the one timer they share, set for ``_watch_at``
        self._watched: deque[Call] = deque()
        self._watch_timer: asyncio.TimerHandle | None = None
        self._watch_at = math.inf

    # ------------------------------------------------------------- the handler

    def set_handler(self, handler: Any) -> None:
        """Install the batch handler: ``list[request] -> list[result]``, async or sync.

        Raises:
            ConfigError: ``handler`` is not callable.
        """
        if not callable(handler):
            raise ConfigError(f"handler must be callable, got {handler!r}", field="handler")
        self._handler = handler
        self._is_async = inspect.iscoroutinefunction(handler) or (
            inspect.iscoroutinefunction(getattr(handler, "__call__", None))  # noqa: B004
        )

    @property
    def handler(self) -> Any:
        """The installed handler, or None."""
        return self._handler

    # ------------------------------------------------------------- calls

    def now(self) -> float:
        """The time by :attr:`clock` (the loop's time without one)."""
        clock = self.clock
        if clock is not None:
            return clock()
        assert self.loop is not None
        return self.loop.time()

    def start(self, payloads: list[Any], timeout: float | None, done: Done) -> Call:
        """Call the handler on ``payloads``; ``done`` hears how it ended, once, on the loop."""
        loop = self.loop
        assert loop is not None
        n = len(payloads)
        call = Call(self, done, self.now(), n)
        if self.on_start is not None:
            self.on_start(n)
        task = loop.create_task(self._call_handler(payloads, call))
        call.task = task
        task.add_done_callback(lambda t: self._ended(call, t))
        if timeout is not None:
            call.timeout = timeout
            call.deadline = deadline = call.started + timeout
            self._watched.append(call)
            if deadline < self._watch_at:  # (none set, or a later one: the timeout shrank)
                self._arm(deadline)
        return call

    def ended(self, call: Call) -> None:
        """``call`` is over: the calls over at the front of the watch leave it (the rest
        leave when the ones before them do, or when the shared timer fires)."""
        w = self._watched
        while w and w[0].over:
            w.popleft()
        if not w and self._watch_timer is not None:  # nothing left to time out: no timer
            self._watch_timer.cancel()
            self._watch_timer = None
            self._watch_at = math.inf

    def _arm(self, at: float) -> None:
        if self._watch_timer is not None:
            self._watch_timer.cancel()
        loop = self.loop
        assert loop is not None
        self._watch_at = at
        self._watch_timer = loop.call_at(at, self._check_deadlines)

    def _check_deadlines(self) -> None:
        """The shared timer: every call in flight whose deadline came times out; the timer is
        set again for the earliest deadline left."""
        at = self._watch_at
        self._watch_timer = None
        self._watch_at = math.inf
        now = self.now()
        calls, self._watched = self._watched, deque()  # (a timeout's answer may start calls)
        for call in calls:
            if call.over:
                continue
            if call.deadline <= now:
                self._timed_out(call, call.timeout)
            else:
                self._watched.append(call)
        due = min((c.deadline for c in self._watched if not c.over), default=math.inf)
        if due < self._watch_at:
            # a timer that came early by the clock (uvloop rounds timers to whole
            # milliseconds) waits at least a millisecond more: a shorter wait would round to
            # none there and spin
            self._arm(max(due, now + 0.001) if now < at else due)

    def _ended(self, call: Call, task: asyncio.Task) -> None:
        """The task's done callback: it reports only a task cancelled before its first step
        (the loop's own shutdown), whose coroutine never ran; every other end reported from
        inside the task (:meth:`_call_handler`), or timed out or was cancelled first."""
        if not call.over:
            self._finish(call, None, asyncio.CancelledError())

    def _finish(self, call: Call, results: Any, raised: BaseException | None) -> None:
        """The call's handler returned ``results`` or raised ``raised``: ``done`` hears it."""
        if call.over:
            return
        call.over = True
        self.ended(call)
        n = call.size
        error: BaseException | None = None
        if raised is not None:
            if isinstance(raised, asyncio.CancelledError):
                error = HandlerError.from_exception(
                    raised, f"the handler was cancelled on a batch of {n}"
                )
            else:
                error = HandlerError.from_exception(raised, f"the handler raised on a batch of {n}")
        call.done(results, error, False, self.now() - call.started)

    def _timed_out(self, call: Call, timeout: float) -> None:
        if call.over:
            return
        call.over = True  # (the shared timer's check drops it from the watch)
        # a handler that ignores cancellation is left to finish on its own: its slot is freed
        # now, and its late result goes nowhere
        if call.task is not None:
            self.abandon(call.task)
        call.done(
            None,
            BatchTimeoutError(
                f"the handler did not finish a batch of {call.size} within processing_timeout="
                f"{timeout:g}s"
            ),
            False,
            self.now() - call.started,
        )

    async def _call_handler(self, payloads: list[Any], call: Call) -> None:
        """Run the handler on ``payloads`` and report how it ended to ``call`` from this last
        step (:meth:`_finish`): its results, or what it raised.

        Never raises, whatever the handler raises (BaseExceptions such as a test framework's
        failure, KeyboardInterrupt or SystemExit included): it runs as its own task, and an
        exception escaping a task's step (as those three do) would otherwise stop the loop.
        """
        results: Any = None
        raised: BaseException | None = None
        try:
            if self._is_async:
                results = await self._handler(payloads)
            else:
                results = await self._call_sync(payloads)
            if type(results) is not list and inspect.isawaitable(results):
                results = await results  # (a list, the usual result, is never awaitable)
        except BaseException as e:  # noqa: BLE001 - every failure becomes the batch's error
            results, raised = None, e
        try:
            self._finish(call, results, raised)
        except Exception as e:  # a bug of ours: reported as a loop callback's would be
            loop = self.loop
            assert loop is not None
            loop.call_exception_handler(
                {"message": "stratabatch: answering a batch raised", "exception": e}
            )

    async def _call_sync(self, payloads: list[Any]) -> Any:
        loop = self.loop
        assert loop is not None
        fut = loop.create_future()
        handler = self._handler

        def settle(value: Any, error: BaseException | None) -> None:
            if fut.done():
                return
            if error is not None:
                fut.set_exception(error)
            else:
                fut.set_result(value)

        def work() -> None:
            try:
                value, error = handler(payloads), None
            except BaseException as e:  # handed to the loop, raised there
                value, error = None, e
            try:
                loop.call_soon_threadsafe(settle, value, error)
            except RuntimeError:
                pass  # the loop closed while this thread ran: nobody is left to answer

        # A daemon thread per batch, not a pool: a sync handler that hangs past
        # processing_timeout cannot be killed, and must neither block later batches nor
        # interpreter exit.
        threading.Thread(target=work, name="stratabatch-handler", daemon=True).start()
        return await fut

    # ------------------------------------------------------------- abandonment

    def abandon(self, task: asyncio.Task) -> None:
        """Cancel a handler call nobody waits for any more, and let the loop forget it.

        ``asyncio.run()`` (and ``uvloop.run()``) cancel every task of the loop when the main
        coroutine returns and then wait for all of them: a handler that ignores cancellation
        would make that wait endless, so the task leaves the loop's task registry
        (``asyncio._unregister_task``, the hook asyncio exports for custom task types). It
        still runs while the loop does; :meth:`settle` gives it a short grace to finish.
        """
        task.cancel()
        if task.done():
            return
        asyncio._unregister_task(task)
        task._log_destroy_pending = False  # type: ignore[attr-defined]  # dropped on purpose
        self._abandoned.add(task)
        task.add_done_callback(self._abandoned.discard)

    async def settle(self, grace_s: float) -> None:
        """Give abandoned handler calls up to ``grace_s`` to finish their own clean-up."""
        if self._abandoned:
            await asyncio.wait(set(self._abandoned), timeout=grace_s)
