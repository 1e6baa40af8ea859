"""stratabatch's loggers, the rate limit on repeated warnings, and the engine's log formats.

Everything stratabatch logs goes to one hierarchy under ``"stratabatch"``, the same loggers
and events in the embedded :class:`~stratabatch.BatchProcessor` and in the engine process
(both run the same core)::

    stratabatch               a NullHandler: silent until the application configures logging
    ├── stratabatch.handler   handler failures: the first of each kind at ERROR with its
    │                         traceback, later ones counted in one WARNING line at most
    │                         every 10 s (stratabatch.failurelog); processing timeouts
    ├── stratabatch.queue     a request turned away by backpressure (on_full): WARNING, at
    │                         most one line every 10 s with the count of those not shown
    ├── stratabatch.dedup     a near merge a guard vetoed: DEBUG, one line per veto
    ├── stratabatch.warm      kernels compiling or loading (INFO)
    └── stratabatch.engine    the engine process's life: start, clients, shutdown

The engine process configures the root logger from ``--log-level`` and ``--log-format``
(:func:`configure`), so a handler's own loggers print there too.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any, TextIO

ROOT = "stratabatch"
HANDLER = "stratabatch.handler"
QUEUE = "stratabatch.queue"
DEDUP = "stratabatch.dedup"
WARM = "stratabatch.warm"
ENGINE = "stratabatch.engine"

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
"""The values of ``--log-level``."""
FORMATS = ("text", "json")
"""The values of ``--log-format``."""

_root = logging.getLogger(ROOT)
if not any(isinstance(h, logging.NullHandler) for h in _root.handlers):
    _root.addHandler(logging.NullHandler())


class RateLimitedLog:
    """Logs an event at most once per ``interval_s``; counts the ones in between.

    The first event logs at once. Events within ``interval_s`` of the last line are counted,
    not shown; the next line says how many there were, and so does :meth:`flush` (a timer
    calls it when events stop, if ``call_later`` is given; :meth:`close` too).

    Args:
        logger: Where the lines go.
        level: Their level.
        what: The event's name in the count lines (``"queue-full event"``; an ``s`` is
            added for a count other than 1).
        interval_s: The least time between two lines.
        clock: Seconds, monotonic (injectable for tests).
        call_later: Schedules ``callback`` after ``delay`` seconds (an event loop's
            ``call_later``), to report a count when events stop; None reports it with the
            next line or at :meth:`close` only.
    """

    def __init__(
        self,
        logger: logging.Logger,
        level: int,
        what: str,
        *,
        interval_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        call_later: Callable[[float, Callable[[], None]], Any] | None = None,
    ) -> None:
        self.logger = logger
        self.level = level
        self.what = what
        self.interval_s = interval_s
        self._clock = clock
        self._call_later = call_later
        self._last: float | None = None  # when the last line was written
        self._suppressed = 0
        self._sample = ""
        self._timer: Any = None

    def event(self, message: str) -> None:
        """One event: a line now, or a count if a line was written less than ``interval_s``
        ago. Costs a level check when the logger would drop the line anyway."""
        if not self.logger.isEnabledFor(self.level):
            return
        now = self._clock()
        if self._last is not None and now - self._last < self.interval_s:
            self._suppressed += 1
            self._sample = message
            if self._timer is None and self._call_later is not None:
                self._timer = self._call_later(self._last + self.interval_s - now, self.flush)
            return
        self._last = now
        if self._suppressed:
            n, self._suppressed = self._suppressed, 0
            self.logger.log(
                self.level,
                "%s (and %d more %s%s not shown since the last line)",
                message,
                n,
                self.what,
                "" if n == 1 else "s",
            )
        else:
            self.logger.log(self.level, "%s", message)

    def flush(self) -> None:
        """Write the count of events not shown since the last line, if any."""
        self._timer = None
        if not self._suppressed:
            return
        n, self._suppressed = self._suppressed, 0
        self._last = self._clock()
        self.logger.log(
            self.level,
            "%d more %s%s in the last %g s (last: %s)",
            n,
            self.what,
            "" if n == 1 else "s",
            self.interval_s,
            self._sample,
        )

    def close(self) -> None:
        """Cancel the timer and write the count now."""
        if self._timer is not None:
            self._timer.cancel()
        self.flush()


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line: ``time`` (ISO 8601, UTC, milliseconds),
    ``level``, ``logger``, ``message``, ``pid``, and ``exception`` (the formatted traceback)
    or ``stack`` when the record has one. ASCII only (``\\uXXXX`` escapes), so a line
    survives any stream encoding."""

    def format(self, record: logging.LogRecord) -> str:
        obj: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        if record.exc_info:
            obj["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            obj["exception"] = record.exc_text
        if record.stack_info:
            obj["stack"] = self.formatStack(record.stack_info)
        return json.dumps(obj, default=str)


def text_formatter() -> logging.Formatter:
    """The engine's text lines: ``stratabatch-engine[PID] LEVEL message``."""
    return logging.Formatter(f"stratabatch-engine[{os.getpid()}] %(levelname)s %(message)s")


def configure(level: str = "INFO", fmt: str = "text", stream: TextIO | None = None) -> None:
    """Send the root logger's records at ``level`` and above to ``stream`` (stderr) in
    ``fmt`` (``text`` or ``json``); what the engine process does at start.

    Calling it again replaces the handler it installed before, not another one.
    """
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_stratabatch", False):
            root.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(JsonFormatter() if fmt == "json" else text_formatter())
    handler._stratabatch = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)


__all__ = [
    "DEDUP",
    "ENGINE",
    "FORMATS",
    "HANDLER",
    "LEVELS",
    "QUEUE",
    "ROOT",
    "WARM",
    "JsonFormatter",
    "RateLimitedLog",
    "configure",
    "text_formatter",
]
