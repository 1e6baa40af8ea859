"""stratabatch-perf --repeat-traffic: issue 23's workload as a mode of the command, on a tiny
stream (seconds of traffic, live at a high speedup)."""

from __future__ import annotations

import json

from stratabatch.perf import cli

TINY = ["--repeat-minutes", "0.05", "--repeat-rate", "40", "--repeat-speedup", "120"]


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
