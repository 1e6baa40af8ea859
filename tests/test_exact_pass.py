"""The fused exact pass (Deduper._run_exact) decides as the general pass, apply(prepare()):
the same groups with the same members in the same order, over random arrivals with twins,
twins of earlier passes' pending groups, case and space variants, and payloads without text."""

from __future__ import annotations

import asyncio
import random

import pytest

from stratabatch import BatchProcessor
from stratabatch.records import Request


async def _noop(reqs):
    return [None] * len(reqs)


def _arrivals(rng: random.Random, n: int, start: int) -> list[Request]:
    out = []
    for i in range(start, start + n):
        kind = rng.random()
        if kind < 0.1:
            payload = {"id": rng.randrange(5)}  # no text: keyed by its canonical bytes
        else:
            q = f"question {rng.randrange(12)}"
            if rng.random() < 0.3:
                q = "  " + q.upper() + " "  # the same after normalization
            if rng.random() < 0.1:
                q = "Ünïcode " + q
            payload = {"query": q}
        text = payload.get("query")
        r = Request(payload, 0, None, None, i, text)
        r.seq = i
        r.arrival = 0.0
        out.append(r)
    return out


def _groups(core) -> list[list[int]]:
    return [[m.index for m in g.member_list()] for g in core.pending_groups()]


@pytest.mark.parametrize("seed", range(5))
def test_the_fused_exact_pass_groups_as_the_general_pass(seed):
    async def main():
        fused = BatchProcessor(_noop, dedup_strategy="exact")
        general = BatchProcessor(_noop, dedup_strategy="exact")
        await fused.warm_up()
        await general.warm_up()
        rng = random.Random(seed)
        start = 0
        for _ in range(6):  # passes: later ones meet the earlier ones' pending groups
            n = rng.randrange(1, 40)
            state = rng.getstate()
            a = _arrivals(rng, n, start)
            rng.setstate(state)
            b = _arrivals(rng, n, start)
            start += n
            fused._core._dedup._run_exact(a)
            d = general._core._dedup
            d.apply(d.prepare(b, embed_ahead=False))
            assert _groups(fused._core) == _groups(general._core)
            assert [(r.state, r.key, r.norm, r.similarity) for r in a] == [
                (r.state, r.key, r.norm, r.similarity) for r in b
            ]
        assert len(_groups(fused._core)) < start  # twins were merged

    asyncio.run(main())
