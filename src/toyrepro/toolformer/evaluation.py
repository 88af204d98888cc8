"""What the toolformer scorecard measures, and its tables and figures.

- exact-answer accuracy on held-out questions (Schick et al. 2023, §4.2 "Math", Table 4:
  the paper checks the first number the model generates; we check the number after the
  call, with the call removed, equals the calculator's result exactly);
- call rate: share of questions on which a call was started (paper §4.2: 97.9 %);
- held-out perplexity of plain text with the API disabled (paper §4.4, Table 8).
"""

from __future__ import annotations

import math
from collections import defaultdict

import matplotlib.pyplot as plt
import numpy as np
import torch

from toyrepro.core.transformer import GPT
from toyrepro.toolformer.corpus import OPS, CharTokenizer, Question
from toyrepro.toolformer.decoding import Decoded
from toyrepro.toolformer.filtering import text_token_losses

OP_NAMES = {"+": "+", "-": "−", "*": "×", "/": "÷"}


def accuracy(qs: list[Question], outs: list[Decoded]) -> float:
    return sum(o.answer == q.answer for q, o in zip(qs, outs)) / max(1, len(qs))


def call_rate(outs: list[Decoded]) -> float:
    return sum(o.called for o in outs) / max(1, len(outs))


def accuracy_grid(qs: list[Question], outs: list[Decoded], max_a: int) -> np.ndarray:
    """Accuracy by (operation, digits of a): rows follow OPS, columns 1..max_a digits."""
    hits, n = defaultdict(int), defaultdict(int)
    for q, o in zip(qs, outs):
        n[(q.op, q.a_digits)] += 1
        hits[(q.op, q.a_digits)] += int(o.answer == q.answer)
    return np.array([[hits[(op, d)] / n[(op, d)] if n[(op, d)] else np.nan for d in range(1, max_a + 1)]
                     for op in OPS])


def perplexity(model: GPT, tok: CharTokenizer, texts: list[str], batch: int) -> float:
    """exp(mean −log p) per character of held-out plain text, "[" banned (API disabled)."""
    was = model.training
    model.eval()
    nll = text_token_losses(model, tok, [""] * len(texts), texts, batch, ban=tok.id("["))
    model.train(was)
    return math.exp(float(torch.cat(nll).mean()))


def grid_markdown(grids: dict[str, np.ndarray], max_a: int) -> str:
    lines = []
    for name, g in grids.items():
        lines += [f"### {name}", "", "| op \\ digits of a | " + " | ".join(str(d) for d in range(1, max_a + 1)) + " |",
                  "|---" * (max_a + 1) + "|"]
        for op, row in zip(OPS, g):
            lines.append(f"| {OP_NAMES[op]} | " + " | ".join(f"{v:.2f}" for v in row) + " |")
        lines.append("")
    return "\n".join(lines)


def grid_figure(grids: dict[str, np.ndarray], max_a: int) -> plt.Figure:
    fig, axes = plt.subplots(1, len(grids), figsize=(3.2 * len(grids), 2.8), squeeze=False)
    for ax, (name, g) in zip(axes[0], grids.items()):
        im = ax.imshow(g, vmin=0, vmax=1, cmap="viridis", aspect="auto")
        ax.set_xticks(range(max_a), [str(d) for d in range(1, max_a + 1)])
        ax.set_yticks(range(len(OPS)), [OP_NAMES[o] for o in OPS])
        ax.set_xlabel("digits of a")
        ax.set_title(name, fontsize=9)
        for (r, c), v in np.ndenumerate(g):
            ax.text(c, r, f"{v:.2f}", ha="center", va="center", fontsize=7, color="w" if v < 0.6 else "k")
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="exact-answer accuracy")
    return fig


def gain_histogram(gains: list[float], kept_useful: list[bool], tau_f: float) -> plt.Figure:
    """Distribution of L⁻ − L⁺ over all candidates, split by whether the call is useful."""
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    g = np.array(gains)
    u = np.array(kept_useful, dtype=bool)
    bins = np.linspace(min(-1.0, g.min(initial=0)), max(3.0, g.max(initial=0)), 50)
    ax.hist(g[~u], bins=bins, alpha=0.7, label="result not in next tokens", color="#999")
    ax.hist(g[u], bins=bins, alpha=0.7, label="result in next tokens", color="#369")
    ax.axvline(tau_f, color="r", ls="--", label=f"τ_f = {tau_f}")
    ax.set_yscale("log")
    ax.set_xlabel("L⁻ − L⁺ (nats)")
    ax.set_ylabel("candidates")
    ax.legend(fontsize=7)
    ax.set_title("filter: loss reduction of sampled calls")
    return fig
