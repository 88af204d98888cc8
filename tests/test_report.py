"""`toyrepro report` groups a seed x hyperparameter sweep by setting (fast: fake run dirs, no training)."""

from __future__ import annotations

import csv
import statistics
from html.parser import HTMLParser

from toyrepro.core.report import group_runs, varying_keys
from toyrepro.core.report import main as report_main
from toyrepro.core.scorecard import Claim, Scorecard

LRS, SEEDS = (1e-3, 3e-3), (0, 1, 2)


def value(lr: float, seed: int) -> float:
    return 1000 * lr + 0.1 * seed  # lr 1e-3 -> 1.0/1.1/1.2 (mean 1.1), 3e-3 -> 3.0/3.1/3.2


def fake_sweep(root):
    for i, (lr, seed) in enumerate((lr, s) for lr in LRS for s in SEEDS):
        run_dir = root / f"{i}_slurm7_{i}"
        card = Scorecard("toy", seed, "quick").declare([Claim("a", "a is large", "paper", ">=", 2.0),
                                                        Claim("b", "b is small", "paper", "<", 0.5)])
        card.config = {"name": "toy", "seed": seed, "run_dir": str(run_dir), "threads": 1,
                       "optim": {"lr": lr, "batch_size": 8}, "logger": {"csv": {"save_dir": str(run_dir)}}}
        card.record("a", value(lr, seed))
        card.record("b", 0.1)
        card.write(run_dir)
        with open(run_dir / "metrics.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["stage", "step", "train/loss"])
            w.writerows([["train", s, 5.0 - s * lr * 100] for s in range(5)])


class Rows(HTMLParser):
    """Collects <tr class=...> rows and the images of the page."""

    def __init__(self):
        super().__init__()
        self.rows: dict[str, list[str]] = {}
        self.images: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "tr" and a.get("class"):
            self.rows.setdefault(a["class"], []).append(a.get("data-label", ""))
        if tag == "img":
            self.images.append(a["src"])
        if tag in ("link", "script") or (tag == "img" and not a["src"].startswith("data:")):
            self.links.append(tag)


def test_only_the_swept_key_is_a_setting(tmp_path):
    fake_sweep(tmp_path)
    from toyrepro.core.report import find_scorecards

    cards = find_scorecards([str(tmp_path)])
    assert varying_keys(cards) == ["optim.lr"], "seed, run_dir and the run's own paths are not settings"
    (group,) = group_runs(cards)
    assert [s.values for s in group.settings] == [{"optim.lr": 1e-3}, {"optim.lr": 3e-3}]
    assert [s.seeds for s in group.settings] == [[0, 1, 2], [0, 1, 2]]


def test_report_has_one_row_per_setting_with_mean_std_and_pass_rate(tmp_path, capsys):
    fake_sweep(tmp_path / "sweep")
    out = tmp_path / "rep" / "report.md"
    report_main([str(tmp_path / "sweep"), "--out", str(out)])
    text = out.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| 0.00")]
    assert len(rows) == 2, text
    low, high = (statistics.stdev([value(lr, s) for s in SEEDS]) for lr in LRS)
    assert rows[0] == f"| 0.001 | 0,1,2 | 1.1 ± {low:.2g} (0/3) | 0.1 ± 0 (3/3) | 0/3 |"
    assert rows[1] == f"| 0.003 | 0,1,2 | 3.1 ± {high:.2g} (3/3) | 0.1 ± 0 (3/3) | 3/3 |"
    assert "6 run(s), 3/6 passed every claim" in text
    assert "### optim.lr=0.001 — 3 run(s) (seeds 0, 1, 2), 0/3 passed every claim" in text

    page = Rows()
    page.feed((tmp_path / "rep" / "report.html").read_text())
    assert page.rows["setting"] == ["optim.lr=0.001", "optim.lr=0.003"]
    assert sorted(page.rows["run"]) == [f"{i}_slurm7_{i}" for i in range(6)]
    assert len(page.images) == 2 and all(src.startswith("data:image/png;base64,") for src in page.images)
    assert page.links == [], "the page is self-contained"
    assert (tmp_path / "rep" / "report_toy_quick.png").exists()
    assert (tmp_path / "rep" / "report_toy_quick_curves.png").exists()


def test_runs_of_one_setting_stay_one_table(tmp_path, capsys):
    for seed in SEEDS:
        run_dir = tmp_path / f"run{seed}"
        card = Scorecard("toy", seed, "quick").declare([Claim("a", "a", "p", ">=", 2.0)])
        card.config = {"seed": seed, "run_dir": str(run_dir), "optim": {"lr": 1e-3}}
        card.record("a", 2.0 + seed)
        card.write(run_dir)
    out = tmp_path / "report.md"
    report_main([str(tmp_path), "--out", str(out)])
    assert "| a | 3 ± 1 | >= 2 | 3/3 |" in out.read_text()
    assert "settings" not in out.read_text()
