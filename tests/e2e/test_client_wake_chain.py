"""The blocking client's wake chain against a real engine: answered callers are woken one after
another, and nothing stops the chain from reaching every one of them (many threads, threads
that make one call and leave, timeouts running out while answers arrive, a caller interrupted
between its wake-up and its hand-on); every call ends once, and no thread is left behind."""

from __future__ import annotations

import random
import threading
import time

from stratabatch import BatchTimeoutError
from stratabatch.client import SyncEngineClient


def _readers(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"stratabatch-reader-{name}"]


def test_an_interrupt_between_a_wake_up_and_its_hand_on_strands_nobody(start_engine, monkeypatch):
    """The first caller woken raises (as an interrupt landing just after its wake-up would)
    before it wakes the next: the callers answered after it still get their answers."""
    eng = start_engine("--window-ms", "20", "--dedup-strategy", "exact")
    results: dict[int, object] = {}
    with SyncEngineClient(eng.name) as client:
        assert client.process({"query": "warm"})["answer"] == "WARM"
        books = client._books
        back = books.back
        fired: list[int] = []

        def interrupted_back(waiter, interrupted=False):
            if not fired and waiter.chained and not interrupted:
                fired.append(threading.get_ident())
                raise KeyboardInterrupt
            back(waiter, interrupted)

        monkeypatch.setattr(books, "back", interrupted_back)
        go = threading.Barrier(8)

        def caller(i: int) -> None:
            go.wait()
            try:
                results[i] = client.process({"query": f"q{i}"})["answer"]
            except KeyboardInterrupt:
                results[i] = "interrupted"

        threads = [threading.Thread(target=caller, args=(i,), daemon=True) for i in range(8)]
        for th in threads:
            th.start()
        end = time.monotonic() + 20
        for th in threads:
            th.join(max(end - time.monotonic(), 0))
        assert not any(th.is_alive() for th in threads), "callers left asleep"
    assert len(fired) == 1
    assert sorted(results.values()).count("interrupted") == 1
    assert {r for r in results.values() if r != "interrupted"} <= {f"Q{i}" for i in range(8)}
    assert all(r in ("interrupted", f"Q{i}") for i, r in results.items())


def test_many_threads_one_shot_callers_and_timeouts_mid_chain_all_end_once(start_engine):
    seed = random.randrange(1 << 30)
    print(f"seed {seed}")
    rng = random.Random(seed)
    eng = start_engine("--window-ms", "2", "--dedup-strategy", "exact")
    errors: list[BaseException] = []
    outcomes: dict[tuple[int, int], str] = {}
    timeouts = {t: [rng.uniform(0.0005, 0.02) for _ in range(30)] for t in range(24)}
    before = set(threading.enumerate())
    client = SyncEngineClient(eng.name)
    assert client.process({"query": "warm"})["answer"] == "WARM"

    def caller(t: int) -> None:
        try:
            kind = t % 3
            for i in range(1 if kind == 1 else 30):  # kind 1: one call, then the thread ends
                query = f"t{t}-{i}"
                if kind == 2:  # short timeouts: some run out as the answers arrive
                    try:
                        got = client.process({"query": query}, timeout=timeouts[t][i])
                    except BatchTimeoutError:
                        outcomes[(t, i)] = "timeout"
                        continue
                else:
                    got = client.process({"query": query})
                assert (t, i) not in outcomes
                outcomes[(t, i)] = "ok" if got["answer"] == query.upper() else f"wrong {got}"
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=caller, args=(t,), daemon=True) for t in range(24)]
    for th in threads:
        th.start()
    end = time.monotonic() + 90
    for th in threads:
        th.join(max(end - time.monotonic(), 0))
    assert not any(th.is_alive() for th in threads), "a call never ended"
    client.close()
    assert not errors, errors
    assert len(outcomes) == 8 * 30 + 8 * 1 + 8 * 30  # every call ended, once
    assert set(outcomes.values()) <= {"ok", "timeout"}, outcomes
    assert all(v == "ok" for (t, _), v in outcomes.items() if t % 3 != 2)
    left = [t for t in set(threading.enumerate()) - before if t.is_alive()]
    assert not left and not _readers(eng.name), left  # no reader or caller thread left behind
