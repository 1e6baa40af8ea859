"""Embedded shutdown: a handler that ignores cancellation never keeps asyncio.run() from
returning; a failing handler is logged once per batch, its traceback once per kind."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap

import pytest

from stratabatch import BatchProcessor, HandlerError
from stratabatch.failurelog import FailureLog

SCRIPT = textwrap.dedent("""
    import asyncio, json, time
    from stratabatch import BatchProcessor, BatchTimeoutError

    async def stubborn(requests):
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                pass  # ignores every cancellation

    async def main():
        batch = BatchProcessor(stubborn, processing_timeout=0.3, window_ms=5,
                               enable_dedup=False)
        try:
            await batch.process({"query": "x"}, timeout=10)
        except BatchTimeoutError as exc:
            outcome = str(exc)
        await batch.close()
        return outcome, time.monotonic()

    outcome, closed_at = asyncio.run(main())
    print(json.dumps({"outcome": outcome, "after_close_s": time.monotonic() - closed_at}))
""")


def test_asyncio_run_returns_though_the_handler_ignores_cancellation():
    try:
        proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("asyncio.run() never returned: it waited for the abandoned handler")
    assert proc.returncode == 0, proc.stderr.decode()
    out = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    assert "processing_timeout=0.3s" in out["outcome"]
    assert out["after_close_s"] < 1.0  # processing_timeout + 1 s is the promise


class _Timers:
    """An injected call_later: the test fires the timers itself."""

    def __init__(self) -> None:
        self.pending: list = []

    def __call__(self, delay: float, fn):
        handle = type("H", (), {"cancel": lambda self_: self.pending.remove((delay, fn))})()
        self.pending.append((delay, fn))
        return handle

    def fire(self) -> None:
        for _, fn in list(self.pending):
            self.pending.remove((_, fn))
            fn()


def _raised(exc: BaseException) -> HandlerError:
    try:
        raise exc
    except BaseException as e:  # noqa: BLE001
        return HandlerError.from_exception(e, "the handler raised on a batch of 50")


def test_failure_log_shows_a_traceback_once_per_kind_then_counts(caplog):
    timers = _Timers()
    flog = FailureLog(timers, interval_s=10.0)
    with caplog.at_level(logging.DEBUG, logger="stratabatch"):
        for _ in range(5):
            flog.batch_failed(50, _raised(KeyError("prompt")))
        flog.batch_failed(50, _raised(ValueError("bad")))
        assert [r.levelno for r in caplog.records] == [logging.ERROR, logging.ERROR]
        assert caplog.records[0].exc_info is not None  # the traceback, the first time
        assert "KeyError" in caplog.records[0].getMessage()
        assert len(timers.pending) == 1  # one report scheduled for the 4 counted failures
        timers.fire()
        report = caplog.records[-1]
        assert report.levelno == logging.WARNING
        assert "4 more batches" in report.getMessage() and "KeyError x 4" in report.getMessage()
        flog.batch_failed(50, _raised(KeyError("prompt")))
        flog.close()  # what is counted is reported at close, not lost
        assert "1 more batch:" in caplog.records[-1].getMessage()


async def test_a_failing_batch_is_logged_once_not_once_per_request(caplog):
    async def handler(requests):
        return [r["prompt"] for r in requests]

    with caplog.at_level(logging.DEBUG, logger="stratabatch"):
        async with BatchProcessor(handler, window_ms=20, max_size=64, enable_dedup=False) as batch:
            outcomes = await batch.process(
                [{"query": str(i)} for i in range(50)], return_exceptions=True
            )
            assert all(isinstance(o, HandlerError) for o in outcomes)
    records = [r for r in caplog.records if r.name == "stratabatch.handler"]
    assert len(records) == 1 and records[0].exc_info is not None


def test_the_library_is_silent_without_logging_configured():
    code = (
        "import asyncio\nfrom stratabatch import BatchProcessor\n"
        "async def h(rs):\n    raise KeyError('prompt')\n"
        "async def main():\n"
        "    async with BatchProcessor(h, window_ms=1, enable_dedup=False) as b:\n"
        "        await b.process([{'query': 'a'}], return_exceptions=True)\n"
        "asyncio.run(main())\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert proc.returncode == 0 and proc.stderr == b"", proc.stderr.decode()


def test_timeouts_are_logged_as_one_kind():
    timers = _Timers()
    flog = FailureLog(timers)
    from stratabatch import BatchTimeoutError

    logger = logging.getLogger("stratabatch.handler")
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    h = Keep()
    logger.addHandler(h)
    try:
        for _ in range(3):
            flog.batch_failed(8, BatchTimeoutError("processing_timeout=1s"), timeout=True)
    finally:
        logger.removeHandler(h)
    assert len(seen) == 1 and seen[0].levelno == logging.WARNING and seen[0].exc_info is None
