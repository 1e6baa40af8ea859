"""The engine process's garbage-collector settings (stratabatch.gctune)."""

from __future__ import annotations

import gc

from stratabatch.gctune import GEN0_THRESHOLD, settle


def test_settle_freezes_what_exists_and_slows_young_collections() -> None:
    before = gc.get_threshold()
    kept = [object() for _ in range(10)] + [[] for _ in range(10)]
    try:
        assert settle() == before
        assert gc.get_freeze_count() >= 10
        assert gc.get_threshold() == (max(before[0], GEN0_THRESHOLD), before[1], before[2])
        # a record made afterwards is not frozen: the collector still frees its cycles
        cycle: list = []
        cycle.append(cycle)
        del cycle
        assert gc.collect() >= 1
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
    assert kept
