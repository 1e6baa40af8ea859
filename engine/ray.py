"""``stratabatch.ray``: a batch handler served as a Ray Serve deployment whose replicas each run
the stratabatch core (one :class:`~stratabatch.BatchProcessor` a replica).

::

    from ray import serve
    from stratabatch.ray import deployment, get_stats

    @deployment(num_replicas=4, window_ms=5, dedup_strategy="exact")
    async def answer(requests: list[dict]) -> list[str]: ...

    handle = serve.run(answer.bind(), name="answers", route_prefix="/answers")
    result = await handle.remote({"query": "hi"})             # one request -> one result
    results = await handle.process.remote([{...}, {...}])     # a list -> a list, same order
    stats = get_stats("answers")                              # one Stats for every replica
    dropped = forget("answers")                               # reuse entries, every replica

The application that ``.bind()`` returns has two deployments: the batch deployment (named after
the handler, or ``name``), whose replicas hold the processors, and a thin ingress in front of it
(``<name>_ingress``) that takes HTTP bodies and handle calls and forwards each request through a
handle to the batch deployment, so that its request router sees the request itself (Serve's
proxy routes before it reads a body). The router, with ``route="twins"``, sends requests with
the same dedup scope and key to the same replica, where they merge, and where the replica's
reuse cache (the ``reuse`` options) holds their answer for later twins. docs/ray.md has the
rest: options, HTTP, errors and what Serve retries, statistics and metrics, reuse.

Needs the ``ray`` extra (``pip install "stratabatch[ray]"``); ``import stratabatch`` never
imports Ray.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, cast

try:
    import ray
    from ray import serve
    from ray.serve.config import DeploymentActorConfig, RequestRouterConfig
except ImportError as _exc:  # pragma: no cover - the test extra installs it
    raise ImportError(
        'stratabatch.ray needs Ray Serve, an optional dependency: pip install "stratabatch[ray]"',
        name="ray",
    ) from _exc

from .config import BatchConfig, check_option_names
from .errors import (
    BatchTimeoutError,
    ConfigError,
    HandlerError,
    InvalidRequestError,
    QueueFullError,
    RequestTooLargeError,
    StratabatchError,
    copy_error,
    safe_str,
)
from .processor import BatchProcessor
from .rayclient import CoalescingHandle, call_forget
from .raystats import (
    BOARD_NAME,
    ForgetIncompleteError,
    ReplicaMetrics,
    StatsBoard,
    forget_total,
    merge_rounds,
    stats_to_dict,
)
from .reusecontrol import check_forget_scope, check_reuse_flag
from .reusecontrol import forget as check_forget
from .stats import Stats

__all__ = [
    "CoalescingHandle",
    "ForgetIncompleteError",
    "StratabatchDeployment",
    "batch_handle",
    "coalescing_handle",
    "deployment",
    "forget",
    "get_stats",
]

Route = Literal["twins", "serve"]
_ROUTES = ("twins", "serve")
_REPORT_POLL_S = 10.0  # a replica's open poll on its stats board is renewed this often
_METRICS_EVERY_S = 1.0  # a replica brings its Ray metrics up to date this often
FORGET_TIMEOUT_S = 5.0
"""How long ``forget`` waits for every live replica's answer, by default."""


def _router_config(route: Route, config: BatchConfig, imbalance: int | None) -> Any:
    """Serve's ``request_router_config`` for ``route`` (None: Serve's default router)."""
    if route == "serve":
        return None
    try:
        from . import rayrouter  # noqa: F401 - Serve imports it by path where it routes
    except ImportError as e:
        raise ConfigError(
            f"route='twins' needs stratabatch.rayrouter, which cannot be imported ({e}); "
            "route='serve' uses Serve's default router",
            field="route",
        ) from e
    kwargs: dict[str, Any] = {
        "dedup_key": config.dedup_key,
        "dedup_scope": list(config.dedup_scope),
        "normalize": config.normalize,
        "strategy": config.dedup_strategy,
    }
    if imbalance is not None:
        kwargs["imbalance"] = imbalance
    # (Ray annotates the constructor's keywords as `**kwargs: dict[str, Any]`: each value a dict)
    return RequestRouterConfig(
        request_router_class="stratabatch.rayrouter.TwinRouter",  # type: ignore[arg-type]
        request_router_kwargs=kwargs,
    )


