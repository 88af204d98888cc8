"""The scorecard's verdict logic and the report aggregation."""

import json

import pytest

from toyrepro.core.report import main as report_main
from toyrepro.core.scorecard import Claim, Scorecard


def card(value_a, value_b=None, scale="quick", seed=0):
    c = Scorecard("toy", seed, scale).declare([
        Claim("a", "a is big", "paper §1", ">=", 1.0),
        Claim("b", "b is small at full scale", "paper §2", "<", 0.5, scales=("full",)),
    ])
    c.record("a", value_a)
    if value_b is not None:
        c.record("b", value_b)
    return c


def test_verdict_follows_thresholds_and_scales():
    assert card(1.5, 0.9).evaluate() is True  # b fails but only applies at full
    c = card(1.5, 0.9, scale="full")
    assert c.evaluate() is False and c.claim("b").passed is False
    c = card(0.5, 0.1)
    assert c.evaluate() is False and c.claim("a").passed is False


def test_unmeasured_claim_fails_and_failure_fails_the_run():
    c = Scorecard("toy", 0, "quick").declare([Claim("a", "x", "y", ">=", 0)])
    assert c.evaluate() is False  # never measured
    c.record("a", 1.0)
    assert c.evaluate() is True
    c.failure = "loss became nan at step 3"
    assert c.passed is False


def test_bad_comparison_and_unknown_claim_are_refused():
    with pytest.raises(ValueError, match="comparison"):
        Claim("a", "x", "y", "~", 1.0)
    with pytest.raises(KeyError, match="no claim 'zzz'"):
        card(1.0).record("zzz", 1.0)


def test_written_json_has_the_documented_shape(tmp_path):
    path = card(2.0, 0.1).write(tmp_path)
    d = json.loads(path.read_text())
    assert set(d) >= {"experiment", "seed", "scale", "config", "claims", "passed"}
    assert set(d["claims"][0]) >= {"id", "statement", "source", "value", "threshold", "passed"}
    assert d["passed"] is True and d["claims"][0]["value"] == 2.0


def test_report_aggregates_seeds(tmp_path, capsys):
    for seed, v in enumerate([1.0, 2.0, 3.0]):
        d = tmp_path / f"run{seed}"
        card(v, 0.1, seed=seed).write(d)
    out = tmp_path / "rep" / "report.md"
    report_main([str(tmp_path), "--out", str(out)])
    text = out.read_text()
    assert "3 run(s), 3/3 passed" in text
    assert "| a | 2 ± 1 | >= 1 | 3/3 |" in text
    assert "| b | 0.1 ± 0 | < 0.5 | n/a |" in text
    assert (out.parent / "report_toy_quick.png").exists()


def test_report_without_scorecards_says_so(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        report_main([str(tmp_path)])
    assert e.value.code == 2
    assert "no scorecard.json" in capsys.readouterr().err
