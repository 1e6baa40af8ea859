"""stratabatch-engine as a mode: one engine process, one client process per workload client.

The engine runs the simulated backend (``stratabatch.perf.backend:engine_handler``, its cost
model passed in ``$STRATABATCH_PERF_BACKEND``) and is started as
``stratabatch-engine --handler ... --name NAME --window-ms W --max-size M --dedup-strategy S
--max-inflight-batches C``; the mode waits for the line saying "ready". Each client process
connects with ``stratabatch.connect(NAME)`` (awaiting the result when it is awaitable), sends its
requests at their times with ``client.process(request, timeout=...)`` and reports. At the end the
engine gets SIGINT and must exit by itself.

The mode checks at run time that ``stratabatch.connect`` and the ``stratabatch-engine`` command
exist; where either is missing it is skipped with the reason.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from typing import Any

from .backend import ENV_VAR
from .modes import ModeRun, Progress, Settings, error_text, send_at_times
from .procs import ClientKit, ClientWork, mp_context, proc_cpu_s, run_clients
from .workload import Workload

HANDLER = "stratabatch.perf.backend:engine_handler"
READY_TIMEOUT_S = 60.0


def engine_command() -> str | None:
    """Path of the ``stratabatch-engine`` command: next to this Python first, then on PATH."""
    local = os.path.join(os.path.dirname(sys.executable), "stratabatch-engine")
    if os.access(local, os.X_OK):
        return local
    return shutil.which("stratabatch-engine")


def engine_unavailable() -> str | None:
    """None when the engine mode can run, else why not."""
    import stratabatch

    if not callable(getattr(stratabatch, "connect", None)):
        return "stratabatch.connect does not exist in this install"
    if engine_command() is None:
        return "the stratabatch-engine command is not installed"
    return None


async def _client_async(
    cid: int, work: ClientWork, kit: ClientKit, name: str, timeout_s: float
) -> list[tuple[int, Any, float, str | None]]:
    import stratabatch

    conn = stratabatch.connect(name)
    client = await conn if inspect.isawaitable(conn) else conn
    t0 = kit.wait_for_start()
    try:
        outcomes = await send_at_times(
            work, t0, lambda payload: client.process(payload, timeout=timeout_s), kit.count
        )
    finally:
        closing = client.close()
        if inspect.isawaitable(closing):
            await closing
    return outcomes


def engine_client(cid: int, work: ClientWork, kit: ClientKit, name: str, timeout_s: float) -> None:
    """Client process of the engine mode."""
    try:
        outcomes = asyncio.run(_client_async(cid, work, kit, name, timeout_s))
    except Exception as exc:  # connect failed: every request of this client failed with it
        kit.ready.release()  # in case it failed before signalling
        outcomes = [(rid, None, 0.0, error_text(exc)) for rid, _, _ in work]
    kit.results.put((cid, outcomes))


class EngineMode:
    """stratabatch-engine with one client process per workload client.

    Args:
        dedup: the engine's ``--dedup-strategy`` (``exact``, ``embedding``, ``hybrid``).
    """

    batch_size = 0

    def __init__(self, dedup: str = "embedding") -> None:
        self.dedup = dedup
        self.name = f"stratabatch-engine {dedup}"

    def unavailable(self) -> str | None:
        """None when ``stratabatch.connect`` and ``stratabatch-engine`` both exist."""
        return engine_unavailable()

    async def run(self, workload: Workload, settings: Settings, progress: Progress) -> ModeRun:
        """Start an engine, run the clients against it, stop it with SIGINT."""
        self.batch_size = settings.max_size
        name = f"perf-{os.getpid()}-{int(time.time() * 1000) % 100000}"
        env = dict(os.environ, **{ENV_VAR: settings.model.to_env()})
        cmd = [
            engine_command() or "stratabatch-engine",
            "--handler",
            HANDLER,
            "--name",
            name,
            "--window-ms",
            f"{settings.window_ms:g}",
            "--max-size",
            str(settings.max_size),
            "--dedup-strategy",
            self.dedup,
            "--max-inflight-batches",
            str(settings.model.concurrency),
            # every kernel before "ready" (the harness compiled them first): a timed run never
            # serves with exact dedup while near kernels compile (docs/coldstart.md)
            "--cold-start",
            "wait",
        ]
        engine = subprocess.Popen(
            cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        log: list[str] = []
        ready = threading.Event()
        reader = threading.Thread(target=_read_log, args=(engine, log, ready), daemon=True)
        reader.start()
        try:
            deadline = time.monotonic() + READY_TIMEOUT_S
            while not ready.is_set():
                if engine.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"stratabatch-engine did not get ready (exit code "
                        f"{engine.poll()}): {log[-5:]}"
                    )
                await asyncio.sleep(0.05)

            def alive() -> str | None:
                code = engine.poll()
                return None if code is None else f"engine exited with {code}: {log[-3:]}"

            cpu0 = proc_cpu_s(engine.pid)
            outcomes = await run_clients(
                mp_context(),
                engine_client,
                (name, settings.timeout_s),
                workload,
                progress,
                settings.timeout_s,
                alive,
            )
            cpu1 = proc_cpu_s(engine.pid)
        finally:
            if engine.poll() is None:
                engine.send_signal(signal.SIGINT)
            try:
                engine.wait(timeout=30)
            except subprocess.TimeoutExpired:
                engine.kill()
                engine.wait()
            reader.join(timeout=5)
        cpu = cpu1 - cpu0 if cpu0 is not None and cpu1 is not None else None
        return ModeRun(
            outcomes,
            cpu,
            {
                "engine_exit": engine.returncode,
                "engine_log": log[-10:],
                "cpu_is": "engine process only",
            },
        )


def _read_log(engine: subprocess.Popen[str], log: list[str], ready: threading.Event) -> None:
    """Keep the engine's output flowing (a full pipe would stall it); note its ready line."""
    assert engine.stdout is not None
    with engine.stdout:
        for line in engine.stdout:
            log.append(line.rstrip())
            if not ready.is_set() and "ready" in line.lower():
                ready.set()
