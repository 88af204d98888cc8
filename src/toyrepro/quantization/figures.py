"""Figures and tables of a quantization run: metrics vs bits per weight, one line per scheme."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt

from toyrepro.quantization.formats import parse
from toyrepro.quantization.measure import FormatResult

SCHEMES = {"gguf": "llama.cpp blocks (gguf)", "tensor": "RTN per tensor", "channel": "RTN per channel",
           "g128": "RTN group 128", "g32": "RTN group 32"}
COLORS = {"gguf": "C0", "tensor": "C1", "channel": "C2", "g128": "C3", "g32": "C4"}  # one colour per scheme in every panel


def scheme(name: str) -> str:
    fmt = parse(name)
    return f"g{fmt.group}" if fmt.scheme == "group" else fmt.scheme


def _series(results: list[FormatResult]) -> dict[str, list[FormatResult]]:
    out: dict[str, list[FormatResult]] = {}
    for r in results:
        if r.name != "f32":
            out.setdefault(scheme(r.name), []).append(r)
    return {k: sorted(v, key=lambda r: r.bits_per_weight) for k, v in out.items()}


def curves_figure(results: list[FormatResult]) -> plt.Figure:
    """Perplexity (log scale), recall and LRE faithfulness vs bits per weight; f32 as a dashed line."""
    ref = next(r for r in results if r.name == "f32")
    panels = [("perplexity", lambda r: r.perplexity, True), ("fact recall", lambda r: r.recall, False),
              ("LRE faithfulness", lambda r: r.faithfulness(), False)]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, (label, get, log_y) in zip(axes, panels):
        for key, rs in _series(results).items():
            pts = [(r.bits_per_weight, get(r)) for r in rs if not math.isnan(get(r))]
            if pts:
                ax.plot(*zip(*pts), marker="o", color=COLORS.get(key), label=SCHEMES.get(key, key))
                if key == "gguf":
                    for (x, y), r in zip(pts, [r for r in rs if not math.isnan(get(r))]):
                        ax.annotate(r.name, (x, y), fontsize=6, textcoords="offset points", xytext=(2, 3))
        if not math.isnan(get(ref)):
            ax.axhline(get(ref), color="k", ls="--", lw=0.8, label="f32 (reference)")
        ax.set_xlabel("bits per weight (incl. scales)")
        ax.set_ylabel(label)
        if log_y:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    for ax in axes:
        if ax.lines:
            ax.legend(fontsize=6)
    fig.tight_layout()
    return fig


def error_figure(results: list[FormatResult]) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for key, rs in _series(results).items():
        ax.plot([r.bits_per_weight for r in rs], [r.weight_error for r in rs], marker="o", color=COLORS.get(key),
                label=SCHEMES.get(key, key))
    ax.set_yscale("log")
    ax.set_xlabel("bits per weight (incl. scales)")
    ax.set_ylabel("relative weight error ||W_q - W|| / ||W||")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return fig


def _f(x: float, spec: str = ".3f") -> str:
    return "—" if math.isnan(x) else format(x, spec)


def format_table(results: list[FormatResult]) -> str:
    ref = next(r for r in results if r.name == "f32")
    head = ("| format | bits/weight | weight error | perplexity | Δppl | recall | Δrecall | faithfulness | causality |\n"
            "|---|---|---|---|---|---|---|---|---|\n")
    rows = [f"| {r.name} | {r.bits_per_weight:.3f} | {r.weight_error:.4f} | {r.perplexity:.4f} | "
            f"{100 * (r.perplexity / ref.perplexity - 1):+.2f} % | {r.recall:.3f} | {r.recall - ref.recall:+.3f} | "
            f"{_f(r.faithfulness())} | {_f(r.causality())} |" for r in results]
    return head + "\n".join(rows) + "\n"


def relation_table(results: list[FormatResult]) -> str:
    """Per relation and LRE format: recall / faithfulness / causality."""
    lre = [r for r in results if r.lre]
    if not lre:
        return ""
    names = list(lre[0].relations)
    head = ("\nper relation (recall / faithfulness / causality):\n\n| format | " + " | ".join(names) + " |\n|---|"
            + "---|" * len(names) + "\n")
    rows = [f"| {r.name} | " + " | ".join(f"{x.recall:.2f} / {_f(x.faithfulness, '.2f')} / {_f(x.causality, '.2f')}"
                                          for x in (r.relations[n] for n in names)) + " |" for r in lre]
    return head + "\n".join(rows) + "\n"
