"""Training and scoring of one sequence model on padded, masked sequences.

Losses (padding never enters either):
- classification (task A): cross-entropy of the head's output at each sequence's *last real*
  event (the cells are causal, so later padding cannot reach it);
- regression (task B): mean squared error over the real observations only, i.e.
  sum(mask * (y_hat - y)^2) / sum(mask).

Every model of a task gets the same optimiser (AdamW + warmup-cosine, `core.train.adamw`, from
the top-level `optim:` section), batch size (the task's) and data order, through `ctx.fit` (Lightning:
checkpoints, loggers, resume). `SequenceModule.optimizer_step` times each training step
(forward, backward, clipping, update) in process CPU time and in wall time, so "time per
epoch" (CfC paper Table 3's "min/epoch" column) excludes validation and checkpoint writes.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from toyrepro.core.train import adamw, check_finite


def last_real(outputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """(B, T, C) outputs -> (B, C) at index lengths - 1 of each row."""
    return outputs[torch.arange(outputs.size(0)), lengths - 1]


def masked_mse(pred: torch.Tensor, target: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    mask = (torch.arange(pred.size(1), device=pred.device)[None, :] < lengths[:, None]).to(pred.dtype)
    se = ((pred - target) ** 2).sum(-1)
    return (se * mask).sum() / mask.sum()


def sequence_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor], task: str) -> torch.Tensor:
    out = model(batch["values"], batch["elapsed"])
    if task == "classify":
        return F.cross_entropy(last_real(out, batch["lengths"]), batch["labels"])
    return masked_mse(out, batch["targets"], batch["lengths"])


class SequenceModule(L.LightningModule):
    def __init__(self, model: torch.nn.Module, task: str, optim, max_steps: int, stage: str):
        super().__init__()
        self.model, self.task, self.optim, self.max_steps, self.stage = model, task, optim, max_steps, stage
        self.step_cpu: list[float] = []  # CPU seconds of each training step
        self.step_wall: list[float] = []

    def training_step(self, batch, batch_idx):
        loss = sequence_loss(self.model, batch, self.task)
        check_finite(loss, self.stage, self.global_step)
        self.log(f"{self.stage}/loss", loss, prog_bar=True, batch_size=batch["values"].size(0))
        return loss

    def validation_step(self, batch, batch_idx):
        n = batch["values"].size(0)
        self.log(f"{self.stage}/val_loss", sequence_loss(self.model, batch, self.task), batch_size=n)
        if self.task == "classify":
            pred = last_real(self.model(batch["values"], batch["elapsed"]), batch["lengths"]).argmax(-1)
            self.log(f"{self.stage}/val_accuracy", (pred == batch["labels"]).float().mean(), batch_size=n)

    def optimizer_step(self, *args, **kwargs):
        cpu, wall = time.process_time(), time.perf_counter()
        super().optimizer_step(*args, **kwargs)  # runs the closure: forward, backward, clip, step
        self.model.after_step()
        self.step_cpu.append(time.process_time() - cpu)
        self.step_wall.append(time.perf_counter() - wall)

    def configure_optimizers(self):
        return adamw(self.model, self.optim, self.max_steps)


def train_model(ctx, stage: str, model: torch.nn.Module, task: str, train, val, epochs: int, batch_size: int,
                seed: int) -> dict[str, float]:
    """Fit `model` for `epochs` epochs as the run's stage `stage`; returns its time per epoch."""
    bs = batch_size
    per_epoch = math.ceil(len(train) / bs)
    steps = epochs * per_epoch
    loader = DataLoader(train, batch_size=bs, shuffle=True, generator=torch.Generator().manual_seed(seed))
    module = SequenceModule(model, task, dataclasses.replace(ctx.cfg.optim, batch_size=bs), steps, stage)
    ctx.fit(stage, module, loader, DataLoader(val, batch_size=ctx.cfg.liquid.eval_batch_size), max_steps=steps)
    model.eval()
    if not module.step_cpu:  # resumed after the last step: nothing was timed
        return {"cpu_s_per_epoch": float("nan"), "wall_s_per_epoch": float("nan"), "steps": steps}
    # the median step, so that a burst of load on a shared machine does not decide the ratio
    return {"cpu_s_per_epoch": statistics.median(module.step_cpu) * per_epoch,
            "wall_s_per_epoch": statistics.median(module.step_wall) * per_epoch, "steps": steps}


@torch.no_grad()
def predict(model: torch.nn.Module, data, batch_size: int):
    model.eval()
    return torch.cat([model(data.values[i:i + batch_size], data.elapsed[i:i + batch_size])
                      for i in range(0, len(data), batch_size)])


def accuracy(model: torch.nn.Module, data, batch_size: int) -> float:
    pred = last_real(predict(model, data, batch_size), data.lengths).argmax(-1)
    return float((pred == data.labels).float().mean())


def mse(model: torch.nn.Module, data, batch_size: int) -> float:
    return float(masked_mse(predict(model, data, batch_size), data.targets, data.lengths))