class _Replica:
    """One replica of a batch deployment: a BatchProcessor around the user's handler.

    Subclassed per deployment (:func:`deployment`) with the class attributes ``_target``
    (the user's function or class), ``_is_class`` and ``_options``; Ray ships the subclass to
    the replicas by value.
    """

    _target: Callable[..., Any]
    _is_class: bool
    _options: dict[str, Any]

    async def __init__(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[misc]
        # (Serve makes the replica with __new__ and awaits __init__: the processor loads its
        # dedup kernels before Serve counts the replica ready, not on the first requests)
        if self._is_class:
            self.instance: Any = self._target(*args, **kwargs)
            handler = self.instance
        else:
            if args or kwargs:
                raise ConfigError(
                    f"{self._target.__qualname__} is a batch function: .bind() takes no "
                    "arguments (a class handler's __init__ takes them)",
                    field="handler",
                )
            self.instance = None
            handler = self._target
        self.processor: BatchProcessor[Any] = BatchProcessor(handler, **self._options)
        ctx = serve.get_replica_context()
        self._replica = ctx.replica_tag
        self._metrics = ReplicaMetrics(ctx.app_name, ctx.deployment)
        self._closing = False
        self._tasks: list[asyncio.Task[None]] = []
        await self.processor.warm_up()
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._report()), loop.create_task(self._feed_metrics())]

    async def __call__(
        self,
        request: Mapping[str, Any],
        *,
        priority: int = 0,
        timeout: float | None = None,
        reuse: bool = True,
    ) -> Any:
        """One request (a mapping) -> its result."""
        _check_request(request)
        return await self.processor.process(
            request, priority=priority, timeout=timeout, reuse=reuse
        )

    async def process(
        self,
        requests: Sequence[Mapping[str, Any]],
        *,
        priority: int = 0,
        timeout: float | None = None,
        return_exceptions: bool = False,
        reuse: bool = True,
    ) -> list[Any]:
        """A list of requests -> their results, in the same order, all on this replica."""
        _check_list(requests)
        return await self.processor.process(
            list(requests),
            priority=priority,
            timeout=timeout,
            return_exceptions=return_exceptions,
            reuse=reuse,
        )

    async def forget(
        self, scope: Mapping[str, Any] | None = None, *, timeout: float = FORGET_TIMEOUT_S
    ) -> int:
        """Drop stored answers of the reuse cache on every replica of the deployment (not only
        this one): the deployment's stats board orders it, as :func:`forget` does."""
        check_forget(None, self.processor.config.dedup_scope, scope)  # (drops nothing)
        _check_timeout(timeout)
        board = await self._board()
        try:
            outcome = await board.forget.remote(scope, timeout)
        except ray.exceptions.RayTaskError as e:
            raise _cause(e) from None
        return forget_total([outcome], timeout)

    def get_stats(self) -> Stats:
        """This replica's statistics (its processor's)."""
        return self.processor.get_stats()

    def record_routing_stats(self) -> dict[str, Any]:
        """What Serve's controller collects for the request router: the processor's queue."""
        s = self.processor.get_stats()
        return {"queue_depth": s.queue_depth, "total_requests": s.total_requests}

    async def _board(self) -> Any:
        """The deployment's stats board (looked up again after it was recreated)."""
        while True:
            try:
                return serve.get_deployment_actor(BOARD_NAME)
            except ValueError:  # not registered yet, or being recreated
                await asyncio.sleep(0.2)

    async def _report(self) -> None:
        """Answer the stats board's rounds until the replica stops."""
        me = ray.get_runtime_context().current_actor
        board = None
        seen = 0
        while not self._closing:
            try:
                if board is None:
                    board = await self._board()
                    seen = await board.join.remote(self._replica, me)
                now, orders = await board.poll.remote(seen, _REPORT_POLL_S)
                if now > seen and not self._closing:
                    dropped = {r: self._forget_order(scope) for r, scope in orders}
                    snap = stats_to_dict(self.processor.get_stats())
                    await board.report.remote(self._replica, now, snap, dropped)
                    seen = now
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the board died or is being recreated
                board = None
                await asyncio.sleep(0.5)

    def _forget_order(self, scope: Any) -> int | str:
        """Carry out a forget order of the board: the entries dropped, or why it failed."""
        try:
            return self.processor.forget(scope)
        except Exception as e:  # noqa: BLE001 - the caller of forget is told, by the board
            return f"{type(e).__name__}: {safe_str(e)}"

    async def _feed_metrics(self) -> None:
        while not self._closing:
            self._metrics.update(self.processor.get_stats())
            await asyncio.sleep(_METRICS_EVERY_S)

    async def _shutdown(self) -> None:
        """Drain the processor, then send the final snapshot and metrics."""
        await self.processor.close()
        for t in self._tasks:
            t.cancel()
        final = self.processor.get_stats()
        self._metrics.update(final)
        try:
            board = serve.get_deployment_actor(BOARD_NAME)
            await board.leave.remote(self._replica, stats_to_dict(final))
        except Exception:  # noqa: BLE001 - no board to tell (the deployment is going away)
            pass

    def __del__(self) -> Any:
        # Serve calls __del__ when it stops the replica gracefully, on the replica's loop,
        # and awaits what it returns; the interpreter's own later call finds it closing
        if getattr(self, "_closing", True):
            return None
        self._closing = True
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return None
        return self._shutdown()


