"""Client processes for the fairness test: ``load_worker.py MODE ENGINE_NAME GO STOP``.

Prints "connected", waits for the file GO, then:
    flood   keeps 2048 requests outstanding (timeout 30 s each) until the file STOP exists
    light   sends one request every 100 ms, 20 in all, each with a 2 s timeout

and prints one JSON line: requests served, failures (type: message), latencies in ms.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time

import stratabatch


async def wait_file(path: str) -> None:
    while not os.path.exists(path):
        await asyncio.sleep(0.005)


async def main(mode: str, name: str, go: str, stop: str) -> dict:
    client = stratabatch.connect(name)
    print("connected", flush=True)
    await wait_file(go)
    served = 0
    failures: list[str] = []
    latencies: list[float] = []
    pid = os.getpid()
    if mode == "flood":

        async def one(i: int) -> None:
            nonlocal served
            while not os.path.exists(stop):
                try:
                    await client.process(
                        {"query": f"flood {pid} {i} {served}", "sleep": 0.02}, timeout=30
                    )
                    served += 1
                except Exception as exc:  # noqa: BLE001 - reported
                    failures.append(f"{type(exc).__name__}: {exc}")

        await asyncio.gather(*(one(i) for i in range(2048)))
    else:
        for i in range(20):
            t0 = time.monotonic()
            try:
                await client.process({"query": f"light {pid} {i}", "sleep": 0.02}, timeout=2)
                served += 1
                latencies.append((time.monotonic() - t0) * 1000)
            except Exception as exc:  # noqa: BLE001 - reported
                failures.append(f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(max(0.0, 0.1 - (time.monotonic() - t0)))
    await client.close()
    return {
        "served": served,
        "failures": failures[:5],
        "n_failures": len(failures),
        "latencies_ms": latencies,
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(*sys.argv[1:5]))), flush=True)
