"""The `collapse` experiment, top to bottom (Shumailov et al. 2024, "AI models collapse when
trained on recursively generated data"; arXiv 2305.17493 "The Curse of Recursion").

Three settings, each a chain of G generations where generation g is fit only to samples of
generation g-1 (`chain.run_chain`), once pure and once with 10 % of the original real data kept
in every generation; both chains start from the same generation 0 (fit to real data):

    (a) gaussian.py  a 1-D Gaussian refit from N samples        statistic: sigma
    (b) zipf.py      Zipf(1.1) over V = 1000 refit by counts       statistic: surviving support
    (c) lm.py        the suite's GPT retrained on its own samples  statistic: perplexity on real text

Claims (scorecard), for each setting:
- `<setting>_degrades`: without real data the statistic trends the bad way over generations —
  the least-squares slope's 95 % bootstrap interval lies entirely below 0 (sigma, support) or
  above 0 (perplexity); the value is the interval's end nearest 0;
- `<setting>_mixing_halves`: with 10 % real data the degradation at the last generation
  (generation 0 minus generation G, in the bad direction) is at most half the pure chain's;
  the value is mixed / pure.
A baseline that cannot degrade is reported beside the trend: chains refit to *fresh* real data
every generation (no recursion) for (a) and (b).
"""

from __future__ import annotations

import logging

import matplotlib.pyplot as plt
import numpy as np

from toyrepro.collapse.chain import chain_seed, run_chain
from toyrepro.collapse.config import capped_lm
from toyrepro.collapse.gaussian import GaussianSetting
from toyrepro.collapse.lm import LMSetting
from toyrepro.collapse.trend import bootstrap_slope, degradation, mean_curve, perplexity_curve
from toyrepro.collapse.zipf import ZipfSetting
from toyrepro.core.run import RunContext
from toyrepro.core.scorecard import Claim
from toyrepro.gpt.corpus import load_corpus

log = logging.getLogger("toyrepro")
SOURCE = "Shumailov et al. 2024"
SETTINGS = {  # claim prefix: (statistic, direction that is worse, source, what it is)
    "gaussian": ("sigma", "down", SOURCE + ", §3.2 / Thm 3.1", "sigma of a Gaussian refit from its samples"),
    "zipf": ("support", "down", SOURCE + ", §3.1", "surviving support of a Zipf(1.1) refit by counts"),
    "lm": ("perplexity", "up", SOURCE + ", §4 / Fig. 4", "perplexity on real held-out text of a GPT retrained "
                                                          "on its samples"),
}


def claims(cfg=None) -> list[Claim]:
    out = []
    for name, (stat, worse, source, what) in SETTINGS.items():
        side = "below" if worse == "down" else "above"
        out.append(Claim(f"{name}_degrades", f"{what}: the slope over generations without real data has a 95% "
                         f"bootstrap interval {side} 0 (value = its end nearest 0)", source,
                         "<" if worse == "down" else ">", 0.0, scales=("quick", "full")))
        out.append(Claim(f"{name}_mixing_halves", f"{stat}: with 10% real data the degradation at the last "
                         "generation is at most half the pure chain's (value = mixed / pure)", source,
                         "<=", 0.5, scales=("quick", "full")))
    return out


def run(ctx: RunContext) -> None:
    cfg, c = ctx.cfg, ctx.cfg.collapse
    if cfg.trainer.step_cap is not None:  # the sampling between capped fits is capped too (`capped_lm`)
        c.lm = capped_lm(cfg)
        log.info("trainer.step_cap: collapse.lm.generations=%d, sequences=%d and eval_samples=%d per generation",
                 c.lm.generations, c.lm.sequences, c.lm.eval_samples)
    rng = np.random.default_rng(chain_seed(cfg.seed, 0, "bootstrap"))
    curves: dict[str, dict[str, np.ndarray]] = {}

    gs = GaussianSetting(c.gaussian.samples, c.gaussian.chains, cfg.seed)
    ga = chains(gs, gs.fit(gs.data0), c.gaussian.samples, c.gaussian.generations, c.real_fraction)
    curves["sigma"] = {k: mean_curve(np.stack([s["sigma"] for s in v], 1)) for k, v in ga.items()}
    score(ctx, "gaussian", {k: np.stack([s["sigma"] for s in v], 1) for k, v in ga.items()}, mean_curve, rng,
          control=gs.control(c.gaussian.generations))

    z = c.zipf
    zs = ZipfSetting(z.vocab, z.exponent, z.samples, z.chains, z.tail_rank, cfg.seed)
    za = chains(zs, zs.fit(zs.data0), z.samples, z.generations, c.real_fraction)
    curves["support"] = {k: mean_curve(np.stack([s["support"] for s in v], 1)) for k, v in za.items()}
    curves["tail mass"] = {k: mean_curve(np.stack([s["tail_mass"] for s in v], 1)) for k, v in za.items()}
    score(ctx, "zipf", {k: np.stack([s["support"] for s in v], 1) for k, v in za.items()}, mean_curve, rng,
          control=zs.control(z.generations))

    train_text, val_text = load_corpus(cfg.cache_dir, c.lm.max_files, c.lm.val_fraction)
    lm = LMSetting(ctx, train_text, val_text)
    model0 = lm.fit(lm.data0, 0, "real")
    # the two chains share generation 0 and nothing after it: `workers` at a time (core/parallel.py)
    la = dict(zip(("pure", "mixed"), ctx.side_by_side(lm_chain, [
        (train_text, val_text, model0, c.lm.sequences, c.lm.generations, f, k)
        for k, f in (("pure", 0.0), ("mixed", c.real_fraction))])))
    nll = {k: np.stack([s["nll"] for s in v], 1) for k, v in la.items()}
    curves["perplexity"] = {k: perplexity_curve(v) for k, v in nll.items()}
    curves["distinct n-grams"] = {k: np.array([s["distinct"] for s in v]) for k, v in la.items()}
    curves["tail-byte frequency"] = {k: np.array([s["tail_freq"] for s in v]) for k, v in la.items()}
    real = lm.real_stats()
    score(ctx, "lm", nll, perplexity_curve, rng, extra=f"real data: distinct {real['distinct']:.3f}, tail "
          f"{real['tail_freq']:.4f}; pure last gen: distinct {curves['distinct n-grams']['pure'][-1]:.3f}, "
          f"tail {curves['tail-byte frequency']['pure'][-1]:.4f}")

    for g in range(max(len(v["pure"]) for v in curves.values())):  # one row per generation
        ctx.log_metrics("collapse", {f"{stat.replace(' ', '_')}/{chain}": float(curve[g])
                                     for stat, by_chain in curves.items() for chain, curve in by_chain.items()
                                     if g < len(curve)}, step=g)
    ctx.write_text("curves.md", curves_table(curves))
    ctx.save_figure(curves_figure(curves, real), "collapse")


