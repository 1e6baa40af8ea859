"""The reuse cache's control surface, one rule for both modes: ``forget(scope)`` and the
per-call ``reuse=`` flag.

:meth:`stratabatch.BatchProcessor.forget` and the engine (for its clients' ``forget``
messages) both call :func:`forget`; the processor and both engine clients check a call's
``reuse=`` with :func:`check_reuse_flag`.

What ``forget`` drops, given a processor's ``dedup_scope`` fields:

* ``None``: every entry;
* a mapping of scope fields to values: the entries whose scope fields named in it are equal
  to the given values (a field not named matches any value; ``{}`` matches every entry).
  Values compare as dedup compares them: by their canonical encoding
  (:func:`stratabatch.dedup.canonical_bytes`), so ``("a", 1)`` equals ``["a", 1]``. A request
  that lacked a scope field is in a scope of its own for that field, which only a mapping
  that leaves the field out matches.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgpack

from .dedup import canonical_bytes, scope_of
from .errors import InvalidRequestError

__all__ = ["check_forget_scope", "check_reuse_flag", "forget"]


def check_reuse_flag(reuse: Any) -> bool:
    """A call's ``reuse=`` argument, checked: True (the default: the reuse cache may answer)
    or False (this call's requests bypass the cache's lookup).

    Raises:
        InvalidRequestError: ``reuse`` is not a bool (as for a bad ``priority``).
    """
    if reuse is True or reuse is False:
        return reuse
    raise InvalidRequestError(
        f"reuse must be True or False, got {reuse!r} (per call, False bypasses the reuse "
        "cache; the processor's mode is its reuse option)"
    )


def check_forget_scope(scope: Any) -> dict[str, Any] | None:
    """``forget``'s ``scope`` argument, checked for its type: None, or a mapping with str
    keys (returned as a dict). Which fields are allowed is the processor's (:func:`forget`).

    Raises:
        TypeError: ``scope`` is neither None nor a mapping, or has a key that is not a str.
    """
    if scope is None:
        return None
    if not isinstance(scope, Mapping):
        raise TypeError(
            "forget() takes a mapping of dedup_scope fields to values (e.g. "
            f"{{'model': 'small'}}), or None for every entry; got {type(scope).__name__} "
            f"{scope!r:.80}"
        )
    for key in scope:
        if type(key) is not str:
            raise TypeError(
                f"forget(): scope fields are str (dedup_scope field names), got "
                f"{type(key).__name__} {key!r:.80}"
            )
    return dict(scope)


def forget(cache: Any, dedup_scope: tuple[str, ...], scope: Any) -> int:
    """Drop entries of the reuse ``cache`` (a :class:`~stratabatch.reuse.ReuseCache`, or None
    with reuse off) by ``scope`` as the module docstring says; how many were dropped (0 with
    reuse off). Arguments are checked before anything is dropped.

    Raises:
        TypeError: As :func:`check_forget_scope`, or a value cannot be encoded.
        InvalidRequestError: ``scope`` names a field that is not one of ``dedup_scope``.
    """
    wanted = check_forget_scope(scope)
    if wanted:
        unknown = [f for f in wanted if f not in dedup_scope]
        if unknown:
            allowed = (
                f"its dedup_scope fields are {', '.join(map(repr, dedup_scope))}"
                if dedup_scope
                else "it has no dedup_scope (forget() or forget({}) drops every entry)"
            )
            named = ", ".join(f"{f!r:.80}" for f in unknown[:5])
            if len(unknown) > 5:
                named += f" and {len(unknown) - 5} more"
            raise InvalidRequestError(
                f"forget(): {named} {'is' if len(unknown) == 1 else 'are'} not "
                f"{'a dedup_scope field' if len(unknown) == 1 else 'dedup_scope fields'} of "
                f"this processor: {allowed}"
            )
        try:
            if len(wanted) == len(dedup_scope):
                whole = scope_of(wanted, dedup_scope)
            else:
                at = {dedup_scope.index(f): canonical_bytes(v) for f, v in wanted.items()}
        except (TypeError, ValueError, OverflowError, RecursionError) as exc:
            raise TypeError(f"forget(): a scope value cannot be encoded: {exc!s:.200}") from None
    if cache is None:
        return 0
    if not wanted:
        return int(cache.clear())
    if len(wanted) == len(dedup_scope):
        return int(cache.forget(whole))
    matching = []
    for stored in {e.scope for e in cache.entries()}:
        fields = _field_bytes(stored, len(dedup_scope))
        if fields is not None and all(fields[i] == b for i, b in at.items()):
            matching.append(stored)
    # (one walk over the entries for all of them: a walk a scope was O(entries x scopes),
    # 23 s on the event loop for 1,000 scopes of 100,000 entries)
    return int(cache.forget(matching)) if matching else 0


def _field_bytes(scope: bytes, n: int) -> list[bytes] | None:
    """The encoding of each field of a stored scope (``scope_of``'s array of ``n`` canonical
    values), as slices of it; None if it is not such an array."""
    if not scope:
        return None
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
    unpacker.feed(scope)
    try:
        if unpacker.read_array_header() != n:
            return None
        out = []
        start = unpacker.tell()
        for _ in range(n):
            unpacker.skip()
            end = unpacker.tell()
            out.append(scope[start:end])
            start = end
    except Exception:  # (not what scope_of makes: matches nothing)
        return None
    return out
