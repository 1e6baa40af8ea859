"""Routing twins to one Ray Serve replica: the keys, the rendezvous choice, the overload
fallback, and the ``RequestRouter`` that applies them (issue 22).

Each replica of a :mod:`stratabatch.ray` deployment runs its own core, so two requests merge
only when they reach the same replica, and a repeat is answered from the reuse cache (the
``reuse`` option) only on the replica that stored its answer. The router sends them there:

* **Key.** :func:`route_key` is the core's exact key as bytes: the ``dedup_scope`` fields'
  canonical encoding, then the text under ``dedup_key`` after
  :func:`~stratabatch.dedup.normalize_key` (or as given with ``normalize=False``), or, for a
  request without that text, the canonical encoding of the whole request. Two requests the
  core's exact dedup would merge have equal keys, from any process. With a near strategy
  (``"embedding"``, ``"hybrid"``) the router keys by :func:`coarse_key` instead: the scope and
  the :data:`COARSE_WORDS` lowest-ranked key words of the canonical text's last
  :data:`COARSE_TAIL` key words, dictionary words first, so that most near twins (a typo, a
  filler, a question frame, case and punctuation apart) share it. It is a function of the
  exact key's text, so exact twins always share it too. perf/eval_ray_keys.py measures it.
* **Rendezvous.** A key goes to the replica of highest weight ``mix(h(key) ^ h(replica id))``
  (:func:`rendezvous`, highest random weight): every router in every process computes the
  same replica from the same set, with no shared state. When a replica leaves, only its keys
  move (each to its next-highest replica); when one joins, it takes about ``1/N`` of the keys,
  from all the others, and nothing else moves.
* **Balance.** :func:`choose` prefers the key's replica unless its queue (the router's known
  count of ongoing requests there) is more than ``imbalance`` above the shortest known queue
  of the others; then it falls back to the power of two choices among the others. After a
  request's first :data:`PREFERRED_TRIES` tries (the key's replica alone) it offers two random
  others as a second rank too, which Serve takes only when the preferred replica is full or
  does not answer. The router counts where requests went: ``preferred``, ``fallback`` and
  ``unkeyed`` (a request it could not key, routed as Serve's default router would).

The router (:func:`router_class`, also importable as ``stratabatch.rayrouter.TwinRouter``)
imports Ray when it is first asked for: the rest of this module is pure and needs no Ray.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from hashlib import blake2b
from typing import TYPE_CHECKING, Any

from .canon import canonical_texts
from .dedup import canonical_bytes, normalize_key, scope_of
from .errors import ConfigError
from .lexicon import COMMON_WORDS, dictionary, ignorable

if TYPE_CHECKING:
    from ray.serve.request_router import RequestRouter

__all__ = [
    "COARSE_TAIL",
    "COARSE_WORDS",
    "IMBALANCE_SHARE",
    "PREFERRED_TRIES",
    "STRATEGIES",
    "Choice",
    "RouteCounts",
    "choose",
    "coarse_key",
    "key_for",
    "live_router",
    "request_of",
    "rendezvous",
    "rendezvous_order",
    "route_counts",
    "route_key",
    "router_class",
]

log = logging.getLogger("stratabatch.rayrouter")

COARSE_WORDS = 2
"""How many key words make a coarse key: the lowest-ranked ones (rare-looking words first,
:mod:`stratabatch.wordkeys`'s order). One word lets more near twins meet (a typo must miss one
word, not two) but puts every text whose rarest word is a domain's common word on one
replica; three lets fewer meet. Chosen with perf/eval_ray_keys.py."""

COARSE_TAIL = 12
"""The coarse key reads the last this many key words of the canonical text: a long prompt's
question, not the preamble every prompt shares (which would send them all to one replica)."""

IMBALANCE_SHARE = 0.5
"""Without an ``imbalance`` option, the threshold is this share of a replica's
``max_ongoing_requests``: the preferred replica may hold that many more ongoing requests than
the least busy other before requests fall back (and, once full, it takes none anyway). A
replica's twins count one each there though they cost one handler item, so the bound is loose
by design."""

PREFERRED_TRIES = 3
"""The router's first tries of a request offer its key's replica alone (unless overloaded):
Serve probes a replica whose queue length it does not know with a deadline of 0.1 s, doubled
at each try, and a busy replica (or a busy caller) misses the first ones. A dead replica is no
wait: Serve drops it at once, and its keys have another replica."""

STRATEGIES = ("exact", "embedding", "hybrid")
"""The dedup strategies the router knows; the near ones key by :func:`coarse_key`."""

_M64 = (1 << 64) - 1


# ---------------------------------------------------------------------------------------------
# Keys
# ---------------------------------------------------------------------------------------------


def _h64(data: bytes) -> int:
    return int.from_bytes(blake2b(data, digest_size=8).digest(), "little")


def _framed(kind: bytes, scope: bytes, body: bytes) -> bytes:
    # the scope's length first: no scope and body can run together into another's
    return kind + len(scope).to_bytes(4, "big") + scope + body


def route_key(
    request: Mapping[str, Any],
    *,
    dedup_key: str = "query",
    dedup_scope: Sequence[str] = (),
    normalize: bool = True,
) -> bytes:
    """The exact key of ``request``, as bytes: equal for two requests exactly when the core's
    exact dedup (the same options) would merge them.

    Args:
        request: The request mapping.
        dedup_key: The field holding the text.
        dedup_scope: Fields that must be equal to merge; they are part of the key.
        normalize: Whether the text is normalized (NFKC, casefold, whitespace collapse) first,
            as the core's option of that name.

    Raises:
        TypeError: ``request`` is not a mapping, or holds what msgpack cannot encode.
    """
    if not isinstance(request, Mapping):
        raise TypeError(f"a request must be a mapping, got {type(request).__name__}")
    scope = scope_of(request, tuple(dedup_scope))
    text = request.get(dedup_key)
    if isinstance(text, str):
        norm = normalize_key(text) if normalize else text
        return _framed(b"t", scope, norm.encode("utf-8", "surrogatepass"))
    return _framed(b"r", scope, canonical_bytes(request))


_ranks: dict[str, int] = {}


def _rank(word: str) -> int:
    """A key word's place in the coarse key's order: rare-looking words (3+ letters, not in
    :data:`~stratabatch.lexicon.COMMON_WORDS`) first, as the word index orders them
    (:mod:`stratabatch.wordkeys`), then by a hash of the word (the same in every process)."""
    common = len(word) < 3 or word in COMMON_WORDS
    r = (common << 64) | _h64(word.encode("utf-8", "surrogatepass"))
    if len(_ranks) >= 1 << 16:
        _ranks.clear()
    _ranks[word] = r
    return r


def coarse_key(
    request: Mapping[str, Any],
    *,
    dedup_key: str = "query",
    dedup_scope: Sequence[str] = (),
    words: int = COARSE_WORDS,
    tail: int = COARSE_TAIL,
    dictionary_first: bool = True,
) -> bytes | None:
    """A key that most near twins of ``request`` share, or None when it has no text (then only
    exact twins merge, and :func:`route_key` is the key).

    The text is normalized (:func:`~stratabatch.dedup.normalize_key`) and made canonical
    (:func:`~stratabatch.canon.canonical_texts`: courtesy, fillers, frames and spelling
    folded); its key words are the canonical words but the ignorable ones
    (:func:`~stratabatch.lexicon.ignorable`). Of the last :data:`COARSE_TAIL` of them, those in
    the dictionary (or holding a digit) are kept, when any is: a typo is rarely a dictionary
    word, so a twin with a typo keeps the same set but for the mistyped word. The key is the
    scope and the :data:`COARSE_WORDS` lowest ranks among them (rare-looking words first, as
    :mod:`stratabatch.wordkeys` ranks them); a text without key words is keyed by its
    canonical words.

    ``words``, ``tail`` and ``dictionary_first`` change the recipe, for measuring others
    (perf/eval_ray_keys.py); the router uses the defaults. ``tail=0`` reads every key word.

    Raises:
        TypeError: ``request`` is not a mapping, or its scope fields hold what msgpack cannot
            encode.
    """
    if not isinstance(request, Mapping):
        raise TypeError(f"a request must be a mapping, got {type(request).__name__}")
    text = request.get(dedup_key)
    if not isinstance(text, str):
        return None
    scope = scope_of(request, tuple(dedup_scope))
    tokens = canonical_texts([normalize_key(text)])[0].split()
    keys = [w for w in tokens if not ignorable(w)][-tail:]
    if dictionary_first:
        known = dictionary()
        keys = [w for w in keys if w in known or not w.isalpha()] or keys
    ranks = sorted({_ranks.get(w) or _rank(w) for w in keys})[:words]
    if not ranks:
        return _framed(b"c", scope, " ".join(tokens).encode("utf-8", "surrogatepass"))
    return _framed(b"w", scope, b"".join(r.to_bytes(9, "big") for r in ranks))


def key_for(
    request: Mapping[str, Any],
    *,
    strategy: str = "exact",
    dedup_key: str = "query",
    dedup_scope: Sequence[str] = (),
    normalize: bool = True,
) -> bytes:
    """The key the router routes ``request`` by: :func:`coarse_key` for the near strategies
    when the request has a text, else :func:`route_key`.

    Raises:
        TypeError: as :func:`route_key`.
    """
    if strategy != "exact":
        key = coarse_key(request, dedup_key=dedup_key, dedup_scope=dedup_scope)
        if key is not None:
            return key
    return route_key(request, dedup_key=dedup_key, dedup_scope=dedup_scope, normalize=normalize)


def request_of(args: Sequence[Any]) -> Mapping[str, Any] | None:
    """The request a call routes by: its first positional argument when that is a mapping,
    the first element when it is a non-empty list (or tuple) of mappings (a list call is
    routed as a whole, by its first request), else None."""
    if not args:
        return None
    first = args[0]
    if isinstance(first, Mapping):
        return first
    if isinstance(first, (list, tuple)) and first and isinstance(first[0], Mapping):
        return first[0]
    return None


# ---------------------------------------------------------------------------------------------
# Rendezvous and the overload fallback
# ---------------------------------------------------------------------------------------------


@lru_cache(maxsize=4096)
def _seed(replica: str) -> int:
    return _h64(b"replica\0" + replica.encode("utf-8", "surrogatepass"))


def _weight(key64: int, replica: str) -> int:
    # splitmix64's finalizer over the key's hash xor the replica's: a bijection that spreads
    # every input bit over the output, so each replica's weights are independent draws
    x = key64 ^ _seed(replica)
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def rendezvous_order(key: bytes, replicas: Iterable[str]) -> list[str]:
    """The replicas by their weight for ``key``, highest first (ties, which need a 64-bit
    collision, by id): the first is the key's replica, the second where it goes if the first
    leaves."""
    k = _h64(key)
    return sorted(replicas, key=lambda r: (_weight(k, r), r), reverse=True)


def rendezvous(key: bytes, replicas: Iterable[str]) -> str:
    """The replica of ``key`` among ``replicas`` (ids): the one of highest weight.

    Raises:
        ValueError: ``replicas`` is empty.
    """
    k = _h64(key)
    best: tuple[int, str] | None = None
    for r in replicas:
        w = (_weight(k, r), r)
        if best is None or w > best:
            best = w
    if best is None:
        raise ValueError("no replica to choose from")
    return best[1]


@dataclass(frozen=True, slots=True)
class Choice:
    """Where one request may go, best first."""

    preferred: str
    """The key's replica (:func:`rendezvous`)."""
    ranks: tuple[tuple[str, ...], ...]
    """Replica ids in ranks, as Serve's ``choose_replicas`` returns them: Serve takes the
    least busy replica of the first rank that has room, and tries the next rank when none
    has."""
    fallback: bool
    """Whether the preferred replica was passed over for its load."""


