"""Result reuse: finished answers kept for a while to serve later exact twins (a component
the core holds; ``reuse="exact"``).

In-window dedup merges a request only with a twin that is still waiting or still running. A
:class:`ReuseCache` keeps each successful result after its group is answered, so a twin that
arrives later (within ``reuse_ttl_s``) gets it without a backend call.

What an entry is:

* its **key**: the request's exact dedup key as the core computed it (``Request.key``: the
  hash of the normalized text, or a tuple with the scope), confirmed on every lookup by the
  normalized text itself (``Request.norm``: a str, or the canonical bytes of a request without
  text) and the scope (the canonical bytes of its ``dedup_scope`` fields, ``b""`` for none),
  so neither a 64-bit hash collision nor a key without its scope can ever serve another
  request's answer;
* its **result**: the object the handler returned, never copied: every twin it serves gets
  the same object as the first caller (as merged callers do in a window);
* its **birth** (on the cache's clock) and its **size** in bytes;
* a **handle**: opaque to the cache, for the near-reuse path (the leader index's row of the
  entry); :attr:`ReuseCache.on_drop` hears of every entry that leaves, so that path can drop
  its row.

Only successes go in (:meth:`ReuseCache.put` refuses an exception, as the core fails such an
item), each bounded in age (``ttl_s``, checked on lookup against an injected clock), and the
whole in entries and bytes, the least recently used entry going first (a hit refreshes).

Sizes: in engine mode a result's size is the length of its msgpack encoding
(:func:`encoded_size`); an embedded processor's results are arbitrary Python objects, sized by
:func:`estimate_size` (a bounded recursive estimate) unless the cache was given a ``size_of``
of its own; a caller that knows the size passes it (``put(..., size=n)``).
"""

from __future__ import annotations

import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Hashable
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError

__all__ = [
    "CLEARS_ON",
    "ENTRY_OVERHEAD",
    "Entry",
    "ReuseCache",
    "ReuseStats",
    "encoded_size",
    "estimate_size",
    "reuse_cache_for",
]

#: Bytes an entry costs beyond its result and its key text: the entry object, its place in the
#: ordered dict, its birth and size (tracemalloc, CPython 3.11, 100,000 entries: 257 B each;
#: perf/bench_reuse.py prints it).
ENTRY_OVERHEAD = 260

#: Options whose change at run time drops every entry: the exact key is made from
#: ``dedup_key``, ``normalize`` and ``dedup_scope``, and a near entry was found by the
#: embedder, the threshold and the guards; an answer kept under the old rules is not
#: reused under the new ones.
CLEARS_ON = frozenset(
    {
        "enable_dedup",
        "dedup_key",
        "normalize",
        "dedup_scope",
        "dedup_strategy",
        "dedup_threshold",
        "guard_numbers",
        "dedup_guards",
        "canonicalize",
        "dedup_function",
        "embedder",
    }
)

_BOUNDS = frozenset({"reuse_ttl_s", "reuse_max_entries", "reuse_max_bytes"})


@dataclass(frozen=True)
class ReuseStats:
    """A snapshot of a :class:`ReuseCache`'s counters (:meth:`ReuseCache.stats`)."""

    hits: int
    """Lookups answered from the cache (exact and near)."""
    near_hits: int
    """Of ``hits``, those answered through the near path (:meth:`ReuseCache.hit`)."""
    misses: int
    """Exact lookups that found no live entry (absent, expired, or another text or scope
    under the same key)."""
    entries: int
    """Entries held now."""
    bytes: int
    """Bytes the entries account for now: results, key texts and :data:`ENTRY_OVERHEAD` each."""
    evictions: int
    """Entries dropped to stay within ``max_entries`` or ``max_bytes`` (least recently used
    first)."""
    expirations: int
    """Entries dropped because they were older than ``ttl_s``."""
    forgotten: int
    """Entries dropped by :meth:`ReuseCache.forget` and :meth:`ReuseCache.clear`."""
    refused: int
    """Results not stored: an exception (never reused), or larger than ``max_bytes`` alone."""


