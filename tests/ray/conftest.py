"""A local Ray cluster for the tests of stratabatch.ray: a head and two worker nodes on this
machine, shared by every test of this directory (``ray_cluster``).

Start-up costs 10-25 s, so the first test that asks for the cluster starts it and the tests of
every module here use it (each deploys its own apps and deletes them; the fault tests add
nodes and remove them again). It stops after the directory's last test, before any test
elsewhere runs (:func:`pytest_runtest_teardown`), and at the session's end if that has not
happened. Ports are picked free at start (the GCS, the nodes' managers, Serve's proxy): a
cluster another user runs on the machine keeps its own. Only one cluster of this suite runs at
a time: run the Ray tests under ``flock /tmp/s35/ray.lock`` when other work on the machine
starts clusters too.

Teardown: ``serve.shutdown()``, ``ray.shutdown()``, ``cluster.shutdown()``, then an assertion
that no process the cluster started (the nodes' processes, children of this one, and their
workers, children of the raylets) is left. The suite's per-test guard (tests/conftest.py) lets
processes through that were running before the test began, as this fixture's are.
"""

from __future__ import annotations

import contextlib
import gc
import os
import socket
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import process_parents

with warnings.catch_warnings():
    # Ray Serve's pydantic models use keywords pydantic 2 deprecates (warned once, at import)
    warnings.simplefilter("ignore", DeprecationWarning)
    import ray
    from ray import serve
    from ray.cluster_utils import Cluster

NODE_CPUS = 2  # per node: 3 nodes x 2 = 6 CPU slots (replicas ask for 0.5 each, see tests)
OBJECT_STORE = 80 * 1024 * 1024  # the smallest Ray accepts is 75 MiB
START_ATTEMPTS = 2  # tries at starting the cluster (see _Shared.get)


@dataclass
class RayCluster:
    """The live cluster of a test module."""

    cluster: Cluster
    """Ray's handle on the nodes (``add_node``, ``remove_node``)."""
    http_port: int
    """The port of Serve's HTTP proxy (on the head node only)."""

    @property
    def http_url(self) -> str:
        """``http://127.0.0.1:PORT``, the proxy's base URL."""
        return f"http://127.0.0.1:{self.http_port}"


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _living() -> set[int]:
    return set(process_parents())


def _children_of(pids: set[int]) -> set[int]:
    """Every live process whose parent is in ``pids``, and theirs, down the tree."""
    parents = process_parents()
    found: set[int] = set()
    frontier = set(pids)
    while frontier:
        frontier = {p for p, pp in parents.items() if pp in frontier} - found
        found |= frontier
    return found


HERE = Path(__file__).resolve().parent


class _Shared:
    """The directory's one cluster: started on first use, stopped by :meth:`stop`."""

    def __init__(self) -> None:
        self.cluster: RayCluster | None = None
        self._stop: Any = None

    def get(self) -> RayCluster:
        if self.cluster is None:
            for attempt in range(1, START_ATTEMPTS + 1):
                gen = _cluster()
                try:
                    self.cluster = next(gen)
                except Exception as e:
                    # Ray's node start-up gives up after 30 s when its GCS does not answer
                    # (seen once in CI, right after tests/perf's own cluster went down: "The
                    # current node timed out during startup"); a session-scoped fixture that
                    # raises fails every test of the directory, so the start is tried again.
                    # The failed attempt's nodes are shut down by _cluster's finally.
                    if attempt == START_ATTEMPTS:
                        raise
                    print(f"the Ray cluster did not start ({e!r}); starting it again")
                    time.sleep(5.0)
                    continue
                self._stop = gen
                break
        assert self.cluster is not None
        return self.cluster

    def stop(self) -> None:
        gen, self._stop, self.cluster = self._stop, None, None
        if gen is not None:
            with contextlib.suppress(StopIteration):
                next(gen)  # (its teardown; raises if a process was left)


_shared = _Shared()


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[RayCluster]:
    """A head and two worker nodes, the driver connected, Serve started with its proxy on a
    free port (head node only: the nodes share this machine's ports); shared by this
    directory's tests."""
    yield _shared.get()
    _shared.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """After the directory's last test (and its modules' fixtures), the cluster stops."""
    yield
    if _shared.cluster is not None and (
        nextitem is None or HERE not in Path(nextitem.path).resolve().parents
    ):
        _shared.stop()


def _cluster() -> Iterator[RayCluster]:
    before = _children_of({os.getpid()})
    with _rays_own_files():
        cluster = Cluster(
            initialize_head=True,
            head_node_args={
                "num_cpus": NODE_CPUS,
                "object_store_memory": OBJECT_STORE,
                "gcs_server_port": free_port(),
                "include_dashboard": False,  # (its head process runs anyway, on a free port)
                "dashboard_port": free_port(),
                "dashboard_agent_listen_port": free_port(),
                "ray_client_server_port": free_port(),
                # metrics reach the nodes' Prometheus endpoints within ~1 s, not 10
                "_system_config": {"metrics_report_interval_ms": 1000},
            },
        )
    started: set[int] = set()
    try:
        with _rays_own_files():
            for _ in range(2):
                cluster.add_node(num_cpus=NODE_CPUS, object_store_memory=OBJECT_STORE)
            cluster.wait_for_nodes()
            ray.init(address=cluster.address, log_to_driver=False)
            http_port = free_port()
            serve.start(
                http_options={"host": "127.0.0.1", "port": http_port}, proxy_location="HeadOnly"
            )
        started = _children_of({os.getpid()}) - before
        yield RayCluster(cluster, http_port)
        started |= _children_of({os.getpid()}) - before
    finally:
        with _rays_own_files():
            try:
                serve.shutdown()
            finally:
                ray.shutdown()
                cluster.shutdown()
    deadline = time.monotonic() + 15.0
    left = started
    while time.monotonic() < deadline:
        left = (started & _living()) | (_children_of({os.getpid()}) - before)
        if not left:
            break
        time.sleep(0.1)
    assert not left, f"the Ray cluster left processes behind: {sorted(left)}"


@contextlib.contextmanager
def _rays_own_files() -> Iterator[None]:
    """Ray's node start-up opens log files it never closes (ray/_private/node.py): the
    ResourceWarnings of their collection are Ray's, not a test's. Collected here, where they
    are ignored, instead of at some later point in another test."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            yield
        finally:
            gc.collect()
