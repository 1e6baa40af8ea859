"""Reuse in engine mode: the engine's cache serves every client process."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.e2e.conftest import CHILD_PYTHONPATH, ROOT

ASK = """
import json, sys
import stratabatch
with stratabatch.connect(sys.argv[1], sync=True) as client:
    answers = client.process([{"query": q} for q in sys.argv[2:]])
    print(json.dumps(answers))
"""


def ask(name: str, *texts: str) -> list:
    import json

    env = {
        **os.environ,
        "PYTHONPATH": CHILD_PYTHONPATH,
    }
    out = subprocess.run(
        [sys.executable, "-c", ASK, name, *texts],
        env=env,
        cwd=ROOT,
        capture_output=True,
        timeout=60,
        check=True,
    )
    return json.loads(out.stdout)


def test_a_second_client_process_gets_the_first_ones_stored_answers(start_engine):
    eng = start_engine("--dedup-strategy", "exact", "--reuse", "exact", "--reuse-ttl-s", "600")
    first = ask(eng.name, "What is Ray?", "how do I reset my password")
    again = ask(eng.name, "what is ray?", "How do I reset my password", "something new")
    assert again[:2] == first
    import stratabatch

    with stratabatch.connect(eng.name, sync=True) as client:
        s = client.get_stats()
    assert s.unique_requests == 3  # the two first texts once, "something new" once
    assert s.reuse_hits == 2 and s.duplicates == 2
    assert s.reuse_entries == 3 and s.reuse_bytes > 0


def test_near_twins_from_another_client_process_get_the_stored_answers(start_engine):
    # (the engine imports the tree the clients import: PYTHONPATH as ask() passes it)
    path = CHILD_PYTHONPATH
    eng = start_engine(
        *("--dedup-strategy", "embedding", "--reuse", "near", "--cold-start", "wait"),
        env={"PYTHONPATH": path},
    )
    first = ask(eng.name, "How do I reset my password?", "What is the capital of France?")
    again = ask(
        eng.name,
        "hey, how do I reset my password",  # the same canonical text
        "What is the capital of Frnace?",  # a typo
        "How do I reset my password 2?",  # a trap: another number
    )
    assert again[:2] == first
    import stratabatch

    with stratabatch.connect(eng.name, sync=True) as client:
        s = client.get_stats()
    assert s.unique_requests == 3
    assert s.reuse_hits == 2 and s.reuse_near_hits == 2 and s.near_merges == 0
    assert sum(s.reuse_similarity_histogram) == 2 and sum(s.merge_similarity_histogram) == 0
