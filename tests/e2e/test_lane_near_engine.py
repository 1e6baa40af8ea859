"""The engine's default strategy on the near row lane (``enable_lane(near=True)``): a client
gets the same answers and the same merge metadata (``Completed.merged_into`` and
``similarity``) whether its requests took the lane or the general path.

A plain request alone in its partition leads on the lane; twins that arrive while it runs
join its group as rows (exact twins with similarity 1.0, near twins with their own, from
``LaneGroup.sims``). The same calls with ``reuse=False`` carry an options map, so they take
the general path (a record per request), whose metadata is what clients got before the lane.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from stratabatch.client import EngineClient

from .conftest import CHILD_PYTHONPATH

LEADER = "Cancel order 5521 please"
TWINS = ["cancel order 5521 please!", "CANCEL  order 5521 please", "Where is parcel 9031?"]


async def _until_logged(log: Path, text: str, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while not (log.exists() and text in log.read_text().splitlines()):
        assert time.monotonic() < end, f"{text!r} never reached the handler"
        await asyncio.sleep(0.01)


async def _scenario(client: EngineClient, log: Path, general: bool) -> list[tuple[Any, ...]]:
    """The leader runs (the handler takes 1 s); its twins come in one list call meanwhile."""
    opts: dict[str, Any] = {"reuse": False} if general else {}
    first = asyncio.ensure_future(client.process({"query": LEADER}, **opts))
    await _until_logged(log, LEADER)
    # (a twin that comes at the very moment its leader starts may miss it and run on its own,
    # on either path and on main before the lane: the handler runs 1 s, so 0.2 s is safe)
    await asyncio.sleep(0.2)
    got = [c async for c in client.process_streaming([{"query": t} for t in TWINS], **opts)]
    assert (await first)["answer"] == LEADER.upper()
    return sorted((c.index, c.result["answer"], c.merged_into, c.similarity, c.error) for c in got)


def test_near_twins_get_the_same_metadata_through_the_lane_and_the_general_path(
    start_engine, tmp_path
):
    log = tmp_path / "items.log"
    eng = start_engine(
        "--window-ms", "2", "--dedup-strategy", "embedding",
        handler="tests.e2e.handlers:slow_echo",
        env={"PYTHONPATH": CHILD_PYTHONPATH, "SB_E2E_LOG": str(log)},
    )  # fmt: skip

    async def go() -> tuple[list[Any], list[Any]]:
        client = EngineClient(eng.name)
        lane = await _scenario(client, log, general=False)
        general = await _scenario(client, log, general=True)
        await client.close()
        return lane, general

    lane, general = asyncio.run(go())
    assert lane == general
    (_, a0, m0, s0, e0), (_, a1, m1, s1, e1), (_, a2, m2, s2, e2) = lane
    assert a0 == a1 == LEADER.upper() and a2 == TWINS[2].upper()
    assert m0 == m1 == -1 and m2 is None  # merged with work of another call; the third leads
    assert 0.8 <= s0 < 1.0 and s1 == 1.0 and s2 is None  # a near twin, an exact one
    assert e0 is e1 is e2 is None
    items = log.read_text().splitlines()
    assert items.count(LEADER) == 2 and items.count(TWINS[2]) == 2 and len(items) == 4
