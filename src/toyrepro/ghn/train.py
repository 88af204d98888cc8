"""Training a hypernetwork end to end through the networks it predicts (GHN-2 §4).

Each step samples a meta-batch of `m` training architectures and one batch of images; the
GHN predicts every architecture's parameters in one forward pass; each predicted network
classifies the images through `torch.func.functional_call`; the loss is the mean of their
cross-entropies, so its gradient flows through the predicted parameters into the GHN:

    L(theta) = 1/m sum_{a in meta-batch} CE( f_a(x; H_theta(graph_a)), y )

The data is sklearn's bundled `load_digits` (8x8, 10 classes), split by seed and scaled by
the training pixels' mean and standard deviation. Batches are drawn from (seed, step), so a
stage resumed from `last.ckpt` replays the batches an uninterrupted run would see.
"""

from __future__ import annotations

from dataclasses import dataclass

import lightning as L
import torch
import torch.nn.functional as F
from torch.func import functional_call

from toyrepro.core.config import OptimConfig
from toyrepro.core.data import StepOffsetSampler
from toyrepro.core.train import check_finite, logs_this_step, warmup_cosine
from toyrepro.ghn.ghn import GHN
from toyrepro.ghn.graph import Graph, batch_graphs
from toyrepro.ghn.space import TargetNet


@dataclass
class Digits:
    x_train: torch.Tensor  # (n, 1, 8, 8), standardised
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    def classes(self, keep: tuple[int, ...]) -> Digits:
        """Only the digits in `keep`, relabelled 0..len(keep)-1."""
        lut = torch.full((10,), -1, dtype=torch.long)
        lut[list(keep)] = torch.arange(len(keep))
        parts = []
        for x, y in ((self.x_train, self.y_train), (self.x_val, self.y_val), (self.x_test, self.y_test)):
            m = lut[y] >= 0
            parts += [x[m], lut[y[m]]]
        return Digits(*parts)


def load_digits_split(seed: int, val_fraction: float, test_fraction: float) -> Digits:
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.data, dtype=torch.float32).view(-1, 1, 8, 8) / 16.0
    y = torch.tensor(data.target, dtype=torch.long)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    n_test, n_val = int(round(test_fraction * len(y))), int(round(val_fraction * len(y)))
    test, val, train = perm[:n_test], perm[n_test:n_test + n_val], perm[n_test + n_val:]
    mean, std = x[train].mean(), x[train].std()
    x = (x - mean) / std
    return Digits(x[train], y[train], x[val], y[val], x[test], y[test])


class MetaBatches(torch.utils.data.Dataset):
    """Item i: `batch` training images and `m` architecture indices, drawn from (seed, i)."""

    def __init__(self, n_images: int, n_archs: int, steps: int, batch: int, m: int, seed: int):
        self.n_images, self.n_archs, self.steps, self.batch, self.m, self.seed = n_images, n_archs, steps, batch, m, seed

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + i)
        return {"images": torch.randint(self.n_images, (self.batch,), generator=g),
                "archs": torch.randperm(self.n_archs, generator=g)[: self.m]}


def predicted_logits(ghn: GHN, graphs: list[Graph], nets: list[TargetNet], x: torch.Tensor) -> list[torch.Tensor]:
    """Every architecture's logits on `x`, with the parameters `ghn` predicts for it."""
    params = ghn(batch_graphs(graphs))
    return [functional_call(net, p, (x,)) for net, p in zip(nets, params)]


class GHNModule(L.LightningModule):
    def __init__(self, ghn: GHN, graphs: list[Graph], digits: Digits, val_graphs: list[Graph],
                 optim: OptimConfig, max_steps: int, stage: str):
        super().__init__()
        self.ghn, self.optim, self.max_steps, self.stage = ghn, optim, max_steps, stage
        self.graphs, self.val_graphs, self.digits = graphs, val_graphs, digits  # plain lists: not checkpointed
        self.nets = [TargetNet(g.spec) for g in graphs]
        self.val_nets = [TargetNet(g.spec) for g in val_graphs]

    def _loss(self, graphs, nets, x, y):
        logits = predicted_logits(self.ghn, graphs, nets, x)
        loss = torch.stack([F.cross_entropy(lg, y) for lg in logits]).mean()
        acc = torch.stack([(lg.argmax(1) == y).float().mean() for lg in logits]).mean()
        return loss, acc

    def training_step(self, batch, batch_idx):
        idx = batch["archs"].tolist()
        x, y = self.digits.x_train[batch["images"]], self.digits.y_train[batch["images"]]
        loss, acc = self._loss([self.graphs[i] for i in idx], [self.nets[i] for i in idx], x, y)
        check_finite(loss, self.stage, self.global_step)
        if logs_this_step(self):  # a self.log costs ~1 ms; steps here cost ~30-70 ms
            self.log(f"{self.stage}/loss", loss, prog_bar=True, batch_size=1)
            self.log(f"{self.stage}/accuracy", acc, batch_size=1)
        return loss

    def validation_step(self, batch, batch_idx):
        loss, acc = self._loss(self.val_graphs, self.val_nets, self.digits.x_val, self.digits.y_val)
        self.log(f"{self.stage}/val_loss", loss, batch_size=1)
        self.log(f"{self.stage}/val_accuracy", acc, prog_bar=True, batch_size=1)

    def configure_optimizers(self):
        """AdamW with warmup-cosine (core's schedule); `foreach`: the decoder heads are ~1M numbers."""
        o = self.optim
        opt = torch.optim.AdamW(self.ghn.parameters(), lr=o.lr, betas=(o.beta1, o.beta2),
                                weight_decay=o.weight_decay, foreach=True)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: warmup_cosine(s, o.warmup_steps, self.max_steps, o.min_lr_ratio))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def meta_batch_loader(module: GHNModule, n_archs: int, steps: int, batch: int, m: int, seed: int):
    ds = MetaBatches(module.digits.x_train.size(0), n_archs, steps, batch, m, seed)
    return torch.utils.data.DataLoader(ds, batch_size=None,
                                       sampler=StepOffsetSampler(len(ds), 1, lambda: module.global_step))


def one_item_loader() -> torch.utils.data.DataLoader:
    """Validation runs once over the fixed validation architectures and images."""
    return torch.utils.data.DataLoader([0], batch_size=None)

