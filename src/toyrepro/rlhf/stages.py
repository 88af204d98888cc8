"""The cached stages: SFT model -> preference pairs -> reward model.

Each is a `core.stage.cached_stage` keyed by everything that determines it (its own config,
the config of the stages it consumes, the seed), so a sweep over PPO or DPO settings trains
them once. Each stage that trains is a Lightning fit with its own checkpoint directory
(`<run_dir>/checkpoints/<stage>/`) and loggers (`ctx.loggers(stage)`); a run that finds
the artefact in the cache skips the fit (and so writes no checkpoint for that stage).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from pathlib import Path
from typing import Any

import torch

from toyrepro.core.run import RunContext
from toyrepro.core.stage import cached_stage
from toyrepro.core.transformer import GPT
from toyrepro.rlhf.batches import Resampled, Rows, loader
from toyrepro.rlhf.language import Language
from toyrepro.rlhf.policy import sample_completions
from toyrepro.rlhf.preferences import Pairs, make_pairs
from toyrepro.rlhf.reward_model import RewardModel, RewardModule

log = logging.getLogger("toyrepro")


def sft_params(ctx: RunContext) -> dict[str, Any]:
    c, lc = ctx.cfg, ctx.cfg.rlhf.language
    # the chain only (not the gold reward's fields): changing the gold reward reuses the SFT model
    chain = {"branching": lc.branching, "prompt_len": lc.prompt_len, "completion_len": lc.completion_len,
             "sft_sequences": lc.sft_sequences}
    return {"seed": c.seed, "model": dataclasses.asdict(c.model), "optim": dataclasses.asdict(c.optim),
            "steps": c.trainer.max_steps, "chain": chain}


def train_sft(ctx: RunContext, lang: Language) -> GPT:
    """SFT = next-token training on chain samples, each sequence aligned at position 0."""
    c = ctx.cfg
    length = lang.prompt_len + lang.completion_len

    def build(tmp: Path) -> None:
        g = torch.Generator().manual_seed(c.seed * 31 + 1)
        train = lang.sample(c.rlhf.language.sft_sequences, length, g)
        val = lang.sample(max(64, c.optim.batch_size * c.trainer.limit_val_batches), length, g)
        model = GPT(c.model)
        ctx.train_lm("sft", model, Resampled(train, c.trainer.max_steps * c.optim.batch_size, c.seed), val)
        torch.save(model.state_dict(), tmp / "model.pt")

    path = cached_stage(c.cache_dir, "rlhf_sft", sft_params(ctx), build)
    model = GPT(c.model)
    model.load_state_dict(torch.load(path / "model.pt", weights_only=True))
    return model.eval()


def preference_params(ctx: RunContext) -> dict[str, Any]:
    return sft_params(ctx) | {"language": dataclasses.asdict(ctx.cfg.rlhf.language),
                              "preferences": dataclasses.asdict(ctx.cfg.rlhf.preferences)}


def build_preferences(ctx: RunContext, lang: Language, sft: GPT) -> tuple[dict[str, torch.Tensor], Pairs]:
    """SFT samples (k per prompt) with their gold rewards, and the labelled pairs (DPO App. C.1)."""
    c, pc = ctx.cfg, ctx.cfg.rlhf.preferences

    def build(tmp: Path) -> None:
        g = torch.Generator().manual_seed(c.seed * 31 + 2)
        prompts = lang.prompts(pc.n_prompts, g)
        k = pc.samples_per_prompt
        comps = sample_completions(sft, prompts.repeat_interleave(k, 0), lang.completion_len, g)
        gold = lang.gold_reward(prompts.repeat_interleave(k, 0), comps)
        comps, gold = comps.view(pc.n_prompts, k, -1), gold.view(pc.n_prompts, k)
        pairs = make_pairs(prompts, comps, gold, pc.deterministic, pc.bt_temperature, g)
        log.info("preferences: %d prompts x %d samples -> %d labelled pairs", pc.n_prompts, k, len(pairs))
        torch.save({"samples": {"prompts": prompts, "completions": comps, "gold": gold},
                    "pairs": pairs.to_dict()}, tmp / "preferences.pt")

    path = cached_stage(c.cache_dir, "rlhf_preferences", preference_params(ctx), build)
    data = torch.load(path / "preferences.pt", weights_only=True)
    return data["samples"], Pairs(**data["pairs"])


def reward_model_params(ctx: RunContext) -> dict[str, Any]:
    t = ctx.cfg.trainer
    return preference_params(ctx) | {"reward_model": dataclasses.asdict(ctx.cfg.rlhf.reward_model),
                                     "val_check_interval": t.val_check_interval}


def make_reward_model(ctx: RunContext, sft: GPT) -> RewardModel:
    c, rc = ctx.cfg, ctx.cfg.rlhf.reward_model
    n_layer = rc.n_layer or c.model.n_layer
    backbone = GPT(dataclasses.replace(c.model, n_layer=n_layer))
    if rc.init_from_sft:  # keep the SFT model's first n_layer blocks
        sd = {k: v for k, v in sft.state_dict().items()
              if not (k.startswith("h.") and int(k.split(".")[1]) >= n_layer)}
        backbone.load_state_dict(sd)
    return RewardModel(backbone)


def train_reward_model(ctx: RunContext, sft: GPT, samples: dict[str, torch.Tensor], train: Pairs,
                       val: Pairs) -> RewardModel:
    c, rc = ctx.cfg, ctx.cfg.rlhf.reward_model
    optim = dataclasses.replace(c.optim, lr=rc.lr, batch_size=rc.batch_size,
                                warmup_steps=min(c.optim.warmup_steps, rc.steps // 10))

    def build(tmp: Path) -> None:
        rm = make_reward_model(ctx, sft)
        module = RewardModule(rm, optim, rc.steps)
        keys = ("prompt", "chosen", "rejected")
        tr = {k: getattr(train, k) for k in keys}
        va = torch.utils.data.DataLoader(Rows({k: getattr(val, k) for k in keys}), batch_size=256)
        ctx.fit("reward_model", module, loader(tr, rc.steps, rc.batch_size, c.seed + 1, lambda: module.global_step),
                va, max_steps=rc.steps)
        # normalise on the SFT samples of the training prompts (Ziegler et al. 2019 §2.2)
        n_val = max(1, int(round(c.rlhf.preferences.val_fraction * c.rlhf.preferences.n_prompts)))
        P = samples["prompts"][:-n_val]
        comps = samples["completions"][:-n_val]
        k = comps.size(1)
        rm.normalise(P.repeat_interleave(k, 0), comps.flatten(0, 1))
        torch.save(rm.state_dict(), tmp / "reward_model.pt")

    path = cached_stage(c.cache_dir, "rlhf_reward_model", reward_model_params(ctx), build)
    rm = make_reward_model(ctx, copy.deepcopy(sft))
    rm.load_state_dict(torch.load(path / "reward_model.pt", weights_only=True))
    return rm.eval().requires_grad_(False)