def lm_chain(ctx: RunContext, train_text, val_text, model0, n: int, generations: int, real_fraction: float,
             chain: str) -> list[dict]:
    """One GPT chain from the shared generation 0 (a job of `ctx.side_by_side`)."""
    return run_chain(LMSetting(ctx, train_text, val_text), model0, n, generations, real_fraction, chain)


def chains(setting, model0, n: int, generations: int, real_fraction: float) -> dict[str, list[dict]]:
    """The pure and the mixed chain from one generation 0."""
    return {"pure": run_chain(setting, model0, n, generations, 0.0, "pure"),
            "mixed": run_chain(setting, model0, n, generations, real_fraction, "mixed")}


def score(ctx: RunContext, name: str, units: dict[str, np.ndarray], statistic, rng, control=None,
          extra: str = "") -> None:
    """Record `<name>_degrades` and `<name>_mixing_halves` from (units, G+1) arrays per chain."""
    c, card = ctx.cfg.collapse, ctx.card
    stat, worse, _, _ = SETTINGS[name]
    slope, low, high = bootstrap_slope(units["pure"], statistic, c.bootstrap, c.confidence, rng)
    note = f"slope {slope:.4g} per generation, {c.confidence:.0%} interval [{low:.4g}, {high:.4g}]"
    if control is not None:
        _, clo, chi = bootstrap_slope(control, statistic, c.bootstrap, c.confidence, rng)
        note += f"; fresh real data each generation: [{clo:.3g}, {chi:.3g}]"
    card.record(f"{name}_degrades", high if worse == "down" else low, note + (f"; {extra}" if extra else ""))
    pure, mixed = (statistic(units[k]) for k in ("pure", "mixed"))
    d_pure, d_mixed = degradation(pure, worse), degradation(mixed, worse)
    ratio = d_mixed / d_pure if d_pure > 0 else float("nan")
    card.record(f"{name}_mixing_halves", ratio, f"{stat} gen 0 {pure[0]:.4g}; last gen pure {pure[-1]:.4g}, "
                f"mixed {mixed[-1]:.4g} (degradation {d_pure:.4g} vs {d_mixed:.4g})")
    log.info("%s: %s; mixing ratio %.3f", name, note, ratio)


def curves_table(curves: dict[str, dict[str, np.ndarray]]) -> str:
    lines = []
    for stat, by_chain in curves.items():
        g = len(by_chain["pure"])
        shown = sorted(set(np.linspace(0, g - 1, min(g, 11)).round().astype(int)))
        lines += [f"### {stat}", "", "| chain | " + " | ".join(f"gen {i}" for i in shown) + " |",
                  "|---" * (len(shown) + 1) + "|"]
        lines += [f"| {k} | " + " | ".join(f"{v[i]:.4g}" for i in shown) + " |" for k, v in by_chain.items()]
        lines.append("")
    return "\n".join(lines)


def curves_figure(curves: dict[str, dict[str, np.ndarray]], real: dict[str, float]) -> plt.Figure:
    fig, axes = plt.subplots(2, 3, figsize=(12, 6.5))
    titles = {"sigma": "(a) Gaussian: sigma", "support": "(b) Zipf: surviving support",
              "tail mass": "(b) Zipf: mass of ranks > tail_rank", "perplexity": "(c) GPT: perplexity on real text",
              "distinct n-grams": "(c) GPT: distinct n-grams in samples",
              "tail-byte frequency": "(c) GPT: tail-byte frequency in samples"}
    refs = {"distinct n-grams": real["distinct"], "tail-byte frequency": real["tail_freq"]}
    for ax, (stat, by_chain) in zip(axes.flat, curves.items()):
        for chain, curve in by_chain.items():
            ax.plot(curve, "-" if chain == "pure" else "--", marker="o" if len(curve) <= 30 else None, ms=3,
                    label="no real data" if chain == "pure" else "10% real data")
        if stat in refs:
            ax.axhline(refs[stat], color="#999", lw=0.8, ls=":", label="real data")
        ax.set_title(titles[stat], fontsize=9)
        ax.set_xlabel("generation")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
