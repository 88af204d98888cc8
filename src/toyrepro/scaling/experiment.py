"""The `scaling` experiment, top to bottom: train the (N, D) grid and the repetition arm ->
fit L(N, D) = E + A/N^alpha + B/D^beta without the largest-compute runs -> predict them ->
compute-optimal exponent -> the cost of repeated data.

Hoffmann et al. 2022 (Chinchilla) §3.2-3.3, App. D.2; Muennighoff et al. 2023 §4-5. The
runs are the suite's GPT on the gpt experiment's corpus (grid.py); the law and its fit are
law.py. `scaling_point` (run_point) trains one point per job, so the grid can run as a
sweep; `scaling.from_sweep=<dir>` makes this experiment read those points (sweep.py)
instead of training them, and the rest of `run` is the same code.

Claims (issue 21's thresholds, fixed before any run; every seed at scale=quick):
- `holdout_within_2pct`: max over held-out runs of |predicted / measured - 1| <= 0.02;
- `exponents_in_range`: alpha and beta in [0.2, 0.8], scored as max(|alpha-0.5|, |beta-0.5|) <= 0.3;
- `optimal_N_exponent`: N_opt ∝ C^a with a = beta/(alpha+beta) in [0.3, 0.7], as |a - 0.5| <= 0.2;
- `repeat_4_epochs_cost`: max over 1 < epochs <= 4 of L_e / L_1 - 1 <= 0.02 (Muennighoff: negligible);
- `repeat_16_epochs_cost`: L at the most epochs (>= 16 at quick) / L_1 - 1, minus the worst
  <= 4-epoch cost, >= 0.02: "clearly larger" read as at least the 2 % bound above the 4-epoch
  cost (the issue gives no number; this reading was fixed before any run). The note gives
  the ratio of the two costs.
Deviations from the papers: see grid.py and law.py (N non-embedding; L-BFGS from the best
32 grid starts; IsoFLOP profiles interpolated between budgets); byte-level models of
3k-150k parameters on ~10 MB of Python instead of 70M-16B on 1.4T tokens.
"""

from __future__ import annotations

import json
import logging

import numpy as np

from toyrepro.core.checks import UserError
from toyrepro.core.run import RunContext
from toyrepro.core.scorecard import QF, Claim
from toyrepro.gpt.corpus import load_corpus
from toyrepro.scaling.figures import compute_figure, holdout_figure, point_figure, repetition_figure
from toyrepro.scaling.grid import eval_windows, points, train_point, unigram_loss, write_point
from toyrepro.scaling.law import bootstrap, fit_law, interval, isoflop_optima, power_exponent
from toyrepro.scaling.sweep import read_sweep

log = logging.getLogger("toyrepro")
HOFFMANN = "Hoffmann et al. 2022 §3.3, App. D.2 (approach 3)"
MUENNIGHOFF = "Muennighoff et al. 2023 §4-5, Fig. 3"


def claims(cfg=None) -> list[Claim]:
    return [
        Claim("holdout_within_2pct", "the law fitted without the largest-compute runs predicts each of them "
              "within 2 % (value: worst |predicted / measured - 1|)", HOFFMANN, "<=", 0.02, scales=QF),
        Claim("exponents_in_range", "alpha and beta lie in [0.2, 0.8] (Chinchilla 0.34, 0.28; Epoch AI 0.35, 0.37) "
              "(value: max(|alpha - 0.5|, |beta - 0.5|))", HOFFMANN, "<=", 0.3, scales=QF),
        Claim("optimal_N_exponent", "compute-optimal N grows as C^a, a = beta / (alpha + beta) in [0.3, 0.7] "
              "(Chinchilla ~0.5) (value: |a - 0.5|)", "Hoffmann et al. 2022 eq. 4, Table 2", "<=", 0.2, scales=QF),
        Claim("repeat_4_epochs_cost", "up to 4 epochs of repeated data cost <= 2 % loss vs unique data at the same "
              "tokens (value: max over epochs <= 4 of L_e / L_1 - 1)", MUENNIGHOFF, "<=", 0.02, scales=QF),
        Claim("repeat_16_epochs_cost", "at >= 16 epochs the cost is clearly larger: at least 2 points above the "
              "<= 4-epoch cost (value: cost at the most epochs - worst cost at <= 4)", MUENNIGHOFF, ">=", 0.02,
              scales=QF),
    ]


