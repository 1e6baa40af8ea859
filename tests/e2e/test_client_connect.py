"""stratabatch.connect(): this process's client of an engine, returned to every caller."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time

import pytest

import stratabatch
from stratabatch.wire import socket_path
from tests.conftest import run_name

HANDSHAKE_S = 3.0


def test_connect_returns_the_live_client_while_another_thread_waits_on_a_handshake(
    start_engine,
):
    eng = start_engine()
    client = stratabatch.connect(eng.name)
    # an engine that accepts and never answers: a thread connecting to it waits for the
    # whole handshake timeout inside connect()
    silent = run_name("silent")
    path = socket_path(silent)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    errors: list[BaseException] = []

    def connect_silent() -> None:
        try:
            stratabatch.connect(silent, timeout=HANDSHAKE_S)
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
            errors.append(exc)

    waiter = threading.Thread(target=connect_silent)
    try:
        waiter.start()
        conn, _ = listener.accept()  # the thread is inside its handshake now
        try:
            t0 = time.monotonic()
            again = stratabatch.connect(eng.name)
            waited = time.monotonic() - t0
            assert again is client
            assert waited < HANDSHAKE_S / 2, f"connect() waited {waited:.2f} s"
        finally:
            waiter.join(HANDSHAKE_S * 3)
            conn.close()
        assert not waiter.is_alive()
        assert len(errors) == 1 and isinstance(errors[0], stratabatch.EngineUnavailableError)
    finally:
        listener.close()
        os.unlink(path)
        asyncio.run(client.close())


def test_connect_refuses_a_bad_name_also_after_clients_exist(start_engine):
    eng = start_engine()
    client = stratabatch.connect(eng.name)
    try:
        for bad in ("", "a/b", "..", 5, None):
            with pytest.raises(stratabatch.ConfigError):
                stratabatch.connect(bad)  # type: ignore[arg-type]
        assert stratabatch.connect(eng.name) is client
        assert stratabatch.connect(eng.name, sync=False) is client
    finally:
        asyncio.run(client.close())
