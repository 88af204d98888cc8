"""The reward model: a GPT backbone + scalar head, trained with the Bradley-Terry loss.

InstructGPT §3.5 (Ouyang et al. 2022), "Illustrating RLHF": the SFT model with its
unembedding replaced by a linear head that reads the final hidden state of the last token,

    loss = -log sigmoid(r(x, y_chosen) - r(x, y_rejected))          (Ouyang et al. eq. 1)

Logged: loss, pairwise accuracy, margin (mean r_chosen - r_rejected), reward mean/min/max.

After training the score is normalised so that SFT samples have mean 0 and std 1
(Ziegler et al. 2019 §2.2 normalise the reward model the same way before RL), which makes
PPO's KL coefficient mean the same thing in every run.

Deviations: InstructGPT compares K=4..9 completions per prompt in one batch element; we
feed the pairs independently (the DPO App. C.1 pairs). `n_layer` smaller than the SFT
model keeps only the first blocks (a weaker proxy, for Gao et al.'s size axis).
"""

from __future__ import annotations

import lightning as L
import torch
import torch.nn as nn
import torch.nn.functional as F

from toyrepro.core.config import OptimConfig
from toyrepro.core.train import adamw, check_finite, logs_this_step
from toyrepro.core.transformer import GPT


def bt_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor) -> torch.Tensor:
    """Bradley-Terry negative log-likelihood of the labels (Ouyang et al. 2022, eq. 1)."""
    return -F.logsigmoid(r_chosen - r_rejected).mean()


class RewardModel(nn.Module):
    def __init__(self, backbone: GPT):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(backbone.cfg.n_embd, 1)
        nn.init.normal_(self.head.weight, std=1 / (backbone.cfg.n_embd + 1) ** 0.5)
        nn.init.zeros_(self.head.bias)
        self.register_buffer("offset", torch.zeros(()))  # normalisation: (r - offset) / scale
        self.register_buffer("scale", torch.ones(()))

    def raw(self, prompts: torch.Tensor, completions: torch.Tensor) -> torch.Tensor:
        seq = torch.cat([prompts, completions], dim=1)
        h = self.backbone(seq, output_hidden_states=True, last_only=True).hidden_states[-1][:, -1]
        return self.head(self.backbone.ln_f(h)).squeeze(-1)

    def forward(self, prompts: torch.Tensor, completions: torch.Tensor) -> torch.Tensor:
        """The normalised score (B,)."""
        return (self.raw(prompts, completions) - self.offset) / self.scale

    @torch.no_grad()
    def normalise(self, prompts: torch.Tensor, completions: torch.Tensor) -> None:
        r = torch.cat([self.raw(p, c) for p, c in zip(prompts.split(1024), completions.split(1024))])
        self.offset.fill_(float(r.mean()))
        self.scale.fill_(float(r.std().clamp_min(1e-6)))

    @torch.no_grad()
    def score(self, prompts: torch.Tensor, completions: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
        was = self.training
        self.eval()
        device = self.offset.device
        out = torch.cat([self(p.to(device), c.to(device)).cpu()
                         for p, c in zip(prompts.split(batch_size), completions.split(batch_size))])
        self.train(was)
        return out


class RewardModule(L.LightningModule):
    def __init__(self, rm: RewardModel, optim: OptimConfig, max_steps: int, stage: str = "reward_model"):
        super().__init__()
        self.rm, self.optim, self.max_steps, self.stage = rm, optim, max_steps, stage

    def _step(self, batch: dict[str, torch.Tensor]):
        n = batch["prompt"].size(0)
        # chosen and rejected through the network in one batch
        r = self.rm.raw(batch["prompt"].repeat(2, 1), torch.cat([batch["chosen"], batch["rejected"]]))
        rc, rr = r[:n], r[n:]
        return bt_loss(rc, rr), rc, rr

    def _log(self, split: str, loss, rc, rr) -> None:
        s = f"{self.stage}/{split}"
        r = torch.cat([rc, rr]).detach()
        self.log_dict({f"{s}loss": loss, f"{s}accuracy": (rc > rr).float().mean(),
                       f"{s}margin": (rc - rr).mean(), f"{s}reward_mean": r.mean(),
                       f"{s}reward_min": r.min(), f"{s}reward_max": r.max()},
                      prog_bar=False, batch_size=rc.size(0))

    def training_step(self, batch, batch_idx):
        loss, rc, rr = self._step(batch)
        check_finite(loss, self.stage, self.global_step)
        self.log(f"{self.stage}/loss", loss, prog_bar=True)
        if logs_this_step(self):
            self._log("train_", loss, rc, rr)
        return loss

    def validation_step(self, batch, batch_idx):
        loss, rc, rr = self._step(batch)
        self._log("val_", loss, rc, rr)

    def configure_optimizers(self):
        return adamw(self.rm, self.optim, self.max_steps)


@torch.no_grad()
def pairwise_accuracy(rm: RewardModel, prompt: torch.Tensor, chosen: torch.Tensor,
                      rejected: torch.Tensor) -> float:
    """Fraction of pairs where the reward model scores the labelled-chosen completion higher."""
    return float((rm.score(prompt, chosen) > rm.score(prompt, rejected)).float().mean())
