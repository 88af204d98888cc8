"""Direct Preference Optimization (Rafailov et al. 2023).

    loss = -log sigmoid( beta * [ (log pi(y_w) - log ref(y_w)) - (log pi(y_l) - log ref(y_l)) ] )   (eq. 7)

with sequence log-probabilities (sums over completion tokens) and the SFT model as the
reference (DPO §4, "pi_ref = pi_SFT"). The implicit reward is beta * (log pi - log ref);
logged: loss, chosen and rejected log-probs, chosen and rejected implicit rewards, their
accuracy (chosen > rejected) and margin.

The reference's log-probs are computed once, before training (the reference is frozen), in
float32; the policy's are computed in float32 too (autocast off), so under `bf16-mixed` the two
sides of each difference have the same precision and the first loss is log 2.
Deviations: AdamW with warmup instead of RMSprop (toy scale, ~300 steps); one epoch of
resampled pairs rather than a fixed number of epochs.
"""

from __future__ import annotations

from collections.abc import Callable

import lightning as L
import torch
import torch.nn.functional as F

from toyrepro.core.config import OptimConfig
from toyrepro.core.train import adamw, check_finite, logs_this_step
from toyrepro.core.transformer import GPT
from toyrepro.rlhf.policy import completion_logprobs, in_float32


def dpo_loss(pi_chosen: torch.Tensor, pi_rejected: torch.Tensor, ref_chosen: torch.Tensor,
             ref_rejected: torch.Tensor, beta: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Sigmoid DPO loss (Rafailov et al. 2023, eq. 7) on sequence log-probs (B,)."""
    chosen_reward = beta * (pi_chosen - ref_chosen)
    rejected_reward = beta * (pi_rejected - ref_rejected)
    loss = -F.logsigmoid(chosen_reward - rejected_reward).mean()
    with torch.no_grad():
        stats = {"logp_chosen": pi_chosen.mean(), "logp_rejected": pi_rejected.mean(),
                 "reward_chosen": chosen_reward.mean(), "reward_rejected": rejected_reward.mean(),
                 "reward_accuracy": (chosen_reward > rejected_reward).float().mean(),
                 "reward_margin": (chosen_reward - rejected_reward).mean()}
    return loss, stats


@torch.no_grad()
def sequence_logprobs(model: GPT, prompts: torch.Tensor, completions: torch.Tensor,
                      batch_size: int = 1024) -> torch.Tensor:
    """Sum of completion-token log-probs (N,), in batches (for the frozen reference)."""
    was = model.training
    model.eval()
    device = next(model.parameters()).device
    out = torch.cat([completion_logprobs(model, p.to(device), c.to(device)).sum(-1).cpu()
                     for p, c in zip(prompts.split(batch_size), completions.split(batch_size))])
    model.train(was)
    return out


class DPOModule(L.LightningModule):
    """Batches: prompt, chosen, rejected, ref_chosen, ref_rejected (precomputed)."""

    def __init__(self, policy: GPT, beta: float, optim: OptimConfig, max_steps: int,
                 evaluate: Callable[[GPT], dict[str, float]] | None = None, eval_every: int = 50,
                 stage: str = "dpo"):
        super().__init__()
        self.policy, self.beta, self.optim, self.max_steps = policy, beta, optim, max_steps
        self.evaluate_fn, self.eval_every, self.stage = evaluate, eval_every, stage
        self.trajectory: list[dict[str, float]] = []  # evaluations: step, kl, gold, proxy

    def _step(self, batch):
        p = batch["prompt"]
        n = p.size(0)
        with in_float32(p.device):  # the reference's log-probs were computed in float32
            logp = completion_logprobs(self.policy, p.repeat(2, 1), torch.cat([batch["chosen"], batch["rejected"]])).sum(-1)
        return dpo_loss(logp[:n], logp[n:], batch["ref_chosen"], batch["ref_rejected"], self.beta)

    def training_step(self, batch, batch_idx):
        if self.evaluate_fn and self.global_step % self.eval_every == 0:
            self._evaluate(log=True)
        loss, stats = self._step(batch)
        check_finite(loss, self.stage, self.global_step)
        self.log(f"{self.stage}/loss", loss, prog_bar=True)
        if logs_this_step(self):
            self.log_dict({f"{self.stage}/{k}": v for k, v in stats.items()}, batch_size=batch["prompt"].size(0))
        return loss

    def on_train_end(self) -> None:
        if self.evaluate_fn:
            self._evaluate(log=False)  # Lightning forbids self.log here; the trajectory keeps it

    def validation_step(self, batch, batch_idx):
        loss, stats = self._step(batch)
        self.log(f"{self.stage}/val_loss", loss)
        self.log_dict({f"{self.stage}/val_{k}": v for k, v in stats.items()}, batch_size=batch["prompt"].size(0))

    def _evaluate(self, log: bool) -> None:
        res = self.evaluate_fn(self.policy) | {"step": self.global_step}
        self.trajectory.append(res)
        if log:
            self.log_dict({f"{self.stage}/eval_{k}": float(v) for k, v in res.items()})

    def configure_optimizers(self):
        return adamw(self.policy, self.optim, self.max_steps)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["dpo_trajectory"] = self.trajectory

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.trajectory = checkpoint.get("dpo_trajectory", [])
