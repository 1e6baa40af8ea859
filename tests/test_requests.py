"""The request rule (stratabatch.requests) and the engine's frame limits derived from it: every
request the rule lets through decodes in the engine, every result within ``max_result_bytes``
reaches the client, and the response ring holds it."""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stratabatch import BatchProcessor, ConfigError, InvalidRequestError, RequestTooLargeError
from stratabatch.cli import build_parser, options_from
from stratabatch.config import BatchConfig
from stratabatch.ipc.errors import FrameError, FrameTooLargeError
from stratabatch.ipc.frames import (
    MAX_DEADLINE_NS,
    MAX_ID,
    MAX_ROW,
    MIN_PRIORITY,
    STATUS_OK,
    FrameDecoder,
    FrameEncoder,
    FrameLimits,
)
from stratabatch.requests import MAX_DEPTH, check_payload
from stratabatch.server import FRAME_OVERHEAD, frame_limits, ring_capacity


def nested(levels: int, leaf: Any = 1) -> Any:
    value = leaf
    for i in range(levels):
        value = [value] if i % 2 else {"k": value}
    return value


def client_frame(
    blob: bytes,
    rid: int = MAX_ID,
    priority: int = MIN_PRIORITY,
    deadline_ns: int = MAX_DEADLINE_NS,
    row: int = MAX_ROW,
) -> bytes:
    """A request frame as the engine's client writes it: the checked payload spliced in after
    the four integers (the largest of each by default: the longest header)."""
    pack = msgpack.Packer(use_bin_type=True).pack
    return b"\x95" + pack(rid) + pack(priority) + pack(deadline_ns) + pack(row) + blob


def exact(size: int, shape: str) -> Any:
    """A str, bin or list (of nils: one byte an item) that encodes to exactly ``size`` bytes:
    as long as that many bytes allow."""
    for header in (1, 2, 3, 5):
        n = size - header
        value = "s" * n if shape == "str" else b"b" * n if shape == "bin" else [None] * n
        if len(msgpack.packb(value, use_bin_type=True)) == size:
            return value
    raise AssertionError(f"no {shape} of {size} bytes")


def _keys(n: int) -> list[str]:
    """``n`` distinct str keys, the shortest first (one ASCII character, then two, ...)."""
    out: list[str] = []
    for length in (1, 2, 3):
        for chars in itertools.product(map(chr, range(128)), repeat=length):
            out.append("".join(chars))
            if len(out) == n:
                return out
    return out


def fill(size: int, shape: str) -> dict[str, Any]:
    """A request of exactly ``size`` encoded bytes whose ``x`` is a str, bin, list or map
    about as long as that size allows: the worst case for the frame decoder's length limits."""
    if shape != "map":
        return {"x": exact(size - 3, shape)}  # a fixmap header and the key "x" take 3 bytes
    pairs = size // 6  # a pair takes 3 to 5 bytes: keys of 1 to 3 characters, a nil
    while True:
        req = {"x": dict.fromkeys(_keys(pairs)), "p": ""}
        for _ in range(4):
            pad = len(req["p"]) + size - len(msgpack.packb(req))
            if pad < 0:
                break
            req["p"] = "p" * pad
        if len(msgpack.packb(req)) == size:
            return req
        pairs -= 1  # no pad length gives the size exactly (a str header grew): one pair less


