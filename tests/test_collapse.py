"""collapse: the refits give the known answers, the chain's lineage is right, bad input is refused."""

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from toyrepro.collapse.chain import run_chain
from toyrepro.collapse.config import CollapseConfig, capped_lm
from toyrepro.collapse.gaussian import GaussianSetting
from toyrepro.collapse.lm import distinct_ngrams, line_windows
from toyrepro.collapse.trend import bootstrap_slope, degradation, mean_curve, slope
from toyrepro.collapse.zipf import ZipfSetting, zipf
from toyrepro.core.checks import ConfigError
from toyrepro.core.config import OptimConfig, TrainerConfig
from toyrepro.core.transformer import GPTConfig


class Tagged:
    """A fake setting whose data items say where they came from: ("sample", generation) or "real"."""

    def __init__(self):
        self.seen: dict[int, list] = {}

    def fit(self, data, generation, chain):
        self.seen[generation] = list(data)
        return generation  # the "model" of generation g is just g

    def sample(self, model, n, generation, chain):
        assert model == generation, "samples come from the model of the generation asked for"
        return [("sample", model)] * n

    def real(self, n, generation, chain):
        return ["real"] * n

    def join(self, synthetic, real):
        return synthetic + real

    def measure(self, model, generation, chain):
        return {"g": generation}


@pytest.mark.parametrize("real_fraction", [0.0, 0.1])
def test_generation_sees_only_the_previous_generation_unless_mixing(real_fraction):
    setting = Tagged()
    stats = run_chain(setting, 0, n=50, generations=4, real_fraction=real_fraction, chain="c")
    assert [s["g"] for s in stats] == [0, 1, 2, 3, 4]
    for g in range(1, 5):
        data = setting.seen[g]
        assert len(data) == 50
        assert set(data) <= ({("sample", g - 1), "real"} if real_fraction else {("sample", g - 1)})
        assert data.count("real") == (5 if real_fraction else 0)


def test_gaussian_refit_shrinks_variance_by_n_minus_1_over_n():
    n, g_max = 10, 20
    setting = GaussianSetting(samples=n, chains=4000, seed=0)
    mu, sigma = setting.fit(setting.data0)
    np.testing.assert_allclose(sigma, setting.data0.std(axis=1))  # the MLE, 1/N
    stats = run_chain(setting, (mu, sigma), n, g_max, 0.0, "pure")
    ratio = (stats[-1]["sigma"] / stats[0]["sigma"]) ** 2
    expected = ((n - 1) / n) ** g_max  # Shumailov Thm 3.1: E[sigma_g^2] = ((N-1)/N)^g sigma_0^2
    se = ratio.std() / np.sqrt(len(ratio))
    assert abs(ratio.mean() - expected) < 4 * se, (ratio.mean(), expected, se)
    assert np.median(ratio) < expected < 1  # most chains collapse faster than the mean


def test_zipf_refit_loses_support_for_good_and_mixing_brings_it_back():
    p = zipf(1000, 1.1)
    assert p.sum() == pytest.approx(1) and p[0] / p[1] == pytest.approx(2**1.1)
    setting = ZipfSetting(vocab=1000, exponent=1.1, samples=2000, chains=8, tail_rank=100, seed=0)
    q0 = setting.fit(setting.data0)
    np.testing.assert_allclose(q0[0], np.bincount(setting.data0[0], minlength=1000) / 2000)
    pure = np.stack([s["support"] for s in run_chain(setting, q0, 2000, 10, 0.0, "pure")], axis=1)
    mixed = np.stack([s["support"] for s in run_chain(setting, q0, 2000, 10, 0.1, "mixed")], axis=1)
    assert (np.diff(pure, axis=1) <= 0).all(), "a category with no sample never comes back"
    assert pure[:, -1].mean() < 0.7 * pure[:, 0].mean()
    assert (mixed[:, -1] > pure[:, -1]).all() and (mixed <= pure[:, :1]).all()