def choose(
    key: bytes,
    replicas: Sequence[str],
    queue_lens: Mapping[str, int],
    *,
    imbalance: int,
    rng: random.Random | None = None,
    alone: bool = False,
) -> Choice:
    """Where a request of ``key`` goes.

    The preferred replica, unless its queue is more than ``imbalance`` above the shortest
    known queue of the others: then two random others (the power of two choices), and the
    preferred one after them. Otherwise the preferred one, then two random others, which Serve
    takes only when the preferred is full or does not answer its queue-length probe; with
    ``alone``, the preferred one alone (the router's first :data:`PREFERRED_TRIES` tries of a
    request: Serve asks again with a longer probe deadline, so that a busy replica slow to
    answer a probe keeps its keys). An unknown queue (not in ``queue_lens``) is not held
    against a replica.

    Args:
        key: The request's key (:func:`key_for`).
        replicas: The replica ids to choose from.
        queue_lens: Known ongoing requests per replica id.
        imbalance: How far above the least busy other the preferred replica's queue may be.
        rng: The random source for the two choices (``random`` by default).
        alone: Offer the preferred replica alone, unless it is overloaded.

    Raises:
        ValueError: ``replicas`` is empty.
    """
    preferred = rendezvous(key, replicas)
    others = [r for r in replicas if r != preferred]
    if not others:
        return Choice(preferred, ((preferred,),), False)
    own = queue_lens.get(preferred)
    least = min((queue_lens[r] for r in others if r in queue_lens), default=None)
    overloaded = own is not None and least is not None and own - least > imbalance
    if alone and not overloaded:
        return Choice(preferred, ((preferred,),), False)
    pick = tuple((rng or random).sample(others, min(2, len(others))))
    if overloaded:
        return Choice(preferred, (pick, (preferred,)), True)
    return Choice(preferred, ((preferred,), pick), False)


