"""Scoring predicted parameters against the baselines (GHN-2 §5.1, Table 2; §5.2 transfer).

- `predicted_accuracies`: test accuracy of each architecture with the parameters one GHN
  forward pass predicts — no training at all.
- `adam_curves`: Adam from a given init (Kaiming random, or the GHN's prediction), scored on
  the validation and the test digits after each of `steps`; for every step count the learning
  rate is the one with the best mean validation accuracy (so the baseline is tuned, not fixed).
- `first_match`: k*, the smallest step count whose (validation-tuned) test accuracy reaches
  the GHN's on the same architectures — "one forward pass is worth k* Adam steps".
- `few_shot`: fine-tune for a few full-batch steps on k shots per class; the classifier is
  always freshly initialised (the paper's transfer replaces the classification layer).

These are evaluation loops over many tiny networks, in plain torch (no Lightning stages):
nothing here is checkpointed or reused between runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from toyrepro.ghn.ghn import GHN
from toyrepro.ghn.graph import build_graph
from toyrepro.ghn.space import ArchSpec, TargetNet, kaiming_init
from toyrepro.ghn.train import predicted_logits

Init = Callable[[ArchSpec, int], dict[str, torch.Tensor]]  # (spec, arch index) -> parameters


@torch.no_grad()
def accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    return float((logits.argmax(1) == y).float().mean())


@torch.no_grad()
def predicted_params(ghn: GHN, specs: list[ArchSpec], chunk: int = 16) -> list[dict[str, torch.Tensor]]:
    from toyrepro.ghn.graph import batch_graphs

    ghn.eval()
    out = []
    for i in range(0, len(specs), chunk):
        out += ghn(batch_graphs([build_graph(s, ghn.s_max) for s in specs[i:i + chunk]]))
    return [{k: v.detach().clone() for k, v in p.items()} for p in out]


@torch.no_grad()
def predicted_accuracies(ghn: GHN, specs: list[ArchSpec], x: torch.Tensor, y: torch.Tensor,
                         chunk: int = 16) -> list[float]:
    ghn.eval()
    accs = []
    for i in range(0, len(specs), chunk):
        part = specs[i:i + chunk]
        logits = predicted_logits(ghn, [build_graph(s, ghn.s_max) for s in part], [TargetNet(s) for s in part], x)
        accs += [accuracy(lg, y) for lg in logits]
    return accs


def random_init(seed: int) -> Init:
    """Kaiming (fan-in) weights from a generator seeded by (seed, architecture index)."""
    def init(spec: ArchSpec, i: int) -> dict[str, torch.Tensor]:
        net = kaiming_init(TargetNet(spec), torch.Generator().manual_seed(seed * 7919 + i))
        return {k: v.detach() for k, v in net.named_parameters()}
    return init


def train_from(spec: ArchSpec, params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor, lr: float,
               steps: list[int], batch: int, seed: int, evals: list[tuple[torch.Tensor, torch.Tensor]]
               ) -> list[list[float]]:
    """Adam from `params`; after each step count in `steps`, the accuracy on every (x, y) of `evals`."""
    net = TargetNet(spec)
    with torch.no_grad():
        for k, p in net.named_parameters():
            p.copy_(params[k])
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    out, want = [], set(steps)
    for step in range(1, max(steps) + 1):
        idx = torch.randint(x.size(0), (batch,), generator=g) if batch < x.size(0) else slice(None)
        loss = F.cross_entropy(net(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step in want:
            with torch.no_grad():
                out.append([accuracy(net(xe), ye) for xe, ye in evals])
    return out


@dataclass
class Curve:
    steps: list[int]
    lrs: list[float]
    val: torch.Tensor  # (n_lrs, n_archs, n_steps)
    test: torch.Tensor  # (n_lrs, n_archs, n_steps)

    def best_lr(self) -> torch.Tensor:
        """Per step count, the learning rate (index) with the best mean validation accuracy."""
        return self.val.mean(1).argmax(0)

    def test_at_best(self) -> torch.Tensor:
        """(n_archs, n_steps): test accuracy at each step count's validation-chosen rate."""
        best = self.best_lr()
        return torch.stack([self.test[best[j], :, j] for j in range(len(self.steps))], 1)


def adam_curves(specs: list[ArchSpec], init: Init, x: torch.Tensor, y: torch.Tensor, digits, lrs: list[float],
                steps: list[int], batch: int, seed: int) -> Curve:
    """Adam on (x, y) from `init` for every architecture and learning rate, scored on the
    validation and test digits of `digits` after each step count."""
    val = torch.zeros(len(lrs), len(specs), len(steps))
    test = torch.zeros_like(val)
    for a, lr in enumerate(lrs):
        for i, spec in enumerate(specs):
            accs = torch.tensor(train_from(spec, init(spec, i), x, y, lr, steps, batch,
                                           seed * 104_729 + i, [(digits.x_val, digits.y_val),
                                                                (digits.x_test, digits.y_test)]))
            val[a, i], test[a, i] = accs[:, 0], accs[:, 1]
    return Curve(list(steps), list(lrs), val, test)


def first_match(curve_means: list[float], steps: list[int], target: float) -> tuple[float, bool]:
    """(k*, matched): the smallest step count whose mean accuracy reaches `target`; when none
    does, the largest step count tried (a lower bound on k*) and matched = False."""
    for k, acc in zip(steps, curve_means):
        if acc >= target:
            return float(k), True
    return float(steps[-1]), False


def few_shot_split(x: torch.Tensor, y: torch.Tensor, shots: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`shots` training examples of every class, chosen by seed."""
    g = torch.Generator().manual_seed(seed)
    idx = []
    for c in y.unique().tolist():
        members = (y == c).nonzero().squeeze(1)
        idx.append(members[torch.randperm(members.numel(), generator=g)[:shots]])
    idx = torch.cat(idx)
    return x[idx], y[idx]


def with_new_classifier(params: dict[str, torch.Tensor], spec: ArchSpec, seed: int) -> dict[str, torch.Tensor]:
    """`params` with the classification layer replaced by a Kaiming-random one (not predicted)."""
    fresh = random_init(seed)(spec, 0)
    return params | {k: v for k, v in fresh.items() if k.startswith("classifier.")}


def few_shot(specs: list[ArchSpec], init: Init, x_few: torch.Tensor, y_few: torch.Tensor, digits, lrs: list[float],
             steps: int, seed: int) -> tuple[list[float], float]:
    """Fine-tune every architecture on the few shots (full batch) at each lr; returns the test
    accuracies at the lr with the best mean validation accuracy, and that lr."""
    curve = adam_curves(specs, init, x_few, y_few, digits, lrs, [steps], x_few.size(0), seed)
    best = int(curve.best_lr()[0])
    return curve.test[best, :, 0].tolist(), lrs[best]
