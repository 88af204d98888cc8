"""A small DeepNets-1M: the architecture space, its evaluation splits, and the target networks.

Knyazev et al. 2021 (GHN-2), §3 "DeepNets-1M": one million training architectures and
test splits that probe generalisation — ID (held-out, same distribution), WIDE (more
channels), DEEP (more cells) and BN-FREE (no batch norm). Here, at toy scale for 8x8 digits:

- **MLP**: flatten 64 pixels -> 1-4 hidden blocks `Linear -> norm -> ReLU (+ residual sum
  when the block keeps the width)` of width 16/32/64 -> `Linear(., n_classes)`.
- **CNN** on 1x8x8: 1-3 blocks `Conv3x3 -> norm -> ReLU (+ residual) (-> MaxPool2)` of
  8/16/32 channels -> global average pool -> 0-1 hidden `Linear -> ReLU` -> classifier.
- norm: batch norm or layer norm (GroupNorm(1, C) on feature maps) for training
  architectures; none for the BN-FREE split (as in the paper, every training net normalises).

Splits (`sample_archs`): `train` and `id` draw from the same distribution (ID specs are
excluded from the training pool); `wide` uses widths 96/128 (MLP) and 48/64 channels (CNN),
beyond the decoder's maximum tensor, so their parameters are tiled; `deep` has 5-8 MLP blocks
or 4-5 conv blocks; `bn_free` is ID without normalisation.

Deviation from the paper: no DARTS-style cells, just the two families above; batch norm
always uses the batch's statistics (no running averages), at training and test time alike,
so a predicted network needs no statistics pass (the paper evaluates predicted nets with BN
in training mode too, §5.1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from toyrepro.core.checks import UserError

SPLITS = ("id", "wide", "deep", "bn_free")
MLP_WIDTHS, CNN_CHANNELS = (16, 32, 64), (8, 16, 32)
WIDE_MLP_WIDTHS, WIDE_CNN_CHANNELS = (96, 128), (48, 64)
N_PIXELS = 64  # 8x8 digits


@dataclass(frozen=True)
class ArchSpec:
    kind: str  # "mlp" | "cnn"
    widths: tuple[int, ...]  # MLP hidden widths, or CNN conv channels, one per block
    norm: str  # "bn" | "ln" | "none"
    residual: bool  # add each block's input to its output where the shapes agree
    pool: tuple[bool, ...] = ()  # CNN: a 2x2 max-pool after block i
    head: tuple[int, ...] = ()  # CNN: hidden widths of the linear head (0 or 1 entries)
    n_classes: int = 10

    def __str__(self) -> str:
        blocks = "-".join(f"{w}{'p' if p else ''}" for w, p in zip(self.widths, self.pool or [False] * 99))
        head = "".join(f"+fc{h}" for h in self.head)
        return f"{self.kind}[{blocks}]{head}/{self.norm}{'/res' if self.residual else ''}"


def _sample_one(kind: str, split: str, g: torch.Generator, n_classes: int) -> ArchSpec:
    def pick(options):
        return options[int(torch.randint(len(options), (1,), generator=g))]

    mlp = kind == "mlp"
    if split == "wide":
        widths_from = WIDE_MLP_WIDTHS if mlp else WIDE_CNN_CHANNELS
    else:
        widths_from = MLP_WIDTHS if mlp else CNN_CHANNELS
    depths = {"deep": (5, 6, 7, 8) if mlp else (4, 5)}.get(split, (1, 2, 3, 4) if mlp else (1, 2, 3))
    depth = pick(depths)
    if torch.rand((), generator=g) < 0.5:  # constant width: residual sums become possible
        widths = (pick(widths_from),) * depth
    else:
        widths = tuple(pick(widths_from) for _ in range(depth))
    norm = "none" if split == "bn_free" else pick(("bn", "ln"))
    residual = bool(torch.rand((), generator=g) < 0.5)
    if mlp:
        return _canonical(ArchSpec("mlp", widths, norm, residual, n_classes=n_classes))
    pool, side = [], 8
    for _ in range(depth):  # pool while the map is at least 2x2
        p = bool(torch.rand((), generator=g) < 0.5) and side >= 2
        side //= 2 if p else 1
        pool.append(p)
    head_widths = (WIDE_MLP_WIDTHS if split == "wide" else MLP_WIDTHS)
    head = () if torch.rand((), generator=g) < 0.5 else (pick(head_widths),)
    return _canonical(ArchSpec("cnn", widths, norm, residual, tuple(pool), head, n_classes))


def _canonical(spec: ArchSpec) -> ArchSpec:
    """One spec per network: `residual` is dropped where no block keeps its width."""
    if spec.residual and not any(has_residual(spec, i) for i in range(len(spec.widths))):
        return replace(spec, residual=False)
    return spec


def sample_archs(split: str, n: int, seed: int, exclude: set[ArchSpec] = frozenset(),
                 n_classes: int = 10) -> list[ArchSpec]:
    """`n` distinct architectures of `split` ("train" or one of SPLITS). Evaluation splits
    alternate MLP, CNN; the training pool flips a coin per draw (its space holds only ~300
    distinct MLPs, so a large pool is mostly CNNs)."""
    if split not in ("train", *SPLITS):
        raise ValueError(f"unknown split {split!r}; known: train, {', '.join(SPLITS)}")
    g = torch.Generator().manual_seed(seed)
    out, seen = [], set(exclude)
    for _ in range(100 * n):
        if len(out) == n:
            break
        mlp = torch.rand((), generator=g) < 0.5 if split == "train" else len(out) % 2 == 0
        spec = _sample_one("mlp" if mlp else "cnn", split, g, n_classes)
        if spec not in seen:
            seen.add(spec)
            out.append(spec)
    if len(out) < n:
        what = "ghn.n_train_archs" if split == "train" else "ghn.n_eval_archs"
        raise UserError(f"config error: split {split!r} has fewer than {n} distinct architectures (found {len(out)} "
                        f"in {100 * n} draws); lower {what} to at most {len(out)}")
    return out


def with_classes(spec: ArchSpec, n_classes: int) -> ArchSpec:
    return replace(spec, n_classes=n_classes)


def block_inputs(spec: ArchSpec) -> list[int]:
    """Input width (features or channels) of each block."""
    return [N_PIXELS if spec.kind == "mlp" else 1, *spec.widths[:-1]]


def has_residual(spec: ArchSpec, i: int) -> bool:
    """Block i adds its input to its output: residual architectures, where the width is kept."""
    return spec.residual and block_inputs(spec)[i] == spec.widths[i]


def _norm(kind: str, width: int, spatial: bool) -> nn.Module | None:
    if kind == "bn":
        return (nn.BatchNorm2d if spatial else nn.BatchNorm1d)(width, track_running_stats=False)
    if kind == "ln":
        return nn.GroupNorm(1, width) if spatial else nn.LayerNorm(width)
    return None


class TargetNet(nn.Module):
    """The network an `ArchSpec` describes. Its parameters are predicted by a hypernetwork and
    applied with `torch.func.functional_call`, or trained directly (the baselines)."""

    def __init__(self, spec: ArchSpec):
        super().__init__()
        self.spec, mlp = spec, spec.kind == "mlp"
        self.blocks = nn.ModuleList()
        width = N_PIXELS if mlp else 1
        for w in spec.widths:
            layer = nn.Linear(width, w) if mlp else nn.Conv2d(width, w, 3, padding=1)
            norm = _norm(spec.norm, w, spatial=not mlp)
            self.blocks.append(nn.ModuleDict({"layer": layer} | ({"norm": norm} if norm else {})))
            width = w
        self.head = nn.ModuleList()
        for h in spec.head:
            self.head.append(nn.Linear(width, h))
            width = h
        self.classifier = nn.Linear(width, spec.n_classes)
        kaiming_init(self, torch.Generator().manual_seed(0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mlp = self.spec.kind == "mlp"
        h = x.flatten(1) if mlp else x
        pools = self.spec.pool or (False,) * len(self.blocks)
        for i, (block, pool) in enumerate(zip(self.blocks, pools)):
            out = block["layer"](h)
            if "norm" in block:
                out = block["norm"](out)
            out = F.relu(out)
            if has_residual(self.spec, i):
                out = out + h
            h = F.max_pool2d(out, 2) if pool else out
        if not mlp:
            h = h.mean((2, 3))  # global average pool
        for layer in self.head:
            h = F.relu(layer(h))
        return self.classifier(h)


def kaiming_init(net: nn.Module, g: torch.Generator) -> nn.Module:
    """He et al. 2015 (fan-in, gain sqrt(2)) for weight matrices/kernels, zero biases, unit
    norm gains: the "random init" baseline, drawn from an explicit generator."""
    with torch.no_grad():
        for name, p in net.named_parameters():
            if p.dim() >= 2:
                fan_in = math.prod(p.shape[1:])
                p.copy_(torch.randn(p.shape, generator=g) * math.sqrt(2.0 / fan_in))
            elif name.endswith("bias"):
                p.zero_()
            else:
                p.fill_(1.0)
    return net
