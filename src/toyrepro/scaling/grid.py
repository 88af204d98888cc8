"""The runs: the (N, D) grid and the repetition arm, their data, and training one point.

- **N** is the non-embedding parameter count (Kaplan et al. 2020 §1.1, §2.1: "excluding
  vocabulary and positional embeddings"): every parameter of the GPT minus the token table
  (tied to the unembedding, so counted once) and the position table. For the suite's GPT
  that is n_layer * (12 d^2 + 13 d) + 2 d (the blocks' matrices, biases and LayerNorms, and
  the final LayerNorm); `tests/test_scaling.py` checks both forms. Hoffmann count all
  parameters (their models are large enough that it barely matters; ours are not).
- **D** is training tokens: steps x batch x block_size; compute C = 6 N D (Kaplan §2.1). With
  `budget_scale` every size has its own ladder of steps (larger models more tokens).
- **Data**: the gpt experiment's corpus (the stdlib's pure-ASCII source, `gpt/corpus.py`),
  cut into non-overlapping (T+1)-token windows and shuffled once (by the seed). A run of D
  tokens and `epochs` e reads the first D / e windows of that order, each epoch in a fresh
  order: e = 1 is unique data (every window once), so the main grid's run of the arm's
  size and budget *is* the arm's 1-epoch run and is trained once (Muennighoff §4: unique
  data U_D = D / epochs, repeated to the same D).
- **Learning rate**: one rule for every size, lr = optim.lr * lr_width / width (lr ∝ 1/width,
  as for Adam in muP, Yang et al. 2022: narrow models tolerate a higher rate); lr_width = 0
  keeps optim.lr for all. Deviation: Hoffmann tune the rate per model size.
- **Schedule**: AdamW, linear warm-up for `warmup_fraction` of the run, then cosine to 10 %
  at the run's last step (Hoffmann §3, App. B: a cosine cycle as long as the run).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from toyrepro.core.checks import UserError
from toyrepro.core.transformer import GPT, GPTConfig
from toyrepro.scaling.config import run_steps


@dataclass(frozen=True)
class Point:
    """One training run of the experiment."""

    index: int  # position in `points(cfg)`: what `scaling.point` selects in a sweep
    size: int  # index into the config's model sizes
    budget: int  # index into the config's token budgets
    epochs: int  # 1 = unique data; e = D / e unique tokens seen e times
    n_layer: int
    n_embd: int
    n_head: int
    steps: int

    @property
    def stage(self) -> str:
        return f"L{self.n_layer}d{self.n_embd}_s{self.steps}_e{self.epochs}"

    @property
    def in_grid(self) -> bool:
        return self.epochs == 1


def points(cfg) -> list[Point]:
    """The main grid (sizes x budgets, unique data), then the repetition arm's runs with
    epochs > 1 (its 1-epoch run is the grid's point of the same size and budget)."""
    s = cfg.scaling
    out = []

    def add(size: int, budget: int, epochs: int) -> None:
        layers, width = s.layers[size], s.widths[size]
        out.append(Point(len(out), size, budget, epochs, layers, width, width // s.head_dim, run_steps(s, size, budget)))

    for i in range(len(s.widths)):
        for j in range(len(s.steps)):
            add(i, j, 1)
    budget = s.repeat_budget % len(s.steps)
    for e in s.epochs[1:]:
        add(s.repeat_size, budget, e)
    return out


def model_config(cfg, p: Point) -> GPTConfig:
    return dataclasses.replace(cfg.model, n_layer=p.n_layer, n_embd=p.n_embd, n_head=p.n_head)


def non_embedding_params(model: GPT) -> int:
    """Kaplan's N: all parameters minus the token and position tables (the unembedding is tied)."""
    return sum(p.numel() for p in model.parameters()) - model.wte.weight.numel() - model.wpe.weight.numel()


def learning_rate(cfg, p: Point) -> float:
    s = cfg.scaling
    return cfg.optim.lr * s.lr_width / p.n_embd if s.lr_width else cfg.optim.lr


def tokens(cfg, p: Point) -> int:
    return p.steps * cfg.optim.batch_size * cfg.model.block_size


class RepeatedWindows(torch.utils.data.Dataset):
    """Row i of a run of `rows` rows: epoch i // U of the U = ceil(rows / epochs) unique windows.

    Windows are non-overlapping (T+1)-token slices of `text` at stride T, in one order fixed
    by `seed`; the unique pool is the first U of them (nested: a smaller pool is a prefix of a
    larger), and each epoch visits the pool in its own order fixed by (seed, epoch)."""

    def __init__(self, text: torch.Tensor, block_size: int, rows: int, epochs: int, seed: int):
        n_windows = (text.numel() - 1) // block_size
        unique = math.ceil(rows / epochs)
        if unique > n_windows:
            raise UserError(f"a run of {rows} windows of {block_size + 1} tokens needs {unique} unique windows but the "
                            f"corpus has {n_windows} ({text.numel()} training tokens); lower scaling.steps or raise "
                            "scaling.max_files")
        self.text, self.T = text, block_size
        pool = torch.randperm(n_windows, generator=torch.Generator().manual_seed(seed))[:unique]
        orders = [pool if e == 0 else pool[torch.randperm(unique, generator=torch.Generator().manual_seed(
            seed * 1_000 + e))] for e in range(epochs)]
        self.starts = (torch.cat(orders)[:rows] * block_size).tolist()

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> torch.Tensor:
        s = self.starts[i]
        return self.text[s : s + self.T + 1].long()


def eval_windows(val_text: torch.Tensor, block_size: int, n_tokens: int) -> torch.Tensor:
    """The held-out windows every run is scored on: evenly spaced over the validation files."""
    n = max(1, math.ceil(n_tokens / block_size))
    last = val_text.numel() - block_size - 1
    if last < 0:
        raise UserError(f"the validation text ({val_text.numel()} tokens) is shorter than one window; "
                        "raise scaling.max_files or scaling.val_fraction")
    starts = torch.linspace(0, last, n).long()
    return torch.stack([val_text[s : s + block_size + 1].long() for s in starts.tolist()])


@torch.no_grad()
def held_out_loss(model: GPT, windows: torch.Tensor, batch_size: int = 64) -> float:
    """Mean next-token cross-entropy (nats/token) over every position of `windows`."""
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(windows), batch_size):
        w = windows[i : i + batch_size]
        logits = model(w[:, :-1]).logits.double()
        total += float(F.cross_entropy(logits.transpose(1, 2), w[:, 1:], reduction="sum"))
        count += w[:, 1:].numel()
    model.train()
    return total / count


def unigram_loss(train_text: torch.Tensor, windows: torch.Tensor, vocab: int = 256) -> float:
    """The no-context baseline (nats/token): byte frequencies of the training text, add-one."""
    counts = torch.bincount(train_text.long(), minlength=vocab).double() + 1.0
    logp = torch.log(counts / counts.sum())
    return float(-logp[windows[:, 1:]].mean())


def train_point(ctx, p: Point, train_text: torch.Tensor, val_text: torch.Tensor, windows: torch.Tensor) -> dict:
    """Train one point (Lightning stage `p.stage`) and return its record (what point.json holds)."""
    cfg = ctx.cfg
    torch.manual_seed(cfg.seed)  # the same init for a point whichever process or order trains it
    model = GPT(model_config(cfg, p))
    bs, T = cfg.optim.batch_size, cfg.model.block_size
    optim = dataclasses.replace(cfg.optim, lr=learning_rate(cfg, p),
                                warmup_steps=round(cfg.scaling.warmup_fraction * p.steps))
    train = RepeatedWindows(train_text, T, p.steps * bs, p.epochs, seed=cfg.seed)
    val = windows[: cfg.trainer.limit_val_batches * bs]
    ctx.train_lm(p.stage, model, train, val, steps=p.steps, optim=optim)
    n, d = non_embedding_params(model), tokens(cfg, p)
    return dataclasses.asdict(p) | {"N": n, "D": d, "C": 6.0 * n * d, "lr": optim.lr, "unique_tokens": len(set(train.starts)) * T,
                                    "loss": held_out_loss(model, windows), "seed": cfg.seed}


def write_point(run_dir: Path, record: dict) -> Path:
    from toyrepro.core.io import atomic_write_text

    path = Path(run_dir) / "point.json"
    atomic_write_text(path, json.dumps(record, indent=1))
    return path
