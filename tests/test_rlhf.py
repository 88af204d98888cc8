"""rlhf: each mechanism does what its paper says, on problems small enough to check by hand."""

from __future__ import annotations

import dataclasses
import math

import lightning as L
import pytest
import torch

from toyrepro.core.checks import ConfigError
from toyrepro.core.config import OptimConfig, TrainerConfig
from toyrepro.core.train import NonFiniteLossError, build_trainer
from toyrepro.core.transformer import GPT, GPTConfig
from toyrepro.rlhf.best_of_n import (
    analytic_kl,
    best_of_n_curve,
    bootstrap_fit,
    fit_gao,
    order_weights,
    pool_kl,
)
from toyrepro.rlhf.config import LanguageConfig, PPOConfig, RLHFConfig
from toyrepro.rlhf.dpo import DPOModule, dpo_loss, sequence_logprobs
from toyrepro.rlhf.kl_controller import AdaptiveKLController, FixedKLController
from toyrepro.rlhf.language import make_language
from toyrepro.rlhf.policy import PolicyValue, completion_logprobs, sample_completions
from toyrepro.rlhf.ppo import PPOModule, gae, kl_estimators, per_token_rewards, ppo_loss
from toyrepro.rlhf.preferences import PreferenceDataError, make_pairs
from toyrepro.rlhf.reward_model import RewardModel, bt_loss

V, P, LEN = 8, 2, 6


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny models, one thread


def tiny_gpt(seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=V, block_size=16, n_layer=1, n_head=2, n_embd=32))


def constant(token: int, n: int, length: int = LEN) -> torch.Tensor:
    return torch.full((n, length), token, dtype=torch.long)


# -- GAE, rewards, KL estimators, the PPO loss ------------------------------------------------


def test_gae_matches_a_hand_computed_example():
    rewards = torch.tensor([[0.0, 0.0, 1.0]])
    values = torch.tensor([[0.5, 0.6, 0.7]])
    adv, ret = gae(rewards, values, gamma=1.0, lam=0.95)
    # delta_2 = 1 - 0.7 = 0.3; delta_1 = 0.7 - 0.6 = 0.1; delta_0 = 0.6 - 0.5 = 0.1
    # A_2 = 0.3; A_1 = 0.1 + 0.95 * 0.3 = 0.385; A_0 = 0.1 + 0.95 * 0.385 = 0.46575
    assert torch.allclose(adv, torch.tensor([[0.46575, 0.385, 0.3]]))
    assert torch.allclose(ret, adv + values)
    # lambda = 1, gamma = 1: the return is the undiscounted reward-to-go, whatever V is
    _, ret1 = gae(rewards, values, gamma=1.0, lam=1.0)
    assert torch.allclose(ret1, torch.tensor([[1.0, 1.0, 1.0]]))


def test_per_token_rewards_penalise_kl_and_pay_the_score_at_the_last_token():
    logp = torch.tensor([[-1.0, -2.0, -0.5]])
    ref = torch.tensor([[-1.5, -1.0, -0.5]])
    r = per_token_rewards(torch.tensor([2.0]), logp, ref, beta=0.1)
    assert torch.allclose(r, torch.tensor([[-0.05, 0.1, 2.0]]))


def test_kl_estimators():
    logp = torch.log(torch.tensor([[0.5, 0.2]]))
    k1, k3 = kl_estimators(logp, logp)
    assert float(k1) == 0 and float(k3) == 0
    k1, k3 = kl_estimators(logp, torch.log(torch.tensor([[0.25, 0.4]])))
    assert math.isclose(float(k1), math.log(2) + math.log(0.5), abs_tol=1e-6)
    assert float(k3) > 0  # k3 is never negative


def test_ppo_loss_clips_the_ratio():
    z = torch.zeros(1, 1)
    adv = torch.ones(1, 1)
    # the ratio e^1 > 1.2 with a positive advantage: the clipped term wins, no gradient
    logp = torch.ones(1, 1, requires_grad=True)
    loss, stats = ppo_loss(logp, z, z, z, adv, z, clip_range=0.2, vf_clip_range=0.2, vf_coef=0.0)
    loss.backward()
    assert math.isclose(float(loss), -1.2, rel_tol=1e-6) and float(logp.grad) == 0
    assert float(stats["clipfrac"]) == 1.0


# -- the KL controller ---------------------------------------------------------------------------


