"""The engine's client under faults, with real engine processes: connections a forked child or
another holder of the socket must not keep open."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import pytest

from stratabatch.client import EngineClient
from stratabatch.ipc.segment import Segment, segment_name
from stratabatch.wire import CONTROL_MAGIC, CONTROL_VERSION

from .conftest import ROOT

_SLOT_BASE, _SLOT_WORDS = 8, 4


def _slot_pids(name: str, slots: int) -> list[int]:
    """The pid in each client slot of the engine's control segment (0: free)."""
    with Segment.attach(segment_name(name, "control"), magic=CONTROL_MAGIC,
                        version=CONTROL_VERSION) as seg:
        words = seg.array(np.int64, 0, _SLOT_BASE + _SLOT_WORDS * slots).copy()
    return [int(words[_SLOT_BASE + _SLOT_WORDS * s]) for s in range(slots)]


def _links(pid: int) -> list[str]:
    """What the open descriptors of process ``pid`` refer to."""
    out = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            out.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except FileNotFoundError:
            pass
    return out


def _until(check: Callable[[], bool], within: float) -> bool:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@contextmanager
def _stopped(pid: int) -> Iterator[None]:
    """The engine ``pid`` is stuck (SIGSTOP) inside the block; it runs on after it."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


# --------------------------------------------------------------- closed means closed (item 4)


@pytest.mark.parametrize("sync", [False, True], ids=["async", "sync"])
def test_a_forked_child_does_not_keep_the_connections_its_parent_closes(start_engine, sync):
    """A parent connects and forks a child that lives on, closes and reconnects, and again,
    more times than the engine has slots: every reconnect gets a slot, and the slots come
    back."""
    eng = start_engine("--window-ms", "2", "--dedup-strategy", "exact", "--max-clients", "2")
    cycles = 6
    worker = subprocess.Popen(
        [sys.executable, str(ROOT / "tests/e2e/client_worker.py"), "forkcycle", eng.name,
         str(cycles), "1" if sync else "0"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT)
    assert worker.stdin is not None and worker.stdout is not None
    try:
        assert worker.stdout.readline() == b"connected\n"
        line = worker.stdout.readline()
        assert line, worker.stderr.read().decode() if worker.stderr else ""
        out = json.loads(line)
        assert out["errors"] == []
        assert out["ok"] == 2 * cycles  # the inherited connections kept serving the parent
        # the children still live and hold copies of every descriptor they inherited: only
        # the parent's current connection holds a slot
        assert _until(lambda: _slot_pids(eng.name, 2).count(worker.pid) == 1, 2.0), \
            _slot_pids(eng.name, 2)
        for child in out["children"]:
            os.kill(child, 0)  # alive
            assert child not in _slot_pids(eng.name, 2)
            # and it let go of its copies: no socket, no ring segment mapped
            assert not [fd for fd in _links(child) if fd.startswith("socket:")], _links(child)
            with open(f"/proc/{child}/maps") as f:
                assert segment_name(eng.name, "ring") not in f.read()
        worker.stdin.write(b"\n")
        worker.stdin.flush()
        assert worker.wait(30) == 0, worker.stderr.read().decode() if worker.stderr else ""
    finally:
        if worker.poll() is None:
            worker.kill()  # the child exits too: its pipe's write end closes
            worker.wait()
        for f in (worker.stdin, worker.stdout, worker.stderr):
            if f is not None:
                f.close()
    assert _until(lambda: _slot_pids(eng.name, 2) == [0, 0], 2.0), _slot_pids(eng.name, 2)
    assert not [n for n in os.listdir("/dev/shm")
                if n.startswith(segment_name(eng.name, "ring"))]


def test_another_holder_of_the_socket_does_not_keep_a_closed_connection_open(start_engine):
    """close() ends the connection for every holder of its socket (a shutdown, not only a
    close of this process's descriptor)."""
    eng = start_engine("--window-ms", "2", "--dedup-strategy", "exact", "--max-clients", "2")

    async def go() -> None:
        client = EngineClient(eng.name)
        assert await client.process({"query": "a"}) == {"answer": "A", "n": 1}
        conn = client._connection()
        holder = os.dup(conn.sock.fileno())  # as a child forked without our hooks would
        try:
            assert os.getpid() in _slot_pids(eng.name, 2)
            await client.close()
            assert _until(lambda: os.getpid() not in _slot_pids(eng.name, 2), 2.0)
        finally:
            os.close(holder)

    asyncio.run(go())
