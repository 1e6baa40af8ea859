"""Frame limits and their enforcement: what a msgpack value may hold, on both sides of a ring.

:class:`FrameLimits` bounds every frame: its size, the length of each str, bin, array and map,
how deep containers nest, and, optionally, the encoded size of a request's payload and of an
ok response's result. This module enforces those bounds twice:

* **Outgoing** (:func:`check_value`, :func:`find_problem`): before a frame is sent, its free
  values (a payload, a result, meta) are checked for types, map keys and nesting the decoder
  would refuse, so a bad value fails in the caller with a message naming its path.
* **Incoming** (:class:`BoundedUnpacker`): untrusted bytes become one msgpack value without
  ever claiming unbounded memory or recursion. Nothing is unpickled, no ext type is accepted
  and map keys must be str or bytes (``strict_map_key``). msgpack's C decoder pre-allocates a
  list for every array header before its items arrive (up to 10,000 slots from msgpack 1.1,
  the full declared length before), so a few bytes of nested ``array 16/32`` headers can claim
  megabytes. A frame holding more than :data:`FAST_PATH_BIG_ARRAYS` such headers is therefore
  decoded with msgpack's pure-Python decoder, which grows lists as items arrive. Most frames
  hold no byte that could start one (a count of two byte values tells); one that does (an
  id, a deadline, a number holding the byte 0xDC or 0xDD) has its token stream walked to count
  the real headers, so only a frame with many keeps away from the C decoder. With an older
  msgpack, which reserves the full declared length, the number of such headers allowed on the
  fast path shrinks as ``max_array_len`` grows, so the reserve stays within the same bound.
  msgpack has no nesting limit of its own (the C decoder stops at 1024 levels, the
  pure-Python one at the recursion limit), so a decoded frame is walked once, without
  recursion, against :attr:`FrameLimits.max_depth`.

The frame layout itself (fields, ranges, statuses) lives in :mod:`stratabatch.ipc.frames`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack
from msgpack import fallback as _msgpack_fallback

from stratabatch.ipc.errors import FrameError

FAST_PATH_BIG_ARRAYS = 16
"""Most bytes that could open an ``array 16/32`` header a frame may hold and still be decoded
by msgpack's C decoder (fewer when ``max_array_len`` is large and msgpack is older than 1.1:
see :data:`FAST_PATH_RESERVE_BYTES`)."""

FAST_PATH_RESERVE_BYTES = 16 * 65_536 * 8
"""Most bytes of list slots msgpack's C decoder may reserve for one frame's array headers
before their items arrive (8 MiB: 16 headers of 65,536 slots)."""

_RESERVE_CAP = 10_000 if msgpack.version >= (1, 1, 0) else None
"""Most slots msgpack's C decoder reserves per array header: 10,000 from msgpack 1.1, the
declared length (up to ``max_array_len``) before."""

_REPR_CHARS = 60


@dataclass(frozen=True)
class FrameLimits:
    """Explicit bounds every decoded frame must satisfy (the encoder checks the same ones).

    Attributes:
        max_frame_bytes: Largest encoded frame.
        max_str_len: Longest string, in UTF-8 bytes.
        max_bin_len: Longest binary value, in bytes.
        max_array_len: Most items in one array.
        max_map_len: Most pairs in one map.
        max_depth: Deepest container nesting of a whole frame; the frame's own array is
            level 1, so a request payload may nest ``max_depth - 1`` levels.
        max_request_bytes: Largest encoded payload of a request frame (the request's own
            msgpack bytes, the frame's header not counted), or None for no bound but
            ``max_frame_bytes``.
        max_result_bytes: Largest encoded value of an ok response frame (the result's own
            msgpack bytes), or None for no bound but ``max_frame_bytes``.
    """

    max_frame_bytes: int = 1 << 20
    max_str_len: int = 1 << 20
    max_bin_len: int = 1 << 20
    max_array_len: int = 65_536
    max_map_len: int = 65_536
    max_depth: int = 32
    max_request_bytes: int | None = None
    max_result_bytes: int | None = None

    def __post_init__(self) -> None:
        for name in (
            "max_frame_bytes",
            "max_str_len",
            "max_bin_len",
            "max_array_len",
            "max_map_len",
            "max_request_bytes",
            "max_result_bytes",
        ):
            value = getattr(self, name)
            if value is None and name in ("max_request_bytes", "max_result_bytes"):
                continue
            if type(value) is not int or not 1 <= value <= 2**31 - 1:
                raise ValueError(f"{name} must be an integer in [1, 2**31 - 1], got {value!r}")
        if self.max_array_len < 5:
            raise ValueError(
                f"max_array_len must be at least 5 (a request frame is an array of 5), "
                f"got {self.max_array_len}"
            )
        if type(self.max_depth) is not int or not 2 <= self.max_depth <= 512:
            raise ValueError(f"max_depth must be an integer in [2, 512], got {self.max_depth!r}")


DEFAULT_LIMITS = FrameLimits()
"""The limits used when none are given: 1 MiB frames, 64 Ki items, nesting 32, no payload or
result bound but the frame's (the engine derives its own from its options)."""


def int_size(value: int) -> int:
    """Bytes of msgpack's shortest encoding of the integer ``value`` (what msgpack writes)."""
    if -32 <= value <= 127:
        return 1
    if value >= 0:
        return 2 if value <= 0xFF else 3 if value <= 0xFFFF else 5 if value <= 0xFFFFFFFF else 9
    return 2 if value >= -128 else 3 if value >= -32_768 else 5 if value >= -(2**31) else 9


def short_repr(value: Any) -> str:
    """Return ``repr(value)``, cut to a length that keeps error messages readable."""
    text = repr(value)
    return text if len(text) <= _REPR_CHARS else text[: _REPR_CHARS - 3] + "..."


# ---------------------------------------------------------------------- outgoing values

_BINARY = (bytes, bytearray, memoryview)
FLAT_SCALARS = frozenset({str, int, float, bool, type(None), bytes})
"""The plain scalar types: a value of one of them needs no walk to be carried."""
_STR_ONLY = frozenset({str})


def is_flat_map(value: dict[Any, Any]) -> bool:
    """Whether ``value`` maps str keys to plain scalars only (str, int, float, bool, None,
    bytes): no type, key or nesting problem is possible, and two C-level scans tell."""
    return FLAT_SCALARS.issuperset(map(type, value.values())) and _STR_ONLY.issuperset(
        map(type, value)
    )


def check_value(value: Any, limits: FrameLimits, level: int, what: str) -> None:
    """Raise FrameError if ``value`` holds a type, map key or nesting the decoder refuses.

    Lengths are not checked here: the encoder checks them with :func:`find_problem` once the
    frame's size shows they could matter.

    Args:
        value: The value to send.
        limits: The limits the frame must respect.
        level: Nesting level a container ``value`` would have (the frame array is level 1).
        what: Name of the value in error messages, e.g. ``"payload"``.

    Raises:
        FrameError: The value cannot be carried; the message names the offending path.
    """
    t = type(value)
    if t is dict:
        if is_flat_map(value):  # the usual request: settled in two C-level scans
            return
    elif t in FLAT_SCALARS:
        return
    if not _plainly_fine(value, limits.max_depth, level):
        problem = find_problem(value, limits, level, what)
        if problem is not None:
            raise FrameError(problem)


def _plainly_fine(value: Any, max_depth: int, level: int) -> bool:
    """Check types, keys and depth of nested values; False means "look closer"."""
    stack = [(value, level)]
    while stack:
        obj, lvl = stack.pop()
        t = type(obj)
        if t is dict:
            if lvl > max_depth or not _STR_ONLY.issuperset(map(type, obj)):
                return False
            items = obj.values()
        elif t is list or t is tuple:
            if lvl > max_depth:
                return False
            items = obj
        else:
            return t in FLAT_SCALARS
        for item in items:
            t = type(item)
            if t is dict or t is list or t is tuple:
                stack.append((item, lvl + 1))
            elif t not in FLAT_SCALARS:
                return False
    return True


def find_problem(value: Any, limits: FrameLimits, level: int, what: str) -> str | None:
    """Describe the first thing in ``value`` the decoder would refuse, or return None.

    Walks ``value`` without recursion and checks everything: types, map keys, nesting and
    the length of every str, bin, array and map.

    Args:
        value: The value to send.
        limits: The limits the frame must respect.
        level: Nesting level a container ``value`` would have (the frame array is level 1).
        what: Name of the value, the root of the paths in the description.
    """
    stack: list[tuple[Any, int, str]] = [(value, level, what)]
    while stack:
        obj, lvl, path = stack.pop()
        if isinstance(obj, str):
            size = len(obj.encode("utf-8", "surrogatepass"))
            if size > limits.max_str_len:
                return (
                    f"{path} is a str of {size} UTF-8 bytes, over max_str_len={limits.max_str_len}"
                )
        elif isinstance(obj, _BINARY):
            size = memoryview(obj).nbytes
            if size > limits.max_bin_len:
                return f"{path} is {size} bytes of binary, over max_bin_len={limits.max_bin_len}"
        elif obj is None or isinstance(obj, (int, float)):
            pass
        elif isinstance(obj, (dict, list, tuple)) and not isinstance(obj, msgpack.ExtType):
            if lvl > limits.max_depth:
                return (
                    f"{what} nests containers more than {limits.max_depth - level + 1} levels "
                    f"deep (frame max_depth={limits.max_depth}, the frame's own array being "
                    f"level 1)"
                )
            if isinstance(obj, dict):
                if len(obj) > limits.max_map_len:
                    return (
                        f"{path} is a map of {len(obj)} pairs, over "
                        f"max_map_len={limits.max_map_len}"
                    )
                for key, item in obj.items():
                    if not isinstance(key, (str, bytes)):
                        return (
                            f"{path} has a {type(key).__name__} key {short_repr(key)}; "
                            f"map keys must be str or bytes"
                        )
                    stack.append((key, lvl + 1, f"{path} key {short_repr(key)}"))
                    stack.append((item, lvl + 1, f"{path}[{short_repr(key)}]"))
            else:
                if len(obj) > limits.max_array_len:
                    return (
                        f"{path} is an array of {len(obj)} items, over "
                        f"max_array_len={limits.max_array_len}"
                    )
                stack.extend((item, lvl + 1, f"{path}[{i}]") for i, item in enumerate(obj))
        else:
            return (
                f"{path} is a {type(obj).__module__}.{type(obj).__qualname__}, which frames "
                f"cannot carry (allowed: dict, list, tuple, str, bytes, int, float, bool, None)"
            )
    return None


# ---------------------------------------------------------------------- incoming bytes


def _refuse_ext(code: int, data: bytes) -> Any:
    raise ValueError(f"msgpack ext type {code} is not allowed in frames")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, msgpack.ExtraData):
        return "trailing bytes after the frame's msgpack object"
    if isinstance(exc, msgpack.StackError) or isinstance(exc, RecursionError):
        return "containers nested deeper than msgpack can decode"
    if isinstance(exc, msgpack.OutOfData):
        return "incomplete input"
    if isinstance(exc, UnicodeDecodeError):
        return f"a string is not valid UTF-8 ({exc.reason} at byte {exc.start})"
    if isinstance(exc, msgpack.FormatError):
        return f"invalid msgpack ({exc})" if str(exc) else "invalid msgpack type byte"
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


