"""``stratabatch.batch``: a batch function called one item at a time (embedded processor).

The engine-backed form is tested against a real engine in tests/e2e/test_decorator_engine.py.
"""

from __future__ import annotations

import asyncio
import gc
import re
import subprocess
import sys
import threading
import weakref
from pathlib import Path
from typing import Any

import pytest

import stratabatch
from stratabatch import BatchProcessor, ConfigError, HandlerError, InvalidRequestError

README = Path(__file__).resolve().parents[1] / "README.md"


async def test_twins_merge_one_item_in_one_result_out():
    seen: list[list[str]] = []

    @stratabatch.batch(window_ms=50, max_size=32, dedup_strategy="exact")
    async def embed(texts: list[str]) -> list[list[float]]:
        seen.append(list(texts))
        return [[float(len(t)), float(i)] for i, t in enumerate(texts)]

    a, b, c = await asyncio.gather(embed("hello"), embed("hello"), embed("hi"))
    assert seen == [["hello", "hi"]]  # the twin reached the handler once
    assert all(type(t) is str for t in seen[0])  # the items as passed, not request mappings
    assert a == b == [5.0, 0.0] and c == [2.0, 1.0]
    stats = embed.stats()
    assert (stats.total_requests, stats.duplicates, stats.total_batches) == (3, 1, 1)
    await embed.close()


async def test_reuse_per_call_and_forget_through_the_batch_function():
    calls: list[list[str]] = []

    @stratabatch.batch(window_ms=1, dedup_strategy="exact", reuse="exact")
    async def ask(texts: list[str]) -> list[str]:
        calls.append(list(texts))
        return [f"{t}#{len(calls)}" for t in texts]

    assert await ask("q") == "q#1"
    assert await ask("q") == "q#1"  # served from the store
    assert await ask("q", reuse=False) == "q#2"  # a fresh answer, stored in its place
    assert await ask.many(["q", "r"]) == ["q#2", "r#3"]
    assert await ask.many(["q"], reuse=False) == ["q#4"]
    assert ask.forget() == 2 and ask.stats().reuse_entries == 0
    assert await ask("q") == "q#5"
    with pytest.raises(InvalidRequestError):
        await ask("q", reuse="no")  # type: ignore[arg-type]
    await ask.close()


async def test_a_sync_function_runs_in_a_thread_and_twins_merge():
    seen: list[tuple[list[str], str]] = []
    loop_thread = threading.current_thread().name

    @stratabatch.batch(window_ms=50, dedup_strategy="exact")
    def shout(texts: list[str]) -> list[str]:
        seen.append((list(texts), threading.current_thread().name))
        return [t.upper() for t in texts]

    assert await asyncio.gather(shout("a"), shout("a"), shout("b")) == ["A", "A", "B"]
    assert [items for items, _ in seen] == [["a", "b"]]
    assert seen[0][1] != loop_thread  # the event loop kept running meanwhile
    await shout.close()


async def test_bare_decorator_and_the_wrapped_function_metadata():
    @stratabatch.batch
    async def double(items: list[str]) -> list[str]:
        """Double each text."""
        return [t * 2 for t in items]

    assert await double("ab") == "abab"
    assert double.__name__ == "double" and double.__doc__ == "Double each text."
    assert double.__wrapped__.__name__ == "double"  # the original function
    assert isinstance(double.processor, BatchProcessor)
    await double.close()


async def test_mapping_items_reach_the_function_as_passed():
    seen: list[list[Any]] = []

    @stratabatch.batch(window_ms=50, dedup_strategy="exact", dedup_scope=("model",))
    async def ask(requests: list[dict[str, Any]]) -> list[str]:
        seen.append(list(requests))
        return [f"{r['model']}:{r['query']}" for r in requests]

    r1 = {"query": "hi", "model": "a"}
    r2 = {"query": "hi", "model": "a"}
    r3 = {"query": "hi", "model": "b"}
    assert await asyncio.gather(ask(r1), ask(r2), ask(r3)) == ["a:hi", "a:hi", "b:hi"]
    assert len(seen) == 1 and len(seen[0]) == 2  # r2 merged into r1; r3 has another scope
    assert seen[0][0] is r1 and seen[0][1] is r3
    await ask.close()


