"""The careful decoder is for frames with many real array 16/32 headers, not for frames whose
ids, deadlines or numbers merely hold the byte 0xDC or 0xDD (ipc/framelimits.py)."""

from __future__ import annotations

import msgpack
from hypothesis import given, settings
from hypothesis import strategies as st
from msgpack import fallback

from stratabatch.ipc.framelimits import FAST_PATH_BIG_ARRAYS, BoundedUnpacker, _big_array_headers


def _headers(obj: object) -> int:
    """array 16/32 headers msgpack writes for ``obj`` (lists of 16 items or more)."""
    count, stack = 0, [obj]
    while stack:
        o = stack.pop()
        if isinstance(o, list):
            count += len(o) >= 16
            stack.extend(o)
        elif isinstance(o, dict):
            stack.extend(o.values())
    return count


def _decode_spying(data: bytes) -> tuple[object, int]:
    calls: list[int] = []
    real = fallback.unpackb
    fallback.unpackb = lambda *a, **k: calls.append(1) or real(*a, **k)  # type: ignore[assignment]
    try:
        return BoundedUnpacker().unpack(data, "request"), len(calls)
    finally:
        fallback.unpackb = real  # type: ignore[assignment]


def test_bytes_0xdc_in_ids_keep_a_frame_on_the_fast_decoder():
    frame = [[0xDCDDDCDDDCDD + i, 0, 0xDCDC_0000_0000 + i, -1, {"query": "q"}] for i in range(64)]
    data = msgpack.packb(frame)
    assert data.count(0xDC) + data.count(0xDD) > FAST_PATH_BIG_ARRAYS
    value, slow = _decode_spying(data)
    assert value == frame and slow == 0


def test_many_real_array_headers_still_take_the_careful_decoder():
    frame = [[0] * 16 for _ in range(FAST_PATH_BIG_ARRAYS + 1)]
    value, slow = _decode_spying(msgpack.packb(frame))
    assert value == frame and slow == 1


_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=40)
    | st.binary(max_size=300),
    lambda inner: (
        st.lists(inner, max_size=20) | st.dictionaries(st.text(max_size=5), inner, max_size=18)
    ),
    max_leaves=60,
)


@settings(max_examples=300, deadline=None)
@given(_values)
def test_the_walk_counts_the_headers_msgpack_writes(value):
    data = msgpack.packb(value, use_bin_type=True)
    assert _big_array_headers(data, 10**9) == _headers(value)
