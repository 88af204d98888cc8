"""Config section `expert_loop:` (configs/experiment/expert_loop.yaml).

The synthetic language, the SFT model, the expert's Bradley-Terry temperature and the static
preference data are the `rlhf` experiment's, read from the `rlhf:` section (which
expert_loop.yaml sets to rlhf's quick values, so both experiments share one cached SFT model
and one cached preference set). This section holds only what the label-budget comparison adds:
the budgets, the rounds, the DPO updates every arm shares, the active pool, the crowd.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from toyrepro.core.checks import check


@dataclass
class ExpertLoopConfig:
    budgets: list[int] = field(default_factory=lambda: [256, 512, 1024, 2048])  # label budgets B (pairwise
    # questions answered); the claims are read at the largest, the others draw the curve
    rounds: int = 4  # R: online arms ask B/R questions per round (Xiong et al. 2024 use 3 iterations)
    epochs: int = 2  # gradient passes over each labelled pair, the same for every arm (equal compute per label);
    # chosen on a development seed (7): 8 passes drove KL to 12-15 nats and saturated gold by B=2048
    batch_size: int = 64  # pairs per DPO step (rlhf.dpo's default)
    lr: float = 3e-4  # DPO learning rate (rlhf.dpo's default); one AdamW per arm, kept across rounds
    beta: float = 0.1  # DPO beta (Rafailov et al. 2023 §6.1 default, as rlhf.dpo)
    warmup_steps: int = 10  # linear warmup, then constant lr (rlhf's DPO uses min_lr_ratio=1 too)
    pool_factor: int = 4  # active arm: candidate pairs sampled per question asked (asks the 1/pool_factor
    # with the smallest |implicit-reward margin|)
    crowd_temperature: float = 10.0  # crowd labeller's Bradley-Terry temperature (the expert's is
    # rlhf.preferences.bt_temperature, 1.0): "experts vs the crowd"
    eval_prompts: int = 512  # held-out prompts on which gold reward and KL(policy || SFT) are measured

    def validate(self, p: str) -> None:
        check(len(self.budgets) >= 1, f"{p}.budgets", "a non-empty list", self.budgets)
        check(self.rounds >= 1, f"{p}.rounds", ">= 1", self.rounds)
        for b in self.budgets:
            check(b >= self.rounds and b % self.rounds == 0, f"{p}.budgets",
                  f"multiples of {p}.rounds={self.rounds} (each round asks B/R questions)", self.budgets)
        check(list(self.budgets) == sorted(set(self.budgets)), f"{p}.budgets", "strictly increasing", self.budgets)
        check(self.epochs >= 1, f"{p}.epochs", ">= 1", self.epochs)
        check(self.batch_size >= 1, f"{p}.batch_size", ">= 1", self.batch_size)
        check(self.lr > 0, f"{p}.lr", "> 0", self.lr)
        check(self.beta > 0, f"{p}.beta", "> 0", self.beta)
        check(self.warmup_steps >= 0, f"{p}.warmup_steps", ">= 0", self.warmup_steps)
        check(self.pool_factor >= 2, f"{p}.pool_factor", ">= 2 (active selection needs a choice)", self.pool_factor)
        check(self.crowd_temperature > 0, f"{p}.crowd_temperature", "> 0", self.crowd_temperature)
        check(self.eval_prompts >= 2, f"{p}.eval_prompts", ">= 2", self.eval_prompts)

    def validate_against(self, cfg, p: str) -> None:
        rlhf = getattr(cfg, "rlhf", None)
        check(rlhf is not None, "rlhf", "set: expert_loop reuses the rlhf section's language and labeller "
              "(configs/experiment/expert_loop.yaml sets it)", None)
        check(self.crowd_temperature > rlhf.preferences.bt_temperature, f"{p}.crowd_temperature",
              f"> rlhf.preferences.bt_temperature={rlhf.preferences.bt_temperature} (the crowd is noisier)",
              self.crowd_temperature)
