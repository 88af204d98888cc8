"""The write-up's figures: error vs k (Garg et al. 2022 Fig. 2), probe R^2 per layer
(Akyürek et al. 2022 §4), and the out-of-distribution curves (Garg §4)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from toyrepro.icl.evaluate import TRANSFORMER

STYLE = {TRANSFORMER: dict(color="#c33", lw=2.5, zorder=5), "least squares": dict(color="#36c", ls="--"),
         "averaging": dict(color="#999"), "1 GD step": dict(color="#c90")}


def _plot_curves(ax, curves: dict[str, np.ndarray], dims: int, title: str) -> None:
    ks = np.arange(len(next(iter(curves.values()))))
    for name, err in curves.items():
        ax.plot(ks, err, marker="o", ms=3, label=name, **STYLE.get(name, {}))
    ax.axvline(dims, color="k", lw=0.6, ls=":")
    ax.set_xlabel("in-context examples k")
    ax.set_title(title)
    ax.set_ylim(-0.02, 1.3)


def error_figure(clean: dict[str, np.ndarray], noisy: dict[str, np.ndarray], dims: int, noise_std: float) -> plt.Figure:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    ks = np.arange(dims)
    axes[0].plot(ks, (dims - ks) / dims, color="k", lw=0.8, ls="-.", label="(d - k)/d (min-norm theory)")
    _plot_curves(axes[0], clean, dims, f"noiseless linear regression, d={dims}")
    _plot_curves(axes[1], noisy, dims, f"noisy labels, sigma^2={noise_std ** 2:g} (separate model)")
    axes[0].set_ylabel("squared error / d")
    for ax in axes:
        ax.legend(fontsize=8)
    return fig


def probe_figure(probes: dict[str, np.ndarray], ks: list[int], probe_k: int, dims: int) -> plt.Figure:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    i = ks.index(probe_k)
    layers = np.arange(probes["w_hat"].shape[1])
    axes[0].plot(layers, probes["w_hat"][i], marker="o", color="#c33", label="target w_hat_k (least squares)")
    axes[0].plot(layers, probes["w"][i], marker="s", color="#36c", ls="--", label="target w (true weights)")
    axes[0].axhline(probes["raw_prompt_w_hat"][i], color="#999", ls=":", label="w_hat from the raw prompt")
    axes[0].axhline(0.8, color="k", lw=0.6)
    axes[0].set_xlabel("layer (0 = read-in)")
    axes[0].set_ylabel("held-out probe R^2")
    axes[0].set_title(f"linear probes at the query after k={probe_k} examples")
    axes[0].set_ylim(-0.1, 1.02)
    axes[0].legend(fontsize=8)
    im = axes[1].imshow(probes["w_hat"].T, origin="lower", aspect="auto", vmin=0, vmax=1, cmap="viridis",
                        extent=(ks[0] - 0.5, ks[-1] + 0.5, -0.5, len(layers) - 0.5))
    axes[1].axvline(dims - 0.5, color="w", lw=0.8, ls=":")
    axes[1].set_xlabel("in-context examples k")
    axes[1].set_ylabel("layer")
    axes[1].set_title("probe R^2 for w_hat_k, every k and layer")
    fig.colorbar(im, ax=axes[1])
    return fig


def ood_figure(ood: dict[str, dict[str, np.ndarray]], dims: int) -> plt.Figure:
    fig, axes = plt.subplots(1, len(ood), figsize=(4.5 * len(ood), 3.8))
    for ax, (name, curves) in zip(np.atleast_1d(axes), ood.items()):
        _plot_curves(ax, curves, dims, name)
        ax.set_ylim(-0.02, max(1.3, 1.1 * max(float(np.max(c)) for c in curves.values())))
        ax.legend(fontsize=8)
    np.atleast_1d(axes)[0].set_ylabel("squared error / d")
    fig.suptitle("noiseless model, out of distribution (Garg §4)")
    return fig