async def test_str_items_use_dedup_key_and_the_function_gets_the_text_back():
    seen: list[list[str]] = []

    @stratabatch.batch(window_ms=50, dedup_key="text", dedup_strategy="exact")
    async def f(texts: list[str]) -> list[int]:
        seen.append(list(texts))
        return [len(t) for t in texts]

    # normalize is on: "Hello  World" and "hello world" are exact twins under dedup_key
    assert await asyncio.gather(f("Hello  World"), f("hello world")) == [12, 12]
    assert seen == [["Hello  World"]]
    # the key may change at run time: texts still come back as texts
    f.processor.dedup_key = "other"
    assert await f("x") == 1 and seen[-1] == ["x"]
    await f.close()


async def test_one_function_takes_one_kind_of_item():
    @stratabatch.batch(dedup_strategy="exact")
    async def f(items: list[Any]) -> list[str]:
        return ["ok" for _ in items]

    assert await f("text") == "ok"
    with pytest.raises(InvalidRequestError, match="takes str items"):
        await f({"query": "text"})
    with pytest.raises(InvalidRequestError, match="item 0: .* takes str or mapping items, got int"):
        await f(3)

    @stratabatch.batch(dedup_strategy="exact")
    async def g(items: list[Any]) -> list[str]:
        return ["ok" for _ in items]

    assert await g({"query": "x"}) == "ok"
    with pytest.raises(InvalidRequestError, match="item 1: .* takes mapping items"):
        await g.many([{"query": "y"}, "y"])
    await f.close()
    await g.close()


async def test_many_keeps_order_merges_twins_and_can_return_exceptions():
    seen: list[list[str]] = []

    @stratabatch.batch(window_ms=50, dedup_strategy="exact")
    async def f(texts: list[str]) -> list[Any]:
        seen.append(list(texts))
        return [ValueError(t) if t == "bad" else t.upper() for t in texts]

    out = await f.many(["a", "b", "a", "bad"], return_exceptions=True)
    assert out[:3] == ["A", "B", "A"] and isinstance(out[3], HandlerError)
    assert seen == [["a", "b", "bad"]]
    with pytest.raises(HandlerError):
        await f.many(["bad"])
    assert await f.many([]) == []
    with pytest.raises(InvalidRequestError, match="many\\(\\) takes a list"):
        await f.many("abc")
    await f.close()


async def test_a_handler_failure_reaches_every_caller_as_handler_error():
    @stratabatch.batch(window_ms=20, dedup_strategy="exact")
    async def f(texts: list[str]) -> list[str]:
        raise KeyError("backend down")

    results = await asyncio.gather(f("a"), f("b"), return_exceptions=True)
    assert all(isinstance(r, HandlerError) and "backend down" in str(r) for r in results)
    await f.close()


class Model:
    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.seen: list[list[str]] = []

    @stratabatch.batch(window_ms=50, dedup_strategy="exact")
    async def run(self, texts: list[str]) -> list[str]:
        self.seen.append(list(texts))
        return [f"{self.tag}:{t}" for t in texts]

    @stratabatch.batch(window_ms=50, dedup_strategy="exact")
    def run_sync(self, texts: list[str]) -> list[str]:
        self.seen.append(list(texts))
        return [f"{self.tag}/{t}" for t in texts]


