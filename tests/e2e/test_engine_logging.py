"""A real engine's log in --log-format json, with an option from the environment."""

from __future__ import annotations

import json

import pytest

import stratabatch
from stratabatch import HandlerError


def test_json_log_lines_parse_and_carry_the_handler_traceback(start_engine):
    eng = start_engine(
        "--log-format",
        "json",
        "--log-level",
        "debug",
        "--dedup-strategy",
        "exact",
        handler="tests.e2e.handlers:faulty",
        env={"STRATABATCH_WINDOW_MS": "5", "STRATABATCH_WINDOWMS": "5"},
    )
    assert eng.ready_line.startswith("stratabatch-engine ready name=")  # stdout: unchanged
    with stratabatch.connect(eng.name, sync=True) as client:
        with pytest.raises(HandlerError, match="boom"):
            client.process({"query": "a", "fault": "raise"})
        assert client.get_stats().window_ms == 5.0  # from STRATABATCH_WINDOW_MS
    assert eng.stop() == 0
    lines = [line for line in eng.log().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every stderr line is one JSON object
    assert all({"time", "level", "logger", "message", "pid"} <= r.keys() for r in records)
    by_message = {r["message"].split(":")[0]: r for r in records}
    assert by_message["ready"]["logger"] == "stratabatch.engine"
    assert by_message["ready"]["pid"] == eng.pid
    (failure,) = [r for r in records if r["logger"] == "stratabatch.handler"]
    assert failure["level"] == "ERROR" and "KeyError: 'boom'" in failure["exception"]
    (typo,) = [r for r in records if "STRATABATCH_WINDOWMS" in r["message"]]
    assert typo["level"] == "WARNING" and "did you mean STRATABATCH_WINDOW_MS?" in typo["message"]