def test_adaptive_kl_controller_moves_beta_the_right_way():
    ctl = AdaptiveKLController(0.2, target=6.0, horizon=1000)
    assert ctl.update(12.0, 100) > 0.2  # KL above target: stronger penalty
    b = ctl.value
    assert ctl.update(1.0, 100) < b  # KL below target: weaker penalty
    # the error is clipped to +-0.2 (Ziegler et al. 2019): at most a 2% step with n/horizon = 0.1
    assert math.isclose(AdaptiveKLController(1.0, 6.0, 1000).update(600.0, 100), 1.02)
    assert FixedKLController(0.3).update(100.0, 100) == 0.3


# -- preference data -----------------------------------------------------------------------------


def test_preference_data_rejects_bad_input():
    prompts = torch.zeros(2, P, dtype=torch.long)
    comps = torch.zeros(2, 3, LEN, dtype=torch.long)
    gold = torch.tensor([[0.0, 1.0, float("nan")], [0.0, 1.0, 2.0]])
    with pytest.raises(PreferenceDataError, match="reward of completion 2 of prompt 0 is nan"):
        make_pairs(prompts, comps, gold, False, 1.0, torch.Generator())
    with pytest.raises(PreferenceDataError, match="completion 1 of prompt 0 is empty"):
        make_pairs(prompts, [[[1, 2], [], [3]]], [[0.0, 1.0, 2.0]], False, 1.0, torch.Generator())


def test_pairs_all_combinations_and_deterministic_labels_follow_gold():
    g = torch.Generator().manual_seed(0)
    prompts = torch.zeros(5, P, dtype=torch.long)
    comps = torch.randint(0, V, (5, 4, LEN), generator=g)
    gold = torch.randn(5, 4, generator=g)
    pairs = make_pairs(prompts, comps, gold, True, 1.0, g)
    assert len(pairs) == 5 * 6 and bool(pairs.gold_agrees.all())
    noisy = make_pairs(prompts, comps, gold * 0.01, False, 1.0, g)  # tiny differences: labels ~ coin flips
    empirical, expected = noisy.bayes_ceiling()
    assert 0.5 <= expected < 0.51 and 0.2 < empirical < 0.8


# -- reward model, DPO, PPO learn -----------------------------------------------------------------


