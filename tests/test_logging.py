"""The stratabatch logger hierarchy: the embedded processor's events under caplog, the rate
limit on queue-full warnings (injected clock), and the engine's JSON log lines."""

from __future__ import annotations

import asyncio
import io
import json
import logging

import pytest

from stratabatch import BatchProcessor, HandlerError, QueueFullError
from stratabatch.logs import JsonFormatter, RateLimitedLog, configure


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class _Timers:
    """A stand-in for ``loop.call_later``: records what is scheduled, fires on demand."""

    def __init__(self) -> None:
        self.pending: list[tuple[float, object]] = []

    def __call__(self, delay, callback):
        self.pending.append((delay, callback))
        return self

    def cancel(self) -> None:
        self.pending.clear()

    def fire(self) -> None:
        pending, self.pending = self.pending, []
        for _, callback in pending:
            callback()


def _messages(caplog, name: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == name]


def test_rate_limited_log_writes_one_line_per_interval_and_counts_the_rest(caplog):
    clock, timers = _Clock(), _Timers()
    log = RateLimitedLog(
        logging.getLogger("stratabatch.queue"),
        logging.WARNING,
        "queue-full event",
        interval_s=10.0,
        clock=clock,
        call_later=timers,
    )
    with caplog.at_level(logging.WARNING, logger="stratabatch"):
        log.event("queue full: 1")
        for t in (1.0, 2.0, 9.9):
            clock.now = t
            log.event(f"queue full: at {t}")
        assert _messages(caplog, "stratabatch.queue") == ["queue full: 1"]
        assert [d for d, _ in timers.pending] == [pytest.approx(9.0)]  # 10 s after the line
        clock.now = 10.0
        timers.fire()  # the events stopped: their count still gets its line
        assert _messages(caplog, "stratabatch.queue")[-1] == (
            "3 more queue-full events in the last 10 s (last: queue full: at 9.9)"
        )
        clock.now = 15.0
        log.event("queue full: again")  # within 10 s of the count line: counted
        clock.now = 20.5
        log.event("queue full: later")
        assert _messages(caplog, "stratabatch.queue")[-1] == (
            "queue full: later (and 1 more queue-full event not shown since the last line)"
        )
        assert all(r.levelno == logging.WARNING for r in caplog.records)
        timers.fire()  # nothing counted since: no line
        assert len(_messages(caplog, "stratabatch.queue")) == 3


def test_rate_limited_log_costs_a_level_check_when_off(caplog):
    clock = _Clock()
    log = RateLimitedLog(logging.getLogger("stratabatch.queue"), logging.WARNING, "x", clock=clock)
    with caplog.at_level(logging.ERROR, logger="stratabatch"):
        for _ in range(3):
            log.event("queue full")
        log.close()
    assert caplog.records == []


async def test_a_failing_batch_logs_once_with_its_traceback(caplog):
    async def handler(requests):
        raise KeyError("prompt")

    with caplog.at_level(logging.DEBUG, logger="stratabatch"):
        async with BatchProcessor(handler, window_ms=5, max_size=64, enable_dedup=False) as b:
            out = await b.process([{"query": str(i)} for i in range(20)], return_exceptions=True)
    assert all(isinstance(o, HandlerError) for o in out)
    records = [r for r in caplog.records if r.name == "stratabatch.handler"]
    assert len(records) == 1
    assert records[0].levelno == logging.ERROR and records[0].exc_info is not None
    assert records[0].exc_info[0] is KeyError


async def test_a_vetoed_merge_is_logged_at_debug_only(caplog):
    async def handler(requests):
        return [r["query"] for r in requests]

    texts = ["Is the store open?", "Is the store closed?"]
    for level, expect in ((logging.INFO, 0), (logging.DEBUG, 1)):
        caplog.clear()
        with caplog.at_level(level, logger="stratabatch"):
            async with BatchProcessor(
                handler, window_ms=5, dedup_function=lambda a, b: 1.0
            ) as batch:
                await batch.process([{"query": q} for q in texts])
        vetoes = [r for r in caplog.records if r.name == "stratabatch.dedup"]
        assert len(vetoes) == expect, [r.getMessage() for r in vetoes]
    (record,) = vetoes
    assert record.levelno == logging.DEBUG
    message = record.getMessage()
    assert "polarity: open / closed" in message and "'Is the store closed?'" in message


