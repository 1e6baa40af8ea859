"""Dedup keys: normalization, canonical encodings, number guards, and the exact hash pass.

These are the pure parts of deduplication. The core (``stratabatch.core``) decides what is
merged with what; this module turns requests into the keys it compares.

* The **exact key** of a request with text under ``dedup_key`` is ``(scope, xxh64(norm))``
  where ``norm`` is the text after NFKC, casefold and whitespace collapse (or the raw text with
  ``normalize=False``). A request without that text is keyed by the xxh64 of its whole
  canonical encoding (msgpack with map keys sorted), so only identical requests merge.
* The **scope** is the canonical encoding of the ``dedup_scope`` fields: requests merge only
  when it is equal.
* The **number guard** is the sorted tuple of digit runs in the text: with
  ``guard_numbers=True`` near (not exact) merges need equal guards, so "order 123" never merges
  with "order 124".
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from typing import Any

import msgpack

_DIGITS = re.compile(r"\d+")
_MISSING = object()


def normalize_key(text: str) -> str:
    """NFKC, casefold, and collapse runs of whitespace to one space (trimmed)."""
    if text.isascii():
        return " ".join(text.lower().split())
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def number_guard(text: str) -> tuple[str, ...]:
    """The digit runs of ``text`` as a sorted tuple, leading zeros dropped ("007" == "7")."""
    runs = _DIGITS.findall(unicodedata.normalize("NFKC", text) if not text.isascii() else text)
    if not runs:
        return ()
    return tuple(sorted(r.lstrip("0") or "0" for r in runs))


def _canonical(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        items = [(_canonical(k), _canonical(v)) for k, v in obj.items()]
        items.sort(key=lambda kv: msgpack.packb(kv[0]))
        if all(isinstance(k, str) for k, _ in items):
            return dict(items)
        return ["\0map", [list(kv) for kv in items]]  # tagged: never equal to a real list
    if isinstance(obj, (list, tuple)):
        return [_canonical(x) for x in obj]
    return obj


def _wire_default(obj: Any) -> Any:
    """msgpack fallback for values a request may carry besides plain data: numpy arrays and
    numpy scalars (a request's own "embedding" vector), encoded as lists of floats."""
    tolist = getattr(obj, "tolist", None)
    if tolist is not None and type(obj).__module__ == "numpy":
        return tolist()
    raise TypeError(f"cannot encode object of type {type(obj).__name__}")


def encode_request(request: Mapping[str, Any]) -> bytes:
    """The msgpack encoding of ``request`` as the wire would carry it.

    Raises:
        TypeError, ValueError, OverflowError: ``request`` holds something msgpack cannot carry.
    """
    return msgpack.packb(request, default=_wire_default)


def canonical_bytes(value: Any) -> bytes:
    """An encoding of ``value`` that is equal for equal data, whatever the map key order."""
    return msgpack.packb(_canonical(value), default=_wire_default)


def scope_of(request: Mapping[str, Any], scope: tuple[str, ...]) -> bytes:
    """The canonical encoding of the ``scope`` fields of ``request`` (b"" for no scope)."""
    if not scope:
        return b""
    return canonical_bytes([request.get(f, None) if f in request else "\0missing" for f in scope])


def exact_hashes(norms: list[str | bytes]) -> list[int]:
    """xxh64 of each normalized key (str encoded as UTF-8), by one numba call over the batch."""
    import numpy as np

    from .kernels import xxh64_batch

    blobs = [n.encode("utf-8", "surrogatepass") if isinstance(n, str) else n for n in norms]
    lengths = np.fromiter((len(b) for b in blobs), dtype=np.int64, count=len(blobs))
    offsets = np.zeros(len(blobs) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    data = np.frombuffer(b"".join(blobs), dtype=np.uint8)
    return xxh64_batch(data, offsets).tolist()