def _check_request(request: Any) -> None:
    """A call's request must be a mapping (a list goes to ``process``)."""
    if not isinstance(request, Mapping):
        raise InvalidRequestError(
            f"a request is a mapping, got {type(request).__name__} "
            "(handle.process.remote takes a list)"
        )


def _check_timeout(timeout: Any) -> None:
    """``forget``'s ``timeout``: seconds, > 0."""
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ConfigError(f"timeout must be seconds > 0, got {timeout!r}", field="timeout")


def _cause(error: Any) -> BaseException:
    """The error to raise for a RayTaskError from the board: a stratabatch error or a
    TypeError (the argument's checks) as itself, anything else as it came."""
    cause = error.cause
    if isinstance(cause, (StratabatchError, TypeError)):
        return copy_error(cause)
    return cast(BaseException, error)


def _check_list(requests: Any) -> None:
    """``process`` takes a list (or tuple) of requests, not one request."""
    if isinstance(requests, Mapping) or not isinstance(requests, (list, tuple)):
        raise InvalidRequestError(
            f"process takes a list of requests, got {type(requests).__name__}"
        )


class _Ingress:
    """The application's ingress: HTTP bodies and handle calls, forwarded request by request
    through a handle to the batch deployment (whose router then sees each request)."""

    def __init__(self, batch: Any, dedup_scope: Sequence[str] = ()) -> None:
        self._batch = batch
        self._scope = tuple(dedup_scope)  # (what forget may name, checked here)

    async def __call__(self, request: Any, **kwargs: Any) -> Any:
        if _is_http(request):  # (first: starlette's Request is a Mapping too)
            return await self._http(request)
        _check_request(request)
        return await _unwrapped(self._batch.remote(request, **kwargs))

    async def process(
        self,
        requests: Sequence[Mapping[str, Any]],
        *,
        priority: int = 0,
        timeout: float | None = None,
        return_exceptions: bool = False,
        reuse: bool = True,
    ) -> list[Any]:
        """A list of requests -> their results in the same order; each request is routed on
        its own (twins of different lists meet on one replica)."""
        _check_list(requests)
        check_reuse_flag(reuse)
        for i, r in enumerate(requests):
            if not isinstance(r, Mapping):
                raise InvalidRequestError(
                    f"request {i}: a request is a mapping, got {type(r).__name__}"
                )
        responses = [
            self._batch.remote(r, priority=priority, timeout=timeout, reuse=reuse) for r in requests
        ]
        tasks = [asyncio.ensure_future(_unwrapped(x)) for x in responses]
        try:
            if return_exceptions:
                return list(await asyncio.gather(*tasks, return_exceptions=True))
            await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        except BaseException:  # this call was cancelled: so are its requests
            _give_up(responses, tasks)
            raise
        failed = [t for t in tasks if t.done() and not t.cancelled() and t.exception()]
        if failed:  # the first error is the call's; the others' requests are abandoned
            _give_up(responses, tasks)
            await asyncio.gather(*tasks, return_exceptions=True)
            return failed[0].result()  # (raises it)
        return [t.result() for t in tasks]

    async def forget(
        self, scope: Mapping[str, Any] | None = None, *, timeout: float = FORGET_TIMEOUT_S
    ) -> int:
        """Drop stored answers of the reuse cache on every replica of the batch deployment,
        as :func:`forget` does; the entries dropped."""
        check_forget(None, self._scope, scope)  # (drops nothing: no replica is asked yet)
        _check_timeout(timeout)
        return int(await call_forget(self._batch, scope, timeout))

    async def _http(self, request: Any) -> Any:
        from starlette.responses import JSONResponse

        try:
            body = await request.body()
            try:
                payload = _json_loads(body)
            except ValueError as e:
                raise InvalidRequestError(f"the body is not JSON: {e}") from None
            # "Cache-Control: no-cache": a fresh answer, as reuse=False (HTTP's own words)
            reuse = "no-cache" not in request.headers.get("cache-control", "").lower()
            if isinstance(payload, list):
                result: Any = await self.process(payload, reuse=reuse)
            elif isinstance(payload, Mapping):
                result = await _unwrapped(self._batch.remote(payload, reuse=reuse))
            else:
                raise InvalidRequestError(
                    "the body is one request (a JSON object) or a list of them, got "
                    f"{type(payload).__name__}"
                )
        except Exception as e:  # noqa: BLE001 - each error becomes its status and JSON
            status, name, message = _http_error(e)
            return JSONResponse({"error": name, "message": message}, status_code=status)
        return JSONResponse(result)


