"""Live dashboard and headless readers of a running engine's counters block.

``read_snapshot(name)`` returns one :class:`EngineSnapshot` (what ``stratabatch-monitor --once``
and ``--json`` print); :class:`CountersSource` polls for the dashboard. The Textual app lives in
``stratabatch.monitor.app`` and is imported only by the dashboard, never here.
"""

from __future__ import annotations

from stratabatch.monitor.snapshot import (
    ClientRow,
    CountersSource,
    EngineSnapshot,
    MidUpdateError,
    Waiting,
    read_snapshot,
)

__all__ = [
    "ClientRow",
    "CountersSource",
    "EngineSnapshot",
    "MidUpdateError",
    "Waiting",
    "read_snapshot",
]
