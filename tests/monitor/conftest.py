"""Fixtures of the monitor tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from monitor_helpers import T0_NS, engine_name

from stratabatch.ipc.counters import CountersWriter


@pytest.fixture
def block() -> Iterator[tuple[str, CountersWriter]]:
    """An engine name and the writer of its counters block (closed, i.e. unlinked, after)."""
    name = engine_name()
    w = CountersWriter.create(
        name,
        info={
            "name": name,
            "handler": "tests.app:handle",
            "max_size": 32,
            "dedup_strategy": "hybrid",
            "max_inflight_batches": 4,
        },
        max_clients=8,
        history_s=300,
        started_at_ns=T0_NS,
    )
    try:
        yield name, w
    finally:
        w.close()