def _give_up(responses: Sequence[Any], tasks: Sequence[asyncio.Future[Any]]) -> None:
    """Cancel the handle calls not answered yet (Serve cancels them on their replicas)."""
    for x, t in zip(responses, tasks, strict=True):
        if not t.done():
            x.cancel()
            t.add_done_callback(_seen)


def _seen(task: asyncio.Future[Any]) -> None:
    """Mark a given-up call's outcome as retrieved (asyncio would log it otherwise)."""
    if not task.cancelled():
        task.exception()


def _is_http(request: Any) -> bool:
    try:
        from starlette.requests import Request
    except ImportError:  # pragma: no cover - ray[serve] depends on starlette
        return False
    return isinstance(request, Request)


def _json_loads(body: bytes) -> Any:
    import json

    return json.loads(body)


async def _unwrapped(response: Any) -> Any:
    """The result of a handle call; a stratabatch error raised on the replica is raised here
    as itself (Ray delivers it wrapped in its RayTaskError). If the awaiting task is
    cancelled, so is the call, on its replica."""
    try:
        return await response
    except asyncio.CancelledError:
        response.cancel()
        raise
    except ray.exceptions.RayTaskError as e:
        cause = e.cause
        if isinstance(cause, StratabatchError):
            raise copy_error(cause) from None
        raise


_STATUS: tuple[tuple[type[BaseException], int], ...] = (
    (RequestTooLargeError, 413),
    (InvalidRequestError, 400),
    (ConfigError, 400),
    (QueueFullError, 503),
    (BatchTimeoutError, 504),
    (HandlerError, 500),
)


def _http_error(error: BaseException) -> tuple[int, str, str]:
    """(status, error type name, message) of the HTTP answer for ``error``."""
    if isinstance(error, ray.exceptions.RayTaskError) and isinstance(error.cause, BaseException):
        error = error.cause
    for kind, status in _STATUS:
        if isinstance(error, kind):
            return status, type(error).__name__, safe_str(error)
    if isinstance(error, ray.exceptions.RayActorError | ray.exceptions.ActorUnavailableError):
        return (
            503,
            type(error).__name__,
            "the replica serving this request died or is unreachable; the request may have run",
        )
    return 500, type(error).__name__, safe_str(error)


