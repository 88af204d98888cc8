"""The two figures issue 22 asks for: gold gain vs labels used per arm, and gold gain vs KL."""

from __future__ import annotations

import matplotlib.pyplot as plt

STYLE = {"static": ("s-", "#444444"), "online": ("o-", "#1f77b4"), "active": ("^-", "#2ca02c"),
         "self_reward": ("x-", "#d62728"), "crowd": ("v-", "#ff7f0e")}
LABEL = {"static": "static (SFT pairs up front)", "online": "online (expert)", "active": "online + active (expert)",
         "self_reward": "self-rewarding (no expert; x = pairs self-judged)", "crowd": "online (crowd)"}


def labels_figure(results: dict[str, dict[int, list[dict]]], budgets: list[int]) -> plt.Figure:
    """Final gain of each arm at each budget (solid), and the largest budget's rounds (dotted)."""
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for arm, by_b in results.items():
        style, color = STYLE[arm]
        x = "pairs" if arm == "self_reward" else "labels"
        ax.plot([by_b[b][-1][x] for b in budgets], [by_b[b][-1]["gain"] for b in budgets], style, color=color,
                ms=5, label=LABEL[arm])
        big = by_b[max(budgets)][1:]  # its rounds (the SFT start has 0 labels: off a log axis)
        if len(big) > 1:
            ax.plot([p[x] for p in big], [p["gain"] for p in big], ":", color=color, alpha=0.6, lw=1)
    ax.axhline(0, color="#999", lw=0.8)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("expert labels used (pairwise questions answered)")
    ax.set_ylabel("gold reward gain over SFT (SFT std)")
    ax.set_title(f"gold vs labels (dotted: rounds of the B={max(budgets)} run)")
    ax.legend(fontsize=7)
    return fig


def frontier_figure(results: dict[str, dict[int, list[dict]]]) -> plt.Figure:
    """Every evaluated policy's (KL to SFT, gain); each arm's budgets joined in order of B."""
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for arm, by_b in results.items():
        style, color = STYLE[arm]
        finals = [by_b[b][-1] for b in sorted(by_b)]
        ax.plot([p["kl"] for p in finals], [p["gain"] for p in finals], style, color=color, ms=5, label=LABEL[arm])
        for traj in by_b.values():
            ax.plot([p["kl"] for p in traj], [p["gain"] for p in traj], ":", color=color, alpha=0.35, lw=1)
    ax.axhline(0, color="#999", lw=0.8)
    ax.set_xlabel("KL(policy || SFT), nats")
    ax.set_ylabel("gold reward gain over SFT (SFT std)")
    ax.set_title("gold vs KL frontier (markers: budgets; dotted: rounds)")
    ax.legend(fontsize=7)
    return fig


def load_results(path) -> tuple[dict[str, dict[int, list[dict]]], list[int]]:
    """A run's results.json back as (results by arm and budget, budgets): to redraw its figures."""
    import json

    arms = json.loads(open(path).read())["arms"]
    results = {arm: {int(b): t for b, t in by_b.items()} for arm, by_b in arms.items()}
    return results, sorted(next(iter(results.values())))
