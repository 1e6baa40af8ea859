"""Run by tests/test_warm.py in a fresh process: warm up, serve varied traffic, and report
every numba kernel that gained a compiled version after ``warm_up()`` (one JSON line)."""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time

from numba.core.registry import CPUDispatcher

from stratabatch import BatchProcessor

WORDS = (
    "the quick brown fox jumps over lazy dog order refund invoice shipping teh hte "
    "recieve adress why how what account password reset"
).split()


def compiled() -> dict[str, int]:
    """Compiled versions per kernel of every loaded stratabatch module."""
    out = {}
    for modname, mod in list(sys.modules.items()):
        if modname.startswith("stratabatch"):
            for name, obj in list(vars(mod).items()):
                if isinstance(obj, CPUDispatcher):
                    out[f"{modname}.{name}"] = len(obj.overloads)
    return out


def texts(rng: random.Random, n: int) -> list[str]:
    out = []
    for i in range(n):
        t = " ".join(rng.choice(WORDS) for _ in range(rng.randrange(3, 30)))
        if i % 3 == 0:
            t += f" order {rng.randrange(1000)}"
        if i % 7 == 0:
            t = "Café naïve résumé " + t
        if i % 11 == 0:
            t += " " + " ".join(f"id{rng.randrange(1 << 30)}" for _ in range(200))
        out.append(t)
    return out


async def handler(requests: list) -> list:
    return [r.get("query") for r in requests]


async def main(strategy: str, cold_start: str) -> None:
    # "wait": every kernel in this process, in warm_up(); "serve": the near-dedup kernels
    # compile in a separate process and load here once it is done (then nothing compiles here)
    batch = BatchProcessor(handler, dedup_strategy=strategy, window_ms=2, cold_start=cold_start)
    t0 = time.perf_counter()
    await batch.warm_up()
    warm_s = time.perf_counter() - t0
    while batch.dedup_strategy_in_force != strategy:  # (serve: until near dedup is on)
        await asyncio.sleep(0.1)
    before = compiled()
    await rehearse(batch, strategy)
    after = compiled()
    await batch.close()
    new = {k: [before.get(k, 0), v] for k, v in after.items() if v != before.get(k, 0)}
    print(json.dumps({"strategy": strategy, "warm_s": warm_s, "compiled_after_warm_up": new}))


async def rehearse(batch: BatchProcessor, strategy: str = "embedding") -> None:
    """Varied traffic through ``batch``: long and short texts, numbers, accents, twins and near
    twins, a text past the index's size, one off the loop; with near dedup, a request with its
    own vector (the handler answers each request with its ``query``)."""
    rng = random.Random(1)
    for _ in range(4):
        ts = texts(rng, 300)
        reqs = [{"query": t} for t in ts] + [{"query": t} for t in ts[:100]]
        reqs += [{"query": t + " please"} for t in ts[:50]]
        reqs.append({"query": "big " + " ".join(f"w{j}" for j in range(40_000))})  # off-loop
        long = " ".join(f"k{j}" for j in range(rng.randrange(1_100, 1_300)))
        reqs += [{"query": long + " alpha"}, {"query": long + " beta"}]  # past the index's
        await batch.process(reqs, timeout=300)
    if strategy != "exact":  # a request with its own vector (the default embedder's dim)
        from stratabatch.embed import default_embedder

        dim = default_embedder().dim
        await batch.process([{"query": "own", "embedding": [1.0] + [0.0] * (dim - 1)}])


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "wait"))