def test_slope_and_bootstrap_interval_on_known_lines():
    rng = np.random.default_rng(0)
    g = np.arange(11)
    falling = -0.5 * g + rng.normal(0, 1, size=(200, 11))
    assert slope(-0.5 * g + 3) == pytest.approx(-0.5)
    s, lo, hi = bootstrap_slope(falling, mean_curve, 500, 0.95, rng)
    assert lo < -0.5 < hi and hi < 0 and s == pytest.approx(-0.5, abs=0.05)
    _, lo, hi = bootstrap_slope(rng.normal(0, 1, size=(200, 11)), mean_curve, 500, 0.95, rng)
    assert lo < 0 < hi, "a flat series must not look like a trend"
    assert degradation(np.array([1.0, 0.4]), "down") == pytest.approx(0.6)
    assert degradation(np.array([10.0, 14.0]), "up") == pytest.approx(4.0)


def test_distinct_ngrams_and_line_windows():
    assert distinct_ngrams(torch.tensor([[1, 1, 1, 1, 1]]), 2) == pytest.approx(0.25)
    assert distinct_ngrams(torch.tensor([[1, 2, 3], [3, 2, 1]]), 2) == pytest.approx(1.0)
    text = torch.tensor(list(b"ab\ncd\nef\ngh\n"), dtype=torch.uint8)
    rows = line_windows(text, 2, 2, torch.Generator().manual_seed(0))
    assert (rows[:, 0] == 10).all() and rows.shape == (2, 3)
    with pytest.raises(ValueError, match="^only 3 line starts for 5 windows; use more files or fewer sequences$"):
        line_windows(text, 5, 2, torch.Generator().manual_seed(0))


def test_bad_config_is_refused_with_one_line():
    with pytest.raises(ConfigError, match=r"^collapse.real_fraction must be in \(0, 1\) \(got 1.5\)$"):
        CollapseConfig(real_fraction=1.5).validate()
    with pytest.raises(ConfigError, match=r"^collapse.zipf.tail_rank must be in \[1, vocab=1000\) \(got 1000\)$"):
        CollapseConfig(zipf=dataclasses.replace(CollapseConfig().zipf, tail_rank=1000)).validate()
    cfg = SimpleNamespace(model=GPTConfig(block_size=32))
    with pytest.raises(ConfigError, match=r"^model.block_size must be >= collapse.lm.seq_len \+ 1 = 65 \(got 32\)$"):
        CollapseConfig().validate_against(cfg)


def test_step_cap_caps_the_sampling_between_fits():
    """Under trainer.step_cap a generation samples at most what its capped fit reads (cap * batch
    sequences), for its data and its statistics, over max(2, cap) generations; uncapped, nothing
    changes (scale=full's sizes: 20000 sequences, 2000 eval samples, 20 generations)."""
    full = dataclasses.replace(CollapseConfig().lm, sequences=20_000, eval_samples=2000, generations=20)
    cfg = lambda cap: SimpleNamespace(collapse=SimpleNamespace(lm=full), optim=OptimConfig(batch_size=128),  # noqa: E731
                                      trainer=TrainerConfig(max_steps=2000, step_cap=cap))
    assert capped_lm(cfg(None)) is full
    two = capped_lm(cfg(2))
    assert (two.sequences, two.eval_samples, two.generations) == (256, 256, 2)
    assert (two.seq_len, two.eval_windows, two.sample_batch) == (full.seq_len, full.eval_windows, full.sample_batch)
    big = capped_lm(cfg(1000))  # a cap above the preset's sizes leaves them as they are
    assert (big.sequences, big.eval_samples, big.generations) == (20_000, 2000, 20)
    one = capped_lm(cfg(1))
    assert (one.sequences, one.generations) == (128, 2)
    two.validate("collapse.lm")
    from toyrepro.collapse import EXPERIMENT

    assert (EXPERIMENT.stages_trained(cfg(2)), EXPERIMENT.stages_trained(cfg(None))) == (5, 41)  # the disk estimate's
    from omegaconf import OmegaConf  # a scorecard's config read back (EXPERIMENT.stages_trained)

    read_back = SimpleNamespace(collapse=SimpleNamespace(lm=OmegaConf.create(dataclasses.asdict(full))),
                                optim=cfg(2).optim, trainer=cfg(2).trainer)
    assert capped_lm(read_back) == two
