"""The `expert_loop` experiment, top to bottom: rlhf's SFT model and preference data, then five
arms at each label budget B, every policy scored by the hidden gold reward and KL to SFT.

Issue 22 (the essay's thesis: once the open data is learned, progress comes from exchange
with experts; and whether a model can learn on its own). Iterative DPO: Xiong et al. 2024
(arXiv 2312.11456) Alg. 1; online AI feedback: Guo et al. 2024 (arXiv 2402.04792) §3. Arms:

1. static       B SFT pairs labelled up front (rlhf's cached data), DPO on them (DPO §6.1 protocol);
2. online       R rounds of B/R pairs from the current policy, expert-labelled, DPO continues;
3. active       as 2, asking only the smallest-|implicit-reward margin| B/R of a larger pool;
4. self_reward  as 2, the policy labelling its own pairs by its implicit reward (no expert);
5. crowd        as 2, with a high-temperature Bradley-Terry labeller.

Gains are in SFT gold-reward standard deviations on the held-out evaluation prompts (rlhf's
`Evaluator`). The claims are read at the largest budget; the other budgets draw the curves.
Deviation: no reward model is trained (the arms learn by DPO only), so rlhf's Evaluator
gets a stand-in proxy that scores 0 and its `proxy` column is not reported.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math

import torch

from toyrepro.core.checks import UserError
from toyrepro.core.io import atomic_path
from toyrepro.core.run import RunContext
from toyrepro.core.scorecard import QF, Claim
from toyrepro.expert_loop.figures import frontier_figure, labels_figure
from toyrepro.expert_loop.labellers import Labeller, SelfLabeller
from toyrepro.expert_loop.learner import DPOLearner
from toyrepro.expert_loop.loop import run_rounds, run_static
from toyrepro.rlhf.evaluate import Evaluator
from toyrepro.rlhf.language import make_language
from toyrepro.rlhf.preferences import split_by_prompt
from toyrepro.rlhf.stages import build_preferences, train_sft

log = logging.getLogger("toyrepro")
ARMS = ("static", "online", "active", "self_reward", "crowd")
ISSUE = "issue 22"
ITER = "Xiong et al. 2024 Alg. 1; Guo et al. 2024 §3"


def claims(cfg) -> list[Claim]:
    b = max(cfg.expert_loop.budgets)
    return [
        Claim("online_beats_static", f"at B={b} labels, online DPO's gold gain at matched or lower KL minus static "
              "DPO's (SFT std; online's gold is read where its round trajectory reaches static's KL if it goes "
              "further). Trivial baseline: online = static scores 0", ITER + "; " + ISSUE, ">=", 0.5, scales=QF),
        Claim("active_label_fraction", f"labels active needs to reach static's gold at B={b}, as a fraction of "
              f"{b} (any active run and round). Static itself scores 1; the SFT model never reaches it (unmeasured "
              "= fail)", ISSUE + "; uncertainty sampling (Lewis & Gale 1994)", "<=", 0.5, scales=QF),
        Claim("self_reward_not_above_static", f"at B={b} pairs, the self-rewarding control's gold gain minus static "
              "DPO's (SFT std). Trivial baseline: no training scores -(static's gain) and passes; a control that "
              "learns on its own would score > 0", ISSUE + "; cf. Yuan et al. 2024", "<=", 0.0, scales=QF),
        Claim("expert_beats_crowd", f"at B={b} labels, online DPO's gold gain with the expert minus with the crowd "
              f"labeller (T={cfg.expert_loop.crowd_temperature:g} vs {cfg.rlhf.preferences.bt_temperature:g}; "
              "SFT std). Trivial baseline: labels that carry no extra information score 0", ISSUE, ">", 0.0,
              scales=QF),
    ]


class NoProxy:
    """rlhf's Evaluator also scores a reward model; this experiment trains none: it scores 0."""

    def to(self, device):
        return self

    def score(self, prompts: torch.Tensor, completions: torch.Tensor) -> torch.Tensor:
        return torch.zeros(prompts.size(0))


