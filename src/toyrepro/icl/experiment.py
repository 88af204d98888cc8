"""The `icl` experiment, top to bottom: train on regression prompts -> compare with the
learning algorithms -> probe the hidden states -> out of distribution.

Garg et al. 2022 (§2 task and training, §3 Fig. 2 comparison, §4 noisy labels and
out-of-distribution prompts); Akyürek et al. 2022 (§4 probing). Errors are squared error
/ d (Garg's y-axis) on `eval_prompts` held-out prompts shared by every method.

Claims (thresholds from issue 18, fixed before any run; "every k" = the worst k counts):
- `error_after_d_plus_2`: max over k >= d+2 of the transformer's error <= 0.05;
- `vs_least_squares`: max over k >= d+2 of (transformer - 2 x least squares) <= 0.02;
- `min_norm_curve`: max over k < d of |transformer - (d-k)/d| <= 0.1;
- `beats_knn_averaging`: min over k >= d of min(3-NN, averaging) / transformer >= 2;
- `noisy_vs_ridge`: max over k >= d of (noisy model / Bayes ridge) - 1 <= 0.10
  (a second model trained on labels with noise sigma; errors against the noisy labels);
- `finding_probe_w_hat` (Akyürek §4): max over layers of the held-out R^2 of a linear probe
  for w_hat_k at the query after k = probe_k examples >= 0.8. Issue 18 makes this a *finding*,
  "scored if it holds on every seed": it is measured and shown on every run (`scales=()`, as
  quantization's findings) and the write-up scores it over seeds. It was a per-run claim until
  2026-12-07, when it was made a finding after it had failed on every seed run (disclosed in
  experiments/icl/README.md).
Each note gives the trivial baseline's value (predicting 0; a probe of the raw prompt).

Deviations from Garg: d = 5 and an 8-layer 64-wide 2-head GPT at scale=quick (8 layers
since the fourth round, 4 before; 2 heads since the third, 4 before), 7000 clean + 4000 noisy
steps on two threads (Garg: d = 20, 12 layers, 8 heads, 256 wide, 500k steps); no curriculum
at quick (App. A's curriculum, scaled to d from 2 and K from 5, did not lower seed 0's
validation loss at step 3000: experiments/icl/README.md); the noisy model starts from the
noiseless one (`noisy_init: clean`; Garg train it from scratch) to save CPU time, and is
fine-tuned on the full task without the curriculum at a lower peak learning rate
(`noisy_lr`, 3e-4 at quick).
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace

import numpy as np
import torch
from torch.utils.data import DataLoader

from toyrepro.core.data import StepOffsetSampler
from toyrepro.core.run import RunContext
from toyrepro.core.scorecard import QF, Claim
from toyrepro.icl.evaluate import TRANSFORMER, error_curves, ood_curves
from toyrepro.icl.figures import error_figure, ood_figure, probe_figure
from toyrepro.icl.model import ICLModule, ICLTransformer
from toyrepro.icl.probe import probe_layers
from toyrepro.icl.tasks import PromptBatches, sample_prompts

log = logging.getLogger("toyrepro")
GARG = "Garg et al. 2022 §3, Fig. 2"
GARG_NOISY = "Garg et al. 2022 §4 (noisy linear regression)"
AKYUREK = "Akyürek et al. 2022 §4 (probing)"


def claims(cfg=None) -> list[Claim]:
    return [
        Claim("error_after_d_plus_2", "for k >= d+2 examples the transformer's error (squared error / d) "
              "is <= 0.05 at every k (value: the worst k)", GARG, "<=", 0.05, scales=QF),
        Claim("vs_least_squares", "... and <= 2 x least squares' error + 0.02 at every k >= d+2 "
              "(value: max over k of transformer - 2 x least squares)", GARG, "<=", 0.02, scales=QF),
        Claim("min_norm_curve", "for k < d it follows the minimum-norm least-squares curve (d-k)/d "
              "(value: max over k < d of |transformer - (d-k)/d|)", GARG, "<=", 0.1, scales=QF),
        Claim("beats_knn_averaging", "at k >= d it beats 3-NN and averaging by >= 2x "
              "(value: min over k >= d of min(3-NN, averaging) / transformer)", GARG, ">=", 2.0, scales=QF),
        Claim("noisy_vs_ridge", "noisy labels (sigma^2 = 0.25): within 10% of the Bayes-optimal ridge error "
              "for k >= d (value: max over k >= d of transformer / ridge - 1)", GARG_NOISY, "<=", 0.10, scales=QF),
        Claim("finding_probe_w_hat", "finding, scored over seeds: some layer's linear probe recovers the "
              "least-squares estimate w_hat_k (value: best layer's held-out R^2)", AKYUREK, ">=", 0.8, scales=()),
    ]


def run(ctx: RunContext) -> None:
    cfg, task, card = ctx.cfg, ctx.cfg.icl, ctx.card
    d, K, sigma = task.dims, task.points(), task.noise_std
    clean = train_regressor(ctx, "clean", noise_std=0.0, steps=cfg.trainer.max_steps, data_seed=10 * cfg.seed + 1)
    init = clean if task.noisy_init == "clean" else None
    noisy = train_regressor(ctx, "noisy", noise_std=sigma, steps=task.noisy_steps or cfg.trainer.max_steps,
                            data_seed=10 * cfg.seed + 2, init=init, lr=task.noisy_lr or cfg.optim.lr)

    # Garg Fig. 2: every method on the same held-out prompts
    g = torch.Generator().manual_seed(1_000_000 + cfg.seed)
    curves = error_curves(clean, sample_prompts(task.eval_prompts, d, K, g), 0.0, task.knn_neighbors)
    noisy_curves = error_curves(noisy, sample_prompts(task.eval_prompts, d, K, g, noise_std=sigma), sigma ** 2,
                                task.knn_neighbors)
    score_curves(card, curves, noisy_curves, d, task.knn_neighbors)

    # Akyürek §4: linear probes for w_hat_k (and w) per layer
    probe_k = task.probe_k or K - 1
    ks = list(range(1, K))
    probes = probe_layers(clean, sample_prompts(task.probe_prompts, d, K, g), ks, task.probe_alpha)
    score_probe(card, probes, ks.index(probe_k), probe_k)

    # Garg §4: the noiseless model out of distribution
    ood = ood_curves(clean, d, K, task.eval_prompts, sigma, task.skew_power, task.query_scale, 2_000_000 + cfg.seed)
    for name, c in ood.items():
        log.info("OOD %s: error at k=d..K-1: transformer %s, least squares %s", name,
                 np.round(c[TRANSFORMER][d:], 3).tolist(), np.round(c["least squares"][d:], 3).tolist())

    ctx.log_metrics("eval", {f"error/{name}/k{k}": float(v) for name, c in curves.items() for k, v in enumerate(c)})
    ctx.write_text("curves.json", json.dumps(
        {"noiseless": _lists(curves), "noisy": _lists(noisy_curves), "ood": {n: _lists(c) for n, c in ood.items()},
         "probes": {"ks": ks, "probe_k": probe_k} | _lists(probes)}, indent=1))
    ctx.save_figure(error_figure(curves, noisy_curves, d, sigma), "error_vs_k")
    ctx.save_figure(probe_figure(probes, ks, probe_k, d), "probe_r2")
    ctx.save_figure(ood_figure(ood, d), "ood")


def train_regressor(ctx: RunContext, stage: str, noise_std: float, steps: int, data_seed: int,
                    init: ICLTransformer | None = None, lr: float | None = None) -> ICLTransformer:
    """One Lightning stage: a GPT with read-in/read-out fit on fresh prompts every step (Garg §2);
    `lr` replaces optim.lr as the peak of the warm-up + cosine schedule (the noisy fine-tune's)."""
    cfg, task = ctx.cfg, ctx.cfg.icl
    model = ICLTransformer(cfg.model, task.dims)
    if init is not None:
        model.load_state_dict(init.state_dict())
    bs, K = cfg.optim.batch_size, task.points()
    # Garg App. A's curriculum is for a model trained from scratch; one started from the clean
    # model (noisy_init: clean) already solves the full task, so it trains on it from step 0.
    every = task.curriculum_every if init is None else 0
    schedule = dict(curriculum_every=every, dims_start=task.dims_start, points_start=task.points_start)
    train = PromptBatches(steps, bs, task.dims, K, data_seed, noise_std, **schedule)
    val = PromptBatches(cfg.trainer.limit_val_batches, bs, task.dims, K, data_seed + 5, noise_std)
    optim = cfg.optim if lr is None else replace(cfg.optim, lr=lr)
    module = ICLModule(model, optim, steps, stage=stage)
    loader = DataLoader(train, batch_size=None, sampler=StepOffsetSampler(len(train), 1, lambda: module.global_step))
    ctx.fit(stage, module, loader, DataLoader(val, batch_size=None), max_steps=steps)
    return model


def score_curves(card, clean: dict[str, np.ndarray], noisy: dict[str, np.ndarray], d: int, neighbors: int) -> None:
    t, ls = clean[TRANSFORMER], clean["least squares"]
    knn, avg = clean[f"{neighbors}-NN"], clean["averaging"]
    late = slice(d + 2, None)
    k_late = d + 2 + int(np.argmax(t[late]))
    card.record("error_after_d_plus_2", t[late].max(),
                f"worst k={k_late}; least squares {ls[late].max():.3g}, averaging {avg[d + 2]:.3g} at k=d+2; "
                f"predicting 0 scores ~1")
    card.record("vs_least_squares", (t[late] - 2 * ls[late]).max(),
                f"least squares' worst {ls[late].max():.2g}; predicting 0 scores ~1")
    ks = np.arange(d)
    dev = np.abs(t[:d] - (d - ks) / d)
    card.record("min_norm_curve", dev.max(),
                f"worst k={int(np.argmax(dev))}; measured least squares {np.abs(ls[:d] - (d - ks) / d).max():.3f} "
                f"(sampling noise); predicting 0 scores {(d - 1) / d:.2f}")
    ratio = np.minimum(knn[d:], avg[d:]) / t[d:]
    card.record("beats_knn_averaging", ratio.min(),
                f"worst k={d + int(np.argmin(ratio))}; at k=d: {neighbors}-NN {knn[d]:.3g}, averaging {avg[d]:.3g}, "
                f"transformer {t[d]:.3g}; predicting 0 scores ratio ~1")
    ridge_name = next(n for n in noisy if n.startswith("ridge"))
    tn, ridge = noisy[TRANSFORMER], noisy[ridge_name]
    excess = tn[d:] / ridge[d:] - 1
    card.record("noisy_vs_ridge", excess.max(),
                f"worst k={d + int(np.argmax(excess))}; {ridge_name} {ridge[d]:.3g} at k=d; least squares "
                f"{noisy['least squares'][d:].max() / ridge[d:][np.argmax(noisy['least squares'][d:])] - 1:.2g}, "
                f"averaging {(noisy['averaging'][d:] / ridge[d:] - 1).max():.2g}")


def score_probe(card, probes: dict[str, np.ndarray], i: int, probe_k: int) -> None:
    r2 = probes["w_hat"][i]
    best = int(np.argmax(r2))
    card.record("finding_probe_w_hat", r2[best],
                f"k={probe_k}, layer {best} of {len(r2) - 1}; target w there {probes['w'][i, best]:.2f}; "
                f"layer 0 {r2[0]:.2f}, raw-prompt probe {probes['raw_prompt_w_hat'][i]:.2f}")


def _lists(d: dict) -> dict:
    return {k: np.asarray(v).tolist() if not isinstance(v, (int, list)) else v for k, v in d.items()}
