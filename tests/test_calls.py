"""The call bookkeeping both front ends share (stratabatch.calls)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from stratabatch import Completed, InvalidRequestError
from stratabatch.calls import Call, check_vector


async def test_a_list_call_answers_once_in_order_with_refusals_in_place():
    fut = asyncio.get_running_loop().create_future()
    err = InvalidRequestError("request 1: no")
    call = Call(["a", "b", "c"], fut, return_exceptions=True)
    call.refuse(1, err)
    call.deliver(2, "C", None)
    assert not fut.done()
    call.deliver(0, "A", None)
    assert await fut == ["A", err, "C"]


async def test_a_call_left_empty_by_refusals_is_answered_at_once():
    fut = asyncio.get_running_loop().create_future()
    call = Call(["a"], fut, return_exceptions=True)
    call.refuse(0, InvalidRequestError("x"))
    call.settle_if_done()
    assert len(await fut) == 1


async def test_the_first_error_fails_the_call_without_return_exceptions():
    fut = asyncio.get_running_loop().create_future()
    call = Call(["a", "b"], fut, return_exceptions=False)
    call.deliver(1, None, RuntimeError("boom"))
    call.deliver(0, "A", None)  # (after the call failed: goes nowhere)
    with pytest.raises(RuntimeError, match="boom"):
        await fut


def test_a_stream_gets_one_completed_per_outcome_with_its_merge():
    q: asyncio.Queue = asyncio.Queue()
    call = Call(["a", "a2", "b"], None, True, q)
    call.deliver(0, "A", None)
    call.deliver(1, "A", None, merged=0, similarity=1.0)
    call.deliver(2, "B", None, merged=-1, similarity=0.9)
    got = [q.get_nowait() for _ in range(3)]
    assert got == [
        Completed(0, "a", "A", None, None),
        Completed(1, "a2", "A", 0, 1.0),
        Completed(2, "b", "B", -1, 0.9),
    ]


@pytest.mark.parametrize(
    ("vec", "dim", "says"),
    [
        ([[1.0, 2.0]], None, "1-D"),
        ([], None, "empty"),
        ([1.0, 2.0], 3, "dimension 2, the embedder uses 3"),
        ([1.0, float("nan")], None, "NaN"),
        ([0.0, 0.0], None, "zero vector"),
        (["a", "b"], None, "real numbers"),
        ("text", None, "list of numbers"),
    ],
)
def test_check_vector_has_one_set_of_messages(vec, dim, says):
    with pytest.raises(InvalidRequestError, match=r"request 4: bad 'embedding' field: .*" + says):
        check_vector(vec, dim, 4)


def test_check_vector_returns_a_unit_float32_vector():
    v = check_vector([3.0, 4.0], 2, 0)
    assert v.dtype == np.float32 and np.allclose(v, [0.6, 0.8])
