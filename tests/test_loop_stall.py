"""No dedup pass holds the event loop for long (issue 17, item 5).

150 near-identical requests of 20 KB, of a large vocabulary (thousands of distinct words a
text, as logs, code or ids have), differ only in their last words: every pair clears the
cosine and the guards must refuse each one. The guards used to walk every distinct word of
both texts per pair inside one loop callback: a 4-6 s stall. A heartbeat task measures the
longest gap between its ticks; the bound is generous (the measured figure is ~40 ms on a
loaded 2-core machine, perf/bench_loop_stall.py).
"""

from __future__ import annotations

import asyncio
import random
import string

from stratabatch import BatchProcessor

_MAX_STALL_S = 1.0


def _near_texts(n: int, size: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    vocab = [
        "".join(rng.choices(string.ascii_lowercase, k=rng.randint(4, 10))) for _ in range(20_000)
    ]
    parts, length = [], 0
    while length < size - 100:
        w = rng.choice(vocab)
        parts.append(w)
        length += len(w) + 1
    body = " ".join(parts)
    return [f"{body} question: {' '.join(rng.choices(vocab, k=6))}" for _ in range(n)]


def test_near_identical_long_requests_do_not_stall_the_loop() -> None:
    texts = _near_texts(150, 20 * 1024, 7)
    texts += [texts[0], texts[1].replace(" question:", " qeustion:")]  # exact, typo: merge

    async def handler(reqs: list) -> list:
        return [r["query"][-60:] for r in reqs]

    async def main() -> tuple[float, list, object]:
        loop = asyncio.get_running_loop()
        async with BatchProcessor(handler, max_request_bytes=1 << 20) as bp:  # defaults
            await bp.warm_up()
            worst = 0.0
            stop = False

            async def heartbeat() -> None:
                nonlocal worst
                last = loop.time()
                while not stop:
                    await asyncio.sleep(0.005)
                    now = loop.time()
                    worst = max(worst, now - last - 0.005)
                    last = now

            beat = asyncio.create_task(heartbeat())
            await asyncio.sleep(0.02)
            calls = [
                asyncio.create_task(bp.process([{"query": t} for t in texts[i : i + 50]]))
                for i in range(0, len(texts), 50)
            ]
            out = [x for part in await asyncio.gather(*calls) for x in part]
            stop = True
            await beat
            return worst, out, bp.get_stats()

    worst, out, stats = asyncio.run(main())
    # every pair of the 150 refused: each gets its own answer; the twins may merge (or not,
    # when their leader finished first: in-flight coalescing depends on timing)
    assert out[:151] == [t[-60:] for t in texts[:151]]
    assert out[151] in (texts[1][-60:], texts[151][-60:])
    assert 150 <= stats.unique_requests <= 152
    assert worst < _MAX_STALL_S, f"the event loop stalled {worst * 1000:.0f} ms"
