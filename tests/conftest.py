"""Suite-wide guards: every test leaves no child process, /dev/shm entry or socket behind.

A child process that was running before a test began is a longer-lived fixture's (the Ray
cluster of tests/ray, module-scoped) and is that fixture's to check at its teardown.

The guards look only at what this run created. Every engine or segment name a test makes comes
from :func:`run_name`, which embeds this run's tag (``RUN_TAG``); an engine, a monitor fake or a
second test run elsewhere on the machine uses other names and is none of this run's business.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid

import pytest

from stratabatch.wire import socket_dir

SHM_DIR = "/dev/shm"
SHM_PREFIX = f"stratabatch-{os.getuid()}-"
RUN_TAG_ENV = "STRATABATCH_TEST_RUN_TAG"
# Kept in the environment so that a second import of this module (``tests.conftest``, next to
# pytest's own ``conftest``) and the processes a test starts agree on the tag.
RUN_TAG = os.environ.setdefault(RUN_TAG_ENV, "run" + uuid.uuid4().hex[:8])
_MAX_NAME = 48  # engine names: 1-48 characters of [A-Za-z0-9_.-] (stratabatch.wire.check_name)


def run_name(label: str) -> str:
    """A fresh engine (or segment owner) name that carries this run's tag.

    Args:
        label: What the name is for (``e2e``, ``mon``, ``ring``...), up to 27 characters.

    Returns:
        ``LABEL-RUNTAG-RANDOM``: unique, a valid engine name, found by the guards below.
    """
    name = f"{label}-{RUN_TAG}-{uuid.uuid4().hex[:8]}"
    if len(name) > _MAX_NAME:
        raise ValueError(f"label {label!r} is too long for an engine name ({name!r})")
    return name


def _is_ours(name: str) -> bool:
    return f"-{RUN_TAG}-" in name


def _socket_dirs() -> set[str]:
    # the engine's directory under this environment, and the fallback a test may switch to
    return {socket_dir(), f"/tmp/stratabatch-{os.getuid()}"}


def own_leftovers() -> set[str]:
    """Paths of this run's shared-memory segments and engine sockets that exist right now."""
    found = set()
    try:
        found |= {
            os.path.join(SHM_DIR, n)
            for n in os.listdir(SHM_DIR)
            if n.startswith(SHM_PREFIX) and _is_ours(n)
        }
    except FileNotFoundError:
        pass
    for d in _socket_dirs():
        try:
            found |= {os.path.join(d, n) for n in os.listdir(d) if _is_ours(n)}
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            pass
    return found


def process_parents() -> dict[int, int]:
    """pid -> parent pid of every process on the machine that is not a zombie."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # the command name may hold spaces or parens: fields start after the last ')'
        fields = stat[stat.rfind(b")") + 2 :].split()
        if fields[0] != b"Z":
            parents[int(entry)] = int(fields[1])
    return parents


def _live_children() -> list[int]:
    me = os.getpid()
    return [pid for pid, parent in process_parents().items() if parent == me]


@pytest.fixture(autouse=True)
def _leaves_machine_clean():
    before = own_leftovers()
    # children running before the test began belong to a longer-lived fixture set up first
    # (tests/ray's module-scoped Ray cluster), which asserts at its own teardown that none is
    # left; a test's own children still may not outlive it
    older = set(_live_children())
    yield
    deadline = time.monotonic() + 5.0
    while True:
        leaked = own_leftovers() - before
        kids = [k for k in _live_children() if k not in older]
        if (not leaked and not kids) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not leaked, f"test left /dev/shm entries or sockets behind: {sorted(leaked)}"
    assert not kids, f"test left child processes running: {kids}"


def pytest_sessionstart(session):
    """Fill numba's cache before the first test, as a deployment's build step does
    (docs/coldstart.md). With an empty cache, a first start serves with exact dedup while its
    near-dedup kernels compile in a separate process, and the tests of near dedup would race
    that compile; the tests of a first start itself give numba empty caches of their own."""
    from stratabatch import warm

    if warm.check(unit_names=(*warm.STRATEGIES, warm.ENGINE)).cold:
        t0 = time.monotonic()
        subprocess.run([sys.executable, "-m", "stratabatch.warm", "--all"], check=True)
        print(f"\ncompiled the kernels into numba's cache in {time.monotonic() - t0:.0f} s")


def pytest_sessionfinish(session, exitstatus):
    leaked = own_leftovers()
    if leaked and exitstatus == 0:
        session.exitstatus = 1
        print(f"\nERROR: /dev/shm entries or sockets left after the suite: {sorted(leaked)}")


class _VirtualSelector:
    """Wraps a real selector: when nothing is ready, virtual time jumps to the next timer
    instead of sleeping. Real I/O (and thread wake-ups) is still polled first."""

    def __init__(self, real, loop):
        self._real = real
        self._loop = loop

    def select(self, timeout=None):
        events = self._real.select(0)
        if events or timeout == 0:
            return events
        if timeout is None:
            return self._real.select(None)
        self._loop._virtual_now += timeout
        return []

    def __getattr__(self, name):
        return getattr(self._real, name)


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock is virtual: timing tests run exactly and instantly.

    Only for code whose waits are loop timers (async handlers, asyncio.sleep); a thread doing
    real work while virtual time jumps would see its timeouts fire early.
    """

    def __init__(self):
        super().__init__()
        self._virtual_now = 0.0
        self._selector = _VirtualSelector(self._selector, self)

    def time(self):
        return self._virtual_now


@pytest.fixture
def run_virtual():
    """Run a coroutine function on a fresh VirtualTimeLoop; returns its result."""

    def run(coro_fn, *args):
        loop = VirtualTimeLoop()
        try:
            return loop.run_until_complete(coro_fn(*args))
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    return run
