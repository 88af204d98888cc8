"""Each benchmark runs (tiny sizes) and writes its result file; no timing is asserted here."""

import json
import subprocess
import sys

import pytest

from conftest import REPO


@pytest.mark.slow  # every benchmark script, tiny: make test-slow
def test_every_benchmark_runs_tiny(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "run_all.py"), "--tiny",
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    sys.path.insert(0, str(REPO / "benchmarks"))
    from run_all import BENCHMARKS

    for name in BENCHMARKS:
        res = json.loads((tmp_path / f"{name}.json").read_text())
        assert res["ratios"] and all(r["value"] > 0 for r in res["ratios"].values()), name
        assert {"torch", "device", "figures"} <= set(res)


def test_time_to_scorecard_times_a_real_run(tmp_path, monkeypatch):
    sys.path.insert(0, str(REPO / "benchmarks"))
    import time_to_scorecard

    import harness

    monkeypatch.setattr(harness, "RESULTS", tmp_path)
    res = time_to_scorecard.run(tiny=True)
    fig = res["figures"]["gpt"]
    assert fig["wall_s"] > 0 and fig["cpu_s"] > 0, fig
    assert 1 < fig["speed_before"] < 1e5 and 1 < fig["speed_after"] < 1e5, fig  # GFLOP/s of one core
    assert fig["passed"] is True and fig["failed_claims"] == [], fig  # smoke scores no claim
    assert res["problems"] == []
    assert json.loads((tmp_path / "time_to_scorecard_smoke.json").read_text())["figures"]["gpt"] == fig


def test_test_quick_names_each_failed_claim_crash_and_overrun(tmp_path):
    """`make test-quick`'s verdict: one line per failed quick claim set, crash and run over 1.5x budget."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    import time_to_scorecard as tts

    card = tmp_path / "runs" / "icl" / "2026-12-01_00-00-00" / "scorecard.json"
    card.parent.mkdir(parents=True)
    card.write_text(json.dumps({"passed": False, "claims": [
        {"id": "a", "passed": True, "value": 0.5}, {"id": "b", "passed": False, "value": 0.0625},
        {"id": "c", "passed": None, "value": 3.0}]}))
    assert tts.scorecard_claims(tmp_path) == {"passed": False, "claims": 2, "failed_claims": ["b"],
                                              "values": {"a": 0.5, "b": 0.0625}}
    ok = {"wall_s": 60.0, "cpu_s": 50.0, "load_before": 1.0, "load_after": 1.0, "passed": True, "failed_claims": []}
    figures = {
        "gpt": ok,
        "icl": ok | {"passed": False, "failed_claims": ["b", "d"], "values": {"b": 0.0625, "d": float("nan")}},
        "lre": ok | {"wall_s": 8 * 60.0},
        "rlhf": {**ok, "error": "exit 1: Traceback ...\nValueError: boom\n"},
    }
    assert tts.problems(figures, {"gpt": 1, "icl": 10, "lre": 5, "rlhf": 10}) == [
        "icl: quick claims failed: b (0.0625), d (nan)",
        "lre: 8.0 min wall > 1.5 x its 5-minute budget (CPU 0.8 min, load 1.0 -> 1.0)",
        "rlhf: crashed or wrote no single scorecard: ValueError: boom",
    ]
    assert tts.problems({"gpt": ok | {"wall_s": 89.0}}, {"gpt": 1}) == []  # 1.48 min: within 1.5x
    slow = ok | {"wall_s": 8 * 60.0, "speed_before": 131.4, "speed_after": 96.2}  # the machine's speed is named
    assert tts.problems({"lre": slow}, {"lre": 5}) == [
        "lre: 8.0 min wall > 1.5 x its 5-minute budget (CPU 0.8 min, load 1.0 -> 1.0, machine 131 -> 96 GFLOP/s)"]