# ---------------------------------------------------------------------------------------------
# Counts
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RouteCounts:
    """How many requests the twin routers of this process sent where."""

    preferred: int = 0
    """To their key's replica."""
    fallback: int = 0
    """To another replica: the preferred one was overloaded, full or did not answer."""
    unkeyed: int = 0
    """Without a key (the call's first argument was no request mapping, or its key could
    not be computed): where Serve's default router would have sent them."""

    def __add__(self, other: RouteCounts) -> RouteCounts:
        return RouteCounts(
            self.preferred + other.preferred,
            self.fallback + other.fallback,
            self.unkeyed + other.unkeyed,
        )


_CHOICES = ("preferred", "fallback", "unkeyed")
_totals: dict[tuple[str, str], list[int]] = {}
_totals_lock = threading.Lock()


def _count(application: str, deployment: str, choice: int) -> None:
    with _totals_lock:
        row = _totals.get((application, deployment))
        if row is None:
            row = _totals[(application, deployment)] = [0, 0, 0]
        row[choice] += 1


def route_counts(application: str | None = None, deployment: str | None = None) -> RouteCounts:
    """The routing counts of every twin router in this process, for one application and
    deployment, or summed over those not named.

    A router lives in the process that holds the handle (an ingress replica, the driver), so
    this reads one process's share; the same counts go to Ray's metrics as the counter
    ``stratabatch_router_requests_total`` (tags ``application``, ``deployment``, ``choice``), summed
    there over the cluster.
    """
    total = RouteCounts()
    with _totals_lock:
        rows = list(_totals.items())
    for (app, dep), row in rows:
        if (application is None or app == application) and (
            deployment is None or dep == deployment
        ):
            total = total + RouteCounts(*row)
    return total