class Entry:
    """One stored answer.

    Attributes:
        key: The exact dedup key it is filed under.
        norm: The normalized text (or canonical bytes) the key was made from.
        scope: The canonical bytes of its ``dedup_scope`` fields (``b""`` for none).
        result: The handler's result, the very object its first caller got.
        born: When the answer was produced, on the cache's clock.
        size: Bytes it accounts for (result, key text and :data:`ENTRY_OVERHEAD`).
        handle: Opaque to the cache: what the near path filed it under (a leader index
            row), or None.
        live: False once it has left the cache (a handle the index still holds is stale).
    """

    __slots__ = ("key", "norm", "scope", "result", "born", "size", "handle", "live")

    def __init__(
        self,
        key: Hashable,
        norm: Any,
        scope: bytes,
        result: Any,
        born: float,
        size: int,
        handle: Any,
    ) -> None:
        self.key = key
        self.norm = norm
        self.scope = scope
        self.result = result
        self.born = born
        self.size = size
        self.handle = handle
        self.live = True

    def __repr__(self) -> str:
        return (
            f"Entry(key={self.key!r}, norm={self.norm!r:.40}, born={self.born}, size={self.size})"
        )


_SCALARS = frozenset({int, float, bool, complex, type(None), str, bytes})
_SEQUENCES = frozenset({list, tuple, set, frozenset})
_SAMPLE = 64  # items of a large container walked; the rest counted at their average


def estimate_size(obj: Any, max_nodes: int = 2048) -> int:
    """Bytes ``obj`` holds, estimated: ``sys.getsizeof`` of it and of what it contains,
    recursively through lists, tuples, sets, dicts and instances' ``__dict__``.

    Bounded work whatever the object: a container of more than 64 items is measured on 64 of
    them (evenly spread) and counted at their average, and after ``max_nodes`` objects the
    ones found but not walked are counted at the average so far (what they hold is not seen:
    a structure nested deeper than the budget is undercounted). A container met twice is
    counted once. Objects of
    other types count their own ``sys.getsizeof`` (a numpy array that owns its data includes
    it; a view does not): give the cache a ``size_of`` of your own when results hold such
    objects and the byte bound must be exact.
    """
    getsizeof = sys.getsizeof
    if type(obj) in _SCALARS:  # (the common answer, a str: no walk)
        return getsizeof(obj)
    total = 0.0
    nodes = 0
    seen: set[int] = set()
    stack: list[tuple[Any, float]] = [(obj, 1.0)]
    pop = stack.pop
    push = stack.append
    while stack:
        if nodes >= max_nodes:
            avg = total / nodes
            total += avg * sum(w for _, w in stack)
            break
        o, w = pop()
        nodes += 1
        t = type(o)
        if t in _SCALARS:
            total += getsizeof(o) * w
            continue
        if t in _SEQUENCES or t is dict or isinstance(o, (list, tuple, dict, set, frozenset)):
            if id(o) in seen:
                continue
            seen.add(id(o))
            total += getsizeof(o) * w
            n = len(o)
            if not n:
                continue
            items = o.items() if isinstance(o, dict) else o
            if n <= _SAMPLE:
                picked: Any = items
                ww = w
            else:
                step = n / _SAMPLE
                wanted = {int(i * step) for i in range(_SAMPLE)}
                picked = [x for i, x in enumerate(items) if i in wanted]
                ww = w * n / len(picked)
            if isinstance(o, dict):
                for k, v in picked:
                    push((k, ww))
                    push((v, ww))
            else:
                for x in picked:
                    push((x, ww))
            continue
        total += getsizeof(o) * w
        d = getattr(o, "__dict__", None)
        if type(d) is dict:
            push((d, w))
    return int(total)


def _numpy_tolist(obj: Any) -> Any:
    tolist = getattr(obj, "tolist", None)
    if tolist is not None and type(obj).__module__ == "numpy":
        return tolist()
    raise TypeError(f"cannot encode object of type {type(obj).__name__}")