def run(ctx: RunContext) -> None:
    cfg, r, e, card = ctx.cfg, ctx.cfg.rlhf, ctx.cfg.expert_loop, ctx.card
    seq_len = r.language.prompt_len + r.language.completion_len
    if seq_len > cfg.model.block_size:
        raise UserError(f"config error: rlhf prompt_len + completion_len = {seq_len} exceeds model.block_size="
                        f"{cfg.model.block_size}; raise model.block_size or shorten the sequences")
    lang = make_language(r.language, cfg.model.vocab_size, cfg.seed)

    # rlhf's cached stages: the SFT model, and its labelled pairs (the static arm's data)
    sft = train_sft(ctx, lang)
    _, pairs = build_preferences(ctx, lang, sft)
    train_pairs, _ = split_by_prompt(pairs, r.preferences.n_prompts, r.preferences.val_fraction)
    if len(train_pairs) < max(e.budgets):
        raise UserError(f"config error: expert_loop.budgets reach {max(e.budgets)} labels but rlhf's preference "
                        f"data has {len(train_pairs)} training pairs; raise rlhf.preferences.n_prompts or lower "
                        "the budgets")
    order = torch.randperm(len(train_pairs), generator=torch.Generator().manual_seed(cfg.seed * 31 + 7))
    static = train_pairs.subset(order)  # a fixed random order: budget B takes the first B (nested sets)
    static_data = (static.prompt, static.chosen, static.rejected)

    ev = Evaluator(lang, sft, NoProxy(), e.eval_prompts, cfg.seed)
    log.info("SFT reference: gold %.3f +- %.3f on %d prompts", ev.ref_gold, ev.ref_gold_std, e.eval_prompts)

    def evaluate(policy) -> dict[str, float]:
        m = ev(policy)
        return {"gain": ev.gain(m["gold"]), "gold": m["gold"], "kl": m["kl"], "kl_k3": m["kl_k3"],
                "illegal": m["illegal"]}

    results: dict[str, dict[int, list[dict]]] = {arm: {} for arm in ARMS}
    for budget in e.budgets:
        for arm in ARMS:
            traj = run_arm(ctx, arm, budget, lang, sft, static_data, evaluate)
            results[arm][budget] = traj
            f = traj[-1]
            log.info("B=%d %-11s gain %+.3f  KL %.2f  labels %d", budget, arm, f["gain"], f["kl"], f["labels"])
            ctx.log_metrics("expert_loop", {f"{arm}/gain": f["gain"], f"{arm}/kl": f["kl"]}, step=budget)

    record_claims(card, results, max(e.budgets))
    ctx.write_text("results.json", json.dumps(
        {"reference": {"gold": ev.ref_gold, "gold_std": ev.ref_gold_std},
         "arms": {arm: {str(b): t for b, t in by_b.items()} for arm, by_b in results.items()}}, indent=2))
    ctx.save_figure(labels_figure(results, e.budgets), "gold_vs_labels")
    ctx.save_figure(frontier_figure(results), "gold_vs_kl")