# ---------------------------------------------------------------------------------------------
# The routers of this process, for callers that group requests by replica
# ---------------------------------------------------------------------------------------------

_live: dict[tuple[str, str], weakref.ref[Any]] = {}


def _register(application: str, deployment: str, router: Any) -> None:
    _live[(application, deployment)] = weakref.ref(router)


def live_router(application: str, deployment: str) -> Any | None:
    """The twin router that routes this process's calls to ``deployment`` of
    ``application``, or None when none does (yet: Serve makes a handle's router once the
    controller has sent the deployment's configuration, after the handle's first use; or
    never: the deployment uses another router).

    Its public face, for a caller that groups requests by the replica they go to
    (:class:`stratabatch.rayclient.CoalescingHandle`): ``replica_ids`` (the ids it ranks,
    sorted), ``keys_ready`` (the near keys' kernels are loaded) and ``key_of(request)``
    (:func:`key_for` with the deployment's options, None for a request it cannot key).
    ``rendezvous(router.key_of(request), router.replica_ids)`` is where it sends the request,
    or a list that starts with it, while the replica is under the imbalance threshold.
    """
    ref = _live.get((application, deployment))
    return None if ref is None else ref()


# ---------------------------------------------------------------------------------------------
# The RequestRouter
# ---------------------------------------------------------------------------------------------