class StratabatchDeployment:
    """A batch handler as a Ray Serve deployment (from :func:`deployment`).

    ``.bind(*args, **kwargs)`` gives the Serve application (the arguments go to a class
    handler's ``__init__`` on each replica); ``.name`` is the batch deployment's name and
    ``.ingress_name`` the ingress's.
    """

    def __init__(
        self, batch: Any, ingress: Any, name: str, dedup_scope: Sequence[str] = ()
    ) -> None:
        self._batch = batch
        self._ingress = ingress
        self._scope = list(dedup_scope)
        self.name = name
        """The batch deployment's name (its replicas hold the processors)."""
        self.ingress_name = f"{name}_ingress"
        """The ingress deployment's name."""

    @property
    def batch_deployment(self) -> Any:
        """Serve's ``Deployment`` of the replicas (read it; change it through
        :meth:`options`)."""
        return self._batch

    def options(self, **serve_options: Any) -> StratabatchDeployment:
        """The same deployment with Serve options changed on the batch deployment
        (``num_replicas``, ``autoscaling_config``, ``ray_actor_options``,
        ``graceful_shutdown_timeout_s``, ...; Serve checks them).

        Raises:
            ConfigError: ``name``, ``request_router_config`` or ``deployment_actors``, which
                :func:`deployment` sets (the name, the router, the stats board).
        """
        fixed = sorted(set(serve_options) & {"name", "request_router_config", "deployment_actors"})
        if fixed:
            raise ConfigError(
                f"{', '.join(fixed)}: set by stratabatch.ray.deployment (name=, route=, and "
                "the stats board); give them to deployment() instead",
                field=fixed[0],
            )
        return StratabatchDeployment(
            self._batch.options(**serve_options), self._ingress, self.name, self._scope
        )

    def bind(self, *args: Any, **kwargs: Any) -> Any:
        """The Serve application: the ingress bound to the batch deployment, whose replicas
        get ``args`` and ``kwargs`` (a class handler's ``__init__`` arguments)."""
        return self._ingress.bind(self._batch.bind(*args, **kwargs), self._scope)

    def __repr__(self) -> str:
        return f"<stratabatch.ray deployment {self.name!r}>"


def deployment(
    handler: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    num_replicas: int = 1,
    route: Route = "twins",
    max_ongoing_requests: int | None = None,
    ray_actor_options: dict[str, Any] | None = None,
    imbalance: int | None = None,
    ingress_replicas: int = 1,
    **batch_options: Any,
) -> Any:
    """Serve a batch handler on Ray Serve, one :class:`~stratabatch.BatchProcessor` per replica.

    Used as a decorator (bare or with options) on an async or sync batch function
    (``list[request] -> list[result]``) or on a class whose ``__call__`` is one (its
    ``__init__`` takes ``.bind()``'s arguments), or called with the handler.

    Args:
        handler: The batch function or class.
        name: The batch deployment's name (default: the handler's ``__name__``).
        num_replicas: Replicas of the batch deployment.
        route: ``"twins"`` routes requests with the same dedup scope and key to one replica
            (stratabatch.rayrouter); ``"serve"`` keeps Serve's default router.
        max_ongoing_requests: Requests one replica takes at once (Serve's option). Default:
            ``max_size * (max_inflight_batches + 2)``, enough for every batch in flight and
            two windows.
        ray_actor_options: Ray options of each batch replica (``num_cpus``, ...).
        imbalance: The router's overload threshold (see docs/ray.md); None: its default.
        ingress_replicas: Replicas of the ingress deployment.
        **batch_options: BatchProcessor's options, validated now.

    Returns:
        A :class:`StratabatchDeployment` (or, without ``handler``, a decorator making one).

    Raises:
        ConfigError: An option is unknown or out of range, or the handler is not a batch
            function or class.
    """
    check_option_names(batch_options)
    config = BatchConfig(**batch_options)  # the processor's own checks, now
    if route not in _ROUTES:
        raise ConfigError(f"route must be one of twins, serve; got {route!r}", field="route")
    _check_count("num_replicas", num_replicas)
    _check_count("ingress_replicas", ingress_replicas)
    if max_ongoing_requests is None:
        max_ongoing_requests = config.max_size * (config.max_inflight_batches + 2)
    _check_count("max_ongoing_requests", max_ongoing_requests)
    if imbalance is not None and (type(imbalance) is not int or imbalance < 0):
        raise ConfigError(f"imbalance must be an int >= 0, got {imbalance!r}", field="imbalance")
    if ray_actor_options is not None and not isinstance(ray_actor_options, dict):
        raise ConfigError(
            f"ray_actor_options must be a dict, got {type(ray_actor_options).__name__}",
            field="ray_actor_options",
        )
    router = _router_config(route, config, imbalance)

    def build(target: Callable[..., Any]) -> StratabatchDeployment:
        is_class = inspect.isclass(target)
        if not is_class and not callable(target):
            raise ConfigError(
                f"stratabatch.ray.deployment takes a batch function or class, got {target!r}",
                field="handler",
            )
        if is_class and not any("__call__" in vars(k) for k in cast(type, target).__mro__[:-1]):
            raise ConfigError(
                f"{target.__qualname__} has no __call__: a class handler's batch method is "
                "__call__(self, requests)",
                field="handler",
            )
        dep_name = name or getattr(target, "__name__", None) or "batch"
        replica_cls = type(
            dep_name,
            (_Replica,),
            {
                "_target": staticmethod(target) if not is_class else target,
                "_is_class": is_class,
                "_options": dict(batch_options),
                "__module__": __name__,
                "__qualname__": f"_Replica.{dep_name}",
                "__doc__": f"Replicas of {dep_name}: a BatchProcessor each.",
            },
        )
        options: dict[str, Any] = {
            "name": dep_name,
            "num_replicas": num_replicas,
            "max_ongoing_requests": max_ongoing_requests,
            "deployment_actors": [
                DeploymentActorConfig(
                    name=BOARD_NAME,
                    actor_class=ray.remote(StatsBoard),
                    init_kwargs={"dedup_scope": list(config.dedup_scope)},
                    actor_options={"num_cpus": 0},
                )
            ],
        }
        if ray_actor_options is not None:
            options["ray_actor_options"] = ray_actor_options
        if router is not None:
            options["request_router_config"] = router
        batch = serve.deployment(replica_cls, **options)
        ingress = serve.deployment(
            _Ingress,
            name=f"{dep_name}_ingress",
            num_replicas=ingress_replicas,
            max_ongoing_requests=max(1000, max_ongoing_requests * num_replicas),
            ray_actor_options={"num_cpus": 0},
        )
        return StratabatchDeployment(batch, ingress, dep_name, config.dedup_scope)

    return build if handler is None else build(handler)