# msgpack token sizes by first byte: >= 0 a fixed size; -1 a str/bin with a 1, 2 or 4-byte
# length after the type byte (see _LEN); -2 an array 16/32 header; -3 never valid here (0xc1
# and every ext type: the decoder refuses them anyway)
_TOKEN = [1] * 256
for _b in range(0xA0, 0xC0):
    _TOKEN[_b] = 1 + (_b & 0x1F)  # fixstr
for _b, _n in {
    0xC1: -3,
    0xC4: -1,
    0xC5: -1,
    0xC6: -1,
    0xC7: -3,
    0xC8: -3,
    0xC9: -3,
    0xCA: 5,
    0xCB: 9,
    0xCC: 2,
    0xCD: 3,
    0xCE: 5,
    0xCF: 9,
    0xD0: 2,
    0xD1: 3,
    0xD2: 5,
    0xD3: 9,
    0xD4: -3,
    0xD5: -3,
    0xD6: -3,
    0xD7: -3,
    0xD8: -3,
    0xD9: -1,
    0xDA: -1,
    0xDB: -1,
    0xDC: -2,
    0xDD: -2,
    0xDE: 3,
    0xDF: 5,
}.items():
    _TOKEN[_b] = _n
_LEN = {0xC4: 1, 0xC5: 2, 0xC6: 4, 0xD9: 1, 0xDA: 2, 0xDB: 4}  # str/bin: bytes of the length


