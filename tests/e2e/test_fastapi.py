"""examples/fastapi_app.py under uvicorn with two workers that share one engine."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time

import httpx

from .conftest import CHILD_PYTHONPATH, ROOT


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_duplicates_sent_to_different_workers_merge(start_engine, tmp_path):
    eng = start_engine(
        "--window-ms",
        "1000",
        "--max-wait-ms",
        "1000",
        "--dedup-strategy",
        "exact",
        handler="examples.fastapi_app:answer_batch",
    )
    port = _free_port()
    log = open(tmp_path / "uvicorn.log", "wb")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "examples.fastapi_app:app",
            "--workers",
            "2",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": CHILD_PYTHONPATH, "STRATABATCH_ENGINE": eng.name},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        # both workers up: each answers /api/stats with its pid (one worker answering is not
        # enough: under load the second may still be importing, and every burst then goes to
        # the first; CI saw that once, in 5 bursts of 32 connections)
        deadline = time.monotonic() + 90
        seen: set[int] = set()
        while len(seen) < 2:
            try:
                r = httpx.get(f"{url}/api/stats", timeout=5, headers={"Connection": "close"})
                if r.status_code == 200:
                    seen.add(r.json()["worker"])
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and server.poll() is None, (
                f"workers answering: {sorted(seen)}\n" + (tmp_path / "uvicorn.log").read_text()
            )
            time.sleep(0.05)

        async def burst(round_: int) -> list[dict]:
            limits = httpx.Limits(max_connections=64, max_keepalive_connections=0)
            async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as http:
                qs = [f"popular question {round_}"] * 24 + [f"rare {round_}-{i}" for i in range(8)]
                rs = await asyncio.gather(*(http.post("/api/query", json={"query": q}) for q in qs))
            assert all(r.status_code == 200 for r in rs), [r.text for r in rs]
            return [{**r.json(), "query": q} for r, q in zip(rs, qs, strict=True)]

        for round_ in range(10):  # the kernel picks the worker; retry until both took some
            out = asyncio.run(burst(round_))
            popular = [o for o in out if o["query"].startswith("popular")]
            if len({o["worker"] for o in popular}) == 2:
                break
        else:
            raise AssertionError("every request of 10 bursts went to the same worker")
        assert all(o["answer"] == f"answer to: {o['query']}" for o in out)
        # the popular question reached the handler once: one call answered every copy,
        # whichever worker took it
        assert len({o["call"] for o in popular}) == 1
        stats = httpx.get(f"{url}/api/stats", timeout=10).json()
        assert stats["total_requests"] == 32 * (round_ + 1)
        assert stats["duplicates"] >= len(popular) - 1
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
        log.close()
