"""The batch handler of the limit tests (``--handler tests.e2e.limit_handlers:shaped``).

Each request says what shape of result it wants, so one engine serves every case.
"""

from __future__ import annotations

from typing import Any


def nested(levels: int, leaf: Any = 1) -> Any:
    """``leaf`` inside ``levels`` containers, alternating lists and str-keyed maps."""
    value = leaf
    for i in range(levels):
        value = [value] if i % 2 else {"k": value}
    return value


def shaped_result(request: dict) -> Any:
    """The result ``request`` asks for: a str of ``result_chars`` characters, a list of
    ``result_items`` ints, a value nested ``result_levels`` containers deep, or a summary of
    the request itself (how many ``items`` arrived, and how deep its ``v`` nests)."""
    if "result_chars" in request:
        return "r" * request["result_chars"]
    if "result_items" in request:
        return list(range(request["result_items"]))
    if "result_levels" in request:
        return nested(request["result_levels"])
    return {
        "query": request.get("query"),
        "items": len(request.get("items", ())),
        "levels": _levels(request.get("v")),
    }


def _levels(value: Any) -> int:
    level = 0
    while isinstance(value, (dict, list)) and value:
        level += 1
        value = next(iter(value.values())) if isinstance(value, dict) else value[-1]
    return level


async def shaped(requests: list) -> list:
    """Answer each request with :func:`shaped_result`."""
    return [shaped_result(r) for r in requests]
