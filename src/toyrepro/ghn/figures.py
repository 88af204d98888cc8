"""The write-up's figures: accuracy per split (GHN-2 Table 2 as bars) and accuracy vs Adam steps."""

from __future__ import annotations

import matplotlib.pyplot as plt

LABELS = {"ghn2": "GHN-2", "ghn1": "GHN-1", "mlp": "MLP hypernet", "random": "random init",
          "trained": "trained (Adam)"}
COLORS = {"ghn2": "#369", "ghn1": "#8ac", "mlp": "#c96", "random": "#999", "trained": "#393"}


def splits_figure(mean: dict[str, dict[str, float]], splits: tuple[str, ...]) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(7, 3.2))
    names = [n for n in LABELS if n in mean]
    width = 0.8 / len(names)
    for j, name in enumerate(names):
        xs = [i + (j - (len(names) - 1) / 2) * width for i in range(len(splits))]
        ax.bar(xs, [mean[name][s] for s in splits], width, label=LABELS[name], color=COLORS[name])
    ax.set_xticks(range(len(splits)), [s.replace("_", "-").upper() for s in splits])
    ax.axhline(10, color="k", lw=0.6, ls=":")
    ax.set_ylabel("mean test accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title("parameters predicted in one forward pass (no training) vs baselines")
    ax.legend(fontsize=7, ncol=5, loc="upper center", bbox_to_anchor=(0.5, -0.12))
    return fig


def adam_figure(steps: list[int], from_random: list[float], from_ghn: list[float], random0: float,
                ghn0: float) -> plt.Figure:
    """Mean ID test accuracy after k Adam steps (k = 0: the init itself), from both inits."""
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ks = [0.5, *steps]  # k = 0 drawn at 0.5 on the log axis
    ax.plot(ks, [random0, *from_random], "o-", color="#999", label="from random init")
    ax.plot(ks, [ghn0, *from_ghn], "o-", color="#369", label="from GHN-2 prediction")
    ax.axhline(ghn0, color="#369", lw=0.6, ls="--")
    ax.set_xscale("log")
    ax.set_xticks(ks, ["0", *map(str, steps)])
    ax.set_xlabel("Adam steps (lr tuned on validation per k)")
    ax.set_ylabel("mean test accuracy (%)")
    ax.set_title("ID architectures: fine-tuning from both inits")
    ax.legend(fontsize=8)
    return fig