def test_a_full_queue_warns_at_most_once_per_10_s_with_a_count(run_virtual, caplog):
    async def scenario():
        release = asyncio.Event()

        async def handler(requests):
            await release.wait()
            return [r["query"] for r in requests]

        batch = BatchProcessor(
            handler,
            window_ms=1,
            max_size=1,
            max_inflight_batches=1,
            max_queue=1,
            on_full="reject",
            enable_dedup=False,
        )
        first = asyncio.ensure_future(batch.process({"query": "a"}))  # in the handler
        await asyncio.sleep(0.01)
        second = asyncio.ensure_future(batch.process({"query": "b"}))  # fills the queue
        await asyncio.sleep(0.01)
        for i in range(3):
            with pytest.raises(QueueFullError):
                await batch.process({"query": f"r{i}"})
        lines = list(_messages(caplog, "stratabatch.queue"))
        await asyncio.sleep(11)  # virtual: the count of the two not shown gets its line
        after_pause = list(_messages(caplog, "stratabatch.queue"))
        await asyncio.sleep(10)  # the count line was a line too: 10 s after it
        with pytest.raises(QueueFullError):
            await batch.process({"query": "late"})
        release.set()
        await asyncio.gather(first, second)
        await batch.close()
        return lines, after_pause, list(_messages(caplog, "stratabatch.queue"))

    with caplog.at_level(logging.WARNING, logger="stratabatch"):
        lines, after_pause, final = run_virtual(scenario)
    assert len(lines) == 1 and lines[0].startswith("queue full: 1 requests wait (max_queue=1)")
    assert "on_full=reject" in lines[0]
    assert after_pause[1].startswith("2 more queue-full events in the last 10 s")
    assert len(final) == 3 and final[2].startswith("queue full")  # a new line: 10 s passed
    assert {r.levelno for r in caplog.records if r.name == "stratabatch.queue"} == {logging.WARNING}


def test_json_formatter_writes_one_object_a_line_with_the_traceback():
    try:
        raise ValueError("bad \u00e9 value")
    except ValueError:
        import sys

        exc_info = sys.exc_info()
    record = logging.LogRecord(
        "stratabatch.handler", logging.ERROR, __file__, 1, "failed: %s", ("x",), exc_info
    )
    line = JsonFormatter().format(record)
    assert "\n" not in line and line.isascii()
    obj = json.loads(line)
    assert obj["level"] == "ERROR" and obj["logger"] == "stratabatch.handler"
    assert obj["message"] == "failed: x" and isinstance(obj["pid"], int)
    assert "ValueError: bad \u00e9 value" in obj["exception"]
    assert obj["time"].endswith("+00:00") and "T" in obj["time"]
    plain = json.loads(
        JsonFormatter().format(
            logging.LogRecord("stratabatch.engine", logging.INFO, __file__, 1, "ready", (), None)
        )
    )
    assert "exception" not in plain and plain["message"] == "ready"


@pytest.fixture
def _root_logging():
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)
    root.setLevel(level)


def test_configure_installs_one_handler_in_the_format_asked(_root_logging):
    first, second = io.StringIO(), io.StringIO()
    configure("INFO", "text", first)
    configure("DEBUG", "json", second)  # replaces the first, adds no second handler
    logging.getLogger("stratabatch.engine").debug("hello %s", "there")
    assert first.getvalue() == ""
    obj = json.loads(second.getvalue())
    assert obj["message"] == "hello there" and obj["level"] == "DEBUG"
    configure("INFO", "text", first)
    logging.getLogger("stratabatch.engine").info("ready: x")
    assert first.getvalue().endswith(" INFO ready: x\n")
    assert first.getvalue().startswith("stratabatch-engine[")
    with pytest.raises(ValueError, match="log format"):
        configure("INFO", "xml")
