"""How big an engine's frames and rings are, from its request and result rules.

The engine makes both rings of each client :func:`ring_capacity` bytes and decodes and
encodes its frames under :func:`frame_limits`, which add :data:`FRAME_OVERHEAD` and one level
of nesting to the request rules of :mod:`stratabatch.requests`. :mod:`stratabatch.server`
hands these names on.
"""

from __future__ import annotations

from stratabatch.ipc.frames import FrameLimits

from .config import BatchConfig

FRAME_OVERHEAD = 64
"""Bytes a frame adds around its payload or result at most: a request frame's array header,
id, priority, deadline and row take at most 29, a response frame's header and merge meta 48."""


def ring_capacity(frame_limit: int) -> int:
    """The data bytes of one ring whose frames may be ``frame_limit`` bytes (a power of two).

    Both rings of a client get this capacity, from :func:`frame_limits`' frame size, which
    holds a request of ``max_request_bytes`` and a result of ``max_result_bytes``.
    """
    need = 2 * (frame_limit + 16)
    cap = 1 << 16
    while cap < need:
        cap <<= 1
    return cap


def frame_limits(config: BatchConfig) -> FrameLimits:
    """The frame limits of an engine, derived from the request and result rules.

    A request frame carries a payload of at most ``max_request_bytes`` and a response frame a
    result of at most ``max_result_bytes`` (both checked exactly, see
    :class:`~stratabatch.ipc.frames.FrameEncoder`); a frame adds :data:`FRAME_OVERHEAD` bytes
    and one level of nesting (its own array) to what :mod:`stratabatch.requests` allows. No
    str, bin, array or map can be longer than the bytes that carry it, so those lengths are
    bounded by the frame size. An error response gets at least 16 KiB whatever the options
    (its message is not a result), which the smallest ring holds anyway.
    """
    from .requests import MAX_DEPTH

    n = max(config.max_request_bytes, config.max_result_bytes, 16 * 1024) + FRAME_OVERHEAD
    return FrameLimits(
        max_frame_bytes=n,
        max_str_len=n,
        max_bin_len=n,
        max_array_len=n,
        max_map_len=n,
        max_depth=MAX_DEPTH + 1,
        max_request_bytes=config.max_request_bytes,
        max_result_bytes=config.max_result_bytes,
    )


__all__ = ["FRAME_OVERHEAD", "frame_limits", "ring_capacity"]
