"""The `rlhf` experiment, top to bottom: SFT -> preferences -> reward model -> PPO -> DPO ->
best-of-n, every policy scored against a hidden gold reward.

InstructGPT (Ouyang et al. 2022) / "Illustrating RLHF" pipeline; DPO (Rafailov et al. 2023,
§6.1, Fig. 2 left: gold reward vs KL frontier); Gao, Schulman & Hilton 2022 (proxy vs gold
over-optimisation, functional forms). Claims are declared in `claims()`; gains are in units
of the SFT reference's gold-reward standard deviation on the held-out evaluation prompts.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging

import matplotlib.pyplot as plt
import numpy as np
import torch

from toyrepro.core.checks import UserError
from toyrepro.core.run import RunContext
from toyrepro.core.scorecard import QF, Claim
from toyrepro.rlhf.batches import Rows, loader
from toyrepro.rlhf.best_of_n import BestOfN, best_of_n_curve, bootstrap_fit, fit_gao
from toyrepro.rlhf.dpo import DPOModule, sequence_logprobs
from toyrepro.rlhf.evaluate import Evaluator
from toyrepro.rlhf.language import make_language
from toyrepro.rlhf.policy import PolicyValue, sample_completions
from toyrepro.rlhf.ppo import PPOModule
from toyrepro.rlhf.preferences import split_by_prompt
from toyrepro.rlhf.reward_model import pairwise_accuracy
from toyrepro.rlhf.stages import build_preferences, train_reward_model, train_sft

log = logging.getLogger("toyrepro")
IGPT = "Ouyang et al. 2022 (InstructGPT) §3.5"
ZIEGLER = "Ziegler et al. 2019 §2.2; Ouyang et al. 2022 §3.5"
DPO = "Rafailov et al. 2023 §6.1, Fig. 2 left"
GAO = "Gao, Schulman & Hilton 2022 §3, eq. 1"
BON_BOOTSTRAP = 200  # prompt resamples behind bon_bend's interval


def claims(cfg) -> list[Claim]:
    r = cfg.rlhf
    rm = (Claim("rm_accuracy", "reward model held-out pairwise accuracy (deterministic labels)", IGPT,
                ">=", 0.90, scales=QF) if r.preferences.deterministic else
          Claim("rm_accuracy_vs_bayes", "reward model's held-out accuracy above chance on noisy labels, as a "
                "fraction of the Bayes ceiling's (gold reward's agreement with the same labels): "
                "(acc - 0.5) / (ceiling - 0.5)", IGPT + "; DPO App. C.1", ">=", 0.90, scales=QF))
    out = [
        rm,
        Claim("ppo_gold_gain", "PPO raises mean gold reward over the SFT reference (in reference std)",
              ZIEGLER, ">=", 1.0, scales=QF),
        Claim("ppo_kl", "PPO's sequence KL(policy || SFT) in nats stays bounded", ZIEGLER, "<=", 10.0, scales=QF),
    ]
    if r.ppo.kl_controller == "adaptive":
        out.append(Claim("ppo_kl_on_target", "|KL / controller target - 1| (KL within target +-50%)",
                         "Ziegler et al. 2019 §2.2", "<=", 0.5, scales=QF))
    out += [
        Claim("dpo_gold_gain", "DPO raises mean gold reward over the SFT reference (in reference std)",
              DPO, ">=", 1.0, scales=QF),
        Claim("bon_rises", "best-of-n gold reward rises with n for small n "
              "(smallest step over n = 1, 2, 4, 8, 16, in reference std)", GAO, ">", 0.0, scales=QF),
        Claim("bon_bend", "Gao et al. best-of-n form R(d) = d(alpha - beta d), d = sqrt(KL): the gain bends "
              "down, beyond noise (lower end of beta's 95% bootstrap interval over the prompts)", GAO, ">", 0.0,
              scales=QF),
        Claim("ppo_overoptimisation", "sweep, proxy-reward PPO: gold reward peaks and falls while proxy keeps "
              "rising (peak - final of the 3-point running mean of gold, reference std; 0 if the smoothed proxy "
              "did not keep rising)", GAO, ">", 0.1, scales=("full",)),
        Claim("dpo_vs_ppo", "sweep: DPO gold minus PPO gold at DPO's KL (reference std; paper: DPO dominates)",
              DPO, ">=", 0.0, scales=("full",)),
    ]
    return out


def run(ctx: RunContext) -> None:
    cfg, r, card = ctx.cfg, ctx.cfg.rlhf, ctx.card
    seq_len = r.language.prompt_len + r.language.completion_len
    if seq_len > cfg.model.block_size:
        raise UserError(f"config error: rlhf prompt_len + completion_len = {seq_len} exceeds model.block_size="
                        f"{cfg.model.block_size}; raise model.block_size or shorten the sequences")
    if cfg.trainer.accelerator == "cpu":
        torch.set_num_threads(r.cpu_threads)
    lang = make_language(r.language, cfg.model.vocab_size, cfg.seed)

    # 1-3. SFT, preferences, reward model (cached by config hash)
    sft = train_sft(ctx, lang)
    samples, pairs = build_preferences(ctx, lang, sft)
    train_pairs, val_pairs = split_by_prompt(pairs, r.preferences.n_prompts, r.preferences.val_fraction)
    rm = train_reward_model(ctx, sft, samples, train_pairs, val_pairs)
    acc = pairwise_accuracy(rm, val_pairs.prompt, val_pairs.chosen, val_pairs.rejected)
    ceiling, expected_ceiling = val_pairs.bayes_ceiling()
    gold_acc = pairwise_accuracy(rm, val_pairs.prompt, *(torch.where(val_pairs.gold_agrees.unsqueeze(1), a, b)
                                 for a, b in ((val_pairs.chosen, val_pairs.rejected),
                                              (val_pairs.rejected, val_pairs.chosen))))
    log.info("reward model: held-out accuracy %.3f on labels (Bayes ceiling %.3f, expected %.3f), "
             "%.3f on gold preferences", acc, ceiling, expected_ceiling, gold_acc)
    fresh = val_pairs.subset(unseen_prompts(val_pairs.prompt, train_pairs.prompt))
    fresh_acc = pairwise_accuracy(rm, fresh.prompt, fresh.chosen, fresh.rejected) if len(fresh) else float("nan")
    log.info("reward model: %.0f%% of held-out pairs have a prompt also drawn for training; accuracy %.3f on the "
             "%d others", 100 * (1 - len(fresh) / len(val_pairs)), fresh_acc, len(fresh))
    note = (f"acc {acc:.3f} on {len(val_pairs)} held-out pairs ({len(fresh)} with a prompt never drawn for "
            f"training: acc {fresh_acc:.3f}); vs gold {gold_acc:.3f}")
    if r.preferences.deterministic:
        card.record("rm_accuracy", acc, note)
    else:
        card.record("rm_accuracy_vs_bayes", above_chance(acc, ceiling), note + f"; ceiling {ceiling:.3f} "
                    f"(expected {expected_ceiling:.3f}); raw acc / ceiling {acc / ceiling:.3f}")

    ev = Evaluator(lang, sft, rm, r.eval_prompts, cfg.seed)
    log.info("SFT reference: gold %.3f +- %.3f, proxy %.3f", ev.ref_gold, ev.ref_gold_std, ev.ref_proxy)

    # 4. PPO against the proxy (or the gold reward itself: rlhf.ppo.reward=gold)
    ppo = run_ppo(ctx, lang, sft, rm, ev)
    final = ppo.trajectory[-1]
    card.record("ppo_gold_gain", ev.gain(final["gold"]), f"gold {final['gold']:.3f} vs SFT {ev.ref_gold:.3f}; "
                f"KL {final['kl']:.2f} nats")
    card.record("ppo_kl", final["kl"], f"k3 {final['kl_k3']:.2f}; beta {final['beta']:.3f}")
    if r.ppo.kl_controller == "adaptive":
        card.record("ppo_kl_on_target", abs(final["kl"] / r.ppo.target_kl - 1),
                    f"KL {final['kl']:.2f} vs target {r.ppo.target_kl:g}")
    if r.ppo.reward == "proxy":
        card.record("ppo_overoptimisation", *overoptimisation(ppo.trajectory, ev))
    else:  # PPO on the gold reward itself cannot over-optimise a proxy
        card.claim("ppo_overoptimisation").note = "not measured: PPO optimised the gold reward (rlhf.ppo.reward=gold)"

    # 5. DPO on the same preference pairs
    dpo = run_dpo(ctx, sft, train_pairs, val_pairs, ev)
    d = dpo.trajectory[-1]
    card.record("dpo_gold_gain", ev.gain(d["gold"]), f"gold {d['gold']:.3f}; KL {d['kl']:.2f} nats")
    value, note = dpo_vs_ppo(d, ppo.trajectory, ev)
    if value is None:  # nothing to compare at equal KL: left unmeasured (a failure where it applies)
        card.claim("dpo_vs_ppo").note = note
    else:
        card.record("dpo_vs_ppo", value, note)

    # 6. best-of-n against the proxy
    bon, bon_proxy, bon_gold = run_best_of_n(ctx, lang, sft, rm)
    gains = [ev.gain(gv) - ev.gain(bon.gold[0]) for gv in bon.gold]
    steps = [b - a for a, b in zip(gains[:5], gains[1:5])]
    card.record("bon_rises", min(steps), "gains at n=1..16: " + ", ".join(f"{g:.2f}" for g in gains[:5]))
    fit = fit_gao(bon.kl_analytic, gains, "bon")
    lo, hi = bootstrap_fit(bon_proxy, bon_gold, r.best_of_n.max_n, ev.ref_gold_std, n_boot=BON_BOOTSTRAP,
                           seed=cfg.seed)
    card.record("bon_bend", lo, f"beta {fit.beta:.3f}, 95% interval [{lo:.3f}, {hi:.3f}] over "
                f"{bon_proxy.size(0)} prompts resampled {BON_BOOTSTRAP} times; alpha {fit.alpha:.3f}, R^2 {fit.r2:.4f}")
    rl_points = [(t["kl"], ev.gain(t["gold"])) for t in ppo.trajectory if t["kl"] > 0]
    rl_fit = fit_gao([k for k, _ in rl_points], [g for _, g in rl_points], "rl") if len(rl_points) >= 3 else None

    results = {"reference": {"gold": ev.ref_gold, "gold_std": ev.ref_gold_std, "proxy": ev.ref_proxy},
               "reward_model": {"accuracy": acc, "bayes_ceiling": ceiling, "expected_ceiling": expected_ceiling,
                                "accuracy_vs_gold": gold_acc},
               "ppo": ppo.trajectory, "dpo": dpo.trajectory, "best_of_n": dataclasses.asdict(bon),
               "fits": {"bon": dataclasses.asdict(fit) | {"beta_95ci": [lo, hi]},
                        "rl": rl_fit and dataclasses.asdict(rl_fit)}}
    ctx.write_text("frontier.json", json.dumps(results, indent=2))
    ctx.save_figure(frontier_figure(ev, ppo.trajectory, dpo.trajectory, bon, fit, rl_fit, cfg), "frontier")


def run_ppo(ctx: RunContext, lang, sft, rm, ev: Evaluator) -> PPOModule:
    cfg, pc = ctx.cfg, ctx.cfg.rlhf.ppo
    if pc.reward == "gold":  # Gao et al.'s "no proxy" baseline: the gold reward, normalised like the proxy
        def reward_fn(p, c):
            return (lang.gold_reward(p, c) - ev.ref_gold) / ev.ref_gold_std
    else:
        reward_fn = rm.score
    module = PPOModule(PolicyValue(copy.deepcopy(sft).train()), copy.deepcopy(sft), lang.prompts,
                       lang.completion_len, reward_fn, lang.gold_reward, pc, cfg.seed, evaluate=ev)
    spi = module.steps_per_iteration
    # no Trainer clipping under manual optimisation (PPOModule clips); checkpoint every eval_every iterations
    t = dataclasses.replace(cfg.trainer, gradient_clip_val=0.0, checkpoint_every_n_steps=spi * pc.eval_every,
                            log_every_n_steps=1)
    iters = torch.utils.data.DataLoader(
        list(range(pc.iterations)), batch_size=1,
        sampler=IterationSampler(pc.iterations, lambda: module.iteration))
    ctx.fit("ppo", module, iters, None, max_steps=pc.iterations * spi, trainer=t)
    return module


class IterationSampler(torch.utils.data.Sampler[int]):
    """Iteration indices from the module's own counter on (resume-safe)."""

    def __init__(self, n: int, start):
        self.n, self.start = n, start

    def __iter__(self):
        return iter(range(self.start(), self.n))

    def __len__(self) -> int:
        return self.n