def point_claims(cfg=None) -> list[Claim]:
    return [Claim("beats_unigram", "the point's GPT learns the corpus: held-out loss below the byte-unigram "
                  "baseline (value: unigram - model, nats/byte)", "sanity check of one grid point", ">", 0.0,
                  scales=QF)]


def run(ctx: RunContext) -> None:
    cfg, s = ctx.cfg, ctx.cfg.scaling
    train_text, val_text = load_corpus(cfg.cache_dir, s.max_files, s.val_fraction)
    windows = eval_windows(val_text, cfg.model.block_size, s.eval_tokens)
    unigram = unigram_loss(train_text, windows)
    todo = points(cfg)
    if s.from_sweep:
        records = read_sweep(s.from_sweep, ctx.config_dict, len(todo))
    else:  # this job trains every point (the arm's 1-epoch run is a grid point, trained once), `workers`
        # at a time, the longest first: a step costs ~5 ms + 2 us x n_layer x width^2 (2 CPU cores, one thread)
        records = ctx.side_by_side(train_point, [(p, train_text, val_text, windows) for p in todo],
                                   cost=[p.steps * (1 + p.n_layer * p.n_embd**2 / 2500) for p in todo])
    grid = [r for r in records if r["epochs"] == 1]
    held = {r["index"] for r in sorted(grid, key=lambda r: -r["C"])[: s.holdout]}
    fitted = [r for r in grid if r["index"] not in held]
    log.info("fitting %d runs, holding out %d (largest compute); unigram %.3f nats/byte",
             len(fitted), len(held), unigram)

    # Hoffmann approach 3 on the fitted runs, bootstrap over runs for intervals
    N, D, L = (np.array([r[k] for r in fitted], float) for k in ("N", "D", "loss"))
    law = fit_law(N, D, L, s.huber_delta, s.lbfgs_starts)
    boot = bootstrap(N, D, L, law, s.bootstrap, cfg.seed, s.huber_delta, s.bootstrap_starts)
    intervals = {k: interval([getattr(b, k) for b in boot]) for k in ("alpha", "beta", "E", "A", "B")}
    intervals["a"] = interval([b.optimal_exponent for b in boot])
    log.info("law: %s; 90%% intervals %s", law, intervals)

    # Hoffmann approach 2 (IsoFLOP profiles interpolated on the grid), the cross-check
    sizes = sorted({r["size"] for r in grid})
    by = {(r["size"], r["budget"]): r for r in grid}
    budgets = sorted({r["budget"] for r in grid})
    C2, N2, profiles = isoflop_optima([by[i, 0]["N"] for i in sizes], [[by[i, j]["D"] for j in budgets] for i in sizes],
                                      np.array([[by[i, j]["loss"] for j in budgets] for i in sizes]))
    a2 = power_exponent(C2, N2)

    score_holdout(ctx.card, [r for r in grid if r["index"] in held], fitted, law)
    score_exponents(ctx.card, law, intervals, a2, len(C2))
    arm = sorted((r for r in records if r["size"] == s.repeat_size and r["budget"] == s.repeat_budget % len(s.steps)),
                 key=lambda r: r["epochs"])
    score_repetition(ctx.card, arm, unigram)

    ctx.write_text("results.json", json.dumps(
        {"runs": records, "held_out": sorted(held), "law": law.as_dict(), "intervals_90": intervals,
         "bootstrap": [b.as_dict() for b in boot], "approach2": {"a": a2, "C": C2.tolist(), "N_opt": N2.tolist(),
                                                                 "profiles": profiles},
         "unigram": unigram}, indent=1))
    ctx.save_figure(compute_figure(grid, held, law, profiles), "loss_vs_compute")
    ctx.save_figure(holdout_figure(grid, held, law), "predicted_vs_measured")
    ctx.save_figure(repetition_figure(arm), "loss_vs_epochs")


