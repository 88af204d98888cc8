"""The write-up's three figures, from the results dicts of `experiment.task_a` / `task_b`.

- `models_figure`: task A accuracy and task B MSE per model (with chance, the
  time-unaware ceiling and the trivial predictors drawn as lines);
- `sampling_figure`: task B MSE against the sampling probability p for the models trained
  at p = train_keep, and the regular-sampling control (trained at p = 1) as markers;
- `params_figure`: effective parameters against task B MSE (and task A error).
"""

from __future__ import annotations

import matplotlib.pyplot as plt

from toyrepro.liquid.models import MODELS

COLORS = {"cfc": "#1f77b4", "cfc_no_gaps": "#9ecae1", "ltc": "#2ca02c", "lstm": "#d62728",
          "lstm_aug": "#ff7f0e", "wired_cfc": "#9467bd"}


def models_figure(a: dict, b: dict, p_train: float) -> plt.Figure:
    fig, (ax_a, ax_b) = plt.subplots(1, 2, figsize=(11, 3.8))
    kinds = list(MODELS)
    labels = [MODELS[k] for k in kinds]
    acc = [a["models"][k]["accuracy"] for k in kinds]
    ax_a.bar(range(len(kinds)), acc, color=[COLORS[k] for k in kinds])
    ax_a.axhline(0.1, color="#777", ls=":", lw=1, label="chance")
    ax_a.axhline(a["ceiling"], color="#333", ls="--", lw=1, label="time-unaware ceiling")
    ax_a.axhline(0.85, color="#1f77b4", ls="-.", lw=1, label="claim: CfC >= 0.85")
    for i, v in enumerate(acc):
        ax_a.text(i, v, f"{v:.2f}", ha="center", va="bottom", fontsize=8)
    ax_a.set_xticks(range(len(kinds)), labels, rotation=30, ha="right", fontsize=8)
    ax_a.set_ylim(0, 1.05)
    ax_a.set_ylabel("test accuracy")
    ax_a.set_title("A: event-based digits (higher is better)")
    ax_a.legend(fontsize=7, loc="upper right")

    err = [b["models"][k]["mse"][p_train] for k in kinds]
    bl = b["baselines"][p_train]
    ax_b.bar(range(len(kinds)), err, color=[COLORS[k] for k in kinds])
    ax_b.axhline(bl["persistence"], color="#333", ls="--", lw=1, label="persistence (last value)")
    for i, v in enumerate(err):
        ax_b.text(i, v, f"{v:.4f}", ha="center", va="bottom", fontsize=7)
    ax_b.set_xticks(range(len(kinds)), labels, rotation=30, ha="right", fontsize=8)
    ax_b.set_ylabel(f"test MSE of the next grid value (p = {p_train:g})")
    ax_b.set_title("B: dropped-frame oscillators (lower is better)")
    ax_b.legend(fontsize=7)
    fig.subplots_adjust(wspace=0.3)  # (no tight_layout: it costs seconds; savefig crops the margins)
    return fig


def sampling_figure(b: dict, p_train: float) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for k, label in MODELS.items():
        ps = sorted(b["models"][k]["mse"])
        ax.plot(ps, [b["models"][k]["mse"][p] for p in ps], "o-", color=COLORS[k], label=f"{label} (trained p={p_train:g})")
    for k, v in b["control"].items():
        ax.plot([1.0], [v], "*", ms=12, color=COLORS[k], mec="k", label=f"{MODELS[k]} (trained p=1)")
    ps = sorted(b["baselines"])
    ax.plot(ps, [b["baselines"][p]["persistence"] for p in ps], "k--", lw=1, label="persistence")
    ax.axvline(p_train, color="#aaa", lw=1)
    ax.set_yscale("log")
    ax.set_xlabel("probability p that a grid step is observed")
    ax.set_ylabel("test MSE (log)")
    ax.set_title("B: sampling-rate shift")
    ax.legend(fontsize=6, loc="upper right")
    return fig


def params_figure(a: dict, b: dict, p_train: float) -> plt.Figure:
    fig, (ax_b, ax_a) = plt.subplots(1, 2, figsize=(10, 3.8))
    for k, label in MODELS.items():
        for ax, r, y in ((ax_b, b, b["models"][k]["mse"][p_train]), (ax_a, a, 1 - a["models"][k]["accuracy"])):
            n = r["models"][k]["params"]
            ax.scatter([n], [y], color=COLORS[k], s=40)
            ax.annotate(label, (n, y), fontsize=7, xytext=(4, 3), textcoords="offset points")
    for ax in (ax_a, ax_b):
        ax.set_xscale("log")
        ax.set_xlabel("effective parameters (masked synapses not counted)")
    ax_b.set_yscale("log")
    ax_b.set_ylabel(f"B: test MSE (p = {p_train:g}, log)")
    ax_a.set_ylabel("A: test error (1 - accuracy)")
    ax_b.set_title("parameters vs error, task B")
    ax_a.set_title("parameters vs error, task A")
    fig.subplots_adjust(wspace=0.3)
    return fig