_PENDING_MAX = 1 << 16  # requests a router is choosing for at once, before it sweeps
_ROUTED_MAX = 4096  # requests given a replica, until Serve says the replica took them


def _module() -> Any:
    # Serve pickles the router class by value with its module's functions; state shared by
    # the routers of a process (the counts) lives in the module imported here, by name
    import importlib

    return importlib.import_module("stratabatch.rayrouter")


def _options(kwargs: Mapping[str, Any]) -> tuple[str, tuple[str, ...], bool, str, int | None]:
    """The router's options from ``request_router_kwargs``, checked.

    Raises:
        ConfigError: an unknown option or a value out of range.
    """
    known = {"dedup_key", "dedup_scope", "normalize", "strategy", "imbalance"}
    extra = sorted(set(kwargs) - known)
    if extra:
        raise ConfigError(f"unknown twin-router options {extra}; known: {sorted(known)}")
    dedup_key = kwargs.get("dedup_key", "query")
    scope = kwargs.get("dedup_scope", ())
    normalize = kwargs.get("normalize", True)
    strategy = kwargs.get("strategy", "exact")
    imbalance = kwargs.get("imbalance")
    if not isinstance(dedup_key, str):
        raise ConfigError(f"dedup_key must be a str, got {dedup_key!r}")
    if isinstance(scope, str) or not all(isinstance(f, str) for f in scope):
        raise ConfigError(f"dedup_scope must be a list of field names, got {scope!r}")
    if not isinstance(normalize, bool):
        raise ConfigError(f"normalize must be a bool, got {normalize!r}")
    if strategy not in STRATEGIES:
        raise ConfigError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    if imbalance is not None and (
        isinstance(imbalance, bool) or not isinstance(imbalance, int) or imbalance < 0
    ):
        raise ConfigError(f"imbalance must be an int >= 0 or None, got {imbalance!r}")
    return dedup_key, tuple(scope), normalize, strategy, imbalance


_router_class: type[RequestRouter] | None = None


def router_class() -> type[RequestRouter]:
    """The twin router, a ``ray.serve.request_router.RequestRouter`` (imports Ray).

    Give it to Serve as ``RequestRouterConfig(request_router_class=router_class(),
    request_router_kwargs={...})`` (or by its path, ``"stratabatch.rayrouter.TwinRouter"``);
    the kwargs are ``dedup_key``, ``dedup_scope``, ``normalize``, ``strategy`` and
    ``imbalance`` (None or left out: :data:`IMBALANCE_SHARE` of the replicas'
    ``max_ongoing_requests``), as the deployment's options.
    """
    global _router_class
    if _router_class is None:
        _router_class = _make_router_class()
    return _router_class


