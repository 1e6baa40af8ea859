"""Handler failures in the log: one line per failing batch, not one per waiting request.

The first failure of each kind (the original exception's type, or a processing timeout) is
logged at ERROR with its traceback; later failures of a kind already shown are counted and
reported together, at most once per ``interval_s``, as one WARNING line. A handler that fails
every batch of a busy service thus writes a traceback once and a count every few seconds.

The records go to the ``stratabatch.handler`` logger. The ``stratabatch`` logger has a
:class:`logging.NullHandler`, so an application that configures no logging sees nothing; the
engine process configures logging to stderr.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger("stratabatch.handler")
logging.getLogger("stratabatch").addHandler(logging.NullHandler())

MAX_KINDS = 256
"""Failure kinds whose traceback was shown that are remembered (beyond, the oldest is forgotten)."""

TIMEOUT_KIND = "processing_timeout"
"""The kind of a batch that did not finish within ``processing_timeout``."""


def kind_of(error: BaseException) -> str:
    """The kind a failure is counted under: the original exception's qualified type name."""
    cause = error.__cause__ if error.__cause__ is not None else error
    t = type(cause)
    module = t.__module__
    return t.__qualname__ if module == "builtins" else f"{module}.{t.__qualname__}"


class FailureLog:
    """Logs failing handler calls once each, tracebacks once per kind, counts rate-limited.

    Args:
        call_later: Schedules ``callback`` after ``delay`` seconds (the event loop's
            ``call_later``); used to report counts when failures stop coming.
        interval_s: The least time between two count reports.
    """

    def __init__(
        self, call_later: Callable[[float, Callable[[], None]], Any], interval_s: float = 10.0
    ) -> None:
        self._call_later = call_later
        self.interval_s = interval_s
        self._shown: dict[str, None] = {}  # kinds whose traceback was logged, oldest first
        self._counts: dict[str, int] = {}  # kind -> failures since the last report
        self._sample: dict[str, str] = {}  # kind -> the last message of that kind
        self._timer: Any = None

    def batch_failed(self, size: int, error: BaseException, *, timeout: bool = False) -> None:
        """Record that a handler call on ``size`` items ended with ``error``."""
        kind = TIMEOUT_KIND if timeout else kind_of(error)
        if kind not in self._shown:
            self._shown[kind] = None
            if len(self._shown) > MAX_KINDS:
                del self._shown[next(iter(self._shown))]
            if timeout:
                log.warning("%s", error)
            else:
                cause = error.__cause__ if error.__cause__ is not None else error
                exc_info = cause if cause.__traceback__ is not None else None
                log.error(
                    "%s (the first %s; later ones are counted, not shown)",
                    error,
                    kind,
                    exc_info=exc_info,
                )
            return
        self._counts[kind] = self._counts.get(kind, 0) + 1
        self._sample[kind] = str(error)
        if self._timer is None:
            self._timer = self._call_later(self.interval_s, self.report)

    def report(self) -> None:
        """Log the counts gathered since the last report (one line), if any."""
        self._timer = None
        if not self._counts:
            return
        parts = [f"{kind} x {n} (last: {self._sample[kind]})" for kind, n in self._counts.items()]
        total = sum(self._counts.values())
        self._counts.clear()
        self._sample.clear()
        log.warning(
            "handler failed on %d more batch%s: %s",
            total,
            "" if total == 1 else "es",
            "; ".join(parts),
        )

    def close(self) -> None:
        """Report what is counted now and stop the timer."""
        if self._timer is not None:
            self._timer.cancel()
        self.report()


__all__ = ["MAX_KINDS", "TIMEOUT_KIND", "FailureLog", "kind_of"]