def depth(value: Any) -> int:
    """Levels of containers in ``value`` (0 for a scalar; an empty container is one)."""
    if isinstance(value, dict):
        return 1 + max(map(depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(depth, value), default=0)
    return 0


# ---------------------------------------------------------------- the request rule


def test_a_request_may_nest_64_levels_its_own_mapping_being_the_first():
    assert MAX_DEPTH == 64
    check_payload({"v": nested(MAX_DEPTH - 1)}, 0, 1 << 20)
    with pytest.raises(InvalidRequestError, match="request 3: .* nest at most 64 levels"):
        check_payload({"v": nested(MAX_DEPTH)}, 3, 1 << 20)
    # empty containers count as well (the decoder counts them)
    check_payload({"v": nested(MAX_DEPTH - 2, [])}, 0, 1 << 20)
    with pytest.raises(InvalidRequestError, match="64 levels"):
        check_payload({"v": nested(MAX_DEPTH - 1, {})}, 0, 1 << 20)


def test_a_numpy_array_counts_one_level_per_dimension():
    # it travels as nested lists, so it nests as deep as those
    check_payload({"v": nested(60, np.zeros((1, 1, 1)))}, 0, 1 << 20)
    with pytest.raises(InvalidRequestError, match="numpy array of 3 dimensions"):
        check_payload({"v": nested(61, np.zeros((1, 1, 1)))}, 0, 1 << 20)
    check_payload({"embedding": np.ones(384, dtype=np.float32), "s": np.float32(1)}, 0, 1 << 20)


def test_other_refusals_keep_their_messages():
    with pytest.raises(InvalidRequestError, match="map key 1 is a int; map keys must be str"):
        check_payload({"a": [{1: 2}]}, 0, 1 << 20)
    with pytest.raises(InvalidRequestError, match="not msgpack-serializable"):
        check_payload({"a": {1, 2}}, 0, 1 << 20)
    with pytest.raises(RequestTooLargeError, match="encodes to 101 bytes, over max_request_bytes"):
        check_payload(fill(101, "str"), 0, 100)


async def test_embedded_mode_refuses_what_is_too_deep_and_serves_long_containers():
    async def handler(reqs: list) -> list:
        return [len(r.get("x", ())) for r in reqs]

    async with BatchProcessor(handler, window_ms=2, dedup_strategy="exact") as batch:
        assert await batch.process({"x": list(range(100_000))}) == 100_000
        with pytest.raises(InvalidRequestError, match="64 levels"):
            await batch.process({"x": nested(MAX_DEPTH)})


# ---------------------------------------------------------------- derived frame limits

SIZES = [64, 1000, 70_000, 1 << 20, 64 << 20]


@pytest.mark.parametrize(
    "size, shape",
    [
        (size, shape)
        for size in SIZES
        for shape in ("str", "bin", "list", "map")
        if size < 64 << 20 or shape in ("str", "bin")
    ],  # 64 Mi items would take GBs of memory
)
def test_every_request_within_the_rule_decodes_in_the_engine(size, shape):
    limits = frame_limits(BatchConfig(max_request_bytes=size))
    request = fill(size, shape)
    blob = check_payload(request, 0, size)
    assert len(blob) == size
    decoded = FrameDecoder(limits).request(client_frame(blob))
    assert decoded.payload == request
    with pytest.raises(RequestTooLargeError):
        check_payload(fill(size + 1, shape), 0, size)


def test_the_deepest_request_decodes_in_the_engine():
    limits = frame_limits(BatchConfig())
    assert limits.max_depth == MAX_DEPTH + 1  # the frame's own array is one more level
    request = {"v": nested(MAX_DEPTH - 1)}
    assert (
        FrameDecoder(limits).request(client_frame(check_payload(request, 0, 1 << 20))).payload
        == request
    )


def test_the_engine_decoder_refuses_a_payload_over_max_request_bytes():
    # what a client that skipped the rule would send: answered as a malformed frame
    limits = frame_limits(BatchConfig(max_request_bytes=1000))
    dec = FrameDecoder(limits)
    assert dec.request(client_frame(msgpack.packb(fill(1000, "str")))).payload
    with pytest.raises(FrameError, match="payload is 1001 bytes, over max_request_bytes=1000"):
        dec.request(client_frame(msgpack.packb(fill(1001, "str"))))


_SETTINGS = settings(
    deadline=None,
    max_examples=150,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
_leaves = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=40)
    | st.binary(max_size=40)
)
_values = st.recursive(
    _leaves,
    lambda inner: (
        st.lists(inner, max_size=8) | st.dictionaries(st.text(max_size=6), inner, max_size=8)
    ),
    max_leaves=60,
)


