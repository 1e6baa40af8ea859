"""Benchmark: stratabatch on Ray Serve against Ray Serve's own ``@serve.batch`` (issue 22).

One run on a local 3-node Ray cluster (``ray.cluster_utils.Cluster``: a head and 2 worker nodes,
all on this machine), the systems alternating (round-robin: every system once, then again),
medians of ``--rounds`` rounds after a warm-up round. Every system answers with the simulated
backend of ``perf/backend.py`` (30 ms per call + 3 ms per item, at most 4 calls at once per
replica) and gets the same seeded bursty workload of ``perf/workload.py`` (near variants,
number, opposite and swapped-role traps included; about 40% of each burst's requests are
surface twins of another of its requests, more repeat an intent as a typo or a paraphrase).

Systems (the Serve apps are deployed once and live for the whole run, ``--replicas`` 4 each):

* **(a) stratabatch, twins, coalescing**: ``stratabatch.ray.deployment(SimBackend,
  route="twins")``: each replica runs the stratabatch core over the backend; the router sends
  twins to one replica; the senders call through ``stratabatch.ray.coalescing_handle`` (the
  requests of one turn of a sender's loop as one Ray call per replica).
* **(e) stratabatch, twins, plain handle**: the same application, the senders call through a
  plain handle to the batch deployment (``batch_handle``'s path): one Ray call a request.
* **(b) Serve @serve.batch**: the peer, what a competent Serve user writes: a deployment whose
  ``__call__`` awaits a ``@serve.batch`` method that calls the same backend,
  ``max_batch_size=--max-size``, ``batch_wait_timeout_s=--window-ms``,
  ``max_concurrent_batches`` = the backend's concurrency (the default, 1, would leave 3 of the 4
  backend slots idle), ``max_ongoing_requests`` high enough for it (Serve's default, 5, would
  starve the batcher); Serve's default router.
* **(c) stratabatch, Serve's router**: (a) with ``route="serve"`` (the senders coalescing too:
  a flush goes as one call, where Serve's router sends it): what the router adds.
* **(d) stratabatch-engine, one host**: ``stratabatch-engine`` with the same backend given the
  cluster's whole backend budget (``--replicas`` x 4 calls at once), one client process per
  driver (``stratabatch.connect``): the single-host engine, for scale.

Traffic: ``--drivers`` senders (4). For the Serve systems each is a Ray actor (placed on the
nodes in turn) that sends its share of the workload through its handle (above), one
``handle.remote(request)`` per request at its arrival time (open loop); for the engine, a
client process each. Latency runs from the *scheduled* arrival to the answer.

Reported per system (the run with the median req/s, as ``stratabatch-perf`` does; failures
summed over every run): req/s (requests / time with a request outstanding, so the gaps between
bursts do not count), p50/p99 latency, backend calls and items (counted from the answers: each
names its call and the request it answered), items per request, CPU per request, wrong answers
and lost or failed requests. Every answer is checked against the workload's ground truth: an
answer naming a request of another intent (a wrong merge) or echoing a text that is not that
request's counts as wrong. CPU: every process of the system, per thread from
``/proc/PID/task/TID/schedstat``, over the run: for a Serve system the whole cluster (GCS,
raylets, agents, the Serve controller, the app's replicas, the driver actors and this
process), leaving out only the other apps' replicas and the engine; for the engine its
process and its client processes (and this process). That CPU is also given by kind of process,
split into idle (what those processes use per second with no traffic, measured for 3 s after
the warm-up round, times the run's duration) and traffic (the rest). Beside the items: the
floors (items per request if every twin of a burst merged: by intent, surface form, exact key)
and why each surface twin that ran again did (late, another replica, the same replica after
its exact twin's item, the same replica as a near twin). Ratios against (b) and the issue's
targets follow (backend items <= 0.7x, req/s >= 1.3x, p99 no worse).

Usage::

    python perf/bench_ray.py [--quick] [--rounds 3] [--replicas 4] [--drivers 4]
                             [--systems a,b,c,d,e] [--window-ms 10] [--serve-tune 20/32,50/64]
                             [--via-ingress] [--plain-handles] [--serve-defaults] [--json FILE]

A full run takes about 2 minutes on 2 shared cores (40 s of it starting the cluster and the
apps); ``--quick`` (2 replicas, 2 bursts of 60, one round) about 50 s. It exits 1 when any
request was lost, answered twice, failed or answered wrong, or when a process it started
outlived the cleanup. The cluster, the engine and every process the run started are gone when
it ends, Ctrl-C included.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import queue
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from stratabatch.dedup import normalize_key
from stratabatch.perf.backend import ENV_VAR, CostModel, SimBackend
from stratabatch.perf.benchutil import (
    Cleanup,
    Engine,
    cpu_delta_s,
    descendants,
    load_average,
    print_targets,
    task_cpu_s,
)
from stratabatch.perf.harness import account, check_exactly_once, median_run
from stratabatch.perf.modes import ModeRun, Outcome, Settings, error_text, send_at_times
from stratabatch.perf.workload import Workload, WorkloadConfig, generate

ENGINE_HANDLER = "stratabatch.perf.backend:engine_handler"
START_DELAY_S = 0.5
"""From the start signal to the first arrival: every sender has its work by then."""

TWINS, PEER, SERVE_ROUTER, ENGINE, PLAIN = "a", "b", "c", "d", "e"
NAMES = {
    TWINS: "(a) stratabatch, twins, coalescing",
    PEER: "(b) Serve @serve.batch",
    SERVE_ROUTER: "(c) stratabatch, Serve's router",
    ENGINE: "(d) stratabatch-engine, 1 host",
    PLAIN: "(e) stratabatch, twins, plain handle",
}
THROUGHPUT_OPTIMIZED = "RAY_SERVE_THROUGHPUT_OPTIMIZED"
"""Serve's high-throughput mode (Ray >= 2.55): set for every process of the cluster."""
BATCH = "answers"
"""The batch deployment of (a) and (c): the drivers call it straight, as ``batch_handle`` does."""
APPS = {
    TWINS: "bench-twins",
    PLAIN: "bench-twins",  # (the same app as (a): only the callers' handle differs)
    PEER: "bench-serve-batch",
    SERVE_ROUTER: "bench-serve-router",
}