def _check_count(field: str, value: Any) -> None:
    if type(value) is not int or value < 1:
        raise ConfigError(f"{field} must be an int >= 1, got {value!r}", field=field)


def batch_handle(app_name: str, deployment: str | None = None) -> Any:
    """A handle straight to an application's batch deployment (one hop less than the handle
    ``serve.run`` returns, which goes through the ingress).

    Args:
        app_name: The Serve application's name.
        deployment: The batch deployment's name; None: the application's only one.
    """
    if deployment is None:
        found = _boards(app_name)
        names = sorted({d for d, _ in found})
        if len(names) != 1:
            raise StratabatchError(
                f"application {app_name!r} has {len(names)} stratabatch deployments "
                f"({', '.join(names) or 'none'}): name one"
            )
        deployment = names[0]
    return serve.get_deployment_handle(deployment, app_name)


def coalescing_handle(
    app_name: str,
    deployment: str | None = None,
    *,
    max_batch: int = 64,
    flush_ms: float = 0.0,
) -> CoalescingHandle:
    """A handle straight to an application's batch deployment that sends the requests its
    event loop submits together as one call per replica (:class:`CoalescingHandle`):
    ``await handle.remote(request, timeout=...)``. Fewer Ray calls than requests; twins still
    meet on their key's replica.

    Args:
        app_name: The Serve application's name.
        deployment: The batch deployment's name; None: the application's only one.
        max_batch: The most requests in one call.
        flush_ms: How long a group waits for more requests; 0: one turn of the event loop.
    """
    return CoalescingHandle(
        batch_handle(app_name, deployment), max_batch=max_batch, flush_ms=flush_ms
    )


_BOARD_PREFIX = "SERVE_DEPLOYMENT_ACTOR::"


def _running_boards(app_name: str, deployment: str | None, verb: str) -> list[Any]:
    """The stats boards of ``app_name``'s stratabatch deployments (of ``deployment`` only,
    unless None) for :func:`get_stats` and :func:`forget` (``verb``: what it does through
    them, for the error).

    Raises:
        StratabatchError: Not connected to a Ray cluster, or no such deployment runs.
    """
    if not ray.is_initialized():
        raise StratabatchError(
            f"{verb} the replicas through Ray: connect to the cluster first (ray.init(address=...))"
        )
    boards = [b for d, b in _boards(app_name) if deployment is None or d == deployment]
    if not boards:
        which = f"deployment {deployment!r} in " if deployment else ""
        raise StratabatchError(
            f"no stratabatch {which}application {app_name!r} is running on this Ray cluster"
        )
    return boards


