"""The mosec peer of ``perf/bench_http.py``: the example's answer on mosec's dynamic batching.

``python -m stratabatch.perf.http_mosec --port P --path DIR``: one worker process answering
``{"query": ...}`` POSTed to ``/inference`` as the example's ``answer_batch`` does, batches of up
to 32 gathered for at most 1 ms. No dedup. Needs ``pip install mosec``.
"""

from __future__ import annotations

from typing import Any

from mosec import Server, Worker


class Answer(Worker):
    """The example's ``answer_batch`` as a mosec worker."""

    def forward(self, data: Any) -> Any:
        """One answer per request of the batch."""
        return [{"answer": f"answer to: {d.get('query')}", "batch_size": len(data)} for d in data]


if __name__ == "__main__":
    server = Server()
    server.append_worker(Answer, num=1, max_batch_size=32, max_wait_time=1)
    server.run()
