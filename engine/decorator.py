"""``stratabatch.batch``: a batch function called one item at a time.

::

    @stratabatch.batch(window_ms=20, max_size=32, dedup_strategy="exact")
    async def embed(texts: list[str]) -> list[list[float]]: ...

    vec = await embed("hello")            # one item in, one result out; twins merge
    vecs = await embed.many(["a", "b"])   # a list in, a list out, same order

The decorated function is the batch handler of a :class:`~stratabatch.BatchProcessor` made
with the decorator's options (the same options, validated the same way, when the decorator
runs). Calling it submits one item and returns that item's result; items that arrive within
a window are handed to the function together, duplicates once.

Items:
    An item is a ``str`` or a mapping. A mapping is a request, exactly as
    ``BatchProcessor.process`` takes it. A ``str`` is the text to deduplicate: it travels as
    the request ``{dedup_key: text}`` and the function receives the ``str`` again, so a
    function of ``list[str]`` gets a ``list[str]``. One function takes one kind of item: the
    first call fixes it and an item of the other kind then raises
    :class:`~stratabatch.InvalidRequestError` (a text and a mapping holding the same text
    would otherwise merge, and the function would receive a mixed list).

Functions and methods:
    A function takes one argument (the list); a method two (``self`` and the list). The
    decorator tells them apart by that count. A method has one processor per instance,
    created on first use and kept in the instance's ``__dict__`` (as
    :func:`functools.cached_property` does); the processor holds the instance weakly, so it
    never keeps the instance alive. A sync function runs in a thread, as a sync handler of
    ``BatchProcessor`` does.

The processor:
    ``embed.processor`` is the :class:`~stratabatch.BatchProcessor` (its options can be tuned
    at run time there), ``embed.stats()`` its statistics, ``await embed.close()`` drains and
    releases it. A processor serves one event loop: when that loop has closed (the
    ``asyncio.run`` that used it returned), or after ``close()``, the next call starts a new
    processor with the options in force (its statistics start from zero).

Engine-backed form:
    ``@stratabatch.batch(engine="name")`` sends each item to the running
    ``stratabatch-engine`` called ``name`` (for many processes sharing one backend). The
    handler is then the engine's ``--handler``: the decorated function's body is never called
    by stratabatch; it is a typed stub for the remote call (``...`` as its body is the
    custom). Options are the engine's (its command line); the decorator takes only the
    client's ``on_full`` ("wait" or "reject") and ``connect_timeout`` (seconds for the
    handshake). A ``str`` item travels as ``{dedup_key: text}`` with the engine's
    ``dedup_key`` (from the handshake), and the engine's handler receives that mapping.
    ``.processor`` is the decorator's own :class:`~stratabatch.client.EngineClient` (not the
    one ``connect()`` shares), connected on first use; ``stats()`` gives the engine's
    statistics.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import os
import weakref
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, Literal, Protocol, TypeVar, cast, overload

from .config import BatchConfig, check_option_names
from .errors import ConfigError, InvalidRequestError, StratabatchError

T = TypeVar("T")
R = TypeVar("R")
S = TypeVar("S")

if TYPE_CHECKING:
    from typing import Self, TypeAlias, Unpack

    from .client import EngineClient
    from .config import BatchOptions
    from .processor import BatchProcessor
    from .stats import Stats

    # a batch function of (items), or a method of (self, items); async or sync
    _Batch: TypeAlias = Callable[[list[T]], Awaitable[Sequence[R]] | Sequence[R]]
    _MethodBatch: TypeAlias = Callable[[S, list[T]], Awaitable[Sequence[R]] | Sequence[R]]

__all__ = ["BatchFunction", "BatchMethod", "RemoteBatchFunction", "batch"]


class _Text(dict[str, Any]):
    """A ``str`` item as the processor sees it: ``{dedup_key: text}``, remembering the text so
    the function receives the ``str`` again (whatever ``dedup_key`` is by then)."""

    __slots__ = ("text",)
    text: str


def _items(payloads: list[Any]) -> list[Any]:
    return [p.text if type(p) is _Text else p for p in payloads]


def _handler(fn: Callable[..., Any]) -> Callable[[list[Any]], Any]:
    """``fn`` as a processor's handler: async if ``fn`` is (else the processor runs it in a
    thread), giving ``fn`` the items as the callers passed them."""
    if inspect.iscoroutinefunction(fn):

        async def handle_async(payloads: list[Any]) -> Any:
            return await fn(_items(payloads))

        return handle_async

    def handle(payloads: list[Any]) -> Any:
        return fn(_items(payloads))

    return handle


def _method_handler(fn: Callable[..., Any], obj: object) -> Callable[[list[Any]], Any]:
    """The handler of method ``fn`` bound to ``obj``, holding ``obj`` weakly when it can."""
    try:
        ref: Callable[[], object | None] = weakref.ref(obj)
    except TypeError:  # no __weakref__ slot: the processor lives in obj.__dict__ anyway
        ref = lambda: obj  # noqa: E731

    def owner() -> object:
        target = ref()
        if target is None:
            raise StratabatchError(f"the instance of {fn.__qualname__} no longer exists")
        return target

    if inspect.iscoroutinefunction(fn):

        async def handle_async(payloads: list[Any]) -> Any:
            return await fn(owner(), _items(payloads))

        return handle_async

    def handle(payloads: list[Any]) -> Any:
        return fn(owner(), _items(payloads))

    return handle


def _is_method(fn: Callable[..., Any]) -> bool:
    """True for a function of (self, items), False for one of (items).

    Raises:
        ConfigError: ``fn`` is not callable, or takes neither one nor two arguments.
    """
    if not callable(fn):
        raise ConfigError(f"stratabatch.batch decorates a function, got {fn!r}", field="handler")
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    required = [p for p in params if p.kind in positional and p.default is p.empty]
    if len(required) > 2:
        raise ConfigError(
            f"a batch function takes one argument, the list of items (a method: self and the "
            f"list); {getattr(fn, '__qualname__', fn)!r} requires {len(required)}",
            field="handler",
        )
    return len(required) == 2


class _Items:
    """The rule for one function's items: str or mapping, one kind per function."""

    __slots__ = ("kind", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self.kind: type | None = None

    def check(self, item: Any, index: int) -> bool:
        """True for a str item, False for a mapping; fixes the kind on the first item.

        Raises:
            InvalidRequestError: ``item`` is neither, or not of the function's kind.
        """
        if isinstance(item, str):
            kind: type = str
        elif isinstance(item, Mapping):
            kind = Mapping
        else:
            raise InvalidRequestError(
                f"item {index}: {self.name} takes str or mapping items, got {type(item).__name__}"
            )
        if self.kind is None:
            self.kind = kind
        elif self.kind is not kind:
            had = "str" if self.kind is str else "mapping"
            raise InvalidRequestError(
                f"item {index}: {self.name} takes {had} items (its first call passed one); "
                f"got a {type(item).__name__}: one function takes one kind of item"
            )
        return kind is str


class _Caller(Generic[T, R]):
    """What every batch callable does: items to requests, calls, stats and close."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        functools.update_wrapper(cast(Any, self), fn)
        self._name: str = getattr(fn, "__qualname__", repr(fn))
        self._items = _Items(self._name)

    def _target(self) -> Any:  # a BatchProcessor or an EngineClient
        raise NotImplementedError

    def _key(self, target: Any) -> str:
        raise NotImplementedError

    def _request(self, item: Any, index: int, target: Any) -> Any:
        if not self._items.check(item, index):
            return item
        return self._text(item, self._key(target))

    @staticmethod
    def _text(text: str, key: str) -> Any:
        return {key: text}

    async def __call__(
        self, item: T, *, priority: int = 0, timeout: float | None = None, reuse: bool = True
    ) -> R:
        """Process one item; returns its result.

        Args:
            item: A ``str`` (the text to deduplicate) or a request mapping.
            priority: Higher goes first when ``enable_priorities`` is on.
            timeout: Seconds this call waits at most, queueing and handling included.
            reuse: False: a fresh answer, not one stored for a twin (with a ``reuse`` option
                on; twins waiting in the window still merge; see ``BatchProcessor.process``).

        Raises:
            InvalidRequestError: ``item`` is neither a str nor a mapping, not of this
                function's kind, or not a valid request.
            BatchTimeoutError, QueueFullError, HandlerError: as ``BatchProcessor.process``.
        """
        target = self._target()
        request = self._request(item, 0, target)
        return cast(
            "R", await target.process(request, priority=priority, timeout=timeout, reuse=reuse)
        )

    @overload
    async def many(
        self,
        items: Sequence[T],
        *,
        priority: int = 0,
        timeout: float | None = None,
        return_exceptions: Literal[False] = False,
        reuse: bool = True,
    ) -> list[R]: ...
    @overload
    async def many(
        self,
        items: Sequence[T],
        *,
        priority: int = 0,
        timeout: float | None = None,
        return_exceptions: bool,
        reuse: bool = True,
    ) -> list[R | BaseException]: ...
    async def many(
        self,
        items: Sequence[T],
        *,
        priority: int = 0,
        timeout: float | None = None,
        return_exceptions: bool = False,
        reuse: bool = True,
    ) -> Any:
        """Process a list of items; returns their results in the same order.

        Args:
            items: A list (or tuple) of items, as :meth:`__call__` takes them.
            priority: See :meth:`__call__`.
            timeout: See :meth:`__call__`.
            return_exceptions: Put each failed item's exception in its place instead of
                raising the first one.
            reuse: See :meth:`__call__`.
        """
        if isinstance(items, (str, Mapping)) or not isinstance(items, (list, tuple)):
            raise InvalidRequestError(f"many() takes a list of items, got {type(items).__name__}")
        target = self._target()
        requests = [self._request(item, i, target) for i, item in enumerate(items)]
        return await target.process(
            requests,
            priority=priority,
            timeout=timeout,
            return_exceptions=return_exceptions,
            reuse=reuse,
        )

    def stats(self) -> Stats:
        """The statistics of the processor (engine-backed: of the engine)."""
        return cast("Stats", self._target().get_stats())

    def forget(self, scope: Mapping[str, Any] | None = None) -> int:
        """Drop stored answers (``reuse`` on): all of them, or those of ``scope`` (fields of
        ``dedup_scope``); returns how many (engine-backed: from the engine's store). See
        ``BatchProcessor.forget``."""
        return int(self._target().forget(scope))


class BatchFunction(_Caller[T, R]):
    """A batch function called one item at a time (from ``@stratabatch.batch``).

    ``await f(item)`` returns one result; ``await f.many(items)`` a list; ``f.processor`` is
    the :class:`~stratabatch.BatchProcessor` behind it, ``f.stats()`` its statistics and
    ``await f.close()`` drains and releases it. See :mod:`stratabatch.decorator`.
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        handler: Callable[[list[Any]], Any],
        options: dict[str, Any],
    ) -> None:
        super().__init__(fn)
        self._handler = handler
        self._options = options
        self._processor: BatchProcessor[R] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def processor(self) -> BatchProcessor[R]:
        """The processor behind this function (created on first use)."""
        proc = self._processor
        if proc is None:
            from .processor import BatchProcessor

            proc = self._processor = BatchProcessor(self._handler, **self._options)
            self._loop = None
        return proc

    def _target(self) -> BatchProcessor[R]:
        loop = asyncio.get_running_loop()
        old = self._loop
        if old is not loop and old is not None and old.is_closed():
            self._retire()  # its loop is gone, and so is everything it held
        proc = self.processor
        if self._loop is None:
            self._loop = loop
        return proc

    def _key(self, target: Any) -> str:
        return cast(str, target.config.dedup_key)

    @staticmethod
    def _text(text: str, key: str) -> Any:
        request = _Text({key: text})
        request.text = text
        return request

    def _retire(self) -> None:
        """Forget the processor, keeping the options it runs with for the next one."""
        proc = self._processor
        if proc is not None:
            config = proc.config
            self._options = {n: getattr(config, n) for n in BatchConfig.option_names()}
        self._processor = None
        self._loop = None

    async def close(self) -> None:
        """Drain the processor (every accepted item gets its outcome) and release it; a later
        call starts a new one."""
        proc = self._processor
        if proc is None:
            return
        loop = self._loop
        if loop is None or loop is asyncio.get_running_loop():
            await proc.close()
        self._retire()

    def __repr__(self) -> str:
        return f"<stratabatch.batch {self._name}>"


class BatchMethod(Generic[S, T, R]):
    """A batch method (from ``@stratabatch.batch`` on a method of two arguments): each
    instance gets its own :class:`BatchFunction`, so its own processor."""

    def __init__(self, fn: Callable[..., Any], options: dict[str, Any]) -> None:
        functools.update_wrapper(cast(Any, self), fn)
        self._name: str = getattr(fn, "__qualname__", repr(fn))
        self._fn = fn
        self._options = options
        self._attr = fn.__name__

    def __set_name__(self, owner: type, name: str) -> None:
        self._attr = name

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> Self: ...
    @overload
    def __get__(self, obj: S, owner: type | None = None) -> BatchFunction[T, R]: ...
    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        try:
            store = obj.__dict__
        except AttributeError:
            raise TypeError(
                f"{type(obj).__name__} has no __dict__ to keep the processor of "
                f"{self._fn.__qualname__} per instance (a class with __slots__ needs "
                "'__dict__' among them)"
            ) from None
        bound = store.get(self._attr)
        if type(bound) is not BatchFunction:
            # kept under the method's own name: the next lookup finds it in the instance
            bound = BatchFunction(self._fn, _method_handler(self._fn, obj), self._options)
            store[self._attr] = bound
        return bound

    def __repr__(self) -> str:
        return f"<stratabatch.batch method {self._name}>"


class RemoteBatchFunction(_Caller[T, R]):
    """A batch function served by a running ``stratabatch-engine`` (``@stratabatch.batch(
    engine=NAME)``): the engine's handler does the work; the decorated function is a typed
    stub. Shared by every instance when it decorates a method."""

    def __init__(
        self,
        fn: Callable[..., Any],
        engine: str,
        on_full: Literal["wait", "reject"] | None,
        connect_timeout: float,
    ) -> None:
        super().__init__(fn)
        from .wire import check_name

        self.engine = check_name(engine)
        """The engine's name."""
        if on_full is not None and on_full not in ("wait", "reject"):
            raise ConfigError(
                f"on_full must be one of wait, reject or None for an engine-backed batch "
                f"function; got {on_full!r}",
                field="on_full",
            )
        self._on_full: Literal["wait", "reject"] | None = on_full
        self._connect_timeout = connect_timeout
        self._client: EngineClient | None = None
        self._pid = os.getpid()

    @property
    def processor(self) -> EngineClient:
        """This function's client of the engine (connected on first use, blocking for the
        handshake as ``connect()`` does).

        Raises:
            EngineUnavailableError: No engine serves the name.
        """
        client = self._client
        if client is None or self._pid != os.getpid():
            from .client import EngineClient

            self._client = None  # a forked child's copy is its parent's; never used here
            client = EngineClient(self.engine, timeout=self._connect_timeout, on_full=self._on_full)
            self._client, self._pid = client, os.getpid()
        return client

    def _target(self) -> EngineClient:
        return self.processor

    def _key(self, target: Any) -> str:
        return target.dedup_key or BatchConfig.dedup_key

    def __get__(self, obj: object, owner: type | None = None) -> Self:
        return self

    async def close(self) -> None:
        """Wait for this function's calls and disconnect; a later call connects again."""
        client, self._client = self._client, None
        if client is not None and self._pid == os.getpid():
            await client.close()

    def __repr__(self) -> str:
        return f"<stratabatch.batch {self._name} engine={self.engine!r}>"


class _Decorator(Protocol):
    @overload
    def __call__(self, fn: _Batch[T, R], /) -> BatchFunction[T, R]: ...
    @overload
    def __call__(self, fn: _MethodBatch[S, T, R], /) -> BatchMethod[S, T, R]: ...


class _RemoteDecorator(Protocol):
    @overload
    def __call__(self, fn: _Batch[T, R], /) -> RemoteBatchFunction[T, R]: ...
    @overload
    def __call__(self, fn: _MethodBatch[Any, T, R], /) -> RemoteBatchFunction[T, R]: ...


@overload
def batch(fn: _Batch[T, R], /) -> BatchFunction[T, R]: ...
@overload
def batch(fn: _MethodBatch[S, T, R], /) -> BatchMethod[S, T, R]: ...
@overload
def batch(*, engine: None = None, **options: Unpack[BatchOptions]) -> _Decorator: ...
@overload
def batch(
    *,
    engine: str,
    on_full: Literal["wait", "reject"] | None = None,
    connect_timeout: float = 5.0,
) -> _RemoteDecorator: ...
def batch(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    engine: str | None = None,
    connect_timeout: float | None = None,
    **options: Any,
) -> Any:
    """Turn a batch function (``list[item] -> list[result]``, async or sync) into a
    function of one item: ``await f(item)`` returns that item's result.

    Used bare (``@stratabatch.batch``) or with BatchProcessor's options
    (``@stratabatch.batch(window_ms=20, dedup_strategy="exact")``), or with ``engine=NAME``
    for a running ``stratabatch-engine``. See :mod:`stratabatch.decorator` for items, methods
    and the processor.

    Args:
        fn: The batch function (when used bare).
        engine: The name of a running engine to send the items to; None runs a
            BatchProcessor in this process.
        connect_timeout: With ``engine``: seconds the handshake may take.
        **options: BatchProcessor's options (:class:`~stratabatch.BatchOptions`); with
            ``engine``, only ``on_full`` ("wait" or "reject").

    Raises:
        ConfigError: An option is unknown (with the closest known one) or out of range,
            checked when the decorator runs; a BatchProcessor option given with ``engine``;
            the function takes more than two arguments.
    """
    if engine is not None:
        extra = sorted(set(options) - {"on_full"})
        if extra:
            raise ConfigError(
                f"{', '.join(extra)}: an engine-backed batch function takes its options from "
                f"the engine's command line (stratabatch-engine --name {engine} ...); here "
                "only on_full and connect_timeout",
                field=extra[0],
            )
        on_full = options.get("on_full")
        timeout = 5.0 if connect_timeout is None else connect_timeout

        def remote(f: Callable[..., Any]) -> Any:
            _is_method(f)  # refuses what is not a batch function
            return RemoteBatchFunction(f, engine, on_full, timeout)

        return remote

    if connect_timeout is not None:
        raise ConfigError(
            "connect_timeout is for an engine-backed batch function (engine=NAME)",
            field="connect_timeout",
        )
    check_option_names(options)
    BatchConfig(**options)  # the processor's checks, now rather than on the first call

    def local(f: Callable[..., Any]) -> Any:
        if _is_method(f):
            return BatchMethod(f, options)
        return BatchFunction(f, _handler(f), options)

    return local if fn is None else local(fn)