def _boards(app_name: str) -> list[tuple[str, Any]]:
    """(deployment name, stats board) of every stratabatch deployment of ``app_name``
    (during a rolling update, one board per code version)."""
    found = []
    for entry in ray.util.list_named_actors(all_namespaces=True):
        actor_name = entry["name"]
        if entry.get("namespace") != "serve" or not actor_name.startswith(_BOARD_PREFIX):
            continue
        parts = actor_name[len(_BOARD_PREFIX) :].split("::")
        if len(parts) < 4 or parts[-1] != BOARD_NAME or parts[0] != app_name:
            continue
        found.append((parts[1], ray.get_actor(actor_name, namespace="serve")))
    return found


def get_stats(app_name: str, deployment: str | None = None, *, timeout: float = 5.0) -> Stats:
    """One merged :class:`~stratabatch.Stats` for the replicas of an application's stratabatch
    deployment(s), including those that have stopped.

    Blocks (Ray's ``ray.get``): from async code, run it in a thread
    (``await asyncio.to_thread(get_stats, "answers")``). Each replica answers with a snapshot
    taken after the call began, so requests whose answers a caller has received are all
    counted. A replica that is gone keeps its counts in the totals, not what it held (its
    queue, its reuse cache's entries and bytes). docs/ray.md says how fields that do not add
    up are merged.

    Args:
        app_name: The Serve application's name.
        deployment: Only this batch deployment of the application; None: all of them.
        timeout: Seconds to wait for the replicas' answers; a replica that has not answered
            by then counts with its previous snapshot.

    Raises:
        StratabatchError: The application has no stratabatch deployment (of that name).
    """
    boards = _running_boards(app_name, deployment, "get_stats reads")
    rounds = ray.get([b.collect.remote(timeout) for b in boards], timeout=timeout + 5.0)
    return merge_rounds(rounds)


def forget(
    app_name: str,
    scope: Mapping[str, Any] | None = None,
    deployment: str | None = None,
    *,
    timeout: float = FORGET_TIMEOUT_S,
) -> int:
    """Drop stored answers of the reuse cache (the ``reuse`` option) on every replica of an
    application's stratabatch deployment(s), as ``BatchProcessor.forget`` drops them in one
    process: every entry (``scope=None``), or those whose ``dedup_scope`` fields equal the
    mapping's.

    Blocks (Ray calls), as :func:`get_stats`. A handle does the same without blocking:
    ``await handle.forget.remote(scope)`` (the application's handle or
    :func:`batch_handle`'s), or :meth:`CoalescingHandle.forget`.

    Args:
        app_name: The Serve application's name.
        scope: None, or a mapping of ``dedup_scope`` fields to values.
        deployment: Only this batch deployment of the application; None: all of them.
        timeout: Seconds to wait for the replicas' answers.

    Returns:
        The entries dropped, summed over the replicas (0 with reuse off). A replica that is
        gone (stopped, or dead) held its entries in its own memory: they went with it, and it
        adds nothing.

    Raises:
        TypeError: ``scope`` is neither None nor a mapping with str keys (nothing is sent).
        InvalidRequestError: ``scope`` names a field that is not a ``dedup_scope`` field
            (no replica is asked).
        ForgetIncompleteError: A live replica failed to forget, or did not answer within
            ``timeout``; it names each, and ``.dropped`` is what the others dropped.
        StratabatchError: The application has no stratabatch deployment (of that name).
    """
    check_forget_scope(scope)
    _check_timeout(timeout)
    boards = _running_boards(app_name, deployment, "forget reaches")
    try:  # every board checks the argument before any is told to forget
        ray.get([b.check_forget.remote(scope) for b in boards], timeout=timeout + 5.0)
        outcomes = ray.get([b.forget.remote(scope, timeout) for b in boards], timeout=timeout + 5.0)
    except ray.exceptions.RayTaskError as e:
        raise _cause(e) from None
    return forget_total(outcomes, timeout)
