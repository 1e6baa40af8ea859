"""A client process for the e2e tests: ``client_worker.py MODE ENGINE_NAME [args...]``.

Prints "connected" once connected, then one JSON line with what it saw at the end.

Modes:
    one NAME BARRIER QUERY         wait for the file BARRIER, send one request
    load NAME BARRIER SEED I N PER the I-th of N clients of a seeded workload of N*PER requests
                                   with 40% duplicates; all sent at once after BARRIER
    stream NAME COUNT              COUNT requests, 32 outstanding, until done (killed in tests)
    garbage NAME                   push a frame that does not decode, then wait to be dropped
    forkcycle NAME N SYNC          N times: fork a child that lives on (holding copies of the
                                   connection), close and reconnect (SYNC=1: the blocking
                                   client), one request; print the result line, then wait for a
                                   line on stdin before the children and this process exit
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import time

import stratabatch


def workload(seed: int, clients: int, per: int) -> list[list[str]]:
    """Every client's queries: 40% of all requests repeat a query some client also sends."""
    rng = random.Random(seed)
    total = clients * per
    uniques = [f"query {seed}-{i}" for i in range(total - int(total * 0.4))]
    queries = uniques + [rng.choice(uniques) for _ in range(total - len(uniques))]
    rng.shuffle(queries)
    return [queries[i * per : (i + 1) * per] for i in range(clients)]


async def wait_file(path: str) -> None:
    while not os.path.exists(path):
        await asyncio.sleep(0.002)


def fork_cycle(name: str, cycles: int, sync: bool) -> None:
    """``forkcycle``: children forked after connect() must not keep closed connections open."""
    if sync:
        client = stratabatch.connect(name, sync=True)
        assert client.process({"query": "first"}, timeout=30)["answer"] == "FIRST"
    else:
        client = stratabatch.connect(name)
        asyncio.run(client.process({"query": "first"}, timeout=30))
    print("connected", flush=True)
    r, w = os.pipe()
    children = []
    ok, errors = 0, []
    for i in range(cycles):
        child = os.fork()
        if child == 0:  # each child sleeps until its parent is done (or dies), holding fds
            os.close(w)
            os.read(r, 1)
            os._exit(0)
        children.append(child)
        try:
            if sync:
                # the connection the child inherited still serves its parent
                ok += client.process({"query": f"f{i}"}, timeout=30)["answer"] == f"F{i}"
                client.close()
                client = stratabatch.connect(name, sync=True)
                ok += client.process({"query": f"c{i}"}, timeout=30)["answer"] == f"C{i}"
            else:

                async def cycle(old=client, i=i):
                    forked = await old.process({"query": f"f{i}"}, timeout=30)
                    await old.close()
                    new = stratabatch.connect(name)
                    done = await new.process({"query": f"c{i}"}, timeout=30)
                    return new, (forked["answer"] == f"F{i}") + (done["answer"] == f"C{i}")

                client, n = asyncio.run(cycle())
                ok += n
        except Exception as exc:  # reported: the test asserts there are none
            errors.append(f"cycle {i}: {type(exc).__name__}: {exc}")
    print(json.dumps({"ok": ok, "errors": errors[:3], "children": children}), flush=True)
    sys.stdin.readline()
    os.close(w)
    os.close(r)
    for child in children:
        os.waitpid(child, 0)
    if sync:
        client.close()
    else:
        asyncio.run(client.close())


async def main(argv: list[str]) -> dict:
    mode, name = argv[0], argv[1]
    client = stratabatch.connect(name)
    print("connected", flush=True)
    if mode == "one":
        await wait_file(argv[2])
        result = await client.process({"query": argv[3]}, timeout=30)
        return {"result": result, "numba_loaded": "numba" in sys.modules}
    if mode == "load":
        barrier, seed, index, n, per = argv[2], *map(int, argv[3:7])
        mine = workload(seed, n, per)[index]
        await wait_file(barrier)
        results = await client.process(
            [{"query": q} for q in mine], timeout=60, return_exceptions=True
        )
        bad = [
            (q, r)
            for q, r in zip(mine, results, strict=True)
            if not isinstance(r, dict) or r.get("answer") != q.upper()
        ]
        return {
            "sent": len(mine),
            "results": len(results),
            "bad": len(bad),
            "first_bad": repr(bad[:3]),
        }
    if mode == "stream":
        count = int(argv[2])
        outcomes: dict[int, int] = {}
        errors: list[str] = []
        sem = asyncio.Semaphore(32)

        async def one(i: int) -> None:
            async with sem:
                try:
                    r = await client.process({"query": f"s{os.getpid()}-{i % 50}"}, timeout=30)
                    if r.get("answer") != f"S{os.getpid()}-{i % 50}":
                        errors.append(f"wrong answer for {i}: {r}")
                except Exception as exc:  # counted: an outcome too
                    errors.append(f"{type(exc).__name__}: {exc}")
                outcomes[i] = outcomes.get(i, 0) + 1
                if i % 100 == 0:
                    print(f"done {i}", flush=True)
                await asyncio.sleep(0.001)

        await asyncio.gather(*(one(i) for i in range(count)))
        return {
            "sent": count,
            "outcomes": len(outcomes),
            "twice": sum(1 for v in outcomes.values() if v != 1),
            "errors": errors[:5],
            "n_errors": len(errors),
        }
    if mode == "garbage":
        conn = client._connection()
        conn.requests.try_push(b"\xc1\xc1 not msgpack")
        t0 = time.monotonic()
        while conn.dead is None and time.monotonic() - t0 < 10:
            await asyncio.sleep(0.01)
        return {"dropped": conn.dead}
    raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    if sys.argv[1] == "forkcycle":
        fork_cycle(sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1")
        raise SystemExit(0)
    out = asyncio.run(main(sys.argv[1:]))
    print(json.dumps(out), flush=True)
