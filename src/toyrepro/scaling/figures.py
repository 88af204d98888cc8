"""The write-up's figures: loss vs compute with the fitted law and its frontier (Hoffmann
Fig. 2-3 style, with approach 2's IsoFLOP profiles beside it), predicted vs measured for the
held-out runs, and loss vs epochs of the repetition arm (Muennighoff Fig. 3 style)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from toyrepro.scaling.law import Law


def compute_figure(grid: list[dict], held: set[int], law: Law, profiles: list[dict]) -> plt.Figure:
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    sizes = sorted({r["N"] for r in grid})
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(sizes)))
    for n, c in zip(sizes, colors):
        rows = sorted((r for r in grid if r["N"] == n), key=lambda r: r["D"])
        C = np.array([r["C"] for r in rows])
        ax.plot(C, [r["loss"] for r in rows], "-", color=c, alpha=0.6)
        for r in rows:
            ax.plot(r["C"], r["loss"], "o", color=c, mfc="none" if r["index"] in held else c)
        D = np.geomspace(rows[0]["D"], rows[-1]["D"] * 2, 30)
        ax.plot(6 * n * D, law.loss(n, D), ":", color=c, label=f"N={n / 1e3:.1f}k")
    allC = np.array([r["C"] for r in grid])
    Cs = np.geomspace(allC.min(), allC.max() * 2, 50)
    ax.plot(Cs, law.frontier(Cs), "k--", label=f"fitted frontier, N_opt ∝ C^{law.optimal_exponent:.2f}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("compute C = 6ND (FLOPs)")
    ax.set_ylabel("held-out loss (nats/byte)")
    ax.set_title("runs (filled: fitted, hollow: held out) and the law (dotted)")
    ax.legend(fontsize=7)
    for prof in profiles:
        line, = ax2.plot(np.exp(prof["logN"]), prof["loss"], "o-", label=f"C={prof['C']:.1e}")
        if prof["N_opt"]:
            ax2.axvline(prof["N_opt"], color=line.get_color(), ls=":", lw=1)
    ax2.set_xscale("log")
    ax2.set_xlabel("non-embedding parameters N")
    ax2.set_ylabel("loss (interpolated between budgets)")
    ax2.set_title("approach 2: IsoFLOP profiles (dotted: their minima)")
    if profiles:
        ax2.legend(fontsize=7)
    else:  # e.g. the quick grid: sizes 2.2-3x apart, a 4x range of D per size
        ax2.text(0.5, 0.5, "no compute level with >= 3 sizes\ninside their trained budgets", ha="center",
                 va="center", transform=ax2.transAxes)
    fig.tight_layout()
    return fig


def holdout_figure(grid: list[dict], held: set[int], law: Law) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(4.5, 4))
    meas = np.array([r["loss"] for r in grid])
    pred = law.loss([r["N"] for r in grid], [r["D"] for r in grid])
    is_held = np.array([r["index"] in held for r in grid])
    lo, hi = min(meas.min(), pred.min()) * 0.97, max(meas.max(), pred.max()) * 1.03
    xs = np.array([lo, hi])
    ax.fill_between(xs, xs * 0.98, xs * 1.02, color="#ddd", label="±2 %")
    ax.plot(xs, xs, "k-", lw=0.8)
    ax.plot(meas[~is_held], pred[~is_held], "o", color="#369", label="fitted runs")
    ax.plot(meas[is_held], pred[is_held], "s", color="#c33", label="held out (largest C)")
    ax.set_xlabel("measured loss")
    ax.set_ylabel("predicted by the fitted law")
    ax.legend(fontsize=8)
    ax.set_title("predicted vs measured")
    return fig


def repetition_figure(arm: list[dict]) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(4.5, 3.5))
    epochs = [r["epochs"] for r in arm]
    cost = [100 * (r["loss"] / arm[0]["loss"] - 1) for r in arm]
    ax.axhspan(-2, 2, color="#ddd", label="±2 %")
    ax.plot(epochs, cost, "o-", color="#369", label="repeated (same tokens, same model)")
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xscale("log", base=2)
    ax.set_xticks(epochs, [str(e) for e in epochs])
    ax.set_xlabel("epochs over the unique data (unique = D / epochs)")
    ax.set_ylabel("loss vs unique data (%)")
    ax.set_title(f"repetition at fixed compute (N={arm[0]['N'] / 1e3:.1f}k, D={arm[0]['D'] / 1e6:.2f}M)")
    ax.legend(fontsize=8)
    return fig


def point_figure(record: dict, unigram: float) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.bar(["unigram", f"GPT N={record['N']}"], [unigram, record["loss"]], color=["#999", "#369"])
    ax.set_ylabel("held-out loss (nats/byte)")
    ax.set_title(f"point {record['index']}: D={record['D']}, {record['epochs']} epoch(s)")
    return fig