def run_arm(ctx: RunContext, arm: str, budget: int, lang, sft, static_data, evaluate) -> list[dict]:
    """One arm at one budget, from a fresh copy of SFT. Its policy and trajectory are saved as
    checkpoints/arms/<arm>_B<B>.pt (not a Lightning stage's last.ckpt), so `resume=true` skips it."""
    cfg, e = ctx.cfg, ctx.cfg.expert_loop
    path = ctx.stage_dir("arms") / f"{arm}_B{budget}.pt"
    if cfg.resume and path.exists():
        log.info("%s at B=%d: reusing %s", arm, budget, path)
        return torch.load(path, weights_only=True)["trajectory"]
    seed = cfg.seed * 7919 + budget  # shared by the arms at one budget: common random numbers
    rounds = 1 if arm == "static" else e.rounds
    optim = dataclasses.replace(cfg.optim, lr=e.lr, batch_size=e.batch_size, warmup_steps=e.warmup_steps)
    steps = rounds * DPOLearner.steps_for(budget // rounds, e.epochs, e.batch_size)
    learner = DPOLearner(copy.deepcopy(sft), sft, e.beta, optim, e.epochs, steps, seed + 1,
                         step_cap=cfg.trainer.step_cap)
    if arm == "static":
        traj = run_static(learner, static_data, budget, evaluate)
    else:
        temperature = e.crowd_temperature if arm == "crowd" else cfg.rlhf.preferences.bt_temperature
        label = (SelfLabeller(sft, e.beta, seed + 2) if arm == "self_reward" else
                 Labeller(lang, temperature, cfg.rlhf.preferences.deterministic, seed + 2))
        traj = run_rounds(learner, label, lang.prompts, lang.completion_len, budget, e.rounds, seed + 3,
                          pool_factor=e.pool_factor if arm == "active" else 0, evaluate=evaluate,
                          spends_labels=arm != "self_reward")
    traj = [{"round": 0, "labels": 0, "pairs": 0, "steps": 0, "gain": 0.0, "kl": 0.0}] + traj
    with atomic_path(path) as tmp:
        torch.save({"trajectory": traj, "policy": learner.policy.state_dict()}, tmp)
    return traj


def matched_gain(traj: list[dict], kl: float) -> tuple[float, str]:
    """Gain of a round trajectory (from SFT at KL 0) at KL <= `kl`: its final gain if it ends at or
    below `kl`, else its gain interpolated where it first crosses `kl`."""
    if traj[-1]["kl"] <= kl:
        return traj[-1]["gain"], f"final (KL {traj[-1]['kl']:.2f})"
    for a, b in zip(traj, traj[1:]):
        if a["kl"] <= kl < b["kl"]:
            t = (kl - a["kl"]) / (b["kl"] - a["kl"])
            return a["gain"] + t * (b["gain"] - a["gain"]), f"interpolated at KL {kl:.2f} (rounds {a['round']}-{b['round']})"
    return traj[-1]["gain"], "final"  # unreachable: the trajectory starts at KL 0 <= kl


def record_claims(card, results: dict[str, dict[int, list[dict]]], b: int) -> None:
    final = {arm: results[arm][b][-1] for arm in ARMS}
    st = final["static"]
    per_b = ", ".join(f"B={k}: {results['online'][k][-1]['gain']:+.2f}/{results['static'][k][-1]['gain']:+.2f}"
                      for k in results["static"])
    gain, how = matched_gain(results["online"][b], max(st["kl"], 0.0))
    card.record("online_beats_static", gain - st["gain"],
                f"online {gain:+.2f} ({how}) vs static {st['gain']:+.2f} at KL {st['kl']:.2f}; "
                f"online final KL {final['online']['kl']:.2f}; final online/static gains {per_b}")
    reached = [p["labels"] for by_b in results["active"].values() for p in by_b[1:] if p["gain"] >= st["gain"]]
    active_note = (f"active reaches static's {st['gain']:+.2f} with {min(reached)} labels" if reached else
                   f"active never reaches static's {st['gain']:+.2f} within {b} labels (best "
                   f"{max(p['gain'] for by_b in results['active'].values() for p in by_b):+.2f})")
    card.record("active_label_fraction", min(reached) / b if reached else math.nan, active_note)
    card.record("self_reward_not_above_static", final["self_reward"]["gain"] - st["gain"],
                f"self-rewarding {final['self_reward']['gain']:+.2f} (KL {final['self_reward']['kl']:.2f}) vs "
                f"static {st['gain']:+.2f}")
    card.record("expert_beats_crowd", final["online"]["gain"] - final["crowd"]["gain"],
                f"expert {final['online']['gain']:+.2f} (KL {final['online']['kl']:.2f}) vs crowd "
                f"{final['crowd']['gain']:+.2f} (KL {final['crowd']['kl']:.2f})")
