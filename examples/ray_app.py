"""stratabatch on Ray Serve: a class handler on two replicas, twins routed to meet.

Run it (it starts a local Ray instance, or joins the one ``RAY_ADDRESS`` names)::

    pip install "stratabatch[ray]"
    python examples/ray_app.py

It serves :class:`Answerer` as the application ``answers`` (HTTP at ``/answers``), sends 30
questions of which 20 repeat others (in case and spacing too), through the application's
handle, a coalescing handle (the requests of one event-loop turn in one call per replica) and
HTTP, prints the answers' handler calls and the merged statistics of both replicas, and
deletes the application. With ``reuse="exact"`` a copy that reaches its replica after its
twin's answer went out is answered from the replica's reuse cache: 10 handler items for the 30
requests (without it, 20-24 here: the copies through the ingress come ~100 ms later).
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from typing import Any

from ray import serve

from stratabatch.ray import coalescing_handle, deployment, get_stats


@deployment(
    name="answerer",
    num_replicas=2,
    ray_actor_options={"num_cpus": 0.5},
    window_ms=20,
    dedup_strategy="exact",
    reuse="exact",  # a twin that comes after its answer went out gets it too (for 60 s)
)
class Answerer:
    """The batch handler: one call per batch of unique questions, on each replica.

    A stand-in for an expensive backend (a model loaded once per replica in ``__init__``,
    which takes ``.bind()``'s arguments)."""

    def __init__(self, greeting: str) -> None:
        self.greeting = greeting
        self.calls = 0

    async def __call__(self, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        self.calls += 1
        await asyncio.sleep(0.03)  # the backend's fixed cost per call
        return [
            {"answer": f"{self.greeting}: {r['query'].strip()}", "call": self.calls}
            for r in requests
        ]


QUESTIONS = [f"what is item {i}?" for i in range(10)]


async def ask(handle: Any, url: str) -> list[Any]:
    """Each question three times at once: as written through the application's handle,
    upper-cased through a coalescing handle, and with extra spaces over HTTP."""

    def post(question: str) -> Any:
        body = json.dumps({"query": f"  {question}  "}).encode()
        request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.load(answer)

    coalesced = coalescing_handle("answers")  # straight to the replicas, fewer Ray calls
    calls = []
    for q in QUESTIONS:
        calls += [handle.remote({"query": q}), coalesced.remote({"query": q.upper()}, timeout=30)]
        calls.append(asyncio.to_thread(post, q))
    return list(await asyncio.gather(*calls))


def main(http_port: int = 8000) -> Any:
    """Serve the application, ask, print, delete it; returns the merged statistics."""
    handle = serve.run(Answerer.bind("answer"), name="answers", route_prefix="/answers")
    try:
        answers = asyncio.run(ask(handle, f"http://127.0.0.1:{http_port}/answers"))
        for a in answers[:6]:
            print(a)
        stats = get_stats("answers")
        print(
            f"{stats.total_requests} requests, {stats.unique_requests} handler items in "
            f"{stats.total_batches} calls, {stats.duplicates} merged"
        )
        return stats
    finally:
        serve.delete("answers")


if __name__ == "__main__":
    import ray

    ray.init()
    try:
        main()
    finally:
        serve.shutdown()
        ray.shutdown()