@_SETTINGS
@given(
    request=st.dictionaries(st.text(max_size=6), _values, max_size=6),
    levels=st.integers(0, 70),
    limit=st.integers(64, 4096),
)
def test_property_the_engine_decodes_whatever_the_rule_accepts(request, levels, limit):
    request = {**request, "deep": nested(levels)}
    try:
        blob = check_payload(request, 0, limit)
    except InvalidRequestError:
        assert depth(request) > MAX_DEPTH or len(msgpack.packb(request)) > limit
        return
    assert depth(request) <= MAX_DEPTH
    decoded = FrameDecoder(frame_limits(BatchConfig(max_request_bytes=limit))).request(
        client_frame(blob)
    )
    assert msgpack.packb(decoded.payload) == blob


# ---------------------------------------------------------------- results


@pytest.mark.parametrize(
    "request_bytes, result_bytes", [(1 << 20, 1 << 20), (4096, 3_000_000), (8 << 20, 64), (64, 64)]
)
def test_a_result_of_max_result_bytes_reaches_the_client_and_one_byte_more_does_not(
    request_bytes, result_bytes
):
    config = BatchConfig(max_request_bytes=request_bytes, max_result_bytes=result_bytes)
    limits = frame_limits(config)
    engine_enc = FrameEncoder(limits)
    # the client builds its decoder from the handshake's copy of the limits
    client_dec = FrameDecoder(FrameLimits(**dataclasses.asdict(limits)))
    max_frame = ring_capacity(limits.max_frame_bytes) // 2 - 8  # what a ring carries
    meta = {"leader": MAX_ID, "similarity": 0.5}
    for shape in ("str", "bin", "list"):
        result = exact(result_bytes, shape)
        frame = engine_enc.ok(MAX_ID, result, meta)
        assert len(frame) <= limits.max_frame_bytes <= max_frame
        assert client_dec.response(frame).value == result
    with pytest.raises(FrameTooLargeError, match=f"over max_result_bytes={result_bytes}"):
        engine_enc.ok(1, exact(result_bytes + 1, "str"), meta)
    with pytest.raises(FrameTooLargeError, match=f"over max_result_bytes={result_bytes}"):
        engine_enc.ok(1, "r" * 2 * limits.max_frame_bytes)
    # an error answer is not a result: its message has room whatever the options
    err = engine_enc.error(1, "HandlerError", "e" * 10_000, {"exc_message": "e" * 4000})
    assert client_dec.response(err).status != STATUS_OK


def test_results_have_the_container_limits_of_requests():
    limits = frame_limits(BatchConfig())
    engine_enc, client_dec = FrameEncoder(limits), FrameDecoder(limits)
    for result in (
        nested(MAX_DEPTH),
        nested(MAX_DEPTH - 1, []),
        list(range(100_000)),
        {str(i): i for i in range(100_000)},
    ):
        assert client_dec.response(engine_enc.ok(1, result)).value == result
    with pytest.raises(FrameError, match="result nests containers more than 64 levels deep"):
        engine_enc.ok(1, nested(MAX_DEPTH, []))


def test_frame_overhead_covers_the_largest_headers():
    limits = FrameLimits(max_frame_bytes=1 << 20)
    enc = FrameEncoder(limits)
    request_header = len(enc.request(MAX_ID, MIN_PRIORITY, MAX_DEADLINE_NS, MAX_ROW, None)) - 1
    response_header = len(enc.ok(MAX_ID, None, {"leader": MAX_ID, "similarity": 0.5})) - 1
    assert max(request_header, response_header) <= FRAME_OVERHEAD


def test_max_result_bytes_is_an_option_and_an_engine_flag():
    assert BatchConfig().max_result_bytes == 1 << 20
    with pytest.raises(ConfigError, match=r"max_result_bytes must be in \[64, 67108864\]") as e:
        BatchProcessor(max_result_bytes=10)
    assert e.value.field == "max_result_bytes"
    assert BatchConfig.allowed("max_result_bytes") == "[64, 67108864]"
    args = build_parser().parse_args(["--handler", "x:y", "--max-result-bytes", "5000"])
    assert options_from(args) == {"max_result_bytes": 5000}


