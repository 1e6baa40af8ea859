"""The embedded processor: ``BatchProcessor``, the core driven by asyncio futures."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, cast, overload

from .calls import Call, Completed  # (Completed: stratabatch.Completed is imported from here)
from .config import BatchConfig, check_option_names
from .core import Core, Request
from .errors import (
    InvalidRequestError,
    StratabatchError,
)
from .lane import ROW, LaneGroup
from .requests import build_request, check_call_args, flat_size, request_size
from .reusecontrol import check_reuse_flag
from .reusecontrol import forget as _forget
from .stats import Stats

if TYPE_CHECKING:
    from typing import Unpack

    from .config import BatchOptions

_OPTIONS = frozenset(BatchConfig.option_names())
R = TypeVar("R")


class BatchProcessor(Generic[R]):
    """Collects requests for a short window, merges duplicates, calls the handler once per
    unique request, and gives every caller its own result.

    Args:
        handler: ``list[request] -> list[result]``, async or sync (sync handlers run in a
            thread, so the event loop keeps collecting). May be set later with
            ``@batch.handler``.
        **options: See :class:`~stratabatch.config.BatchConfig` and the README's option
            table (typed as :class:`~stratabatch.BatchOptions`). Every option can be changed
            at run time by assignment (``batch.dedup_threshold = 0.95``), validated the same
            way.

    For a type checker the processor is generic in its result type ``R``, taken from the
    handler's return annotation (``list[R]``, ``Sequence[R]``, or an awaitable of one):
    ``process()`` of one request returns ``R``, of a list ``list[R]``. Typing only: nothing
    is checked at run time.

    Raises:
        ConfigError: an option is unknown (the message suggests the closest one) or out of
            range.
    """

    @overload
    def __init__(
        self,
        handler: Callable[[list[Any]], Awaitable[Sequence[R]]],
        **options: Unpack[BatchOptions],
    ) -> None: ...
    @overload
    def __init__(
        self, handler: Callable[[list[Any]], Sequence[R]], **options: Unpack[BatchOptions]
    ) -> None: ...
    @overload
    def __init__(
        self: BatchProcessor[Any], handler: None = None, **options: Unpack[BatchOptions]
    ) -> None: ...
    def __init__(
        self, handler: Callable[..., Any] | None = None, **options: Unpack[BatchOptions]
    ) -> None:
        check_option_names(options)
        # BatchConfig's fields hold what validation makes of the options (a str scope becomes
        # a tuple); its constructor takes what BatchOptions allows
        config = BatchConfig(**cast("dict[str, Any]", options))
        self._config = config
        core = Core(config, self._deliver, handler)
        self._core = core
        # callers the core moved between its row lane and its general path: (id(sink), id)
        # -> what holds them now (their abandon must find it); empty almost always
        self._moved: dict[tuple[int, int], Any] = {}
        # the loop single calls take the inline path on (the core's, bound by the first
        # call), None before and once close() began (a single call then takes _queue_one,
        # whose check refuses it, as the core's own refusal comes first); and how they
        # make their future there (see _bind_calls)
        self._ready: asyncio.AbstractEventLoop | None = None
        self._new_future: Callable[[], asyncio.Future[Any]] | None = None
        core.enable_lane(self._lane_deliver, self._lane_fail, self._lane_repoint, near=True)

    # ------------------------------------------------------------- options

    if TYPE_CHECKING:  # (at run time each option is a property: see _option below)

        def __getattr__(self, name: str) -> Any: ...

    @property
    def config(self) -> BatchConfig:
        """The live options (assigning to them is validated too)."""
        return self._config

    def handler(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Decorator installing ``fn`` as the batch handler; returns ``fn`` unchanged."""
        self._core.set_handler(fn)
        return fn

    # ------------------------------------------------------------- requests

    def _record(
        self, request: Any, index: int, call: Any, priority: int, deadline: float | None
    ) -> Request:
        return build_request(
            request,
            self._config,
            index=index,
            sink=call,
            priority=priority,
            deadline=deadline,
            dim=self._dim(),
        )

    def _dim(self) -> int | None:
        c = self._config
        if not c.enable_dedup or (c.dedup_strategy == "exact" and c.dedup_function is None):
            return None
        try:
            return self._core.vector_dim()
        except Exception:  # a broken embedder option: the dedup pass reports it per request
            return None

    def _deliver(self, req: Request, value: Any, error: BaseException | None) -> None:
        call = req.sink
        if type(call) is not Call:  # a single-request call: the sink is its future
            if not call.done():
                if error is not None:
                    call.set_exception(error)
                else:
                    call.set_result(value)
            return
        lead = req.merged_with
        if req.reuse_age is not None:
            sim = 1.0 if req.similarity is None else req.similarity  # (near reuse: its own)
            call.deliver(req.index, value, None, -1, sim, req.reuse_age)
        elif lead is None:
            call.deliver(req.index, value, error)
        else:
            call.deliver(
                req.index, value, error, lead.index if lead.sink is call else -1, req.similarity
            )

    def _lane_deliver(self, groups: list[LaneGroup], values: list[Any]) -> list[float]:
        """The core's row lane answers a batch (:data:`stratabatch.lane.Deliver`): a single
        call's future, or a list call's request (a twin that came from the general path)."""
        arrivals: list[float] = []
        arrived = arrivals.append
        for g, value in zip(groups, values, strict=True):
            s = g.sink
            if s is not None:
                arrived(g.arrival)
                if type(s) is not Call:  # (a future, of whatever type its loop makes)
                    try:
                        s.set_result(value)
                    except _InvalidState:  # (cancelled: its caller has not left yet)
                        pass
                else:
                    s.deliver(g.rid, value, None)
            more = g.more
            if more is not None:
                for i in range(0, len(more), ROW):
                    s = more[i]
                    if s is None:
                        continue
                    arrivals.append(more[i + 2])
                    if type(s) is not Call:
                        if not s.done():
                            s.set_result(value)
                    else:
                        rid = more[i + 1]
                        lead = g.rid if g.lead is s else -1
                        s.deliver(rid, value, None, lead, g.similarity_of(s, rid))
        return arrivals

    @staticmethod
    def _lane_fail(g: LaneGroup, sink: Any, rid: int, arrival: float, error: BaseException) -> None:
        if type(sink) is not Call:  # a single call's future
            if not sink.done():
                sink.set_exception(error)
        elif sink is g.lead and rid == g.rid:  # (the item's own caller)
            sink.deliver(rid, None, error)
        else:  # a twin: its merge meta, as for a record
            lead = g.rid if g.lead is sink else -1
            sink.deliver(rid, None, error, lead, g.similarity_of(sink, rid))

    def _lane_repoint(self, sink: Any, rid: int, holder: Any) -> None:
        self._moved[(id(sink), rid)] = holder

    def _abandon(self, records: list[Any]) -> None:
        """The callers of ``records`` gave up (wherever the core moved them meanwhile)."""
        moved = self._moved
        core = self._core
        for r in records:
            holder = moved.pop((id(r.sink), r.index), r) if moved else r
            core.abandon_holder(holder, r.sink, r.index)

    def _settled(self, records: list[Any]) -> None:
        """The callers of ``records`` have their outcomes: forget where they were moved."""
        moved = self._moved
        if moved:
            for r in records:
                moved.pop((id(r.sink), r.index), None)

    _check_call_args = staticmethod(check_call_args)

    def _open_call(
        self, timeout: float | None
    ) -> tuple[Core, asyncio.AbstractEventLoop, float | None]:
        """Bind the core to the running loop, refuse if closed, and turn ``timeout`` into a
        deadline on the core's clock."""
        core = self._core
        loop = asyncio.get_running_loop()
        core.bind(loop)
        if core.closed:
            raise StratabatchError("the BatchProcessor is closed; no new requests are accepted")
        return core, loop, None if timeout is None else core.clock() + timeout

    async def _submit_all(
        self,
        items: Sequence[Any],
        call: Call,
        priority: int,
        timeout: float | None,
        invalid_ok: bool,
        fresh: bool = False,
    ) -> list[Request]:
        core, loop, deadline = self._open_call(timeout)
        records: list[Request | None] = []
        for i, item in enumerate(items):
            try:
                records.append(self._record(item, i, call, priority, deadline))
            except InvalidRequestError as e:
                if not invalid_ok:
                    raise
                records.append(None)
                call.refuse(i, e)
        if fresh:
            for r in records:
                if r is not None:
                    r.fresh = True
        submitted: list[Request] = []
        try:
            for r in records:
                if r is None:
                    continue
                while not core.make_room(priority):
                    await core.wait_for_room(deadline)
                core.submit(r)
                submitted.append(r)
        except BaseException:
            _retrieve(call.fut)  # an earlier request of this call may have failed already
            self._abandon(submitted)
            raise
        call.settle_if_done()
        return submitted

    async def _queue_one(
        self,
        request: Any,
        priority: int,
        timeout: float | None,
        size: int | None,
        fut: asyncio.Future[Any] | None = None,
        general: bool = False,
        fresh: bool = False,
    ) -> tuple[asyncio.Future[Any], Any]:
        """Queue one request off :meth:`process`'s hot path: the first call on a loop, a
        closed processor, a full queue (``on_full``), or the general path (the lane is not
        open). ``size``: the request's checked size, if :meth:`process` checked it;
        ``general``: it takes the general path (its own ``"embedding"`` is checked here);
        ``fresh``: its call said ``reuse=False`` with reuse on (the general path too: the row
        lane has no per-request flags). Returns the future its caller waits on and what holds
        it (a lane row or a record)."""
        core, loop, deadline = self._open_call(timeout)  # (raises when closed)
        if self._ready is None:  # (open: _open_call raised if not)
            self._bind_calls(loop)
        if fut is None:
            fut = loop.create_future()
        while core.lane_open and not (general or fresh):
            if size is None:
                size = request_size(request, 0, self._config.max_request_bytes)
            holder = core.submit_one(fut, request, priority, deadline)
            if holder is not None:
                return fut, holder
            if not core.make_room(priority):  # (raises for on_full="reject")
                await core.wait_for_room(deadline)
        rec = self._single_record(request, priority, deadline, size, fut)
        if fresh:
            rec.fresh = True
        while not core.make_room(priority):
            await core.wait_for_room(deadline)
        core.submit(rec)
        return fut, rec

    def _bind_calls(self, loop: asyncio.AbstractEventLoop) -> None:
        """Single calls on ``loop`` (the core's) take :meth:`process`'s inline path from now
        on, until :meth:`close`. asyncio's own loops make a plain future: here as
        ``asyncio.Future()``, which takes the running loop (:meth:`process` takes this path
        only while ``loop`` runs it), without ``loop.create_future()``'s Python frame and
        without a ``loop=`` keyword to parse (~0.1 us a request together); any other loop
        makes its own."""
        plain = getattr(loop.create_future, "__func__", None) is _base_create_future
        self._new_future = _Future if plain else loop.create_future
        self._ready = loop

    def _single_record(
        self,
        request: Any,
        priority: int,
        deadline: float | None,
        size: int | None,
        fut: asyncio.Future[Any],
    ) -> Any:
        """The general path's record of one checked request (``size``: its size, if checked)
        whose caller waits on ``fut``."""
        return build_request(
            request,
            self._config,
            0,
            fut,
            priority,
            deadline,
            self._dim() if "embedding" in request else None,  # (only a vector needs it)
            size,
        )

    def _own_vector(self, request: Any) -> bool:
        """Whether ``request`` carries its own ``"embedding"`` that near dedup reads (such a
        request takes the general path, where it is checked)."""
        return "embedding" in request and self._config.reads_vectors

    def _left(self, fut: asyncio.Future[Any], holder: Any) -> None:
        """The single call of ``fut`` (held by ``holder`` when queued) was cancelled or
        failed: its caller leaves, wherever the core moved it meanwhile (no-op once
        answered)."""
        _retrieve(fut)
        moved = self._moved
        if moved:
            holder = moved.pop((id(fut), 0), holder)
        self._core.abandon_holder(holder, fut, 0)

    @overload
    async def process(
        self,
        requests: Mapping[str, Any],
        *,
        priority: int = 0,
        timeout: float | None = None,
        return_exceptions: bool = False,
        reuse: bool = True,
    ) -> R: ...
    @overload
    async def process(
        self,
        requests: Sequence[Mapping[str, Any]],
        *,
        priority: int = 0,
        timeout: float | None = None,
        return_exceptions: Literal[False] = False,
        reuse: bool = True,
    ) -> list[R]: ...
    @overload
    async def process(
        self,
        requests: Sequence[Mapping[str, Any]],
        *,
        priority: int = 0,
        timeout: float | None = None,
        return_exceptions: bool,
        reuse: bool = True,
    ) -> list[R | BaseException]: ...
    async def process(
        self,
        requests: Any,
        *,
        priority: int = 0,
        timeout: float | None = None,
        return_exceptions: bool = False,
        reuse: bool = True,
    ) -> Any:
        """Process one request (a mapping) or a list of them.

        Args:
            requests: A request mapping, or a list of request mappings.
            priority: Higher goes first when ``enable_priorities`` is on.
            timeout: Seconds this call waits at most, queueing and handling included.
            return_exceptions: For a list, put each failed request's exception in its place
                instead of raising the first one.
            reuse: False: the reuse cache (the ``reuse`` option) answers none of these
                requests; each still merges with a twin that waits or runs, and a fresh answer
                is stored for later twins (a refresh). No effect with reuse off.

        Returns:
            The result for a single request; a list of results in the same order for a list.

        Raises:
            InvalidRequestError: a request is not a mapping, not msgpack-serializable, or has a
                malformed "embedding" (raised before anything is queued); ``priority``,
                ``timeout`` or ``reuse`` is not what it may be.
            RequestTooLargeError: a request encodes past ``max_request_bytes``.
            BatchTimeoutError: ``timeout`` or ``processing_timeout`` ran out.
            QueueFullError: backpressure, see ``on_full``.
            HandlerError: the handler failed this request or its batch.
        """
        if type(requests) is dict or isinstance(requests, Mapping):
            # one request: the same steps as a list, minus the list (inline: this is the
            # path a caller takes per request): checked here, then one core call queues it
            # in the row lane when it can go now (engine/lane.py: no record)
            if priority != 0 or timeout is not None:
                self._check_call_args(priority, timeout)
            fresh = False
            if reuse is not True:  # (False with reuse on: a record marked fresh)
                fresh = not check_reuse_flag(reuse) and self._core.reuse is not None
            loop = _get_running_loop()
            core = self._core
            if self._ready is not loop or fresh:  # (the first call on a loop, or closed)
                fut, holder = await self._queue_one(
                    requests, priority, timeout, None, None, self._own_vector(requests), fresh
                )
            else:
                c = self._config
                size = flat_size(requests)
                if size is None or size > c.max_request_bytes:
                    size = request_size(requests, 0, c.max_request_bytes)
                fut = self._new_future()  # type: ignore[misc]  # (set with _ready)
                deadline = None if timeout is None else core.clock() + timeout
                if "embedding" in requests and c.reads_vectors:  # (as _own_vector)
                    fut, holder = await self._queue_one(
                        requests, priority, timeout, size, fut, general=True
                    )
                else:
                    holder = core.submit_one(fut, requests, priority, deadline)
                if holder is None:  # the lane is not open, or the queue is full
                    if core.lane_open or not core.make_room(priority):  # (raises for "reject")
                        fut, holder = await self._queue_one(requests, priority, timeout, size, fut)
                    else:  # the general path with room now, inline (a nested coroutine's
                        # frame would cost each of its requests ~0.3 us)
                        holder = self._single_record(requests, priority, deadline, size, fut)
                        core.submit(holder)
            try:
                value = await fut
            except BaseException:
                self._left(fut, holder)  # (wherever the core moved it meanwhile)
                raise
            if self._moved:
                self._moved.pop((id(fut), 0), None)
            return value
        if not isinstance(requests, (list, tuple)):
            raise InvalidRequestError(
                "process() takes a request mapping or a list of them, "
                f"got {type(requests).__name__}"
            )
        self._check_call_args(priority, timeout)
        fresh = not check_reuse_flag(reuse)
        if not requests:
            return []
        loop = asyncio.get_running_loop()
        call = Call(requests, loop.create_future(), return_exceptions)
        submitted = await self._submit_all(
            requests, call, priority, timeout, invalid_ok=call.return_exceptions, fresh=fresh
        )
        try:
            results = await call.fut  # type: ignore[misc]
        except BaseException:
            _retrieve(call.fut)
            self._abandon(submitted)  # the caller is gone (or failed): its other requests too
            raise
        self._settled(submitted)
        return results

    async def process_streaming(
        self,
        requests: Sequence[Any],
        *,
        priority: int = 0,
        timeout: float | None = None,
        reuse: bool = True,
    ) -> AsyncIterator[Completed]:
        """Process a list of requests and yield a :class:`Completed` for each as it finishes.

        Failed requests are yielded too, with ``error`` set; nothing is raised for them.
        Leaving the loop early abandons the requests not yet yielded. ``priority``,
        ``timeout`` and ``reuse`` as for :meth:`process`.
        """
        if isinstance(requests, Mapping) or not isinstance(requests, (list, tuple)):
            raise InvalidRequestError(
                f"process_streaming() takes a list of requests, got {type(requests).__name__}"
            )
        self._check_call_args(priority, timeout)
        fresh = not check_reuse_flag(reuse)
        queue: asyncio.Queue[Completed] = asyncio.Queue()
        call = Call(requests, None, True, queue)
        submitted = await self._submit_all(
            requests, call, priority, timeout, invalid_ok=False, fresh=fresh
        )
        try:
            for _ in range(len(submitted)):
                yield await queue.get()
        finally:
            self._abandon(submitted)

    # ------------------------------------------------------------- stats, life

    def get_stats(self) -> Stats:
        """A consistent snapshot of this processor's statistics."""
        return self._core.snapshot()

    def forget(self, scope: Mapping[str, Any] | None = None) -> int:
        """Drop stored answers of the reuse cache (the ``reuse`` option): every one
        (``scope=None``, the default), or those of one scope.

        Args:
            scope: None for every entry; or a mapping of ``dedup_scope`` fields to values:
                the entries whose named fields are equal to these (a field not named matches
                any value, so ``{"user": "u1"}`` drops u1's answers under every model when
                ``dedup_scope=("model", "user")``; ``{}`` drops every entry).

        Returns:
            How many entries were dropped; 0 with reuse off (nothing is stored then).

        Raises:
            TypeError: ``scope`` is neither None nor a mapping with str keys, or a value
                cannot be encoded.
            InvalidRequestError: ``scope`` names a field that is not in ``dedup_scope``.
                Nothing is dropped when it raises.
        """
        return _forget(self._core.reuse, self._config.dedup_scope, scope)

    @property
    def dedup_threshold_in_force(self) -> float:
        """The threshold actually used for near merges (resolves ``dedup_threshold=None``)."""
        return self._core.threshold()

    @property
    def dedup_strategy_in_force(self) -> str | None:
        """The strategy the dedup passes run now: ``"exact"`` while a first start's near-dedup
        kernels compile in a separate process (``cold_start="serve"``, docs/coldstart.md),
        else ``dedup_strategy``; None without dedup."""
        return self._core.strategy_in_force

    async def warm_up(self) -> None:
        """Load the dedup kernels now (they load in a background thread on first use anyway;
        await this at start-up so the first requests do not wait for them).

        When they compile (a first start on a machine, see docs/coldstart.md) a WARNING line
        on the ``stratabatch.warm`` logger says so before, and one after. With the default
        ``cold_start="serve"``, a first start's near-dedup kernels compile in a separate
        process instead: this returns once the hash kernel is loaded, the processor merges
        identical requests meanwhile, and a line says when near dedup is on."""
        from .warm import Notice

        notice = Notice(self._config)  # a few small files read (numba is not imported)
        self._core.bind(asyncio.get_running_loop())
        await self._core.warm_up()
        notice.done()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has begun: no new requests are accepted."""
        return self._core.closed

    async def close(self) -> None:
        """Stop accepting requests, run everything queued now (no more windows), and wait
        until every accepted request has its outcome."""
        self._ready = None
        await self._core.close()

    async def __aenter__(self) -> BatchProcessor[R]:
        self._core.bind(asyncio.get_running_loop())
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        c = self._config
        return (
            f"BatchProcessor(window_ms={c.window_ms:g}, max_size={c.max_size}, "
            f"dedup_strategy={c.dedup_strategy!r}, waiting={self._core.waiting})"
        )


def _option(name: str) -> property:
    """The property of option ``name``: read from the live config, assigned through it (the
    core hears of it there). Properties, not ``__getattr__``: a class with ``__getattr__``
    gets no specialized attribute loads from CPython 3.11, and :meth:`BatchProcessor.process`
    reads five attributes of the processor per request (~0.1 us)."""

    def get(self: BatchProcessor[Any]) -> Any:
        return getattr(self._config, name)

    def put(self: BatchProcessor[Any], value: Any) -> None:
        setattr(self._config, name, value)

    return property(get, put, doc=f"The ``{name}`` option (live; assigning validates it).")


for _name in _OPTIONS:
    setattr(BatchProcessor, _name, _option(_name))
del _name

_Future = asyncio.Future
_base_create_future = asyncio.BaseEventLoop.create_future
_InvalidState = asyncio.InvalidStateError
_get_running_loop = asyncio.get_running_loop


def _retrieve(fut: asyncio.Future | None) -> None:
    """Mark an outcome that arrived in the tick its caller was cancelled as seen, so asyncio
    does not log "exception was never retrieved" for it."""
    if fut is not None and fut.done() and not fut.cancelled():
        fut.exception()
