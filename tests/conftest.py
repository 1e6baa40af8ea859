"""Suite-wide guards: every test leaves no child process and no /dev/shm entry behind."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

SHM_DIR = "/dev/shm"
SHM_PREFIX = "stratabatch-"


def _shm_entries() -> set[str]:
    try:
        return {n for n in os.listdir(SHM_DIR) if n.startswith(SHM_PREFIX)}
    except FileNotFoundError:
        return set()


def _live_children() -> list[int]:
    me = os.getpid()
    kids = []
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
        state, ppid = fields[0], int(fields[1])
        if ppid == me and state != b"Z":
            kids.append(int(entry))
    return kids


@pytest.fixture(autouse=True)
def _leaves_machine_clean():
    before = _shm_entries()
    yield
    deadline = time.monotonic() + 5.0
    while True:
        leaked_shm = _shm_entries() - before
        kids = _live_children()
        if (not leaked_shm and not kids) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not leaked_shm, f"test left /dev/shm entries behind: {sorted(leaked_shm)}"
    assert not kids, f"test left child processes running: {kids}"


def pytest_sessionfinish(session, exitstatus):
    leaked = _shm_entries()
    if leaked and exitstatus == 0:
        session.exitstatus = 1
        print(f"\nERROR: /dev/shm entries left after the suite: {sorted(leaked)}")


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
