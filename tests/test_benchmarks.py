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
    assert json.loads((tmp_path / "time_to_scorecard_smoke.json").read_text())["figures"]["gpt"] == fig