def score_holdout(card, held: list[dict], fitted: list[dict], law) -> None:
    if not held:
        card.record("holdout_within_2pct", float("nan"), "no run held out (scaling.holdout=0)")
        return
    errors = [law.loss(r["N"], r["D"]) / r["loss"] - 1 for r in held]
    worst = int(np.argmax(np.abs(errors)))
    best_fitted = min(r["loss"] for r in fitted)  # trivial baseline: "no further gain"
    const = max(abs(best_fitted / r["loss"] - 1) for r in held)
    card.record("holdout_within_2pct", abs(errors[worst]),
                f"{len(held)} runs; errors {', '.join(f'{100 * e:+.2f}%' for e in errors)}; worst "
                f"N={held[worst]['N']}, D={held[worst]['D']}; predicting the best fitted loss misses by "
                f"{100 * const:.1f}%")


def score_exponents(card, law, intervals: dict, a2: float, levels: int) -> None:
    fmt = lambda k: f"[{intervals[k][0]:.2f}, {intervals[k][1]:.2f}]"  # noqa: E731
    card.record("exponents_in_range", max(abs(law.alpha - 0.5), abs(law.beta - 0.5)),
                f"alpha {law.alpha:.3f} {fmt('alpha')}, beta {law.beta:.3f} {fmt('beta')} (90% bootstrap); "
                f"E {law.E:.3f}; a law without N (or D) dependence has alpha (beta) = 0 -> 0.5")
    a = law.optimal_exponent
    card.record("optimal_N_exponent", abs(a - 0.5),
                f"a {a:.3f} {fmt('a')}; approach 2 (IsoFLOP, {levels} levels) a = {a2:.3f}; "
                f"a = 0 if N did not matter, 1 if D did not")


def score_repetition(card, arm: list[dict], unigram: float) -> None:
    base = arm[0]["loss"]
    cost = {r["epochs"]: r["loss"] / base - 1 for r in arm}
    up_to_4 = [c for e, c in cost.items() if 1 < e <= 4]
    last = max(cost)
    curve = ", ".join(f"{e}: {100 * c:+.2f}%" for e, c in cost.items())
    worst4 = max(up_to_4) if up_to_4 else float("nan")
    card.record("repeat_4_epochs_cost", worst4,
                f"cost by epochs {curve}; unique-data loss {base:.3f} (unigram {unigram:.3f}); a model that "
                "learns nothing costs 0 here, so the next claim is the check")
    ratio = cost[last] / worst4 if up_to_4 and worst4 else float("nan")
    card.record("repeat_16_epochs_cost", cost[last] - worst4 if last > 1 else float("nan"),
                f"{last} epochs cost {100 * cost[last]:+.2f}%, {ratio:.1f}x the worst <= 4-epoch cost "
                f"({100 * worst4:+.2f}%)")


def run_point(ctx: RunContext) -> None:
    """One point of the grid (or the arm): `scaling.point` = its index, as a sweep job."""
    cfg, s = ctx.cfg, ctx.cfg.scaling
    todo = points(cfg)
    if s.point >= len(todo):
        raise UserError(f"scaling.point={s.point} is out of range: this grid and arm have {len(todo)} points "
                        f"(0..{len(todo) - 1})")
    p = todo[s.point]
    train_text, val_text = load_corpus(cfg.cache_dir, s.max_files, s.val_fraction)
    windows = eval_windows(val_text, cfg.model.block_size, s.eval_tokens)
    record = train_point(ctx, p, train_text, val_text, windows)
    write_point(ctx.run_dir, record)
    unigram = unigram_loss(train_text, windows)
    ctx.card.record("beats_unigram", unigram - record["loss"],
                    f"model {record['loss']:.3f}, unigram {unigram:.3f} nats/byte; N={record['N']}, D={record['D']}, "
                    f"{record['epochs']} epoch(s)")
    ctx.save_figure(point_figure(record, unigram), "point")
