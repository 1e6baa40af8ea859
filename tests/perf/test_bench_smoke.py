"""The issue-19 benchmarks' peer behaves as documented, and the scripts run end to end (tiny sizes).

No figure is asserted: only that the scripts finish, write their JSON with every system and
target, and leave nothing running.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import queue
import threading

import pytest

from stratabatch.perf import bench_core, bench_engine, bench_http, floors
from stratabatch.perf.mpqueue_server import serve


def _echo(requests):
    return [r["query"] for r in requests]


def _drain(q: queue.Queue) -> list:
    out = []
    while not q.empty():
        out.append(q.get_nowait())
    return out


def test_peer_answers_each_client_once_per_batch_and_merges_equal_texts():
    inbox, outboxes = queue.Queue(), [queue.Queue(), queue.Queue()]
    calls = []

    def handler(requests):
        calls.append([r["query"] for r in requests])
        return _echo(requests)

    inbox.put((0, [(1, {"query": "a"}), (2, {"query": "b"}), (3, {"query": "a"})]))
    inbox.put((1, [(7, {"query": "b"}), (8, {"query": "c"})]))
    inbox.put(None)
    server = threading.Thread(target=serve, args=(inbox, outboxes, handler, 1000.0, 32))
    server.start()
    server.join(10)
    assert not server.is_alive()
    assert calls == [["a", "b", "c"]]  # one batch, each text once
    # one message per client for the batch, holding every answer of that client
    assert _drain(outboxes[0]) == [[(1, "a", None), (3, "a", None), (2, "b", None)]]
    assert _drain(outboxes[1]) == [[(7, "b", None), (8, "c", None)]]


def test_peer_splits_an_overfull_message_into_batches_of_max_size():
    inbox, outboxes = queue.Queue(), [queue.Queue()]
    sizes = []

    def handler(requests):
        sizes.append(len(requests))
        return _echo(requests)

    inbox.put((0, [(i, {"query": str(i)}) for i in range(10)]))
    inbox.put(None)
    serve(inbox, outboxes, handler, 1000.0, 4)
    assert sizes == [4, 4, 2]
    answers = [a for message in _drain(outboxes[0]) for a in message]
    assert sorted(rid for rid, _, _ in answers) == list(range(10))


def test_peer_fails_the_batch_when_the_handler_raises():
    inbox, outboxes = queue.Queue(), [queue.Queue()]

    def handler(requests):
        raise ValueError("backend down")

    inbox.put((0, [(1, {"query": "x"})]))
    inbox.put(None)
    serve(inbox, outboxes, handler, 1.0, 4)
    assert _drain(outboxes[0]) == [[(1, None, "ValueError: backend down")]]


def test_checked_peer_speaks_msgpack_and_merges_texts_equal_after_normalizing():
    import msgpack

    inbox, outboxes = queue.Queue(), [queue.Queue()]
    calls = []

    def handler(requests):
        calls.append([r["query"] for r in requests])
        return _echo(requests)

    body = [[1, {"query": "Hello  World"}], [2, {"query": "hello world"}], [3, ["not a map"]]]
    inbox.put((0, msgpack.packb(body)))
    inbox.put(None)
    serve(inbox, outboxes, handler, 1000.0, 32, checked=True)
    assert calls == [["Hello  World"]]  # one item for the two spellings; the list is refused
    (answers,) = _drain(outboxes[0])
    assert msgpack.unpackb(answers) == [[1, "Hello  World", None], [2, "Hello  World", None]]


async def test_checked_batcher_refuses_a_request_over_the_size_limit_before_queueing():
    from stratabatch import RequestTooLargeError

    b = bench_core.CheckedBatcher(bench_core.noop, 1.0, 4)
    b.max_bytes = 100
    with pytest.raises(RequestTooLargeError):
        await b.process({"query": "x" * 200})
    assert b.pending == [] and b.waiting == 0
    assert await b.process({"query": "ok"}) is None  # (the no-op handler's answer)
    assert b.waiting == 0 and b.done == 1
    await b.close()


def _no_children_left():
    for p in mp.active_children():
        p.join(5)
    return mp.active_children() == []


def test_bench_core_runs_every_system(tmp_path):
    out = tmp_path / "core.json"
    assert bench_core.main(["--requests", "300", "--repeats", "1", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert {
        bench_core.MINIMAL,
        bench_core.CHECKED,
        bench_core.OFF,
        bench_core.EXACT,
        bench_core.GENERAL,
        bench_core.EMBEDDING,
        bench_core.WORDS,
    } <= set(data["medians"])
    assert len(data["targets"]) == 5
    assert "load average" in data["load_average"]["start"]


def test_bench_engine_runs_the_peers_and_cleans_up(tmp_path):
    out = tmp_path / "engine.json"
    args = ["--systems", "peer,coalescing,checked", "--requests", "400", "--warmup", "100"]
    args += ["--repeats", "1", "--clients", "2", "--outstanding", "8", "--json", str(out)]
    assert bench_engine.main(args) == 0
    data = json.loads(out.read_text())
    assert set(data["medians"]) == {
        bench_engine.PEER,
        bench_engine.COALESCING,
        bench_engine.CHECKED,
    }
    assert data["medians"][bench_engine.PEER]["x_peer_rps"] == pytest.approx(1.0)
    assert _no_children_left()


def test_the_floors_answer_every_request_and_leave_nothing_running():
    # Each floor returns only once its client saw every answer (the trickle's client awaits
    # each one; the hand-off's callers each block on theirs), so a figure means a full run.
    trickle = floors.trickle_floor(50)
    assert trickle["requests"] == 50 and trickle["server_cpu_us"] > 0
    handoff = floors.handoff_floor(2, 4, 400)
    assert handoff["requests"] == 400 and handoff["cpu_us"] > 0
    assert _no_children_left()


def test_bench_http_says_how_to_install_wrk_when_it_is_missing(monkeypatch, capsys):
    monkeypatch.setattr(bench_http.shutil, "which", lambda name: None)
    assert bench_http.main([]) == 2
    assert "apt-get install wrk" in capsys.readouterr().err


async def test_eval_quality_measures_the_strategy_asked_for_not_a_first_start_interim(
    monkeypatch,
):
    # A first start's default (cold_start="serve") runs exact dedup until the near kernels
    # are compiled: an evaluation must wait for them, or it reports exact under every name.
    import stratabatch
    from stratabatch.perf import eval_quality

    seen = {}
    real = stratabatch.BatchProcessor

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(stratabatch, "BatchProcessor", spy)
    pairs = [{"a": "How do I reset my password?", "b": "how do i reset  my password?"}]
    assert await eval_quality.merged_pairs(pairs, dedup_strategy="exact") == [True]
    assert seen["cold_start"] == "wait"
