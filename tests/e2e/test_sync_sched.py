"""With ``sched_batch`` on, the blocking client's caller threads run under SCHED_BATCH while
they use it (Linux), so a woken caller does not preempt the caller that woke it (and holds the
GIL); the threads go back to SCHED_OTHER when the client closes or it is turned off, threads
under any other policy are left alone, a forked child's thread is put back, and by default
nothing changes."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

import pytest

from stratabatch.client import SyncEngineClient

pytestmark = pytest.mark.skipif(
    not (hasattr(os, "sched_setscheduler") and hasattr(os, "SCHED_BATCH")),
    reason="SCHED_BATCH is Linux's",
)


def policy_name(policy: int) -> str:
    names = {os.SCHED_OTHER: "OTHER", os.SCHED_BATCH: "BATCH", os.SCHED_IDLE: "IDLE"}
    return names.get(policy, str(policy))


def in_thread(
    body: Callable[[threading.Event], Any],
) -> tuple[threading.Thread, threading.Event, list]:
    """Run ``body(release)`` in a new thread that stays alive until ``release`` is set; the
    thread, the event and a list receiving the body's result (or exception)."""
    release = threading.Event()
    out: list = []

    def run() -> None:
        try:
            out.append(body(release))
        except BaseException as exc:  # pragma: no cover - reported by the test
            out.append(exc)
        finally:
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))  # (leave no trace)

    th = threading.Thread(target=run)
    th.start()
    return th, release, out


def test_a_caller_thread_runs_batch_until_the_client_closes(start_engine):
    eng = start_engine("--window-ms", "2", "--dedup-strategy", "exact")
    client = SyncEngineClient(eng.name)
    client.sched_batch = True
    called = threading.Event()

    def body(release: threading.Event) -> tuple[str, str, str, Any]:
        before = policy_name(os.sched_getscheduler(0))
        answer = client.process({"query": "one"})["answer"]
        during = policy_name(os.sched_getscheduler(0))
        called.set()
        release.wait(30)
        return before, during, policy_name(os.sched_getscheduler(0)), answer

    th, release, out = in_thread(body)
    try:
        assert called.wait(30)
        assert policy_name(os.sched_getscheduler(th.native_id)) == "BATCH"
    finally:
        client.close()  # the thread is alive: it goes back to OTHER now
        release.set()
        th.join(30)
    assert out == [("OTHER", "BATCH", "OTHER", "ONE")]


def test_a_thread_under_another_policy_is_left_alone(start_engine):
    eng = start_engine("--window-ms", "2", "--dedup-strategy", "exact")
    client = SyncEngineClient(eng.name)
    client.sched_batch = True
    called = threading.Event()

    def body(release: threading.Event) -> tuple[str, str]:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        client.process({"query": "idle"})
        during = policy_name(os.sched_getscheduler(0))
        called.set()
        release.wait(30)
        return during, policy_name(os.sched_getscheduler(0))

    th, release, out = in_thread(body)
    try:
        assert called.wait(30)
    finally:
        client.close()
        release.set()
        th.join(30)
    assert out == [("IDLE", "IDLE")]


def test_off_by_default_and_turning_it_off_restores_the_default_policy(start_engine):
    eng = start_engine("--window-ms", "2", "--dedup-strategy", "exact")
    off = SyncEngineClient(eng.name)
    assert not off.sched_batch
    on = SyncEngineClient(eng.name)
    on.sched_batch = True

    def body(release: threading.Event) -> list[str]:
        seen = []
        off.process({"query": "a"})
        seen.append(policy_name(os.sched_getscheduler(0)))  # off: nothing changes
        on.process({"query": "b"})
        seen.append(policy_name(os.sched_getscheduler(0)))
        on.sched_batch = False  # back at once, the client still open
        seen.append(policy_name(os.sched_getscheduler(0)))
        on.process({"query": "c"})  # (its first call in this thread is past: stays)
        seen.append(policy_name(os.sched_getscheduler(0)))
        return seen

    th, release, out = in_thread(body)
    release.set()
    th.join(30)
    off.close()
    on.close()
    assert out == [["OTHER", "BATCH", "OTHER", "OTHER"]]


def test_a_forked_child_runs_under_the_default_policy(start_engine):
    eng = start_engine("--window-ms", "2", "--dedup-strategy", "exact")
    client = SyncEngineClient(eng.name)
    client.sched_batch = True

    def body(release: threading.Event) -> tuple[str, int, str]:
        client.process({"query": "parent"})
        during = policy_name(os.sched_getscheduler(0))
        pid = os.fork()
        if pid == 0:  # the child cannot use the client: its thread runs as it did before
            os._exit(0 if os.sched_getscheduler(0) == os.SCHED_OTHER else 3)
        _, status = os.waitpid(pid, 0)
        # (the parent's thread is untouched by the child's restore)
        return during, os.waitstatus_to_exitcode(status), policy_name(os.sched_getscheduler(0))

    th, release, out = in_thread(body)
    release.set()
    th.join(30)
    client.close()
    assert out == [("BATCH", 0, "BATCH")]