@dataclass(frozen=True)
class Options:
    """What every system of a run is given."""

    model: CostModel
    replicas: int
    window_ms: float
    max_size: int
    dedup_strategy: str
    timeout_s: float
    ingress_replicas: int = 1


@dataclass(frozen=True)
class System:
    """One system of the run."""

    key: str
    """``a`` to ``e``, or ``b@WAIT/SIZE`` for another @serve.batch setting."""
    name: str
    kind: str
    """``stratabatch`` (a, c, e), ``serve-batch`` (b) or ``engine`` (d)."""
    app: str = ""
    """The Serve application's name (none for the engine)."""
    route: str = ""
    batch_size: int = 0
    wait_ms: float = 0.0
    coalescing: bool = False
    """Whether the drivers call through ``stratabatch.ray.coalescing_handle``."""


def build_systems(a: argparse.Namespace, serve_size: int, serve_wait: float) -> list[System]:
    """The run's systems, in the order they alternate; (b) is always one of them."""
    wanted = {k.strip() for k in a.systems.split(",")} | {PEER}
    unknown = wanted - set(NAMES)
    if unknown:
        raise ValueError(f"--systems: unknown {sorted(unknown)}; choose from a,b,c,d,e")
    out = []
    for key in (TWINS, PLAIN, PEER, SERVE_ROUTER, ENGINE):
        if key not in wanted:
            continue
        if key == PEER:
            out.append(
                System(key, NAMES[key], "serve-batch", APPS[key], "", serve_size, serve_wait)
            )
            for i, spec in enumerate(filter(None, (a.serve_tune or "").split(","))):
                wait, size = _variant(spec)
                out.append(
                    System(
                        f"{PEER}@{wait:g}/{size}",
                        f"(b) @serve.batch {wait:g} ms / {size}",
                        "serve-batch",
                        f"{APPS[PEER]}-{i}",
                        "",
                        size,
                        wait,
                    )
                )
        elif key == ENGINE:
            out.append(System(key, NAMES[key], "engine", batch_size=a.max_size))
        else:
            route = "serve" if key == SERVE_ROUTER else "twins"
            coalescing = key != PLAIN and not a.plain_handles
            out.append(
                System(
                    key,
                    NAMES[key],
                    "stratabatch",
                    APPS[key],
                    route,
                    a.max_size,
                    coalescing=coalescing,
                )
            )
    return out


def _variant(spec: str) -> tuple[float, int]:
    """``WAIT_MS/SIZE`` of ``--serve-tune``."""
    try:
        wait, size = spec.split("/")
        out = float(wait), int(size)
    except ValueError:
        raise ValueError(f"--serve-tune: {spec!r} is not WAIT_MS/SIZE (such as 20/64)") from None
    if out[0] <= 0 or out[1] < 1:
        raise ValueError(f"--serve-tune: {spec!r}: the wait must be > 0 and the size >= 1")
    return out


# --------------------------------------------------------------------------- the Serve systems


class Driver:
    """A sender inside the cluster (a Ray actor): its share of the workload through app handles."""

    def __init__(self) -> None:
        self._handles: dict[tuple[str, str | None], Any] = {}

    def pid(self) -> int:
        """This actor's process id."""
        return os.getpid()

    async def run(
        self,
        target: tuple[str, str | None, bool, float],
        work: list[tuple[int, float, dict[str, Any]]],
        t0: float,
        timeout_s: float,
    ) -> tuple[list[tuple[int, Any, float, str | None]], tuple[int, int]]:
        """Send each ``(rid, t, payload)`` at ``t0 + t`` (monotonic clock, the same in every
        process of this machine) to ``target``, ``(app, None, False, _)`` for the app's
        handle, ``(app, deployment, False, _)`` for a deployment's, ``(app, deployment, True,
        flush_ms)`` for a ``stratabatch.ray.coalescing_handle``; return ``(rid, result,
        latency_s, error)`` per request, and the (Ray calls, requests) the coalescing handle
        sent ((0, 0) else)."""
        from ray import serve

        handle = self._handles.get(target)
        if handle is None:
            app, dep, coalescing, flush_ms = target
            if coalescing:
                from stratabatch.ray import coalescing_handle

                handle = coalescing_handle(app, dep, flush_ms=flush_ms)
            elif dep is None:
                handle = serve.get_app_handle(app)
            else:
                handle = serve.get_deployment_handle(dep, app)
            self._handles[target] = handle
        if target[2]:
            calls0, reqs0 = handle.calls, handle.requests
            out = await send_at_times(
                work, t0, lambda payload: handle.remote(payload, timeout=timeout_s)
            )
            return out, (handle.calls - calls0, handle.requests - reqs0)
        out = await send_at_times(
            work,
            t0,
            lambda payload: asyncio.wait_for(_awaitable(handle.remote(payload)), timeout_s),
        )
        return out, (0, 0)


async def _awaitable(response: Any) -> Any:
    return await response