def _big_array_headers(data: bytes, limit: int) -> int:
    """How many ``array 16/32`` headers ``data`` holds as msgpack tokens (a walk over its
    token stream, not its bytes: an id's or a deadline's byte 0xDC is no header), or
    ``limit + 1`` as soon as there are more, or the stream is not one the decoder would take
    (then the careful decoder reads it, and says what is wrong)."""
    token = _TOKEN
    n = len(data)
    i = 0
    found = 0
    while i < n:
        b = data[i]
        size = token[b]
        if size > 0:
            i += size
        elif size == -1:
            w = _LEN[b]
            if i + w >= n:
                return limit + 1
            i += 1 + w + int.from_bytes(data[i + 1 : i + 1 + w], "big")
        elif size == -2:
            found += 1
            if found > limit:
                return found
            i += 3 if b == 0xDC else 5
        else:
            return limit + 1
    return found if i == n else limit + 1


def _depth_exceeds(frame: list[Any], limit: int) -> bool:
    """Return True if ``frame`` (a decoded list) nests containers deeper than ``limit``."""
    stack: list[tuple[Any, int]] = [(frame, 1)]
    while stack:
        obj, level = stack.pop()
        for item in obj.values() if type(obj) is dict else obj:
            t = type(item)
            if t is list or t is dict:
                if level + 1 > limit:
                    return True
                if item:
                    stack.append((item, level + 1))
    return False