def test_reward_model_learns_a_trivially_separable_preference():
    rm = RewardModel(tiny_gpt())
    prompts = torch.randint(0, V, (64, P), generator=torch.Generator().manual_seed(1))
    chosen, rejected = constant(1, 64), constant(2, 64)
    opt = torch.optim.AdamW(rm.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss = bt_loss(rm.raw(prompts, chosen), rm.raw(prompts, rejected))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    held_out = torch.randint(0, V, (32, P), generator=torch.Generator().manual_seed(2))
    acc = (rm.score(held_out, constant(1, 32)) > rm.score(held_out, constant(2, 32))).float().mean()
    assert losses[-1] < 0.1 < losses[0] and float(acc) == 1.0


def test_dpo_loss_falls_and_chosen_log_ratio_rises_over_rejected():
    ref, policy = tiny_gpt(), tiny_gpt()
    prompts = torch.randint(0, V, (32, P), generator=torch.Generator().manual_seed(3))
    chosen = torch.randint(0, V, (32, LEN), generator=torch.Generator().manual_seed(4))
    rejected = torch.randint(0, V, (32, LEN), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        ref_c = completion_logprobs(ref, prompts, chosen).sum(-1)
        ref_r = completion_logprobs(ref, prompts, rejected).sum(-1)
    opt = torch.optim.AdamW(policy.parameters(), lr=1e-3)
    losses, margins = [], []
    for _ in range(25):
        pc = completion_logprobs(policy, prompts, chosen).sum(-1)
        pr = completion_logprobs(policy, prompts, rejected).sum(-1)
        loss, stats = dpo_loss(pc, pr, ref_c, ref_r, beta=0.1)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
        margins.append(float((pc - ref_c).mean() - (pr - ref_r).mean()))
    assert math.isclose(losses[0], math.log(2), rel_tol=1e-4)  # policy == reference at the start
    assert losses[-1] < losses[0] - 0.1
    assert margins[0] == pytest.approx(0, abs=1e-5) and margins[-1] > 1.0
    assert float(stats["reward_accuracy"]) > 0.9


def test_dpo_first_loss_is_log_2_under_bf16_autocast():
    """DPO's reference log-probs are precomputed in float32 outside training; under bf16-mixed
    autocast the policy side is computed in float32 too (rlhf.policy.in_float32), so with
    policy == reference the first loss is log 2 pair by pair. (A bf16 policy side is off by up to
    2e-3 here; averaged over a batch its errors cancel, hence one pair per loss.)"""
    ref, policy = tiny_gpt(), tiny_gpt()
    prompts = torch.randint(0, V, (16, P), generator=torch.Generator().manual_seed(3))
    chosen = torch.randint(0, V, (16, LEN), generator=torch.Generator().manual_seed(4))
    rejected = torch.randint(0, V, (16, LEN), generator=torch.Generator().manual_seed(5))
    ref_c, ref_r = sequence_logprobs(ref, prompts, chosen), sequence_logprobs(ref, prompts, rejected)
    module = DPOModule(policy, beta=1.0, optim=OptimConfig(), max_steps=1)
    for i in range(16):
        pair = {"prompt": prompts[i : i + 1], "chosen": chosen[i : i + 1], "rejected": rejected[i : i + 1],
                "ref_chosen": ref_c[i : i + 1], "ref_rejected": ref_r[i : i + 1]}
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss, _ = module._step(pair)
        assert loss.dtype == torch.float32
        assert float(loss) == pytest.approx(math.log(2), abs=1e-4), (i, float(loss))


def _ppo(reward_fn, iterations: int, tmp_path, **kw) -> tuple[PPOModule, L.Trainer]:
    policy, ref = tiny_gpt(), tiny_gpt()

    def prompts(n, g):
        return torch.randint(0, V, (n, P), generator=g)

    cfg = PPOConfig(iterations=iterations, rollout_size=32, minibatch_size=16, ppo_epochs=2, lr=3e-3,
                    kl_controller="fixed", init_kl_coef=0.01, eval_every=1000, **kw)
    def no_gold(p, c):
        return torch.zeros(p.size(0))

    module = PPOModule(PolicyValue(policy), ref, prompts, LEN, reward_fn, no_gold, cfg, seed=0)
    t = TrainerConfig(accelerator="cpu", devices=1, max_steps=1, gradient_clip_val=0.0,
                      checkpoint_every_n_steps=module.steps_per_iteration, log_every_n_steps=1)
    trainer = build_trainer(t, tmp_path, [], "ppo", max_steps=iterations * module.steps_per_iteration)
    return module, trainer


def test_ppo_on_a_reward_for_one_token_raises_its_frequency(tmp_path):
    def pays_token_3(p, c):
        return (c == 3).float().mean(dim=1) * 5

    module, trainer = _ppo(pays_token_3, 15, tmp_path)
    g = torch.Generator().manual_seed(9)
    test_prompts = torch.randint(0, V, (256, P), generator=g)
    before = float((sample_completions(module.policy.gpt, test_prompts, LEN, g) == 3).float().mean())
    ref_modes = []  # the frozen reference must score rollouts in eval mode (dropout off)
    module.ref.register_forward_pre_hook(lambda m, args: ref_modes.append(m.training))
    trainer.fit(module, torch.utils.data.DataLoader(list(range(15)), batch_size=1))
    after = float((sample_completions(module.policy.gpt, test_prompts, LEN, g) == 3).float().mean())
    assert before < 0.25 and after > before + 0.25, (before, after)
    assert ref_modes and not any(ref_modes), "the reference ran in training mode"


def test_nan_in_the_ppo_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    calls = []

    def goes_nan(p, c):
        calls.append(1)
        return torch.full((p.size(0),), float("nan") if len(calls) > 2 else 1.0)

    module, trainer = _ppo(goes_nan, 4, tmp_path)
    spi = module.steps_per_iteration
    with pytest.raises(NonFiniteLossError, match=f"stage 'ppo': loss became nan at step {2 * spi}"):
        trainer.fit(module, torch.utils.data.DataLoader(list(range(4)), batch_size=1))
    ck = torch.load(tmp_path / "last.ckpt", weights_only=False)
    assert ck["global_step"] == 2 * spi and ck["ppo_state"]["iteration"] == 2
    assert all(torch.isfinite(v).all() for v in ck["state_dict"].values())


# -- best-of-n and Gao et al.'s forms ------------------------------------------------------------


def test_best_of_n_estimators():
    assert analytic_kl(1) == 0 and math.isclose(analytic_kl(4), math.log(4) - 0.75)
    assert math.isclose(float(order_weights(10, 3).sum()), 1.0)
    assert math.isclose(pool_kl(4096, 4), analytic_kl(4), rel_tol=0.02)  # n << N: close to the analytic bound
    assert pool_kl(64, 4096) == pytest.approx(math.log(64)) and pool_kl(64, 64) < math.log(64)  # at most log N
    g = torch.Generator().manual_seed(0)
    proxy = torch.randn(50, 64, generator=g)
    gold = proxy + 0.5 * torch.randn(50, 64, generator=g)
    curve = best_of_n_curve(proxy, gold, 64)
    assert math.isclose(curve.gold[0], float(gold.mean()), rel_tol=1e-6)  # best of 1 = a plain sample
    assert all(b > a for a, b in zip(curve.proxy, curve.proxy[1:]))
    assert math.isclose(curve.proxy[-1], float(proxy.max(1).values.mean()), rel_tol=1e-6)
    beta = fit_gao(curve.kl_analytic, [v - curve.gold[0] for v in curve.gold], "bon").beta
    lo, hi = bootstrap_fit(proxy, gold, 64, 1.0, n_boot=50)
    assert lo <= beta <= hi


def test_gao_fits_recover_known_coefficients():
    kl = [0.1, 0.5, 1.0, 2.0, 4.0, 8.0]
    d = torch.tensor(kl).sqrt()
    bon = fit_gao(kl, (d * (1.5 - 0.3 * d)).tolist(), "bon")
    rl = fit_gao(kl, (d * (1.0 - 0.4 * d.log())).tolist(), "rl")
    assert bon.alpha == pytest.approx(1.5, abs=1e-6) and bon.beta == pytest.approx(0.3, abs=1e-6)
    assert rl.alpha == pytest.approx(1.0, abs=1e-6) and rl.beta == pytest.approx(0.4, abs=1e-6)
    assert bon.r2 == pytest.approx(1.0)


def test_bon_bend_claim_fails_a_straight_line_and_passes_a_bent_curve():
    """`bon_bend` scores the lower end of beta's bootstrap interval. Gold = proxy + noise (Gaussian):
    best-of-n gold then grows like sqrt(2 log n), close to linear in sqrt(KL), with R^2 > 0.999
    (what an R^2 claim could not tell from Gao's form) and must not pass; gold that peaks at
    proxy = 1 and falls beyond it must."""
    g = torch.Generator().manual_seed(0)
    proxy = torch.randn(400, 256, generator=g, dtype=torch.float64)
    noise = 0.3 * torch.randn(400, 256, generator=g, dtype=torch.float64)
    curve = best_of_n_curve(proxy, proxy + noise, 64)
    assert fit_gao(curve.kl_analytic, [v - curve.gold[0] for v in curve.gold], "bon").r2 > 0.999
    straight = bootstrap_fit(proxy, proxy + noise, 64, 1.0, n_boot=50)
    bent = bootstrap_fit(proxy, -(proxy - 1).abs() + noise, 64, 1.0, n_boot=50)
    assert straight[0] <= 0 < bent[0]


def test_overoptimisation_smooths_before_taking_the_peak():
    from toyrepro.rlhf.experiment import overoptimisation, running_mean

    class Unit:
        def gain(self, gold):
            return gold

    assert running_mean([0.0, 3.0, 0.0, 3.0], 3).tolist() == [1.0, 2.0]
    flat = [{"iteration": i, "kl": i, "gold": g, "proxy": float(i)} for i, g in enumerate([0, 1, -1, 1, -1, 0])]
    raw_drop = max(t["gold"] for t in flat) - flat[-1]["gold"]  # 1.0: a peak of noise
    assert overoptimisation(flat, Unit())[0] < raw_drop / 2
    peaked = [{"iteration": i, "kl": i, "gold": g, "proxy": float(i)} for i, g in enumerate([0, 2, 4, 4, 2, 0, 0])]
    drop, note = overoptimisation(peaked, Unit())
    assert drop == pytest.approx(10 / 3 - 2 / 3) and "smoothed gold peak around iteration 2" in note


def test_reward_model_accuracy_is_scored_above_chance():
    from toyrepro.rlhf.experiment import above_chance, unseen_prompts

    assert above_chance(0.5, 0.8) == 0.0 and above_chance(0.8, 0.8) == 1.0
    assert above_chance(0.788, 0.825) == pytest.approx(0.886, abs=1e-3)
    with pytest.raises(ValueError, match="at or below chance"):
        above_chance(0.6, 0.5)
    train = torch.tensor([[1, 2], [3, 4]])
    assert unseen_prompts(torch.tensor([[1, 2], [2, 1], [3, 4]]), train).tolist() == [False, True, False]


# -- the language and the config -----------------------------------------------------------------


def test_gold_reward_counts_sentiment_and_illegal_transitions():
    lang = make_language(LanguageConfig(branching=2, prompt_len=P, completion_len=LEN, repeat_decay=1.0),
                         vocab=V, seed=0)
    g = torch.Generator().manual_seed(0)
    seq = lang.sample(100, P + LEN, g)
    assert int(lang.illegal_transitions(seq).sum()) == 0  # the chain never breaks its own rules
    p, c = seq[:, :P], seq[:, P:]
    assert torch.allclose(lang.gold_reward(p, c), lang.sentiment[c].sum(1))
    bad = c.clone()
    a = int(p[0, -1])
    bad[0, 0] = int((~lang.allowed[a]).nonzero()[0])  # a transition the language never makes
    drop = lang.gold_reward(p[:1], c[:1]) - lang.gold_reward(p[:1], bad[:1])
    expected = lang.fluency_penalty * (1 + int(~lang.allowed[bad[0, 0], bad[0, 1]]) - 0)
    assert float(drop + lang.sentiment[bad[0, 0]] - lang.sentiment[c[0, 0]]) == pytest.approx(expected)


def test_gold_sentiment_has_diminishing_returns_on_repeats():
    lang = make_language(LanguageConfig(prompt_len=1, completion_len=3, repeat_decay=0.5, fluency_penalty=0.0),
                         vocab=V, seed=0)
    v = int(lang.sentiment.abs().argmax())
    once = lang.gold_reward(torch.tensor([[0]]), torch.tensor([[v, 0, 0]]))
    thrice = lang.gold_reward(torch.tensor([[0]]), torch.tensor([[v, v, v]]))
    s, z = float(lang.sentiment[v]), float(lang.sentiment[0])
    assert float(once) == pytest.approx(s + z * 1.5) and float(thrice) == pytest.approx(s * 1.75)


@pytest.mark.parametrize("path, value, message", [
    ("ppo.target_kl", -1.0, "rlhf.ppo.target_kl must be > 0 (got -1.0)"),
    ("dpo.beta", 0.0, "rlhf.dpo.beta must be > 0 (got 0.0)"),
    ("ppo.kl_controller", "pid", "rlhf.ppo.kl_controller must be 'adaptive' or 'fixed'"),
    ("best_of_n.max_n", 100, "rlhf.best_of_n.max_n must be a power of 2 >= 8"),
    ("best_of_n.samples_per_prompt", 512, "rlhf.best_of_n.samples_per_prompt must be 0 or >= max_n (1024)"),
])
def test_config_ranges_give_one_clear_line(path, value, message):
    cfg = RLHFConfig()
    section, key = path.split(".")
    setattr(cfg, section, dataclasses.replace(getattr(cfg, section), **{key: value}))
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        cfg.validate("rlhf")


@pytest.mark.parametrize("scale", ["smoke", "quick", "full"])
def test_rlhf_configs_and_the_frontier_sweep_compose(scale):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf, open_dict

    from toyrepro import cli  # noqa: F401  (registers the schema)
    from toyrepro.core import config as schema

    from conftest import REPO

    with initialize_config_dir(str(REPO / "configs"), version_base="1.3"):
        cfg = compose("config", overrides=["experiment=rlhf", f"scale={scale}", "sweep=rlhf_frontier"],
                      return_hydra_config=True)
    params = OmegaConf.to_container(cfg.hydra.sweeper.params)
    assert params["rlhf.ppo.target_kl"] == "3,6,9,12" and params["rlhf.dpo.beta"] == "0.05,0.1,1,5"
    with open_dict(cfg):
        del cfg["hydra"]
    cfg.run_dir = "/tmp/x"
    typed = schema.validate(cfg)
    L = typed.rlhf.language
    assert L.prompt_len + L.completion_len <= typed.model.block_size