def serve_batch_app(opts: Options, batch_size: int, wait_ms: float) -> Any:
    """(b): the same backend behind ``@serve.batch``, bound and ready for ``serve.run``."""
    from ray import serve

    model_env = opts.model.to_env()
    concurrency = opts.model.concurrency

    @serve.deployment(
        num_replicas=opts.replicas,
        # Serve's default (5) would starve the batcher; stratabatch.ray's default, the same here
        max_ongoing_requests=batch_size * (concurrency + 2),
        ray_actor_options={"num_cpus": 0},
    )
    class ServeBatch:
        def __init__(self) -> None:
            self.backend = SimBackend(CostModel(**json.loads(model_env)))

        @serve.batch(
            max_batch_size=batch_size,
            batch_wait_timeout_s=wait_ms / 1000,
            max_concurrent_batches=concurrency,
        )
        async def answer(self, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return await self.backend(requests)

        async def __call__(self, request: dict[str, Any]) -> dict[str, Any]:
            return await self.answer(request)

    return ServeBatch.bind()  # type: ignore[attr-defined]


def stratabatch_app(opts: Options, route: str) -> Any:
    """(a) and (c): ``stratabatch.ray.deployment`` over the same backend, bound."""
    from stratabatch.ray import deployment

    dep = deployment(
        SimBackend,
        name=BATCH,
        num_replicas=opts.replicas,
        route=route,
        ray_actor_options={"num_cpus": 0},
        ingress_replicas=opts.ingress_replicas,
        window_ms=opts.window_ms,
        max_size=opts.max_size,
        dedup_strategy=opts.dedup_strategy,
        max_inflight_batches=opts.model.concurrency,
        max_queue=100_000,
        processing_timeout=opts.timeout_s,
        cold_start="wait",
    )
    return dep.bind(opts.model)


def stratabatch_ray_unavailable() -> str | None:
    """None when ``stratabatch.ray`` can be imported, else why not."""
    try:
        import stratabatch.ray  # noqa: F401
    except ImportError as exc:
        return f"stratabatch.ray cannot be imported ({exc})"
    return None


class RayCluster:
    """A head and 2 worker nodes on this machine, Serve without HTTP proxies, driver actors."""

    def __init__(self, cleanup: Cleanup, drivers: int) -> None:
        import logging

        import ray
        from ray import serve
        from ray.cluster_utils import Cluster
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        logging.getLogger("ray.serve").setLevel(logging.WARNING)

        small: dict[str, Any] = {"num_cpus": 4, "object_store_memory": 100 * 2**20}
        self.cluster = Cluster(
            initialize_head=True, head_node_args={**small, "include_dashboard": False}
        )
        self.drivers: list[Any] = []
        self.ray_calls = 0
        cleanup.add(self.shutdown)
        for _ in range(2):
            self.cluster.add_node(**small)
        ray.init(address=self.cluster.address, log_to_driver=False, logging_level=logging.WARNING)
        self.cluster.wait_for_nodes()
        serve.start(proxy_location="Disabled", logging_config={"log_level": "WARNING"})
        nodes = sorted(n["NodeID"] for n in ray.nodes() if n["Alive"])
        actor = ray.remote(Driver)
        self.drivers = [
            actor.options(
                num_cpus=0,
                max_concurrency=1000,
                scheduling_strategy=NodeAffinitySchedulingStrategy(
                    nodes[i % len(nodes)], soft=False
                ),
            ).remote()
            for i in range(drivers)
        ]
        self.driver_pids = ray.get([d.pid.remote() for d in self.drivers], timeout=120)

    def deploy(self, apps: dict[str, Any]) -> None:
        """Deploy each bound app under its name, all at once (handles only: no route)."""
        from ray import serve

        serve.run_many(
            [serve.RunTarget(app, name=name, route_prefix=None) for name, app in apps.items()]
        )

    def run(
        self,
        target: tuple[str, str | None, bool, float],
        work: list[list[tuple[int, float, dict[str, Any]]]],
        timeout_s: float,
    ) -> list[Outcome]:
        """Every driver sends its work to ``target`` (see :meth:`Driver.run`); the outcomes.
        :attr:`ray_calls` is then the Ray calls the drivers' coalescing handles sent."""
        import ray

        t0 = time.monotonic() + START_DELAY_S
        refs = [
            d.run.remote(target, w, t0, timeout_s) for d, w in zip(self.drivers, work, strict=True)
        ]
        end = max((t for w in work for _, t, _ in w), default=0.0)
        got = ray.get(refs, timeout=START_DELAY_S + end + timeout_s + 60)
        self.ray_calls = sum(c for _, (c, _) in got)
        return [Outcome(*o) for outcomes, _ in got for o in outcomes]

    def shutdown(self) -> None:
        """Ray and the cluster down; every process they started gone."""
        import ray

        for d in self.drivers:  # first: their handles would retry the controller's long polls
            with contextlib.suppress(Exception):
                ray.kill(d)
        # no serve.shutdown(): it waits for every replica's graceful stop (up to 30 s here),
        # and the cluster's end stops them all anyway
        with contextlib.suppress(Exception):
            ray.shutdown()
        self.cluster.shutdown()


# --------------------------------------------------------------------------- the engine system


def engine_client_main(cid: int, inbox: Any, outbox: Any) -> None:
    """A client process of (d), alive for the whole run (forked before Ray starts).

    Takes ``(engine name, work, t0, timeout_s)`` messages, sends the work at its times through
    one ``stratabatch.connect(name)`` client, answers ``(cid, outcome tuples)``; ``None`` ends it.
    """
    import stratabatch

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent's cleanup stops it
    loop = asyncio.new_event_loop()
    clients: dict[str, Any] = {}

    async def run(name: str, work: list[Any], t0: float, timeout_s: float) -> list[Any]:
        client = clients.get(name)
        if client is None:
            client = clients[name] = stratabatch.connect(name)
        return await send_at_times(
            work, t0, lambda payload: client.process(payload, timeout=timeout_s)
        )

    try:
        while (msg := inbox.get()) is not None:
            try:
                outbox.put((cid, loop.run_until_complete(run(*msg))))
            except Exception as exc:  # connect failed: every request of this run failed with it
                outbox.put((cid, [(rid, None, 0.0, error_text(exc)) for rid, _, _ in msg[1]]))
    finally:
        for client in clients.values():
            with contextlib.suppress(Exception):
                loop.run_until_complete(client.close())
        loop.close()


class EngineClients:
    """``n`` client processes of (d), forked at once (before any Ray thread exists)."""

    def __init__(self, n: int, cleanup: Cleanup) -> None:
        ctx = mp.get_context("fork")
        self.inboxes = [ctx.Queue() for _ in range(n)]
        self.outbox = ctx.Queue()
        self.procs = [
            ctx.Process(
                target=engine_client_main, args=(c, self.inboxes[c], self.outbox), daemon=True
            )
            for c in range(n)
        ]
        for p in self.procs:
            p.start()
        cleanup.add(self.stop)

    @property
    def pids(self) -> list[int]:
        """The client processes' ids."""
        return [p.pid for p in self.procs if p.pid is not None]

    def run(
        self, name: str, work: list[list[tuple[int, float, dict[str, Any]]]], timeout_s: float
    ) -> list[Outcome]:
        """Every client sends its work to engine ``name``; the outcomes of all of them."""
        t0 = time.monotonic() + START_DELAY_S
        for inbox, w in zip(self.inboxes, work, strict=True):
            inbox.put((name, w, t0, timeout_s))
        end = max((t for w in work for _, t, _ in w), default=0.0)
        deadline = time.monotonic() + START_DELAY_S + end + timeout_s + 60
        outcomes: list[Outcome] = []
        for _ in self.procs:
            while True:
                try:
                    _, tuples = self.outbox.get(timeout=0.5)
                    break
                except queue.Empty:
                    dead = [p.exitcode for p in self.procs if not p.is_alive()]
                    if dead or time.monotonic() > deadline:
                        raise RuntimeError(f"an engine client failed (exit codes {dead})") from None
            outcomes += [Outcome(*t) for t in tuples]
        return outcomes

    def stop(self) -> None:
        """End every client process."""
        for inbox in self.inboxes:
            with contextlib.suppress(Exception):
                inbox.put(None)
        for p in self.procs:
            p.join(10)
            if p.is_alive():
                p.kill()
                p.join()


def start_engine(opts: Options, cleanup: Cleanup) -> Engine:
    """(d)'s engine: the backend with the cluster's whole budget of concurrent calls."""
    budget = opts.model.concurrency * opts.replicas
    model = CostModel(**{**asdict(opts.model), "concurrency": budget})
    options = [
        "--window-ms",
        f"{opts.window_ms:g}",
        "--max-size",
        str(opts.max_size),
        "--dedup-strategy",
        opts.dedup_strategy,
        "--max-inflight-batches",
        str(budget),
        "--cold-start",
        "wait",
    ]
    name = f"bench-ray-{os.getpid()}"
    return Engine(name, ENGINE_HANDLER, options, cleanup, env={ENV_VAR: model.to_env()})


# --------------------------------------------------------------------------- CPU


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


_RAY_DAEMONS = (
    ("/dashboard/agent.py", "dashboard agents"),
    ("/runtime_env/agent/main.py", "runtime-env agents"),
    ("/dashboard/dashboard.py", "dashboard (head)"),
    ("/log_monitor.py", "log monitors"),
    ("/autoscaler/_private/monitor.py", "autoscaler monitor"),
)


def _kind(cmdline: str, app: str) -> str:
    """What a process of the cluster is, for the CPU breakdown (by its title or command)."""
    if cmdline.startswith("ray::Driver"):
        return "driver actors"
    if cmdline.startswith(f"ray::ServeReplica:{app}:"):
        return "ingress" if cmdline.split()[0].endswith("_ingress") else "replicas"
    if cmdline.startswith("ray::ServeController"):
        return "Serve controller"
    if cmdline.startswith("ray::"):  # the stats board, idle workers
        return "other Ray workers"
    head = cmdline.split(" ", 1)[0]
    if head.endswith("/raylet"):
        return "raylets"
    if head.endswith("/gcs_server"):
        return "GCS"
    for mark, kind in _RAY_DAEMONS:
        if mark in cmdline:
            return kind
    return "other processes"


def system_pids(system: System, apps: list[str], engine_pids: list[int]) -> dict[int, str]:
    """The processes whose CPU a run of ``system`` is charged with (see the module docstring),
    each with what it is; ``apps``: every Serve app of the run."""
    me = os.getpid()
    if system.kind == "engine":
        out = {me: "this process"}
        if engine_pids:
            out[engine_pids[0]] = "engine"
            out.update({p: "engine clients" for p in engine_pids[1:]})
        return out
    engine_side = set(engine_pids)
    others = [f"ray::ServeReplica:{app}:" for app in apps if app != system.app]
    out = {}
    for p in descendants(me):
        if p in engine_side:
            continue
        cmd = _cmdline(p)
        if any(cmd.startswith(o) for o in others):
            continue
        out[p] = "this process" if p == me else _kind(cmd, system.app)
    return out


def cpu_s(pids: Iterable[int]) -> dict[tuple[int, str], float]:
    """CPU seconds so far of every thread of ``pids`` (not their children: they are listed)."""
    out: dict[tuple[int, str], float] = {}
    for p in pids:
        out.update(task_cpu_s(p))
    return out


# --------------------------------------------------------------------------- one run


def split(workload: Workload, n: int) -> list[list[tuple[int, float, dict[str, Any]]]]:
    """Each sender's ``(rid, t, payload)``, by the workload's client index."""
    out: list[list[tuple[int, float, dict[str, Any]]]] = [[] for _ in range(n)]
    for r in workload.requests:
        out[r.client % n].append((r.rid, r.t, r.payload()))
    return out


def colocation(workload: Workload, outcomes: list[Outcome]) -> dict[str, float | int]:
    """How often twins ran on one replica: over pairs of requests of one burst with the same
    exact key (the core's normalization) or the same surface form, the share whose answers
    came from the same process (each answer's ``call`` starts with its backend's pid)."""
    where: dict[int, str] = {}
    for o in outcomes:
        if o.error is None and isinstance(o.result, dict):
            where[o.rid] = str(o.result.get("call", "")).split("-", 1)[0]
    out: dict[str, float | int] = {}
    for label, key in (
        ("exact", lambda r: normalize_key(r.text)),
        ("surface", lambda r: r.form),
    ):
        groups: dict[tuple[int, str], list[str]] = {}
        for r in workload.requests:
            if r.rid in where:
                groups.setdefault((r.segment, key(r)), []).append(where[r.rid])
        pairs = together = 0
        for places in groups.values():
            k = len(places)
            pairs += k * (k - 1) // 2
            together += sum(c * (c - 1) // 2 for c in Counter(places).values())
        out[f"{label}_pairs"] = pairs
        out[f"{label}_together_pct"] = round(100.0 * together / pairs, 1) if pairs else 0.0
    return out


def run_once(
    workload: Workload,
    drivers: int,
    send: Callable[[list[list[tuple[int, float, dict[str, Any]]]]], list[Outcome]],
    pids: dict[int, str],
    settings: Settings,
    batch_size: int,
    idle: dict[int, float],
) -> dict[str, Any]:
    """Send the workload through ``send``, charge ``pids``' CPU; the harness's figures, with
    ``cpu_us_by_process`` (CPU us per request by kind of process) and ``cpu_breakdown`` (per
    kind: ``total``, ``idle`` (what the kind's processes used per second of the idle cluster,
    times the run's duration) and ``traffic`` (the difference), us per request)."""
    before = cpu_s(pids)
    t0 = time.monotonic()
    outcomes = send(split(workload, drivers))
    wall = time.monotonic() - t0
    after = cpu_s(pids)
    n = len(workload)
    by_kind: dict[str, float] = {}
    breakdown: dict[str, dict[str, float]] = {}
    for kind in sorted(set(pids.values())):
        keys = {k for k in before | after if pids.get(k[0]) == kind}
        part = cpu_delta_s(
            {k: before[k] for k in keys & before.keys()}, {k: after[k] for k in keys & after.keys()}
        )
        background = sum(rate for p, rate in idle.items() if pids.get(p) == kind) * wall
        by_kind[kind] = round(part / n * 1e6, 1)
        breakdown[kind] = {
            "total": round(part / n * 1e6, 1),
            "idle": round(background / n * 1e6, 1),
            "traffic": round((part - background) / n * 1e6, 1),
        }
    cpu = cpu_delta_s(before, after)
    r = account(
        workload, ModeRun(outcomes, cpu, {"cpu_processes": len(pids)}), settings, batch_size
    )
    r["cpu_us_by_process"] = by_kind
    r["cpu_breakdown"] = breakdown
    r["wall_s"] = wall
    idle_us = sum(b["idle"] for b in breakdown.values())
    r["cpu_idle_us_per_request"] = round(idle_us, 1)
    r["cpu_traffic_us_per_request"] = round(r["cpu_us_per_request"] - idle_us, 1)
    r["error_examples"] = {}
    for o in outcomes:
        if o.error is not None:
            r["error_examples"].setdefault(o.error.split(":", 1)[0], o.error[:500])
    r["twins_together"] = colocation(workload, outcomes)
    r["missed_twins"] = missed_twins(workload, outcomes)
    r["wrong"] = r["wrong_merges"] + r["mismatched_answers"]
    r["items_per_request"] = r["backend_items"] / r["requests"]
    return r


def floors(workload: Workload) -> dict[str, float]:
    """Backend items per request if every twin of a burst were merged: by intent (a perfect
    near dedup), by surface form (case, punctuation, spacing, fillers), by exact key."""
    n = len(workload)
    out = {}
    for label, key in (
        ("intent", lambda r: r.intent),
        ("surface", lambda r: r.form),
        ("exact", lambda r: normalize_key(r.text)),
    ):
        out[label] = len({(r.segment, key(r)) for r in workload.requests}) / n
    return out


def missed_twins(workload: Workload, outcomes: list[Outcome]) -> dict[str, int]:
    """Why surface twins of one burst ran as more than one backend item: for each request
    answered by an item that no earlier twin of its form (by scheduled arrival) shared,
    ``late`` when an earlier twin's answer had come back before it was sent (nothing runs
    then to join), else ``other_replica`` when no earlier item of its form ran on its
    replica, else ``same_replica_exact`` when an earlier twin on its replica had its exact key
    (it came after that twin's item had run: the core joins running work by exact key), else
    ``same_replica_near``. ``merged``: requests that shared an earlier twin's item."""
    got: dict[int, tuple[str, str, float]] = {}
    reqs = {r.rid: r for r in workload.requests}
    for o in outcomes:
        if o.error is None and isinstance(o.result, dict) and o.rid in reqs:
            call = str(o.result.get("call", ""))
            item = f"{call}/{o.result.get('answer_to')}"
            got[o.rid] = (item, call.split("-", 1)[0], reqs[o.rid].t + o.latency_s)
    groups: dict[tuple[int, str], list[Any]] = {}
    for r in sorted(workload.requests, key=lambda r: r.t):
        if r.rid in got:
            groups.setdefault((r.segment, r.form), []).append(r)
    out = Counter(
        {
            "merged": 0,
            "late": 0,
            "other_replica": 0,
            "same_replica_exact": 0,
            "same_replica_near": 0,
        }
    )
    for members in groups.values():
        items: dict[str, str] = {}  # item -> replica
        exact: set[tuple[str, str]] = set()  # (replica, exact key) of the earlier twins
        first_done = float("inf")
        for r in members:
            item, replica, done = got[r.rid]
            key = normalize_key(r.text)
            if not items:
                pass
            elif item in items:
                out["merged"] += 1
            elif r.t >= first_done:
                out["late"] += 1
            elif replica not in items.values():
                out["other_replica"] += 1
            elif (replica, key) in exact:
                out["same_replica_exact"] += 1
            else:
                out["same_replica_near"] += 1
            items.setdefault(item, replica)
            exact.add((replica, key))
            first_done = min(first_done, done)
    return dict(out)


def _line(label: str, system: System, r: dict[str, Any]) -> str:
    failed = r["lost"] + r["errors"] + r["duplicated"]
    first = next(iter(r["error_examples"].values()), "")
    return (
        f"{label:>8} {system.name:<34}{r['throughput_rps']:>7,.0f} req/s  p50 "
        f"{r['latency_ms_p50']:7.1f}  p99 {r['latency_ms_p99']:7.1f} ms  items "
        f"{r['backend_items']:>5} ({r['items_per_request']:.2f}/req)  CPU "
        f"{r['cpu_us_per_request']:7.0f} us/req  wrong {r['wrong']}  failed {failed}"
        + (f" ({first[:200]})" if failed and first else "")
    )


# --------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    """The command line; every default is in ``--help``."""
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = ap.add_argument
    add("--quick", action="store_true", help="smoke run: 2 replicas, 2 bursts of 60, 1 round")
    add("--rounds", type=int, help="measured rounds, the median reported (3; --quick 1)")
    add("--replicas", type=int, help="replicas of each Serve app (4; --quick 2)")
    add("--drivers", type=int, default=4, help="senders: driver actors / client processes (4)")
    add("--systems", default="a,b,c,d,e", help="comma-separated subset of a,b,c,d,e (b always)")
    add("--seed", type=int, default=1, help="workload seed (1)")
    add("--bursts", type=int, help="bursts per run (3; --quick 2)")
    add("--burst-size", type=int, help="requests per burst (300; --quick 60)")
    add("--burst-ms", type=float, default=100.0, help="a burst's arrivals spread over (100)")
    add("--gap-ms", type=float, help="quiet time after each burst (1500; --quick 700)")
    add("--window-ms", type=float, default=10.0, help="stratabatch window, @serve.batch wait (10)")
    add("--max-size", type=int, default=32, help="stratabatch max_size, max_batch_size (32)")
    add("--serve-wait-ms", type=float, help="@serve.batch batch_wait_timeout_s in ms (--window-ms)")
    add("--serve-batch-size", type=int, help="@serve.batch max_batch_size (--max-size)")
    add(
        "--serve-tune",
        metavar="WAIT_MS/SIZE,...",
        help="more @serve.batch systems with these settings, alternated with the others "
        "(such as 5/32,20/64): how the peer's settings were chosen",
    )
    add("--dedup-strategy", default="embedding", help="stratabatch's strategy (embedding)")
    add(
        "--via-ingress",
        action="store_true",
        help="(a), (c): call the app's handle (its ingress deployment, one more hop) instead "
        "of the batch deployment's",
    )
    add(
        "--plain-handles",
        action="store_true",
        help="(a), (c): the drivers call through plain deployment handles, one Ray call a "
        "request, instead of stratabatch.ray.coalescing_handle ((e) always does)",
    )
    add(
        "--ingress-replicas",
        type=int,
        default=1,
        help="replicas of the ingress of (a), (c), (e) (1): its path with --via-ingress",
    )
    add(
        "--flush-ms",
        type=float,
        default=0.0,
        help="the coalescing handles' flush_ms ((a), (c)): 0, one turn of the sender's loop",
    )
    add(
        "--serve-defaults",
        action="store_true",
        help="leave RAY_SERVE_THROUGHPUT_OPTIMIZED as it is (this script sets it to 1: Serve's "
        "documented high-throughput mode, about twice the req/s of its defaults here)",
    )
    add("--timeout-s", type=float, default=60.0, help="bound on each request's wait (60)")
    add("--json", metavar="FILE", help="write every figure as JSON")
    return ap


def main(argv: list[str] | None = None) -> int:
    """Start the cluster and the engine, run the systems round-robin, print and check."""
    parser = build_parser()
    a = parser.parse_args(argv)
    if not a.serve_defaults:  # before anything imports ray.serve, which reads it once
        os.environ[THROUGHPUT_OPTIMIZED] = "1"
    rounds = a.rounds or (1 if a.quick else 3)
    replicas = a.replicas or (2 if a.quick else 4)
    model = CostModel()
    opts = Options(
        model,
        replicas,
        a.window_ms,
        a.max_size,
        a.dedup_strategy,
        a.timeout_s,
        a.ingress_replicas,
    )
    serve_size, serve_wait = a.serve_batch_size or a.max_size, a.serve_wait_ms or a.window_ms
    try:
        systems = build_systems(a, serve_size, serve_wait)
        cfg = WorkloadConfig(
            seed=a.seed,
            clients=a.drivers,
            bursts=a.bursts or (2 if a.quick else 3),
            burst_size=a.burst_size or (60 if a.quick else 300),
            burst_ms=a.burst_ms,
            gap_ms=a.gap_ms if a.gap_ms is not None else (700.0 if a.quick else 1500.0),
        )
    except ValueError as exc:
        parser.error(str(exc))
    workload = generate(cfg)
    warm_size = min(cfg.burst_size, 30) if a.quick else cfg.burst_size
    warm = generate(
        WorkloadConfig(
            **{**asdict(cfg), "seed": cfg.seed + 1000, "bursts": 1, "burst_size": warm_size}
        )
    )
    truth = workload.truth()
    n = truth["requests"]
    settings = Settings(
        model=model, window_ms=a.window_ms, max_size=a.max_size, timeout_s=a.timeout_s
    )
    skipped: dict[str, str] = {}
    if any(s.kind == "stratabatch" for s in systems):
        why = stratabatch_ray_unavailable()
        if why:
            skipped = {s.name: why for s in systems if s.kind == "stratabatch"}
            systems = [s for s in systems if s.kind != "stratabatch"]
    load0 = load_average()
    print(f"bench_ray: {load0}", flush=True)
    print(
        f"workload: {n:,} requests, {cfg.bursts} bursts of {cfg.burst_size} over "
        f"{cfg.burst_ms:g} ms every {(cfg.burst_ms + cfg.gap_ms) / 1000:g} s, seed {cfg.seed}, "
        f"{a.drivers} senders; within a burst {truth['dups_catchable'] / n:.0%} surface twins, "
        f"{truth['dups_existing'] / n:.0%} repeat an intent\nbackend: {model.overhead_ms:g} "
        f"ms/call + {model.per_item_ms:g} ms/item, {model.concurrency} calls at once per replica, "
        f"{replicas} replicas on a 3-node local cluster\nstratabatch: window {a.window_ms:g} ms, "
        f"max_size {a.max_size}, {a.dedup_strategy}; @serve.batch: max_batch_size {serve_size}, "
        f"batch_wait_timeout_s {serve_wait / 1000:g}, max_concurrent_batches "
        f"{model.concurrency}; {THROUGHPUT_OPTIMIZED}="
        f"{os.environ.get(THROUGHPUT_OPTIMIZED, '(unset)')}; median of {rounds} round(s) after a "
        "warm-up round",
        flush=True,
    )
    for name, why in skipped.items():
        print(f"{name}: skipped: {why}", flush=True)
    runs: dict[str, list[dict[str, Any]]] = {s.key: [] for s in systems}
    apps = [s.app for s in systems if s.app]
    t_start = time.monotonic()
    seen: dict[int, str] = {}  # every process this run started (checked gone at the end)
    with Cleanup() as cleanup:
        engine_on = any(s.kind == "engine" for s in systems)
        clients = EngineClients(a.drivers, cleanup) if engine_on else None
        t = time.monotonic()
        cluster = RayCluster(cleanup, a.drivers)
        for sig in (signal.SIGTERM, signal.SIGHUP):  # ray.init put in handlers that abort
            signal.signal(sig, _interrupt)
        cluster.deploy(
            {
                s.app: (
                    serve_batch_app(opts, s.batch_size, s.wait_ms)
                    if s.kind == "serve-batch"
                    else stratabatch_app(opts, s.route)
                )
                for s in systems
                if s.app
            }
        )
        print(
            f"cluster up, {len(set(apps))} apps deployed in {time.monotonic() - t:.0f} s",
            flush=True,
        )
        t_runs = time.monotonic()
        engine = start_engine(opts, cleanup) if engine_on else None
        engine_pids = [engine.pid, *clients.pids] if engine and clients else []
        idle_rates: dict[int, float] = {}
        idle = 0.0
        for rnd in range(rounds + 1):
            load = warm if rnd == 0 else workload
            if rnd == 1:  # after the warm-up: every handle and router made, as in the rounds
                idle_rates = _idle_rates(descendants(os.getpid()), 1.0 if a.quick else 3.0)
                idle = sum(v for p, v in idle_rates.items() if p in system_pids(systems[0], [], []))
                print(f"idle cluster (no app's traffic): {idle:.1%} of a CPU", flush=True)
            for system in systems:
                if system.kind == "engine":
                    assert engine is not None and clients is not None
                    name = engine.name
                    send = lambda w, name=name: clients.run(name, w, a.timeout_s)  # noqa: E731
                else:
                    direct = system.kind == "stratabatch" and not a.via_ingress
                    target = (
                        system.app,
                        BATCH if direct else None,
                        direct and system.coalescing,
                        a.flush_ms,
                    )
                    send = lambda w, tg=target: cluster.run(tg, w, a.timeout_s)  # noqa: E731
                pids = system_pids(system, apps, engine_pids)
                seen.update({p: _cmdline(p) for p in descendants(os.getpid())})
                r = run_once(load, a.drivers, send, pids, settings, system.batch_size, idle_rates)
                r["ray_calls"] = cluster.ray_calls if system.kind != "engine" else 0
                print(_line(f"round {rnd}" if rnd else "warm-up", system, r), flush=True)
                if rnd:
                    runs[system.key].append(r)
    print(f"rounds took {time.monotonic() - t_runs:.0f} s", flush=True)
    seen.pop(os.getpid(), None)
    left = leftovers(seen)
    took = time.monotonic() - t_start
    load1 = load_average()
    med = {s.key: median_run(runs[s.key]) for s in systems}
    print_table(med, systems, skipped, floors(workload))
    print(f"{load1} at the end; the run took {took:.0f} s")
    targets = print_targets(target_rows(med))
    failed = _failures(med, systems)
    if left:
        failed += f"; processes left running after the cleanup (now killed): {left}"
    if a.json:
        Path(a.json).write_text(
            json.dumps(
                {
                    "systems": {s.name: {**med[s.key], "system": asdict(s)} for s in systems},
                    "skipped": skipped,
                    "runs": {s.name: runs[s.key] for s in systems},
                    "targets": targets,
                    "idle_cluster_cpu": idle,
                    "idle_cpu_by_pid": {str(p): v for p, v in idle_rates.items()},
                    "floors_items_per_request": floors(workload),
                    THROUGHPUT_OPTIMIZED: os.environ.get(THROUGHPUT_OPTIMIZED),
                    "load_average": {"start": load0, "end": load1},
                    "workload": workload.describe(),
                    "settings": {
                        **vars(a),
                        "rounds": rounds,
                        "replicas": replicas,
                        "cost_model": asdict(model),
                        "serve_batch": {
                            "max_batch_size": serve_size,
                            "batch_wait_timeout_s": serve_wait / 1000,
                            "max_concurrent_batches": model.concurrency,
                        },
                        "engine_concurrency": model.concurrency * replicas,
                    },
                    "seconds": took,
                    "processes_started": len(seen),
                    "left_running": left,
                    "failed": failed,
                },
                indent=1,
                default=str,
            )
        )
    if failed:
        print(f"FAILED: {failed}", file=sys.stderr)
        return 1
    return 0


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def leftovers(started: dict[int, str], wait_s: float = 15.0) -> list[str]:
    """Processes of ``started`` (pid: command line) still running ``wait_s`` after the cleanup;
    each is killed (it is this run's own: the same pid with the same command line)."""
    deadline = time.monotonic() + wait_s
    while True:
        alive = {p: c for p, c in started.items() if c and _cmdline(p) == c and not _zombie(p)}
        if not alive or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    for p in alive:
        with contextlib.suppress(OSError):
            os.kill(p, signal.SIGKILL)
    return [f"{p} {c[:60]}" for p, c in alive.items()]


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] == b"Z"
    except (OSError, IndexError):
        return True


def _idle_rates(pids: Iterable[int], seconds: float) -> dict[int, float]:
    """CPU seconds a second of each of ``pids`` over ``seconds`` with no traffic."""
    pids = list(pids)
    before = {p: cpu_s([p]) for p in pids}
    time.sleep(seconds)
    return {p: cpu_delta_s(before[p], cpu_s([p])) / seconds for p in pids}


def _failures(med: dict[str, dict[str, Any]], systems: list[System]) -> str:
    """What went wrong in any run: lost, duplicated, failed or wrong answers."""
    names = {s.key: s.name for s in systems}
    try:
        check_exactly_once({names[k]: r for k, r in med.items()})
    except Exception as exc:
        return str(exc)
    bad = {
        names[k]: {"errors": r["errors"], "wrong": r["wrong"], "examples": r["error_examples"]}
        for k, r in med.items()
        if r["errors"] or r["wrong"]
    }
    return f"errors or wrong answers: {bad}" if bad else ""


def print_table(
    med: dict[str, dict[str, Any]],
    systems: list[System],
    skipped: dict[str, str],
    floors_seen: dict[str, float],
) -> None:
    """The medians and the ratios against (b)."""
    peer = med[PEER]
    rounds = peer["repeats"]
    print(f"\nmedian of {rounds} round(s) (the run with the median req/s); x(b): ratio to (b)")
    print(
        f"{'system':<34}{'req/s':>7}{'x(b)':>6}{'p50 ms':>8}{'p99 ms':>8}{'x(b)':>6}"
        f"{'calls':>6}{'items':>6}{'/req':>5}{'x(b)':>6}{'CPU us/req':>11}{'x(b)':>6}"
        f"{'wrong':>6}{'failed':>7}"
    )
    for s in systems:
        r = med[s.key]
        for key, base in (
            ("throughput_rps", "x_rps"),
            ("latency_ms_p99", "x_p99"),
            ("backend_items", "x_items"),
            ("cpu_us_per_request", "x_cpu"),
        ):
            r[base] = r[key] / peer[key] if peer[key] else None
        print(
            f"{s.name:<34}{r['throughput_rps']:>7,.0f}{r['x_rps']:>5.2f}x"
            f"{r['latency_ms_p50']:>8.1f}{r['latency_ms_p99']:>8.1f}{r['x_p99']:>5.2f}x"
            f"{r['backend_calls']:>6}{r['backend_items']:>6}{r['items_per_request']:>5.2f}"
            f"{r['x_items']:>5.2f}x{r['cpu_us_per_request']:>11,.0f}{r['x_cpu']:>5.2f}x"
            f"{r['wrong']:>6}{r['lost'] + r['errors'] + r['duplicated']:>7}"
        )
    for name, why in skipped.items():
        print(f"{name:<34} skipped: {why}")
    print(
        "twins on one replica (pairs of one burst; exact: the same exact key, surface: the same "
        "surface form):"
    )
    for s in systems:
        t = med[s.key]["twins_together"]
        print(
            f"  {s.name}: exact {t['exact_together_pct']:.1f}% of {t['exact_pairs']:,} pairs, "
            f"surface {t['surface_together_pct']:.1f}% of {t['surface_pairs']:,}"
        )
    print_breakdown(med, systems)
    print(
        "items/req if every twin of a burst merged: "
        + ", ".join(f"{k} {v:.2f}" for k, v in floors_seen.items())
        + " (by intent: a perfect near dedup; surface: case, punctuation, spacing, fillers)"
    )
    print("surface twins not merged, why (requests; late: an earlier twin was answered first):")
    for s in systems:
        m = med[s.key]["missed_twins"]
        print(f"  {s.name}: " + ", ".join(f"{k} {v}" for k, v in m.items()))
    for s in systems:
        calls = med[s.key].get("ray_calls", 0)
        if calls:
            print(
                f"{s.name}: {calls:,} Ray calls from the drivers, "
                f"{med[s.key]['requests'] / calls:.1f} requests a call"
            )
    print(
        "req/s: requests / time with a request outstanding; latency from the scheduled arrival; "
        "items: requests the backend ran (the rest shared an answer); CPU: every process of the "
        "system over the run (a Serve system: the whole cluster but the other apps' replicas); "
        "wrong: answers from a request of another intent or with another text; failed: lost, "
        "duplicated or error outcomes"
    )


def print_breakdown(med: dict[str, dict[str, Any]], systems: list[System]) -> None:
    """CPU us per request by kind of process: traffic (the run's CPU less what the same
    processes used idle over as long) and idle, per system."""
    kinds = sorted(
        {k for s in systems for k in med[s.key]["cpu_breakdown"]},
        key=lambda k: -max(med[s.key]["cpu_breakdown"].get(k, {}).get("total", 0) for s in systems),
    )
    print("CPU us per request by process kind: traffic (run less idle) + idle")
    print(f"{'':<22}" + "".join(f"{s.name[:22]:>24}" for s in systems))
    for k in [*kinds, "all"]:
        cells = []
        for s in systems:
            b = med[s.key]["cpu_breakdown"]
            if k == "all":
                t = sum(v["traffic"] for v in b.values())
                i = sum(v["idle"] for v in b.values())
            elif k in b:
                t, i = b[k]["traffic"], b[k]["idle"]
            else:
                cells.append(f"{'-':>24}")
                continue
            cells.append(f"{f'{t:,.0f} + {i:,.0f}':>24}")
        print(f"{k:<22}" + "".join(cells))


def target_rows(med: dict[str, dict[str, Any]]) -> list[tuple[str, str, str, bool | None]]:
    """Issue 22's targets for (a) against (b); (c) and (d) reported beside them."""
    rows: list[tuple[str, str, str, bool | None]] = []
    a = med.get(TWINS)
    if a is None:
        return rows
    rows.append(
        ("(a) backend items vs (b)", f"{a['x_items']:.2f}x", "<= 0.7x", a["x_items"] <= 0.7)
    )
    rows.append(("(a) req/s vs (b)", f"{a['x_rps']:.2f}x", ">= 1.3x", a["x_rps"] >= 1.3))
    rows.append(
        (
            "(a) p99 vs (b)",
            f"{a['latency_ms_p99']:.0f} / {med[PEER]['latency_ms_p99']:.0f} ms",
            "no worse",
            a["latency_ms_p99"] <= med[PEER]["latency_ms_p99"],
        )
    )
    rows.append(
        (
            "(a) wrong + failed answers",
            str(a["wrong"] + a["lost"] + a["errors"]),
            "0",
            a["wrong"] + a["lost"] + a["errors"] == 0,
        )
    )
    c = med.get(SERVE_ROUTER)
    if c is not None and c["backend_items"]:
        rows.append(
            (
                "(a) items vs (c): what the router saves",
                f"{a['backend_items'] / c['backend_items']:.2f}x",
                "reported",
                None,
            )
        )
    return rows


if __name__ == "__main__":
    # run as a script, the classes the cluster unpickles must come from the installed module
    # (stratabatch.perf.bench_ray), not from __main__
    from stratabatch.perf.bench_ray import main as _main

    sys.exit(_main())
