"""The options of a BatchProcessor: one table of names, defaults and allowed ranges.

Every option is validated when the config is built and again on every assignment, so
``batch.dedup_threshold = 0.95`` works at run time and ``batch.dedup_threshold = -1`` raises
:class:`~stratabatch.ConfigError` naming the field and its range. The same table drives the
engine's command-line flags, so the two can never disagree.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from typing import Any, Literal, TypedDict

from .errors import ConfigError

STRATEGIES = ("embedding", "exact", "hybrid")
ON_FULL = ("wait", "reject", "drop_lowest")
#: What a first start does while the near-dedup kernels compile (docs/coldstart.md).
COLD_START = ("serve", "wait")
#: The merge guards (stratabatch.guards), in the order they are tried.
GUARDS = ("polarity", "roles", "entities", "scope", "residue")
#: What ``reuse`` takes: "off", "exact" (a finished answer serves later exact twins for
#: ``reuse_ttl_s``; stratabatch.reuse) or "near" (near twins too, through the same embedder,
#: threshold and guards as in-window dedup; stratabatch.nearreuse). None means "off".
REUSE_MODES = ("off", "exact", "near")


def _number(name: str, value: Any, lo: float, hi: float, *, lo_open: bool, integer: bool) -> Any:
    kind = "an integer" if integer else "a number"
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type:
        raise ConfigError(f"{name} must be {kind}, got {value!r}", field=name)
    lo_bracket = "(" if lo_open else "["
    # integers as written (67108864, not 6.71089e+07), as the allowed column shows them
    span = f"{lo_bracket}{lo}, {hi}]" if integer else f"{lo_bracket}{lo:g}, {hi:g}]"
    if not integer and not math.isfinite(value):
        raise ConfigError(f"{name} must be in {span}, got {value!r}", field=name)
    if (value <= lo if lo_open else value < lo) or value > hi:
        raise ConfigError(f"{name} must be in {span}, got {value!r}", field=name)
    return int(value) if integer else float(value)


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)}; got {value!r}", field=name)
    return str(value)


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be True or False, got {value!r}", field=name)
    return value


def _check_scope(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = (value,)
    try:
        scope = tuple(value)
    except TypeError:
        raise ConfigError(
            f"dedup_scope must be a tuple of request field names, got {value!r}",
            field="dedup_scope",
        ) from None
    for item in scope:
        if not isinstance(item, str) or not item:
            raise ConfigError(
                f"dedup_scope must hold non-empty field names (str), got {item!r}",
                field="dedup_scope",
            )
    return scope


def _check_threshold(value: Any) -> float | None:
    if value is None:
        return None
    return _number("dedup_threshold", value, 0.0, 1.0, lo_open=True, integer=False)


def _check_guards(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = (value,)
    try:
        names = tuple(value)
    except TypeError:
        raise ConfigError(
            f"dedup_guards must be a tuple of guard names ({', '.join(GUARDS)}), got {value!r}",
            field="dedup_guards",
        ) from None
    for g in names:
        if g not in GUARDS:
            raise ConfigError(
                f"dedup_guards must name guards among {', '.join(GUARDS)}; got {g!r}",
                field="dedup_guards",
            )
    return tuple(g for g in GUARDS if g in names)  # the order they are tried in


def _check_callable(name: str, value: Any) -> Any:
    if value is not None and not callable(value):
        raise ConfigError(f"{name} must be callable or None, got {value!r}", field=name)
    return value


def _check_embedder(value: Any) -> Any:
    if value is None or callable(value) or callable(getattr(value, "embed", None)):
        return value
    raise ConfigError(
        "embedder must be None, a callable list[str] -> float32[n, dim], "
        f"or an object with .embed() and .dim; got {value!r}",
        field="embedder",
    )


def _check_reuse(value: Any) -> str:
    if value is None:
        return "off"
    return _choice("reuse", value, REUSE_MODES)


def _check_key(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"dedup_key must be a non-empty str, got {value!r}", field="dedup_key")
    return value


def _ms(name: str, hi: float = 600_000.0) -> Callable[[Any], float]:
    return lambda v: _number(name, v, 0.0, hi, lo_open=True, integer=False)


def _int(name: str, lo: int, hi: int) -> Callable[[Any], int]:
    return lambda v: _number(name, v, lo, hi, lo_open=False, integer=True)


# name -> (validator, human-readable range for docs and --help)
_VALIDATORS: dict[str, tuple[Callable[[Any], Any], str]] = {
    "window_ms": (_ms("window_ms", 60_000.0), "(0, 60000] ms"),
    "max_size": (_int("max_size", 1, 100_000), "[1, 100000]"),
    "min_size": (_int("min_size", 1, 100_000), "[1, max_size]"),
    "max_wait_ms": (_ms("max_wait_ms"), "(0, 600000] ms"),
    "processing_timeout": (
        lambda v: (
            None
            if v is None
            else _number("processing_timeout", v, 0.0, 86_400.0, lo_open=True, integer=False)
        ),
        "(0, 86400] s, or None for no limit",
    ),
    "enable_dedup": (lambda v: _flag("enable_dedup", v), "True | False"),
    "dedup_strategy": (lambda v: _choice("dedup_strategy", v, STRATEGIES), " | ".join(STRATEGIES)),
    "dedup_threshold": (_check_threshold, "(0, 1], or None for the embedder's recommended value"),
    "dedup_key": (_check_key, "a non-empty field name"),
    "normalize": (lambda v: _flag("normalize", v), "True | False"),
    "dedup_scope": (_check_scope, "a tuple of field names"),
    "guard_numbers": (lambda v: _flag("guard_numbers", v), "True | False"),
    "dedup_guards": (
        _check_guards,
        "a tuple of guard names among polarity, roles, entities, scope, residue",
    ),
    "canonicalize": (lambda v: _flag("canonicalize", v), "True | False"),
    "dedup_function": (
        lambda v: _check_callable("dedup_function", v),
        "None or (req1, req2) -> similarity in [0, 1]",
    ),
    "embedder": (_check_embedder, "None, a callable, or an object with .embed() and .dim"),
    "cold_start": (lambda v: _choice("cold_start", v, COLD_START), " | ".join(COLD_START)),
    "adaptive": (lambda v: _flag("adaptive", v), "True | False"),
    "target_latency_ms": (_ms("target_latency_ms"), "(0, 600000] ms"),
    "min_window_ms": (_ms("min_window_ms", 60_000.0), "(0, max_window_ms] ms"),
    "max_window_ms": (_ms("max_window_ms", 60_000.0), "[min_window_ms, 60000] ms"),
    "enable_priorities": (lambda v: _flag("enable_priorities", v), "True | False"),
    "max_inflight_batches": (_int("max_inflight_batches", 1, 1024), "[1, 1024]"),
    "max_queue": (_int("max_queue", 1, 10_000_000), "[1, 10000000]"),
    "on_full": (lambda v: _choice("on_full", v, ON_FULL), " | ".join(ON_FULL)),
    "cost_per_request_usd": (
        lambda v: _number("cost_per_request_usd", v, 0.0, 1e6, lo_open=False, integer=False),
        "[0, 1000000]",
    ),
    "max_request_bytes": (_int("max_request_bytes", 64, 64 * 1024 * 1024), "[64, 67108864]"),
    "max_result_bytes": (_int("max_result_bytes", 64, 64 * 1024 * 1024), "[64, 67108864]"),
    "reuse": (_check_reuse, "off | exact | near"),
    "reuse_ttl_s": (
        lambda v: _number("reuse_ttl_s", v, 0.0, 86_400.0, lo_open=True, integer=False),
        "(0, 86400] s",
    ),
    "reuse_max_entries": (_int("reuse_max_entries", 1, 100_000_000), "[1, 100000000]"),
    "reuse_max_bytes": (_int("reuse_max_bytes", 4096, 1 << 40), "[4096, 1099511627776]"),
}


class BatchOptions(TypedDict, total=False):
    """Every option of a BatchProcessor as typed keyword arguments (``**options:
    Unpack[BatchOptions]``): what ``BatchProcessor(...)`` and ``stratabatch.batch(...)`` take.

    The types are what the options accept (a number may be an int; a tuple of names may be one
    name); :class:`BatchConfig` holds them as validated. A test keeps the keys equal to the
    option table, so neither can gain an option the other lacks.
    """

    window_ms: float
    max_size: int
    min_size: int
    max_wait_ms: float
    processing_timeout: float | None
    enable_dedup: bool
    dedup_strategy: Literal["embedding", "exact", "hybrid"]
    dedup_threshold: float | None
    dedup_key: str
    normalize: bool
    dedup_scope: str | Iterable[str]
    guard_numbers: bool
    dedup_guards: str | Iterable[str] | None
    canonicalize: bool
    dedup_function: Callable[[Any, Any], float] | None
    embedder: Any
    cold_start: Literal["serve", "wait"]
    adaptive: bool
    target_latency_ms: float
    min_window_ms: float
    max_window_ms: float
    enable_priorities: bool
    max_inflight_batches: int
    max_queue: int
    on_full: Literal["wait", "reject", "drop_lowest"]
    cost_per_request_usd: float
    max_request_bytes: int
    max_result_bytes: int
    reuse: Literal["off", "exact", "near"] | None
    reuse_ttl_s: float
    reuse_max_entries: int
    reuse_max_bytes: int


@dataclass
class BatchConfig:
    """All options of a BatchProcessor, validated on construction and on every assignment.

    See the README's option table for what each one does.
    """

    window_ms: float = 50.0
    max_size: int = 32
    min_size: int = 1
    max_wait_ms: float = 100.0
    processing_timeout: float | None = 30.0
    enable_dedup: bool = True
    dedup_strategy: str = "embedding"
    dedup_threshold: float | None = None
    dedup_key: str = "query"
    normalize: bool = True
    dedup_scope: tuple[str, ...] = ()
    guard_numbers: bool = True
    dedup_guards: tuple[str, ...] = GUARDS
    canonicalize: bool = True
    dedup_function: Callable[[Any, Any], float] | None = None
    embedder: Any = None
    cold_start: str = "serve"
    adaptive: bool = False
    target_latency_ms: float = 50.0
    min_window_ms: float = 20.0
    max_window_ms: float = 200.0
    enable_priorities: bool = False
    max_inflight_batches: int = 4
    max_queue: int = 10_000
    on_full: str = "wait"
    cost_per_request_usd: float = 0.0
    max_request_bytes: int = 1024 * 1024
    max_result_bytes: int = 1024 * 1024
    reuse: str = "off"
    reuse_ttl_s: float = 60.0
    reuse_max_entries: int = 10_000
    reuse_max_bytes: int = 64 * 1024 * 1024

    def __post_init__(self) -> None:
        for f in fields(self):
            object.__setattr__(self, f.name, _VALIDATORS[f.name][0](getattr(self, f.name)))
        self._check_pairs(None)
        object.__setattr__(self, "_ready", True)

    @property
    def reads_vectors(self) -> bool:
        """Whether near dedup reads (and checks) a request's own ``"embedding"`` field: with
        dedup on, a strategy other than exact, or a ``dedup_function``."""
        return self.enable_dedup and (
            self.dedup_strategy != "exact" or self.dedup_function is not None
        )

    def __setattr__(self, name: str, value: Any) -> None:
        if not self.__dict__.get("_ready"):
            object.__setattr__(self, name, value)
            return
        if name not in _VALIDATORS:
            raise unknown_option(name)
        old = getattr(self, name)
        object.__setattr__(self, name, _VALIDATORS[name][0](value))
        try:
            self._check_pairs(name)
        except ConfigError:
            object.__setattr__(self, name, old)
            raise
        for fn in self.__dict__.get("_listeners", ()):
            fn(name)

    def subscribe(self, fn: Callable[[str], None]) -> None:
        """Call ``fn(name)`` after every accepted assignment (the core applies changes so)."""
        listeners = self.__dict__.setdefault("_listeners", [])
        listeners.append(fn)

    def _check_pairs(self, changed: str | None) -> None:
        if self.min_size > self.max_size:
            field = "max_size" if changed == "max_size" else "min_size"
            raise ConfigError(
                f"min_size must be in [1, max_size={self.max_size}], got {self.min_size}"
                if field == "min_size"
                else f"max_size must be >= min_size={self.min_size}, got {self.max_size}",
                field=field,
            )
        if self.min_window_ms > self.max_window_ms:
            field = "max_window_ms" if changed == "max_window_ms" else "min_window_ms"
            raise ConfigError(
                f"min_window_ms ({self.min_window_ms:g}) must not exceed "
                f"max_window_ms ({self.max_window_ms:g})",
                field=field,
            )
        if self.reuse != "off" and not self.enable_dedup:
            field = "enable_dedup" if changed == "enable_dedup" else "reuse"
            raise ConfigError(
                f"reuse={self.reuse!r} needs enable_dedup=True (an answer is reused under its "
                "request's dedup key); set reuse='off' first"
                if field == "enable_dedup"
                else f"reuse={self.reuse!r} needs enable_dedup=True (an answer is reused under "
                "its request's dedup key)",
                field=field,
            )

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        """The option names, in the documented order."""
        return tuple(f.name for f in fields(cls))

    @staticmethod
    def allowed(name: str) -> str:
        """The allowed range of option ``name``, as the README and --help print it."""
        return _VALIDATORS[name][1]


def closest_option(name: str) -> str | None:
    """The option name a mistyped ``name`` most likely meant, or None if none is close."""
    match = difflib.get_close_matches(name, _VALIDATORS, n=1, cutoff=0.6)
    return match[0] if match else None


def unknown_option(name: str, *others: str) -> ConfigError:
    """The error for an unknown option ``name`` (and ``others``, unknown too): it suggests
    the closest known option, or lists them all when none is close."""
    guess = closest_option(name) if isinstance(name, str) else None
    hint = (
        f"did you mean {guess!r}?"
        if guess is not None
        else f"the options are {', '.join(sorted(_VALIDATORS))}"
    )
    also = f" (also unknown: {', '.join(repr(o) for o in others)})" if others else ""
    return ConfigError(f"unknown option {name!r}{also}; {hint}", field=name)


def check_option_names(names: Iterable[str]) -> None:
    """Refuse option names that are not options.

    Raises:
        ConfigError: a name is unknown; the message suggests the closest option (difflib),
            e.g. ``unknown option 'window_msx'; did you mean 'window_ms'?``.
    """
    unknown = [n for n in names if n not in _VALIDATORS]
    if unknown:
        first, *others = sorted(unknown, key=str)
        raise unknown_option(first, *others)
