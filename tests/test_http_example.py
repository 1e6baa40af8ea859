"""examples/fastapi_app.py in-process: what its app does around its requests."""

from __future__ import annotations

import gc

import pytest

from stratabatch.gctune import GEN0_THRESHOLD

pytest.importorskip("fastapi")


async def test_a_worker_settles_its_collector_while_it_serves_and_restores_it_after():
    from examples.fastapi_app import app

    frozen = gc.get_freeze_count()  # (0, unless an earlier test of this process froze some)
    before = gc.get_threshold()
    try:
        async with app.router.lifespan_context(app):  # what uvicorn runs in each worker
            # started: what the imports made is frozen, young collections come less often
            assert gc.get_freeze_count() > frozen
            assert gc.get_threshold()[0] >= GEN0_THRESHOLD
        # shut down: the process's collector is as it was
        assert gc.get_freeze_count() == 0
        assert gc.get_threshold() == before
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
