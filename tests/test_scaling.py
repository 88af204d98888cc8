"""The scaling experiment: the approach-3 fitter recovers a known law, N is Kaplan's count,
the repeated-data windows repeat what they say, bad input is refused in one line, and the
sweep path (scaling_point jobs through the local launcher + scaling.from_sweep) gives the
same fit as the one-process run on the smoke grid."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
import torch
import yaml

from toyrepro.core.checks import ConfigError, UserError
from toyrepro.core.transformer import GPT, GPTConfig
from toyrepro.scaling.config import ScalingConfig
from toyrepro.scaling.grid import RepeatedWindows, non_embedding_params
from toyrepro.scaling.law import Law, fit_law, isoflop_optima, power_exponent
from toyrepro.scaling.sweep import read_sweep

from conftest import REPO, run_cli, run_dirs, scorecard

TRUE = Law(E=1.2, A=40.0, B=250.0, alpha=0.34, beta=0.28)  # Chinchilla's exponents
N_GRID = np.repeat(np.geomspace(3e3, 3e5, 5), 4)
D_GRID = np.tile(np.geomspace(1e5, 2e6, 4), 5)


def test_fitter_recovers_a_known_law_from_its_losses():
    law = fit_law(N_GRID, D_GRID, TRUE.loss(N_GRID, D_GRID), starts=8)
    for k in ("E", "A", "B", "alpha", "beta"):
        assert getattr(law, k) == pytest.approx(getattr(TRUE, k), rel=1e-3), k
    assert law.optimal_exponent == pytest.approx(0.28 / 0.62, rel=1e-3)


def test_fitter_with_noise_stays_near_the_truth_and_predicts_out_of_range():
    rng = np.random.default_rng(0)
    noisy = TRUE.loss(N_GRID, D_GRID) * np.exp(rng.normal(0, 0.002, N_GRID.shape))  # 0.2 % noise
    law = fit_law(N_GRID, D_GRID, noisy, starts=8)
    assert abs(law.alpha - TRUE.alpha) < 0.05 and abs(law.beta - TRUE.beta) < 0.05
    assert law.loss(1e6, 4e6) == pytest.approx(TRUE.loss(1e6, 4e6), rel=0.01)  # beyond the grid


def test_a_law_whose_A_overflows_float64_still_predicts():
    """A fit with a huge alpha puts log A past 709 (exp overflows to inf) while A / N^alpha is an
    ordinary number: the law is evaluated in logs, so its predictions stay finite (a seed-7 fit
    of the scaling experiment had alpha 244 and reported its held-out error as nan)."""
    steep = Law(E=1.0, A=float("inf"), B=250.0, alpha=100.0, beta=0.28, log_A=800.0)
    expected = 1.0 + np.exp(800.0 - 100.0 * np.log(1e4)) + 250.0 / 1e6**0.28
    assert steep.loss(1e4, 1e6) == pytest.approx(expected, rel=1e-12)
    assert np.isfinite(steep.optimal_N(1e12))
    assert TRUE.loss(3e4, 1e6) == pytest.approx(1.2 + 40.0 / 3e4**0.34 + 250.0 / 1e6**0.28, rel=1e-12)


def test_isoflop_profiles_find_the_laws_optimal_exponent():
    sizes = np.geomspace(1e3, 1e7, 9)
    budgets = [np.geomspace(1e4, 1e9, 24)] * len(sizes)
    losses = np.array([TRUE.loss(n, d) for n, d in zip(sizes, budgets)])
    C, N_opt, _ = isoflop_optima(sizes, budgets, losses, levels=6)
    assert len(C) >= 3
    assert power_exponent(C, N_opt) == pytest.approx(TRUE.optimal_exponent, abs=0.05)


@pytest.mark.parametrize("n_layer,n_embd", [(1, 16), (2, 32), (3, 64)])
def test_n_is_non_embedding_parameters(n_layer, n_embd):
    model = GPT(GPTConfig(vocab_size=256, block_size=64, n_layer=n_layer, n_head=2, n_embd=n_embd))
    total = sum(p.numel() for p in model.parameters())  # the tied unembedding is counted once
    embeddings = 256 * n_embd + 64 * n_embd  # token + position tables
    assert non_embedding_params(model) == total - embeddings
    assert non_embedding_params(model) == n_layer * (12 * n_embd**2 + 13 * n_embd) + 2 * n_embd
    assert non_embedding_params(model) < model.num_params()  # core's count keeps the token table


def test_repeated_windows_repeat_a_nested_unique_pool():
    text = torch.arange(4001) % 251
    once = RepeatedWindows(text, 10, rows=64, epochs=1, seed=0)
    four = RepeatedWindows(text, 10, rows=64, epochs=4, seed=0)
    assert len(set(once.starts)) == 64  # unique data: every window once
    assert set(Counter(four.starts).values()) == {4} and len(set(four.starts)) == 16
    assert set(four.starts) == set(once.starts[:16])  # the 4-epoch pool is the unique run's first 16
    assert four.starts[:16] == once.starts[:16] and four.starts[16:32] != four.starts[:16]  # reshuffled epochs
    assert torch.equal(once[0], text[once.starts[0] : once.starts[0] + 11].long())
    with pytest.raises(UserError, match=r"^a run of 1000 windows of 11 tokens needs 1000 unique windows but the "
                       r"corpus has 400 \(4001 training tokens\); lower scaling.steps or raise scaling.max_files$"):
        RepeatedWindows(text, 10, rows=1000, epochs=1, seed=0)


def test_bad_grids_are_refused_in_one_line():
    with pytest.raises(ConfigError, match=r"^scaling.layers must be as long as scaling.widths \(3\) "
                       r"\(got \[1, 2\]\)$"):
        ScalingConfig(layers=[1, 2], widths=[8, 16, 24]).validate()
    with pytest.raises(ConfigError, match=r"^scaling.epochs must be increasing, starting at 1"):
        ScalingConfig(epochs=[2, 4]).validate()
    with pytest.raises(ConfigError, match=r"^scaling.holdout must be in \[0, 15\] \(the fit needs >= 5 runs"):
        ScalingConfig(holdout=16).validate()
    with pytest.raises(ConfigError, match=r"^scaling.budget_scale must be \[\] or one factor per model size \(3\), "
                       r"each giving >= 1 step \(got \[1.0, 2.0\]\)$"):
        ScalingConfig(layers=[1, 1, 1], widths=[8, 16, 24], budget_scale=[1.0, 2.0]).validate()
    with pytest.raises(ConfigError, match=r"^scaling.budget_scale must be \[\] or one factor per model size \(2\)"):
        ScalingConfig(layers=[1, 1], widths=[8, 16], steps=[1, 2], budget_scale=[1.0, 0.1]).validate()


def _fake_job(root, num: int, config: dict, index: int) -> None:
    job = root / str(num)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    (job / "point.json").write_text(json.dumps({"index": index, "loss": 2.0}))


def test_read_sweep_refuses_missing_points_and_other_settings(tmp_path):
    config = {"seed": 0, "threads": 1, "model": {"n_embd": 8}, "optim": {"lr": 1e-3},
              "trainer": {"precision": "32-true", "gradient_clip_val": 1.0, "limit_val_batches": 1},
              "scaling": {"steps": [4, 8], "point": 0, "holdout": 1}}
    _fake_job(tmp_path, 0, config, 0)
    _fake_job(tmp_path, 1, config | {"scaling": config["scaling"] | {"point": 2}}, 2)
    with pytest.raises(UserError, match=rf"^{tmp_path} lacks points \[1\] of this grid's 3 \(0..2\); "):
        read_sweep(tmp_path, config | {"scaling": config["scaling"] | {"point": -1, "holdout": 2}}, 3)
    with pytest.raises(UserError, match=r"was trained with other settings \(seed differ from this run's\); "
                       r"rerun the fit with the sweep's overrides$"):
        read_sweep(tmp_path, config | {"seed": 1}, 3)
    with pytest.raises(UserError, match=r"^scaling.from_sweep=/nope: no such directory"):
        read_sweep("/nope", config, 3)


def test_quick_grid_has_the_points_the_sweep_config_runs():
    from hydra import compose, initialize_config_dir

    from toyrepro import cli  # noqa: F401  (registers the schema)
    from toyrepro.scaling.grid import learning_rate, points

    with initialize_config_dir(str(REPO / "configs"), version_base="1.3"):
        cfg = compose("config", ["experiment=scaling_point", "scale=quick"])
    sweep = yaml.safe_load((REPO / "configs" / "sweep" / "scaling_grid.yaml").read_text())
    assert sweep["hydra"]["sweeper"]["params"]["scaling.point"] == f"range(0,{len(points(cfg))})"
    assert len(points(cfg)) == 5 * 4 + 4  # the arm's 1-epoch run is the grid's point, trained once
    assert sum(p.epochs == 1 for p in points(cfg)) == 20
    # one learning-rate rule, lr ∝ 1/width: the width-64 model gets optim.lr, width 16 four times it
    assert {p.n_embd: learning_rate(cfg, p) for p in points(cfg)} == \
           {w: pytest.approx(cfg.optim.lr * 64 / w) for w in (16, 24, 48, 64)}
    # fourth protocol: one ladder of 800-3200 steps for every size, and the arm's unique-data run is
    # the grid's (2, 48) model at 800 steps (819k tokens), as under the third
    grid = [p for p in points(cfg) if p.epochs == 1]
    assert {tuple(p.steps for p in grid if p.size == i) for i in range(5)} == {(800, 1600, 2400, 3200)}
    arm = [p for p in points(cfg) if p.epochs > 1]
    assert {(p.n_layer, p.n_embd, p.steps) for p in arm} == {(2, 48, 800)}


def test_budget_scale_gives_each_size_its_own_ladder():
    from hydra import compose, initialize_config_dir

    from toyrepro import cli  # noqa: F401  (registers the schema)
    from toyrepro.scaling.grid import points, tokens

    with initialize_config_dir(str(REPO / "configs"), version_base="1.3"):
        cfg = compose("config", ["experiment=scaling", "scale=quick", "scaling.budget_scale=[1,1,1.25,1.41421356,1.75]"])
    grid = [p for p in points(cfg) if p.epochs == 1]
    assert [[p.steps for p in grid if p.size == i] for i in range(5)] == [
        [800, 1600, 2400, 3200], [800, 1600, 2400, 3200], [1000, 2000, 3000, 4000], [1131, 2263, 3394, 4525],
        [1400, 2800, 4200, 5600]]
    arm = [p for p in points(cfg) if p.epochs > 1]  # the arm follows its size's ladder
    assert {p.steps for p in arm} == {1131} and tokens(cfg, arm[0]) == 1131 * 16 * 64


@pytest.mark.slow  # 7 launcher jobs and 3 CLI runs: make test-slow
def test_sweep_of_points_through_the_local_launcher_gives_the_one_process_fit(tmp_path):
    """A grid smaller than smoke's (3 sizes x 2 budgets + one 2-epoch run = 7 points: each job is a
    process that imports torch and Lightning) as 7 submitit jobs, fitted with scaling.from_sweep,
    against the whole grid in one process (separate caches)."""
    common = ["scale=smoke", "seed=3", "logger=csv", "scaling.layers=[1,1,1]", "scaling.widths=[8,16,24]",
              "scaling.steps=[4,8]", "scaling.repeat_budget=-1", "scaling.epochs=[1,2]", "scaling.holdout=1"]
    (tmp_path / "sweep").mkdir()
    run_cli(["-m", "experiment=scaling_point", "scaling.point=range(0,7)", "hydra/launcher=local", *common],
            tmp_path / "sweep", tmp_path / "cache_sweep")
    jobs = run_dirs(tmp_path / "sweep")
    assert len(jobs) == 7 and all((j / "point.json").exists() for j in jobs)
    sweep_dir = jobs[0].parent
    (tmp_path / "fit").mkdir()
    run_cli(["experiment=scaling", f"scaling.from_sweep={sweep_dir}", *common], tmp_path / "fit",
            tmp_path / "cache_fit")
    (tmp_path / "one").mkdir()
    run_cli(["experiment=scaling", *common], tmp_path / "one", tmp_path / "cache_one")
    (fit,), (one,) = run_dirs(tmp_path / "fit"), run_dirs(tmp_path / "one")
    assert not list(fit.glob("checkpoints/*/last.ckpt")), "the fit step trains nothing"
    results = [json.loads((d / "results.json").read_text()) for d in (fit, one)]
    assert [r["loss"] for r in results[0]["runs"]] == [r["loss"] for r in results[1]["runs"]]
    assert results[0]["law"] == results[1]["law"] and results[0]["intervals_90"] == results[1]["intervals_90"]
    cards = [scorecard(d) for d in (fit, one)]
    assert [(c["id"], c["value"], c["note"]) for c in cards[0]["claims"]] == \
           [(c["id"], c["value"], c["note"]) for c in cards[1]["claims"]]

    bad = run_cli(["experiment=scaling", f"scaling.from_sweep={sweep_dir}", *[a for a in common if a != "seed=3"], "seed=4"],
                  tmp_path / "fit", tmp_path / "cache_fit", check=False)
    assert bad.returncode == 2
    assert "trained with other settings (seed differ from this run's)" in bad.stderr.strip().splitlines()[-1]
