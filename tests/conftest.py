"""Suite-wide guards: every test leaves no child process and no /dev/shm entry behind."""

from __future__ import annotations

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