# ---------------------------------------------------------------- size without encoding

_BOUNDARY_LENGTHS = (0, 1, 31, 32, 255, 256, 65535, 65536)
_BOUNDARY_INTS = (
    -(2**63), -(2**63) + 1, -(2**31) - 1, -(2**31), -32769, -32768, -129, -128, -33, -32,
    0, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**64 - 1,
)  # fmt: skip

_flat_values = st.one_of(
    st.text(alphabet=st.characters(max_codepoint=127), max_size=300),
    st.sampled_from(_BOUNDARY_LENGTHS).map(lambda n: "x" * n),
    st.sampled_from(_BOUNDARY_LENGTHS).map(lambda n: b"y" * n),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.sampled_from(_BOUNDARY_INTS),
    st.floats(allow_nan=False),
    st.booleans(),
    st.none(),
)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.one_of(
            st.text(alphabet=st.characters(max_codepoint=127), max_size=40),
            st.sampled_from(_BOUNDARY_LENGTHS[:6]).map(lambda n: "k" * n),
        ),
        _flat_values,
        max_size=15,
    )
)
def test_property_flat_size_is_the_encoders_size_to_the_byte(request):
    from stratabatch.requests import flat_size

    assert flat_size(request) == len(msgpack.packb(request))


def test_flat_size_leaves_every_other_request_to_the_encoder():
    from stratabatch.requests import flat_size

    for other in (
        {"q": "é"},  # not ASCII: its UTF-8 length is not its length
        {"é": 1},
        {1: "int key"},
        {"q": 2**64},  # msgpack cannot carry it: the encoder says why
        {"q": -(2**63) - 1},
        {"q": [1]},
        {"q": {"n": 1}},
        {"q": np.float32(1.0)},
        {f"k{i}": i for i in range(16)},  # a map16 header
        [("q", 1)],
    ):
        assert flat_size(other) is None, other


@pytest.mark.parametrize("limit", [64, 100, 1000])
async def test_the_size_limit_holds_to_the_byte_for_requests_sized_without_encoding(limit):
    """A flat request of exactly max_request_bytes is served; one byte more is refused with
    the encoder's size in the message, in both the fast and the encoding path."""

    async def handler(reqs):
        return [len(r["query"]) for r in reqs]

    async with BatchProcessor(handler, enable_dedup=False, max_request_bytes=limit) as bp:
        for extra in ({}, {"q": "é"}):  # flat (sized without encoding), and encoded
            base = {"query": "", **extra}
            fill = limit - len(msgpack.packb(base))
            while len(msgpack.packb({**base, "query": "a" * fill})) > limit:
                fill -= 1  # (a longer str may take a longer header)
            fits = {**base, "query": "a" * fill}
            assert await bp.process(fits) == fill
            over = {**base, "query": "a" * (fill + 1)}
            size = len(msgpack.packb(over))
            assert size > limit
            with pytest.raises(RequestTooLargeError, match=f"encodes to {size} bytes"):
                await bp.process(over)
            assert check_payload(fits, 0, limit)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.text(max_size=40),
        st.one_of(_flat_values, st.text(max_size=40), st.integers()),
        max_size=20,
    )
)
def test_property_the_flat_packer_writes_the_checked_encoding_or_fails(request):
    """What a client sends for a flat request without the full check (requests.flat_packer)
    is check_payload's payload; a request it cannot encode (an int past 64 bits) goes to the
    full check for its message."""
    from stratabatch.requests import FLAT_SCALARS, STR_KEYS, flat_packer

    assert FLAT_SCALARS.issuperset(map(type, request.values()))
    assert STR_KEYS.issuperset(map(type, request))
    try:
        blob = flat_packer()(request)
    except (TypeError, ValueError, OverflowError):
        with pytest.raises(InvalidRequestError, match="not msgpack-serializable"):
            check_payload(request, 0, 1 << 30)
    else:
        assert blob == check_payload(request, 0, 1 << 30)
