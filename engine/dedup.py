"""Dedup keys: normalization, canonical encodings, number guards, and the exact hash pass.

These are the pure parts of deduplication. The core (``stratabatch.core``) decides what is
merged with what; this module turns requests into the keys it compares.

* The **exact key** of a request with text under ``dedup_key`` is ``(scope, xxh64(norm))``
  where ``norm`` is the text after NFKC, casefold and whitespace collapse (or the raw text with
  ``normalize=False``). A request without that text is keyed by the xxh64 of its whole
  canonical encoding (msgpack with map keys sorted), so only identical requests merge.
* The **scope** is the canonical encoding of the ``dedup_scope`` fields: requests merge only
  when it is equal.
* The **number guard** is the sorted tuple of digit runs in the text (:func:`number_guard`),
  or with sign and separators (:func:`number_signature`, what the dedup pass partitions by):
  with ``guard_numbers=True`` near (not exact) merges need equal numbers, so "order 123" never
  merges with "order 124", nor "pay -5" with "pay 5", nor "1,000" with "1.000".
"""

from __future__ import annotations

import re
import threading
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
    runs = _DIGITS.findall(text if text.isascii() else unicodedata.normalize("NFKC", text))
    if not runs:
        return ()
    if len(runs) == 1:
        return (runs[0].lstrip("0") or "0",)
    return tuple(sorted(r.lstrip("0") or "0" for r in runs))


_NUMBER = re.compile(r"(?<![\w.,])([-+\u2212]?)(\d+(?:[.,]\d+)*)")
_THOUSANDS = re.compile(r"^\d{1,3}(,\d{3})+$")
_EURO_THOUSANDS = re.compile(r"^\d{1,3}(\.\d{3}){2,}$")


def number_signature(text: str) -> tuple[str, ...]:
    """The numbers of ``text`` with sign and value, sorted: "-5" != "5", "1,000" == "1000" !=
    "1.000" (a decimal point: one), "007" == "7", "2.50" == "2.5"."""
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text)
    out = []
    for sign, num in _NUMBER.findall(text):
        if not sign and num.isdigit():  # plain digits, the common number: its value alone
            out.append(num.lstrip("0") or "0")
            continue
        if _THOUSANDS.match(num) or _EURO_THOUSANDS.match(num):
            num = num.replace(",", "").replace(".", "")
        elif "," in num and "." not in num and num.count(",") == 1:
            num = num.replace(",", ".")  # a decimal comma: "1,5"
        else:
            num = num.replace(",", "")
        if "." in num:
            whole, _, frac = num.partition(".")
            frac = frac.replace(".", "").rstrip("0")
            num = (whole.lstrip("0") or "0") + ("." + frac if frac else "")
        else:
            num = num.lstrip("0") or "0"
        neg = sign in ("-", "\u2212") and num != "0"
        out.append(("-" if neg else "") + num)
    out.sort()
    return tuple(out)


_ASCII_DIGIT = re.compile(r"[0-9]")


def number_signatures(texts: list[str]) -> list[tuple[str, ...]]:
    """:func:`number_signature` of each text; a batch of ASCII texts without a digit costs
    one scan (most requests have no number)."""
    joined = "\x1f".join(texts)
    if joined.isascii():
        if _ASCII_DIGIT.search(joined) is None:
            return [()] * len(texts)
        search = _ASCII_DIGIT.search
        return [number_signature(t) if search(t) is not None else () for t in texts]
    return [number_signature(t) for t in texts]  # (NFKC may make digits of other characters)


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


_packers = threading.local()


def encode_request(request: Mapping[str, Any]) -> bytes:
    """The msgpack encoding of ``request`` as the wire would carry it.

    One ``Packer`` per thread, reused (a Packer is not thread-safe, and making one per call
    cost four times the encoding of a small request: 0.49 against 0.09 us). After a value it
    cannot carry, it starts the next from an empty buffer (``autoreset``).

    Raises:
        TypeError, ValueError, OverflowError: ``request`` holds something msgpack cannot carry.
    """
    try:
        pack = _packers.pack
    except AttributeError:
        pack = _packers.pack = msgpack.Packer(default=_wire_default, autoreset=True).pack
    return pack(request)


def canonical_bytes(value: Any) -> bytes:
    """An encoding of ``value`` that is equal for equal data, whatever the map key order."""
    return msgpack.packb(_canonical(value), default=_wire_default)


def scope_of(request: Mapping[str, Any], scope: tuple[str, ...]) -> bytes:
    """The canonical encoding of the ``scope`` fields of ``request`` (b"" for no scope)."""
    if not scope:
        return b""
    return canonical_bytes([request.get(f, None) if f in request else "\0missing" for f in scope])


def exact_hashes(norms: list[str | bytes]) -> list[int]:
    """A 64-bit hash of each normalized key (str or bytes): the exact-dedup key.

    Python's own ``hash`` (SipHash, in C, cached on the str object): the keys only ever meet
    other keys of the same process, which hash alike (``PYTHONHASHSEED`` differs between
    processes, never within one), and an equal hash is confirmed by comparing the keys
    themselves. It costs ~50 ns a key at any batch size, where the numba xxh64 kernel
    cost ~40 us a call in array set-up: most passes of a trickle hold one request.
    """
    return [hash(n) for n in norms]