def __getattr__(name: str) -> Any:
    if name == "TwinRouter":
        return router_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _make_router_class() -> type[RequestRouter]:
    from ray.serve._private.common import RequestMetadata
    from ray.serve._private.request_router.common import PendingRequest
    from ray.serve.request_router import (
        ReplicaID,
        ReplicaResult,
        RequestRouter,
        RunningReplica,
    )

    class TwinRouter(RequestRouter):
        """Sends twins (same scope and key) to one replica: the key's rendezvous replica
        unless it is overloaded (see :mod:`stratabatch.rayrouter`).

        Options (``initialize_state``): ``dedup_key``, ``dedup_scope``, ``normalize``,
        ``strategy`` (the deployment's dedup options) and ``imbalance``. A request it cannot
        key (the call's first argument is no mapping, a field it cannot encode) goes where
        Serve's default router would send it, and is counted as ``unkeyed``; nothing a request
        holds makes the router raise.
        """

        def initialize_state(self, **kwargs: Any) -> None:
            (
                self._dedup_key,
                self._scope,
                self._normalize,
                self._strategy,
                self._imbalance,
            ) = _options(kwargs)
            # id(request.metadata) -> (request, its preferred replica or None when unkeyed,
            # tries so far), from its first try until it is given a replica (kept with the
            # request, so that an id is never a later request's). By metadata: what Serve
            # hands _fulfill_next_pending_request to name the request
            # (internal_request_id does not: the calls one request makes share it)
            self._preferred: dict[int, tuple[PendingRequest, str | None, int]] = {}
            # then id(metadata) -> (metadata, preferred) until Serve says the replica took it
            # (on_request_routed); only the metadata is kept, not the request's arguments
            self._routed: dict[int, tuple[RequestMetadata, str | None]] = {}
            self._rng = random.Random()
            self.replica_ids: tuple[str, ...] = ()
            """The replicas it ranks (Serve's running replicas but those seen dead), sorted."""
            self._counter: Any = None
            self._tags = (self.app_name, self._deployment_id.name)
            try:
                from ray.util import metrics

                self._counter = metrics.Counter(
                    "stratabatch_router_requests_total",
                    description=(
                        "Requests the stratabatch twin router sent, by choice: preferred (the "
                        "key's replica), fallback (another: the preferred was overloaded, "
                        "full or unreachable), unkeyed (no key: Serve's default choice)."
                    ),
                    tag_keys=("application", "deployment", "choice"),
                )
            except Exception as e:  # metrics are an extra; routing works without them
                log.warning("stratabatch twin router: no Ray metrics (%s)", e)
            # the near keys need the canonical text's kernels: loaded in a thread, and until
            # they are, keys are computed in threads so that the router's loop keeps going
            self._ready = threading.Event()
            if self._strategy == "exact":
                self._ready.set()
            else:
                threading.Thread(
                    target=self._warm_up, name="stratabatch-router-warmup", daemon=True
                ).start()
            _module()._register(*self._tags, self)

        @property
        def keys_ready(self) -> bool:
            """Whether keys are computed at once (the near keys' kernels are loaded)."""
            return self._ready.is_set()

        def key_of(self, request: Mapping[str, Any]) -> bytes | None:
            """The key the router routes ``request`` by, None when it cannot key it."""
            try:
                return self._key(request)
            except Exception:
                return None

        def update_replicas(self, replicas: list[RunningReplica]) -> None:
            super().update_replicas(replicas)
            self.replica_ids = tuple(sorted(r.replica_id.unique_id for r in replicas))

        def on_replica_actor_died(self, replica_id: ReplicaID) -> None:
            super().on_replica_actor_died(replica_id)
            gone = replica_id.unique_id
            self.replica_ids = tuple(r for r in self.replica_ids if r != gone)

        def _warm_up(self) -> None:
            try:
                self._key({self._dedup_key: "warm up the twin router"})
            except Exception as e:
                log.warning("stratabatch twin router: warm-up failed (%s)", e)
            finally:
                self._ready.set()

        def _key(self, request: Mapping[str, Any]) -> bytes:
            return key_for(
                request,
                strategy=self._strategy,
                dedup_key=self._dedup_key,
                dedup_scope=self._scope,
                normalize=self._normalize,
            )

        async def _key_of(self, pending: PendingRequest | None) -> bytes | None:
            if pending is None:
                return None
            request = request_of(pending.args)
            if request is None:
                return None
            try:
                if self._ready.is_set():
                    return self._key(request)
                return await asyncio.to_thread(self._key, request)
            except Exception:
                return None

        async def choose_replicas(
            self,
            candidate_replicas: list[RunningReplica],
            pending_request: PendingRequest | None = None,
        ) -> list[list[RunningReplica]]:
            if not candidate_replicas:
                return []
            memo = self._preferred
            tries = 0
            preferred: str | None = None
            try:
                if pending_request is not None:
                    # without this Serve asks again at once, without end, while no replica
                    # takes the request (its own routers set it through a mixin)
                    pending_request.routing_context.should_backoff = True
                    seen = memo.get(id(pending_request.metadata))
                    if seen is not None and seen[0] is pending_request:
                        tries = seen[2]
                key = await self._key_of(pending_request)
                by_id = {r.replica_id.unique_id: r for r in candidate_replicas}
                if key is None:
                    choice_ranks: tuple[tuple[str, ...], ...] = (
                        tuple(self._rng.sample(sorted(by_id), min(2, len(by_id)))),
                    )
                else:
                    lens: dict[str, int] = {}
                    if self._use_replica_queue_len_cache:
                        cache = self._replica_queue_len_cache
                        for rid, r in by_id.items():
                            n = cache.get(r.replica_id)
                            if n is not None:
                                lens[rid] = n
                    imbalance = self._imbalance
                    if imbalance is None:
                        most = min(r.max_ongoing_requests for r in candidate_replicas)
                        imbalance = int(most * IMBALANCE_SHARE)
                    choice = choose(
                        key,
                        sorted(by_id),
                        lens,
                        imbalance=imbalance,
                        rng=self._rng,
                        alone=tries < PREFERRED_TRIES,
                    )
                    choice_ranks = choice.ranks
                    preferred = choice.preferred
                ranks = [[by_id[rid] for rid in rank] for rank in choice_ranks]
            except Exception as e:  # never fail Serve's routing: its own default choice
                log.warning("stratabatch twin router: routing by default (%r)", e)
                preferred = None
                ranks = [self._rng.sample(candidate_replicas, min(2, len(candidate_replicas)))]
            if pending_request is not None:
                if len(memo) >= _PENDING_MAX:
                    self._sweep()
                at = id(pending_request.metadata)
                memo.pop(at, None)  # (to the end: the oldest go first)
                memo[at] = (pending_request, preferred, tries + 1)
            return ranks

        def _fulfill_next_pending_request(
            self,
            replica: RunningReplica,
            request_metadata: RequestMetadata | None = None,
        ) -> None:
            # Serve's base router finds the request by its internal_request_id, which the
            # handle calls made while serving one request share: with several such calls
            # pending, all but one would never be given their replica (Serve's own router
            # hands the replica to the oldest pending request instead, which would send a key
            # to another's replica). The router knows each request it chose for.
            entry = None if request_metadata is None else self._preferred.get(id(request_metadata))
            if entry is None or entry[0].metadata is not request_metadata:
                super()._fulfill_next_pending_request(replica, request_metadata)
                return
            pending = entry[0]
            if pending.future.done():
                return
            self._cancel_routing_task_for_pending_request(pending)
            self._record_queue_wait_time(pending)
            pending.future.set_result(replica)
            self._remove_pending_request_from_indices(pending)
            del self._preferred[id(request_metadata)]
            routed = self._routed
            if len(routed) >= _ROUTED_MAX:  # (Serve reports no routed request outside its
                del routed[next(iter(routed))]  # strict mode: the oldest go)
            routed[id(request_metadata)] = (pending.metadata, entry[1])

        def _sweep(self) -> None:
            """Forget the requests whose caller gave up before they were given a replica;
            the oldest others too if as many are still being chosen for."""
            memo = self._preferred
            for at in [at for at, e in memo.items() if e[0].future.done()]:
                del memo[at]
            while len(memo) >= _PENDING_MAX:
                del memo[next(iter(memo))]

        def on_request_routed(
            self,
            pending_request: PendingRequest,
            replica_id: ReplicaID,
            result: ReplicaResult,
        ) -> None:
            try:
                meta = pending_request.metadata
                entry = self._routed.pop(id(meta), None)
                if entry is None or entry[0] is not meta:
                    return
                preferred = entry[1]
                if preferred is None:
                    choice = 2
                elif preferred == replica_id.unique_id:
                    choice = 0
                else:
                    choice = 1
                _module()._count(*self._tags, choice)
                if self._counter is not None:
                    self._counter.inc(
                        1,
                        tags={
                            "application": self._tags[0],
                            "deployment": self._tags[1],
                            "choice": _CHOICES[choice],
                        },
                    )
            except Exception as e:
                log.warning("stratabatch twin router: not counted (%r)", e)

    TwinRouter.__module__ = __name__
    TwinRouter.__qualname__ = "TwinRouter"
    return TwinRouter
