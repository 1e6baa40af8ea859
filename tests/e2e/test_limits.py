"""Request and result limits against a real engine and the embedded processor: one request
rule in both modes (size, depth; container lengths follow from the size), and results with
their own documented limit, ``max_result_bytes``, in engine mode."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest

from stratabatch import BatchProcessor, HandlerError, InvalidRequestError, RequestTooLargeError
from stratabatch.client import EngineClient

from .limit_handlers import nested, shaped

REQUEST_LIMIT = 1 << 20  # the default max_request_bytes
RESULT_LIMIT = 3_000_000  # well above the request limit: the response ring must hold it


def _padded(query: str, size: int) -> dict[str, Any]:
    """A request that encodes to exactly ``size`` bytes."""
    req = {"query": query, "pad": ""}
    base = len(msgpack.packb(req))
    pad = size - base
    for _ in range(3):  # the str header grows with the length
        req["pad"] = "p" * pad
        pad += size - len(msgpack.packb(req))
    assert len(msgpack.packb(req)) == size
    return req


SERVED = [
    # (request, what the handler reports back)
    ({"query": "list", "items": list(range(70_000))}, {"items": 70_000, "levels": 0}),
    (
        {"query": "map", "items": {f"k{i}": i for i in range(70_000)}},
        {"items": 70_000, "levels": 0},
    ),
    ({"query": "deep 31", "v": nested(31)}, {"items": 0, "levels": 31}),
    # the request's own mapping is level 1, so 63 more levels make the most it may nest: 64
    ({"query": "deep 63", "v": nested(63)}, {"items": 0, "levels": 63}),
    (_padded("exactly at the limit", REQUEST_LIMIT), {"items": 0, "levels": 0}),
]
REFUSED = [
    (
        {"query": "deep 64", "v": nested(64)},
        InvalidRequestError,
        "nest at most 64 levels of containers",
    ),
    (
        _padded("one byte over", REQUEST_LIMIT + 1),
        RequestTooLargeError,
        f"encodes to {REQUEST_LIMIT + 1} bytes, over max_request_bytes={REQUEST_LIMIT}",
    ),
]


async def _check_requests(process) -> None:
    for request, expected in SERVED:
        result = await process(request, timeout=60)
        assert result == {"query": request["query"], **expected}
    for request, error, match in REFUSED:
        with pytest.raises(error, match=match):
            await process(request, timeout=60)
    # a refused request fails only itself, and before anything was sent
    out = await process([{"query": "fine"}, REFUSED[0][0]], timeout=60, return_exceptions=True)
    assert out[0]["query"] == "fine" and isinstance(out[1], InvalidRequestError)


async def test_the_engine_serves_every_request_the_embedded_mode_serves(start_engine):
    eng = start_engine(
        "--window-ms", "5", "--dedup-strategy", "exact", handler="tests.e2e.limit_handlers:shaped"
    )
    async with EngineClient(eng.name) as client:
        await _check_requests(client.process)
    assert "malformed" not in eng.log()


async def test_embedded_mode_applies_the_same_request_rule():
    async with BatchProcessor(shaped, window_ms=5, dedup_strategy="exact") as batch:
        await _check_requests(batch.process)


async def test_results_have_their_own_limit_named_in_the_error(start_engine):
    eng = start_engine(
        "--window-ms",
        "5",
        "--dedup-strategy",
        "exact",
        "--max-result-bytes",
        str(RESULT_LIMIT),
        handler="tests.e2e.limit_handlers:shaped",
    )
    at_limit = RESULT_LIMIT - 5  # a str32 header takes 5 bytes
    async with EngineClient(eng.name) as client:
        # larger than any request may be: the response ring holds it
        assert (
            await client.process({"query": "a", "result_chars": at_limit}, timeout=60)
            == "r" * at_limit
        )
        with pytest.raises(HandlerError) as err:
            await client.process({"query": "b", "result_chars": at_limit + 1}, timeout=60)
        assert f"over max_result_bytes={RESULT_LIMIT}" in str(err.value)
        assert "--max-result-bytes" in str(err.value)
        with pytest.raises(HandlerError, match=f"max_result_bytes={RESULT_LIMIT}"):
            await client.process({"query": "c", "result_chars": 10 * RESULT_LIMIT}, timeout=60)
        # the same container limits as requests: lengths follow from the size, 64 levels
        assert await client.process({"query": "d", "result_items": 70_000}, timeout=60) == list(
            range(70_000)
        )
        assert await client.process({"query": "e", "result_levels": 64}, timeout=60) == nested(64)
        with pytest.raises(HandlerError, match="nests containers more than 64 levels deep"):
            await client.process({"query": "f", "result_levels": 65}, timeout=60)
        # a result that fails fails only its own request
        out = await client.process(
            [{"query": "g"}, {"query": "h", "result_chars": 10**7}],
            timeout=60,
            return_exceptions=True,
        )
        assert out[0]["query"] == "g" and isinstance(out[1], HandlerError)
        stats = client.get_stats()
    assert stats.errors == 4


async def test_embedded_results_have_no_size_limit():
    # results are handed over by reference in-process: max_result_bytes applies where a result
    # crosses a ring (engine mode), as the README's option table says
    async with BatchProcessor(
        shaped, window_ms=5, dedup_strategy="exact", max_result_bytes=1000
    ) as batch:
        assert await batch.process({"query": "a", "result_chars": 5000}) == "r" * 5000
        assert await batch.process({"query": "b", "result_levels": 65}) == nested(65)
