"""DPO that continues round after round: the smallest wrapper around rlhf's DPO pieces.

rlhf runs DPO as one fixed Lightning stage (`rlhf.dpo.DPOModule` via `ctx.fit`) over one
dataset; an online arm instead alternates "ask, then update" R times. `DPOLearner` keeps one
policy and one AdamW optimiser (`core.train.adamw`: linear warmup, then constant lr, as rlhf's
DPO stage with `min_lr_ratio=1`) across rounds and, per round, takes `epochs` shuffled passes
over that round's labelled pairs with rlhf's loss (`rlhf.dpo.dpo_loss`, Rafailov et al. 2023
eq. 7) on rlhf's sequence log-probs. The reference stays the SFT model in every round (DPO §4;
Xiong et al. 2024's KL-regularised target is relative to the initial model), so every arm is
measured by the same KL(policy || SFT). Gradients are clipped at norm 1, as the Lightning
trainer clips rlhf's DPO stage.

Deviation from Xiong et al. 2024 / Guo et al. 2024: each round trains only on that round's
new pairs (no replay of older rounds), so every arm spends the same number of gradient steps
per label (`epochs * pairs / batch_size`), and static DPO is the same learner run for one round.
"""

from __future__ import annotations

import dataclasses
import math

import torch

from toyrepro.core.config import OptimConfig
from toyrepro.core.train import adamw, check_finite
from toyrepro.core.transformer import GPT
from toyrepro.rlhf.dpo import dpo_loss, sequence_logprobs
from toyrepro.rlhf.policy import completion_logprobs


class DPOLearner:
    def __init__(self, policy: GPT, ref: GPT, beta: float, optim: OptimConfig, epochs: int, total_steps: int,
                 seed: int, stage: str = "expert_loop", step_cap: int | None = None):
        self.policy, self.ref, self.beta, self.epochs, self.stage = policy.train(), ref.eval(), beta, epochs, stage
        self.batch_size = optim.batch_size
        optim = dataclasses.replace(optim, warmup_steps=min(optim.warmup_steps, total_steps // 10), min_lr_ratio=1.0)
        opt = adamw(policy, optim, total_steps)
        self.opt, self.sched = opt["optimizer"], opt["lr_scheduler"]["scheduler"]
        self.g = torch.Generator().manual_seed(seed)
        self.steps = 0
        self.step_cap = step_cap  # trainer.step_cap: no optimiser step past it (core.train.cap_steps)
        self.last: dict[str, float] = {}  # the last step's loss and DPO statistics

    @staticmethod
    def steps_for(pairs: int, epochs: int, batch_size: int) -> int:
        """Optimiser steps one round of `pairs` labelled pairs takes."""
        return epochs * math.ceil(pairs / batch_size)

    def update(self, prompt: torch.Tensor, chosen: torch.Tensor, rejected: torch.Tensor) -> None:
        """`epochs` shuffled passes of DPO over one round's labelled pairs."""
        n = prompt.size(0)
        if n == 0:
            return
        ref_c = sequence_logprobs(self.ref, prompt, chosen)
        ref_r = sequence_logprobs(self.ref, prompt, rejected)
        self.policy.train()
        for _ in range(self.epochs):
            for idx in torch.randperm(n, generator=self.g).split(self.batch_size):
                if self.step_cap is not None and self.steps >= self.step_cap:
                    break
                p, k = prompt[idx], idx.numel()
                logp = completion_logprobs(self.policy, p.repeat(2, 1), torch.cat([chosen[idx], rejected[idx]])).sum(-1)
                loss, stats = dpo_loss(logp[:k], logp[k:], ref_c[idx], ref_r[idx], self.beta)
                check_finite(loss, self.stage, self.steps)
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.policy.parameters(), 1.0)
                self.opt.step()
                self.sched.step()
                self.steps += 1
                self.last = {"loss": float(loss.detach())} | {k: float(v) for k, v in stats.items()}
        self.policy.eval()