async def test_methods_get_one_processor_per_instance_and_twins_merge_within_it():
    a, b = Model("a"), Model("b")
    assert a.run is a.run and a.run.processor is a.run.processor
    assert a.run.processor is not b.run.processor
    out = await asyncio.gather(a.run("x"), a.run("x"), b.run("x"), a.run_sync("y"))
    assert out == ["a:x", "a:x", "b:x", "a/y"]
    assert a.seen.count(["x"]) == 1 and ["y"] in a.seen and b.seen == [["x"]]
    assert a.run.stats().duplicates == 1 and b.run.stats().duplicates == 0
    assert isinstance(Model.run, stratabatch.decorator.BatchMethod)  # on the class: the method
    for m in (a.run, a.run_sync, b.run):
        await m.close()


async def test_a_method_processor_does_not_keep_its_instance_alive():
    m = Model("gone")
    assert await m.run("x") == "gone:x"
    proc = m.run.processor
    ref = weakref.ref(m)
    del m
    gc.collect()
    assert ref() is None  # not closed, not collected by hand: the processor holds it weakly
    await proc.close()


async def test_close_drains_and_a_later_call_starts_a_new_processor_with_the_same_options():
    gate = asyncio.Event()

    @stratabatch.batch(window_ms=20, dedup_strategy="exact")
    async def f(texts: list[str]) -> list[str]:
        await gate.wait()
        return texts

    call = asyncio.ensure_future(f("a"))
    await asyncio.sleep(0)
    first = f.processor
    first.window_ms = 7  # tuned at run time
    closing = asyncio.ensure_future(f.close())
    await asyncio.sleep(0.05)
    assert not closing.done()  # close waits for the accepted item
    gate.set()
    await closing
    assert await call == "a"
    assert await f("b") == "b"
    assert f.processor is not first and f.processor.window_ms == 7
    assert f.stats().total_requests == 1
    await f.close()


def test_each_event_loop_gets_a_processor_once_the_previous_loop_has_closed():
    @stratabatch.batch(window_ms=10, dedup_strategy="exact")
    async def f(texts: list[str]) -> list[str]:
        return [t + "!" for t in texts]

    async def use() -> tuple[str, int]:
        return await f("a"), f.stats().total_requests

    assert asyncio.run(use()) == ("a!", 1)
    assert asyncio.run(use()) == ("a!", 1)  # a fresh processor: stats start again
    asyncio.run(f.close())


def test_options_are_checked_when_the_decorator_runs_with_the_processors_errors():
    with pytest.raises(ConfigError) as deco:
        stratabatch.batch(window_ms=-5)
    with pytest.raises(ConfigError) as proc:
        BatchProcessor(window_ms=-5)
    assert str(deco.value) == str(proc.value) == "window_ms must be in (0, 60000], got -5"
    with pytest.raises(ConfigError, match="did you mean 'max_size'"):
        stratabatch.batch(max_sise=3)
    with pytest.raises(ConfigError, match="min_size"):
        stratabatch.batch(min_size=5, max_size=2)


def test_what_the_decorator_refuses():
    with pytest.raises(ConfigError, match="takes one argument, the list of items"):

        @stratabatch.batch
        def three(a: Any, b: Any, c: Any) -> list[Any]:
            return []

    with pytest.raises(ConfigError, match="window_ms: an engine-backed batch function"):
        stratabatch.batch(engine="x", window_ms=5)
    with pytest.raises(ConfigError, match="on_full must be one of wait, reject"):

        @stratabatch.batch(engine="x", on_full="drop_lowest")
        async def f(texts: list[str]) -> list[str]:
            raise NotImplementedError

    with pytest.raises(ConfigError, match="connect_timeout is for an engine-backed"):
        stratabatch.batch(connect_timeout=1.0)


def test_readme_quick_start_shows_the_decorator_first_then_batch_processor():
    section = README.read_text().split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert "@stratabatch.batch(" in blocks[0] and "BatchProcessor" not in blocks[0]
    full = next(b for b in blocks[1:] if "BatchProcessor(" in b)
    out = subprocess.run(
        [sys.executable, "-c", full], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    assert "['answer to Show me my invoice', 'answer to Show me my invoice']" in out
    assert out.strip().endswith("0.3333333333333333")