def run_dpo(ctx: RunContext, sft, train_pairs, val_pairs, ev: Evaluator) -> DPOModule:
    cfg, dc = ctx.cfg, ctx.cfg.rlhf.dpo
    optim = dataclasses.replace(cfg.optim, lr=dc.lr, batch_size=dc.batch_size,
                                warmup_steps=min(cfg.optim.warmup_steps, dc.steps // 10), min_lr_ratio=1.0)
    data = {}
    for name, pairs in (("train", train_pairs), ("val", val_pairs)):
        data[name] = {"prompt": pairs.prompt, "chosen": pairs.chosen, "rejected": pairs.rejected,
                      "ref_chosen": sequence_logprobs(sft, pairs.prompt, pairs.chosen),
                      "ref_rejected": sequence_logprobs(sft, pairs.prompt, pairs.rejected)}
    module = DPOModule(copy.deepcopy(sft).train(), dc.beta, optim, dc.steps, evaluate=ev, eval_every=dc.eval_every)
    ctx.fit("dpo", module, loader(data["train"], dc.steps, dc.batch_size, cfg.seed + 2, lambda: module.global_step),
            torch.utils.data.DataLoader(Rows(data["val"]), batch_size=256), max_steps=dc.steps)
    return module


@torch.no_grad()
def run_best_of_n(ctx: RunContext, lang, sft, rm) -> tuple[BestOfN, torch.Tensor, torch.Tensor]:
    """The best-of-n curve, and the (prompts, samples) proxy and gold matrices behind it."""
    cfg, bc = ctx.cfg, ctx.cfg.rlhf.best_of_n
    g = torch.Generator().manual_seed(cfg.seed * 31 + 5)
    prompts = lang.prompts(bc.n_prompts, g).repeat_interleave(bc.n_samples, 0)
    comps = sample_completions(sft, prompts, lang.completion_len, g)
    proxy = rm.score(prompts, comps).view(bc.n_prompts, bc.n_samples)
    gold = lang.gold_reward(prompts, comps).view(bc.n_prompts, bc.n_samples)
    bon = best_of_n_curve(proxy, gold, bc.max_n)
    for i, n in enumerate(bon.n):
        ctx.log_metrics("best_of_n", {"best_of_n/gold": bon.gold[i], "best_of_n/proxy": bon.proxy[i],
                                      "best_of_n/kl_analytic": bon.kl_analytic[i],
                                      "best_of_n/kl_pool": bon.kl_pool[i], "best_of_n/n": n}, step=i)
    log.info("best-of-n: " + ", ".join(f"n={n}: gold {gv:.2f} proxy {p:.2f}"
                                       for n, gv, p in zip(bon.n, bon.gold, bon.proxy)))
    return bon, proxy, gold


def unseen_prompts(prompts: torch.Tensor, train_prompts: torch.Tensor) -> torch.Tensor:
    """Mask of the rows of `prompts` whose token sequence is not among `train_prompts`' rows. The
    split holds out prompt *draws*; over a short prompt in a small language many draws repeat."""
    seen = {tuple(p) for p in train_prompts.tolist()}
    return torch.tensor([tuple(p) not in seen for p in prompts.tolist()], dtype=torch.bool)


def above_chance(acc: float, ceiling: float) -> float:
    """The share of the above-chance accuracy the labels allow that the reward model reaches:
    (acc - 0.5) / (ceiling - 0.5). Chance (0.5) scores 0, the Bayes ceiling 1."""
    if ceiling <= 0.5:
        raise ValueError(f"the Bayes ceiling {ceiling:.3f} is at or below chance: the labels carry no signal")
    return (acc - 0.5) / (ceiling - 0.5)


def running_mean(xs: list[float], width: int = 3) -> np.ndarray:
    """Means of every full window of `width` consecutive points (len(xs) - width + 1 of them; all
    of xs averaged if it is shorter): the last one, like every other, averages `width` points."""
    x = np.asarray(xs, dtype=np.float64)
    if len(x) < width:
        return x.mean(keepdims=True)
    return np.convolve(x, np.full(width, 1 / width), mode="valid")


def overoptimisation(traj: list[dict], ev: Evaluator) -> tuple[float, str]:
    """Peak minus final gold (reference std) of the 3-point running means of the evaluations, if
    the smoothed proxy kept rising after the smoothed gold peak. Smoothing first: the argmax of
    ~20 raw noisy evaluations minus the last one is biased upward (a max of noise is > 0)."""
    gold, proxy = running_mean([t["gold"] for t in traj]), running_mean([t["proxy"] for t in traj])
    i = int(np.argmax(gold))
    drop = ev.gain(float(gold[i])) - ev.gain(float(gold[-1]))
    proxy_rose = proxy[-1] > proxy[i]
    mid = traj[min(i + 1, len(traj) - 1)]  # the centre of the peak's window
    note = (f"smoothed gold peak around iteration {mid['iteration']} (KL {mid['kl']:.2f}); smoothed proxy "
            f"{proxy[i]:.2f} -> {proxy[-1]:.2f}")
    return (drop if proxy_rose else 0.0), note


def dpo_vs_ppo(d: dict, traj: list[dict], ev: Evaluator) -> tuple[float | None, str]:
    """DPO's gold minus PPO's gold interpolated at DPO's KL on PPO's (KL-sorted) trajectory."""
    pts = sorted((t["kl"], t["gold"]) for t in traj)
    kls, golds = [p[0] for p in pts], [p[1] for p in pts]
    if not kls[0] <= d["kl"] <= kls[-1]:
        return None, f"not measured: DPO KL {d['kl']:.2f} outside PPO's range [{kls[0]:.2f}, {kls[-1]:.2f}]"
    ppo_gold = float(np.interp(d["kl"], kls, golds))
    return ev.gain(d["gold"]) - ev.gain(ppo_gold), f"at KL {d['kl']:.2f}: DPO {d['gold']:.2f}, PPO {ppo_gold:.2f}"


def frontier_figure(ev: Evaluator, ppo: list[dict], dpo: list[dict], bon: BestOfN, fit, rl_fit, cfg) -> plt.Figure:
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4))
    for traj, label, style in ((ppo, f"PPO ({cfg.rlhf.ppo.reward}, target KL {cfg.rlhf.ppo.target_kl:g})", "o-"),
                               (dpo, f"DPO (beta {cfg.rlhf.dpo.beta:g})", "s-")):
        ax.plot([t["kl"] for t in traj], [ev.gain(t["gold"]) for t in traj], style, ms=4, label=label)
    ax.plot(bon.kl_analytic, [ev.gain(gv) for gv in bon.gold], "^-", ms=4, label="best-of-n (analytic KL)")
    ax.plot(bon.kl_pool, [ev.gain(gv) for gv in bon.gold], "^:", ms=3, alpha=0.6,
            label="best-of-n (KL over the N-sample pool)")
    ax.axhline(0, color="#999", lw=0.8)
    ax.set_xlabel("KL(policy || SFT), nats")
    ax.set_ylabel("gold reward gain (SFT std)")
    ax.set_title("gold reward vs KL (cf. DPO Fig. 2 left)")
    ax.legend(fontsize=7)
    d = np.linspace(0, max(np.sqrt(max(bon.kl_analytic)), 1e-3), 100)
    base = ev.gain(bon.gold[0])
    bx.plot(np.sqrt(bon.kl_analytic), [ev.gain(gv) - base for gv in bon.gold], "^", label="best-of-n gold")
    bx.plot(d, fit(torch.tensor(d)).numpy(), "-", label=f"fit d(a - b d): R^2 {fit.r2:.2f}")
    if rl_fit is not None:
        ds = np.sqrt([t["kl"] for t in ppo if t["kl"] > 0])
        bx.plot(ds, [ev.gain(t["gold"]) for t in ppo if t["kl"] > 0], "o", label="PPO gold")
        dd = np.linspace(1e-3, max(ds.max(), 1e-3), 100)
        bx.plot(dd, rl_fit(torch.tensor(dd)).numpy(), "--", label=f"fit d(a - b log d): R^2 {rl_fit.r2:.2f}")
    bx.set_xlabel("d = sqrt(KL)")
    bx.set_ylabel("gold gain (SFT std)")
    bx.set_title("Gao et al. functional forms")
    bx.legend(fontsize=7)
    return fig