def encoded_size(max_result_bytes: int) -> Callable[[Any], int]:
    """A ``size_of`` for engine mode: the length of a result's msgpack encoding (numpy values
    as lists, as the engine sends them).

    It raises for a result the engine could not send (not encodable, or over
    ``max_result_bytes``): :meth:`ReuseCache.put` then stores nothing, since the first caller
    of such a result got an error, and its twins must not get a stored "success" instead.
    """
    import msgpack  # (a dependency already; imported where engine mode needs it)

    packb = msgpack.packb

    def size_of(result: Any) -> int:
        n = len(packb(result, default=_numpy_tolist))
        if n > max_result_bytes:
            raise ValueError(f"result of {n} bytes is over max_result_bytes={max_result_bytes}")
        return n

    return size_of


def _check_bounds(ttl_s: float, max_entries: int, max_bytes: int) -> None:
    for name, value in (
        ("reuse_ttl_s", ttl_s),
        ("reuse_max_entries", max_entries),
        ("reuse_max_bytes", max_bytes),
    ):
        if not value > 0:
            raise ConfigError(f"{name} must be > 0, got {value!r}", field=name)


def _text_size(norm: Any) -> int:
    return len(norm) if isinstance(norm, (str, bytes)) else 0


class ReuseCache:
    """Successful results kept to serve later exact twins, bounded in age, entries and bytes.

    Every operation is O(1) but :meth:`forget` of one scope, :meth:`clear` and
    :meth:`expire` (O(entries)): entries live in one ``OrderedDict`` in use order (a hit
    moves its entry to the end, an eviction takes the front, and :meth:`put` first drops the
    expired entries at the front). An expired entry is never served: a lookup that finds one
    drops it. One that was used more recently than a live entry stays counted in the bounds
    until a lookup finds it, it reaches the front, or :meth:`expire` sweeps (a second dict in
    store order would find it sooner, for 30% more memory an entry and 30% more time a put).
    It runs on the core's loop: no locks.

    Args:
        ttl_s: How long an answer may serve twins, in seconds from its birth.
        max_entries: Entries held at most.
        max_bytes: Bytes the entries account for at most (results, key texts and
            :data:`ENTRY_OVERHEAD` each).
        clock: Returns the time in seconds (the core passes its own clock).
        size_of: Bytes of a result when :meth:`put` is not told; default
            :func:`estimate_size` (engine mode: :func:`encoded_size`). A result it raises for
            is not stored.
        on_drop: Called with each :class:`Entry` that leaves the cache (evicted, expired,
            replaced, forgotten, cleared), after it left; the near path drops its index row
            there. It must not raise and must not call back into the cache.

    Raises:
        ConfigError: a bound is not > 0.

    Attributes:
        clock: As given; may be replaced (the core sets its own when it binds to a loop).
        size_of: As given (or :func:`estimate_size`); may be replaced (the engine sets
            :func:`encoded_size`).
        on_drop: As given; may be replaced.
    """

    def __init__(
        self,
        ttl_s: float,
        max_entries: int,
        max_bytes: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        size_of: Callable[[Any], int] | None = None,
        on_drop: Callable[[Entry], None] | None = None,
    ) -> None:
        _check_bounds(ttl_s, max_entries, max_bytes)
        self._ttl = float(ttl_s)
        self._max_entries = int(max_entries)
        self._max_bytes = int(max_bytes)
        self.clock = clock
        self.size_of = estimate_size if size_of is None else size_of
        self.on_drop = on_drop
        self._lru: OrderedDict[Hashable, Entry] = OrderedDict()  # use order: LRU first
        self._bytes = 0
        self._hits = 0
        self._near_hits = 0
        self._misses = 0
        self._evictions = 0
        self._expirations = 0
        self._forgotten = 0
        self._refused = 0

    # ------------------------------------------------------------------ bounds

    @property
    def ttl_s(self) -> float:
        """How long an answer may serve twins (seconds from its birth)."""
        return self._ttl

    @property
    def max_entries(self) -> int:
        """Entries held at most."""
        return self._max_entries

    @property
    def max_bytes(self) -> int:
        """Bytes held at most."""
        return self._max_bytes

    def configure(self, ttl_s: float, max_entries: int, max_bytes: int) -> None:
        """New bounds (run-time option changes): entries over them are evicted now, the
        least recently used first; a shorter ttl applies to the entries already held.

        Raises:
            ConfigError: a bound is not > 0 (nothing is changed then).
        """
        _check_bounds(ttl_s, max_entries, max_bytes)
        self._ttl = float(ttl_s)
        self._max_entries = int(max_entries)
        self._max_bytes = int(max_bytes)
        self.expire()
        self._fit()

    # ------------------------------------------------------------------ lookups

    def get(
        self, key: Hashable, norm: Any, scope: bytes = b"", now: float | None = None
    ) -> tuple[Any, float] | None:
        """The live answer for an exact twin, and its age in seconds; None on a miss.

        Args:
            key: The request's exact dedup key (``Request.key``).
            norm: Its normalized text or canonical bytes (``Request.norm``): the entry must
                have been made from the same.
            scope: The canonical bytes of its ``dedup_scope`` fields (``b""`` for none).
            now: The time on the cache's clock, if the caller has read it already.

        A hit makes the entry the most recently used. An entry found past its ``ttl_s``
        is dropped (counted in ``expirations``) and the lookup misses.
        """
        e = self._lru.get(key)
        if e is None or e.norm != norm or e.scope != scope:
            self._misses += 1
            return None
        if now is None:
            now = self.clock()
        age = now - e.born
        if age >= self._ttl:
            self._remove(e)
            self._expirations += 1
            self._misses += 1
            return None
        self._lru.move_to_end(key)
        self._hits += 1
        return e.result, age

    def hit(self, entry: Entry, now: float | None = None) -> tuple[Any, float] | None:
        """The near path found ``entry`` (through its handle) for a near twin that the
        guards let through: its answer and age, as :meth:`get` (None if it has left the cache
        or expired meanwhile). Counted in ``hits`` and ``near_hits``, not ``misses``: the
        near path counts its own misses."""
        if not entry.live:
            return None
        if now is None:
            now = self.clock()
        age = now - entry.born
        if age >= self._ttl:
            self._remove(entry)
            self._expirations += 1
            return None
        self._lru.move_to_end(entry.key)
        self._hits += 1
        self._near_hits += 1
        return entry.result, age

    def __len__(self) -> int:
        return len(self._lru)

    def __contains__(self, key: object) -> bool:
        """Whether an entry is filed under ``key`` (live or not yet found expired); no use is
        recorded."""
        return key in self._lru

    def entries(self) -> list[Entry]:
        """The entries held, the least recently used first (the near path rebuilds its index
        rows from them)."""
        return list(self._lru.values())

    # ------------------------------------------------------------------ storing

    def put(
        self,
        key: Hashable,
        norm: Any,
        result: Any,
        scope: bytes = b"",
        *,
        size: int | None = None,
        born: float | None = None,
        handle: Any = None,
    ) -> Entry | None:
        """Keep a successful ``result`` for later twins of ``(key, norm, scope)``.

        Args:
            key, norm, scope: As :meth:`get` takes them.
            result: The handler's result; stored as is, never copied.
            size: Its size in bytes, when the caller knows it (the engine: the length of its
                msgpack encoding); else ``size_of(result)``.
            born: When it was produced, on the cache's clock; default now. The core passes
                the start of the handler call that produced it, so no answer serves a twin
                more than ``ttl_s`` after the backend was asked.
            handle: Opaque, kept on the entry for the near path.

        Returns:
            The new entry (it replaced any entry under ``key``), or None if nothing was
            stored: ``result`` is an exception (errors are never reused), ``size_of`` raised
            for it, it is larger than ``max_bytes`` alone, or it was born ``ttl_s`` ago
            already. All but the last are counted in ``refused``. It never raises for the
            result (the core calls it inside a batch's fan-out).
        """
        if isinstance(result, BaseException):
            self._refused += 1
            return None
        now = self.clock()
        if born is None:
            born = now
        elif now - born >= self._ttl:
            return None
        if size is None:
            try:
                size = self.size_of(result)
            except Exception:  # a result it cannot size (engine: cannot send) is not kept
                self._refused += 1
                return None
        size = int(size) + _text_size(norm) + ENTRY_OVERHEAD
        if size > self._max_bytes:
            self._refused += 1
            return None
        old = self._lru.get(key)
        if old is not None:
            self._remove(old)
        self._sweep(now)
        e = Entry(key, norm, scope, result, born, size, handle)
        self._lru[key] = e
        self._bytes += size
        self._fit()
        return e

    # ------------------------------------------------------------------ dropping

    def expire(self, now: float | None = None) -> int:
        """Drop every entry past its ``ttl_s`` (O(entries): a sweep for a quiet cache, e.g.
        from a timer every ``ttl_s``; lookups check each entry they find anyway). Returns how
        many were dropped."""
        if now is None:
            now = self.clock()
        n = self._expirations
        for e in [e for e in self._lru.values() if now - e.born >= self._ttl]:
            self._remove(e)
            self._expirations += 1
        return self._expirations - n

    def forget(self, scope: bytes | Collection[bytes] | None = None) -> int:
        """Drop the entries of one scope (the canonical bytes of its ``dedup_scope`` fields,
        as :func:`stratabatch.dedup.scope_of` makes them), of any of a collection of scopes
        (one walk over the entries, however many scopes), or every entry (None). Returns how
        many were dropped."""
        if scope is None:
            return self.clear()
        if type(scope) is bytes:
            gone = [e for e in self._lru.values() if e.scope == scope]
        else:
            scopes = frozenset(scope)
            gone = [e for e in self._lru.values() if e.scope in scopes]
        for e in gone:
            self._remove(e)
        self._forgotten += len(gone)
        return len(gone)

    def clear(self) -> int:
        """Drop every entry (the options that make its keys or its near matches changed).
        Returns how many were dropped."""
        gone = list(self._lru.values())
        self._lru.clear()
        self._bytes = 0
        self._forgotten += len(gone)
        for e in gone:
            e.live = False
        if self.on_drop is not None:
            for e in gone:
                self.on_drop(e)
        return len(gone)

    def _sweep(self, now: float) -> None:
        """Drop expired entries at the front of the use order, the least recently used
        (stops at the first live one: O(1) amortized). An expired entry used more recently
        than a live one waits for its own lookup, :meth:`expire`, or its turn at the front:
        the bounds count it meanwhile."""
        lru = self._lru
        ttl = self._ttl
        while lru:
            e = next(iter(lru.values()))
            if now - e.born < ttl:
                return
            self._remove(e)
            self._expirations += 1

    def _fit(self) -> None:
        lru = self._lru
        while lru and (len(lru) > self._max_entries or self._bytes > self._max_bytes):
            _, e = lru.popitem(last=False)
            self._remove(e, in_lru=False)
            self._evictions += 1

    def _remove(self, e: Entry, in_lru: bool = True) -> None:
        if in_lru:
            del self._lru[e.key]
        self._bytes -= e.size
        e.live = False
        if self.on_drop is not None:
            self.on_drop(e)

    # ------------------------------------------------------------------ stats

    def stats(self) -> ReuseStats:
        """A snapshot of the counters."""
        return ReuseStats(
            hits=self._hits,
            near_hits=self._near_hits,
            misses=self._misses,
            entries=len(self._lru),
            bytes=self._bytes,
            evictions=self._evictions,
            expirations=self._expirations,
            forgotten=self._forgotten,
            refused=self._refused,
        )

    # ------------------------------------------------------------------ options

    def reconfigure(self, config: Any, name: str | None = None) -> None:
        """Apply the change of option ``name`` of ``config`` (a
        :class:`~stratabatch.config.BatchConfig`): new bounds for the ``reuse_*`` options, an
        empty cache for the options in :data:`CLEARS_ON`. (``reuse`` itself turning off or to
        another mode is the holder's: it drops the cache or makes a new one.)"""
        if name is None or name in _BOUNDS:
            self.configure(config.reuse_ttl_s, config.reuse_max_entries, config.reuse_max_bytes)
        if name in CLEARS_ON:
            self.clear()


def reuse_cache_for(
    config: Any,
    clock: Callable[[], float] = time.monotonic,
    size_of: Callable[[Any], int] | None = None,
) -> ReuseCache | None:
    """The cache the options of ``config`` ask for, or None with ``reuse="off"``."""
    if config.reuse == "off":
        return None
    return ReuseCache(
        config.reuse_ttl_s,
        config.reuse_max_entries,
        config.reuse_max_bytes,
        clock=clock,
        size_of=size_of,
    )