class BoundedUnpacker:
    """Decode one msgpack value from untrusted bytes within :class:`FrameLimits`.

    Every failure raises :class:`~stratabatch.ipc.errors.FrameError`. The input is copied to
    private ``bytes`` first: a ring's frame lives in shared memory its producer could still
    scribble on, and the checks and the decode must see the same bytes. Not thread-safe (it
    reuses one msgpack ``Unpacker``).

    Args:
        limits: Limits every frame must respect.
    """

    def __init__(self, limits: FrameLimits = DEFAULT_LIMITS) -> None:
        self.limits = limits
        self._options = dict(
            raw=False,
            use_list=True,
            strict_map_key=True,
            max_str_len=limits.max_str_len,
            max_bin_len=limits.max_bin_len,
            max_array_len=limits.max_array_len,
            max_map_len=limits.max_map_len,
            max_ext_len=0,
            ext_hook=_refuse_ext,
        )
        # A reused Unpacker avoids re-parsing keyword arguments on every frame (~40% of the
        # cost of a small unpackb call).
        self._unpacker = self._new_unpacker()
        reserve = 8 * min(limits.max_array_len, _RESERVE_CAP or limits.max_array_len)
        self._fast_big_arrays = min(FAST_PATH_BIG_ARRAYS, FAST_PATH_RESERVE_BYTES // reserve)

    def _new_unpacker(self) -> msgpack.Unpacker:
        return msgpack.Unpacker(max_buffer_size=self.limits.max_frame_bytes, **self._options)

    def unpack(self, data: Any, what: str) -> Any:
        """Decode ``data``, which must hold exactly one msgpack object.

        Args:
            data: The frame's bytes (``bytes``, ``bytearray`` or ``memoryview``).
            what: Kind of frame in error messages, e.g. ``"request"``.

        Raises:
            FrameError: ``data`` is not a buffer, is empty or over ``max_frame_bytes``, or is
                not one valid msgpack object within the limits.
        """
        if type(data) is bytes:
            size = len(data)
        elif isinstance(data, (bytes, bytearray, memoryview)):
            size = memoryview(data).nbytes
        else:
            raise FrameError(f"a {what} frame must be bytes, got {type(data).__name__}")
        if size == 0:
            raise FrameError(f"empty {what} frame")
        if size > self.limits.max_frame_bytes:
            raise FrameError(
                f"{what} frame is {size} bytes, over the frame limit of "
                f"{self.limits.max_frame_bytes} bytes"
            )
        if type(data) is not bytes:
            data = bytes(data)
        try:
            limit = self._fast_big_arrays
            if (
                (0xDC in data or 0xDD in data)
                and data.count(0xDC) + data.count(0xDD) > limit
                and _big_array_headers(data, limit) > limit  # (the bytes may be no headers)
            ):
                return _msgpack_fallback.unpackb(data, **self._options)
            unpacker = self._unpacker
            start = unpacker.tell()
            unpacker.feed(data)
            obj = unpacker.unpack()
            if unpacker.tell() - start != size:
                raise msgpack.ExtraData(obj, b"")
            return obj
        except Exception as exc:  # any failure to decode means the frame is malformed
            self._unpacker = self._new_unpacker()
            raise FrameError(f"malformed {what} frame ({size} bytes): {_describe(exc)}") from exc

    def check_depth(self, frame: list[Any], what: str) -> None:
        """Raise FrameError if the decoded ``frame`` nests deeper than ``max_depth``.

        Args:
            frame: A decoded frame (its own array is level 1).
            what: Prefix of the error message, e.g. ``"request 7:"``.
        """
        if _depth_exceeds(frame, self.limits.max_depth):
            raise FrameError(
                f"{what} frame nests containers deeper than max_depth={self.limits.max_depth} "
                f"(the frame array counts as level 1)"
            )


__all__ = [
    "DEFAULT_LIMITS",
    "FAST_PATH_BIG_ARRAYS",
    "FAST_PATH_RESERVE_BYTES",
    "FLAT_SCALARS",
    "BoundedUnpacker",
    "FrameLimits",
    "check_value",
    "find_problem",
    "int_size",
    "is_flat_map",
    "short_repr",
]
