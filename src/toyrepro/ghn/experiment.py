"""The `ghn` experiment, top to bottom: sample architectures -> train three hypernetworks ->
predict parameters for unseen architectures -> compare with random init, Adam and training.

Knyazev et al. 2021, "Parameter Prediction for Unseen Deep Architectures" (GHN-2), at toy
scale: 8x8 digits instead of CIFAR-10, MLPs and small CNNs instead of DeepNets-1M cells.

Claims (scorecard; must pass at scale=quick, thresholds from issue 23):
- `id_accuracy`: predicted parameters reach >= 60 % mean test accuracy on ID architectures
  with no training (Table 2: 66.9 % on CIFAR-10; random init ~10 %);
- `beats_mlp_id`, `beats_mlp_wide`: GHN-2 beats the graph-blind MLP hypernetwork by >= 8
  points on ID and >= 15 on WIDE (Table 3: 66.9 vs 42.2 ID, 64.0 vs 22.3 WIDE);
- `wide_over_id` >= 0.8, `deep_over_id` >= 0.75 (Table 2: 64.0/66.9 = 0.96, 60.5/66.9 = 0.90),
  and `wide_ratio_beats_mlp`: GHN-2's WIDE/ID ratio exceeds the MLP hypernetwork's;
- `adam_steps_equivalent`: one GHN forward pass is worth k* >= 10 Adam steps from random init
  (§5.1 compares with 1-2500 SGD iterations);
- `transfer_gain`: fine-tuning from a GHN-2 trained on digits 0-4 beats random init after the
  same 50 steps on 10-shot digits 5-9 by >= 5 points (§5.2, at toy scale).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import torch

from toyrepro.core.run import RunContext
from toyrepro.core.scorecard import Claim
from toyrepro.core.stage import cached_stage
from toyrepro.core.train import cap_steps
from toyrepro.ghn import evaluate as ev
from toyrepro.ghn.figures import adam_figure, splits_figure
from toyrepro.ghn.ghn import GHN
from toyrepro.ghn.graph import build_graph
from toyrepro.ghn.space import SPLITS, ArchSpec, sample_archs, with_classes
from toyrepro.ghn.train import (
    Digits,
    GHNModule,
    load_digits_split,
    meta_batch_loader,
    one_item_loader,
)

log = logging.getLogger("toyrepro")
SOURCE = "Knyazev et al. 2021 (GHN-2)"
TRANSFER_FROM, TRANSFER_TO = (0, 1, 2, 3, 4), (5, 6, 7, 8, 9)
Q = ("quick", "full")


def claims(cfg=None) -> list[Claim]:
    return [
        Claim("id_accuracy", "GHN-2's predicted parameters, untrained, reach >= 60 % mean test accuracy on "
              "held-out ID architectures (value in %)", f"{SOURCE} §5.1 Table 2", ">=", 60.0, Q),
        Claim("beats_mlp_id", "GHN-2 beats the graph-blind MLP hypernetwork on ID by >= 8 points "
              "(value = GHN-2 - MLP, points)", f"{SOURCE} Table 3 (66.9 vs 42.2)", ">=", 8.0, Q),
        Claim("beats_mlp_wide", "GHN-2 beats the MLP hypernetwork on WIDE by >= 15 points (value in points)",
              f"{SOURCE} Table 3 (64.0 vs 22.3)", ">=", 15.0, Q),
        Claim("wide_over_id", "GHN-2 generalises to wider nets: WIDE / ID mean accuracy",
              f"{SOURCE} Table 2 (0.96)", ">=", 0.8, Q),
        Claim("deep_over_id", "GHN-2 generalises to deeper nets: DEEP / ID mean accuracy",
              f"{SOURCE} Table 2 (0.90)", ">=", 0.75, Q),
        Claim("wide_ratio_beats_mlp", "GHN-2's WIDE/ID ratio exceeds the MLP hypernetwork's "
              "(value = GHN-2 ratio - MLP ratio)", f"{SOURCE} Table 3", ">", 0.0, Q),
        Claim("adam_steps_equivalent", "one GHN-2 forward pass is worth k* >= 10 Adam steps from random init "
              "(k* = fewest steps whose mean ID accuracy matches GHN-2's)", f"{SOURCE} §5.1", ">=", 10.0, Q),
        Claim("transfer_gain", "fine-tuning from the GHN-2 (digits 0-4) init beats random init after the same "
              "steps on 10-shot digits 5-9 (value = points, mean over architectures)", f"{SOURCE} §5.2",
              ">=", 5.0, Q),
    ]


def run(ctx: RunContext) -> None:
    cfg = ctx.cfg
    if cfg.trainer.step_cap is not None:  # the Adam curves step an optimiser themselves: cap them too
        g = cfg.ghn
        cfg.ghn = dataclasses.replace(g, adam_steps=sorted({cap_steps(cfg.trainer, s) for s in g.adam_steps}),
                                      trained_steps=cap_steps(cfg.trainer, g.trained_steps),
                                      finetune_steps=cap_steps(cfg.trainer, g.finetune_steps))
    c = cfg.ghn
    digits = load_digits_split(cfg.seed, c.val_fraction, c.test_fraction)
    evals = {s: sample_archs(s, c.n_eval_archs, cfg.seed * 10 + 1 + i) for i, s in enumerate(SPLITS)}
    train_archs = sample_archs("train", c.n_train_archs, cfg.seed * 10, exclude=set(evals["id"]))
    val_archs = sample_archs("train", c.val_archs, cfg.seed * 10 + 9, exclude=set(evals["id"]) | set(train_archs))
    log.info("architectures: %d training, %d per split (%s), e.g. %s", len(train_archs), c.n_eval_archs,
             ", ".join(SPLITS), ", ".join(map(str, evals["id"][:3])))

    # §4: GHN-2 and its two baselines, each trained end to end through the nets it predicts; the
    # GHN-2 of §5.2 on digits 0-4 (few_shot_transfer); Adam from random init (the k* curve and the
    # trained ceiling): five independent jobs, `workers` at a time (core/parallel.py)
    steps = cfg.trainer.max_steps
    five = [with_classes(a, len(TRANSFER_FROM)) for a in train_archs]
    jobs = {"ghn2": ("ghn", "ghn2", "ghn2", train_archs, val_archs, digits, steps),
            "mlp": ("ghn", "mlp", "mlp_hypernet", train_archs, val_archs, digits, steps),
            "ghn1": ("ghn", "ghn1", "ghn1", train_archs, val_archs, digits, steps),
            "transfer": ("ghn", "ghn2", "ghn2_transfer", five, [with_classes(a, 5) for a in val_archs],
                         digits.classes(TRANSFER_FROM), max(1, round(c.transfer_steps_ratio * steps))),
            "adam": ("adam", evals, digits)}
    done = dict(zip(jobs, ctx.side_by_side(independent_job, list(jobs.values()),
                                           cost=[job_seconds(c, j) for j in jobs.values()])))
    curve, trained = done.pop("adam")
    transfer_ghn = done.pop("transfer")
    ghns = done

    # Table 2: predicted parameters, no training, on every split; random init for reference
    rand = ev.random_init(cfg.seed)
    acc = {name: {s: ev.predicted_accuracies(g, evals[s], digits.x_test, digits.y_test) for s in SPLITS}
           for name, g in ghns.items()}
    acc["random"] = {s: [ev.accuracy(_net(spec, rand(spec, i))(digits.x_test), digits.y_test)
                         for i, spec in enumerate(evals[s])] for s in SPLITS}
    mean = {name: {s: 100 * sum(v) / len(v) for s, v in by.items()} for name, by in acc.items()}

    # k*: the fewest Adam steps from random init whose mean ID accuracy matches GHN-2's
    id_specs = evals["id"]
    adam_mean = (100 * curve.test_at_best().mean(0)).tolist()
    k_star, matched = ev.first_match(adam_mean, c.adam_steps, mean["ghn2"]["id"])
    mean["trained"] = {s: 100 * sum(v) / len(v) for s, v in trained.items()}

    # fine-tuning speed from both inits (the figure): Adam from the GHN-2 prediction
    sub = id_specs[: c.n_trained_archs]
    ghn2_params = ev.predicted_params(ghns["ghn2"], sub)
    curve_ghn = ev.adam_curves(sub, lambda spec, i: ghn2_params[i], digits.x_train, digits.y_train, digits,
                               c.adam_lrs, c.adam_steps, c.adam_batch, cfg.seed)
    curve_rand_sub = 100 * curve.test_at_best()[: c.n_trained_archs].mean(0)

    # §5.2 at toy scale: a GHN-2 trained on digits 0-4 initialises nets for 10-shot digits 5-9
    transfer = few_shot_transfer(ctx, transfer_ghn, evals["id"][: c.n_transfer_archs], digits)

    record(ctx, mean, k_star, matched, adam_mean, transfer)
    ctx.log_metrics("eval", {f"{n}/{s}": v for n, by in mean.items() for s, v in by.items()})
    ctx.save_figure(splits_figure(mean, SPLITS), "accuracy_per_split")
    ctx.save_figure(adam_figure(c.adam_steps, curve_rand_sub.tolist(), (100 * curve_ghn.test_at_best().mean(0)).tolist(),
                                mean["random"]["id"], 100 * sum(acc["ghn2"]["id"][: c.n_trained_archs]) / len(sub)),
                    "accuracy_vs_adam_steps")
    ctx.write_text("results.json", json.dumps({
        "mean_test_accuracy": mean, "per_arch": acc, "trained_per_arch": trained,
        "archs": {s: [str(a) for a in evals[s]] for s in SPLITS},
        "adam_steps": c.adam_steps, "adam_random_init": adam_mean, "adam_best_lr": [c.adam_lrs[i] for i in
                                                                                   curve.best_lr().tolist()],
        "adam_ghn2_init": (100 * curve_ghn.test_at_best().mean(0)).tolist(),
        "adam_random_init_same_archs": curve_rand_sub.tolist(), "transfer": transfer}, indent=1))


def independent_job(ctx: RunContext, kind: str, *args):
    """One of the run's independent jobs (`ctx.side_by_side`): a hypernetwork or the Adam baselines."""
    return train_ghn(ctx, *args) if kind == "ghn" else adam_from_random(ctx, *args)


def adam_from_random(ctx: RunContext, evals: dict[str, list[ArchSpec]], digits: Digits) -> tuple[ev.Curve, dict]:
    """Adam from random init: on the ID architectures at every learning rate and step count
    (the rate is chosen on validation per step count), and the ceiling: the first
    n_trained_archs of each split trained for trained_steps at the rate best after the most steps."""
    cfg, c = ctx.cfg, ctx.cfg.ghn
    rand = ev.random_init(cfg.seed)
    curve = ev.adam_curves(evals["id"], rand, digits.x_train, digits.y_train, digits, c.adam_lrs, c.adam_steps,
                           c.adam_batch, cfg.seed)
    best_lr = c.adam_lrs[int(curve.best_lr()[-1])]
    trained = {s: ev.adam_curves(evals[s][: c.n_trained_archs], rand, digits.x_train, digits.y_train, digits,
                                 [best_lr], [c.trained_steps], c.adam_batch, cfg.seed + 1).test[0, :, 0].tolist()
               for s in SPLITS}
    return curve, trained


def job_seconds(c, job: tuple) -> float:
    """A job's rough one-thread seconds, so the longest are handed out first (from a profile of
    the quick run, 2026-12-07): a hypernetwork step ~20 ms + ~10 ms per architecture of its
    meta-batch (GHN-1: one), an Adam step of a target net ~2.5 ms."""
    if job[0] == "ghn":
        return job[-1] * (0.02 + 0.01 * (1 if job[1] == "ghn1" else c.meta_batch))
    return 0.0025 * (len(c.adam_lrs) * c.n_eval_archs * max(c.adam_steps)
                     + len(SPLITS) * c.n_trained_archs * c.trained_steps)


def record(ctx: RunContext, mean, k_star: float, matched: bool, adam_mean: list[float], transfer: dict) -> None:
    card, g2, mlp, rnd, tr = ctx.card, mean["ghn2"], mean["mlp"], mean["random"], mean["trained"]
    card.record("id_accuracy", g2["id"], f"random init {rnd['id']:.1f}, GHN-1 {mean['ghn1']['id']:.1f}, MLP-HN "
                f"{mlp['id']:.1f}, trained {tr['id']:.1f}; chance 10")
    card.record("beats_mlp_id", g2["id"] - mlp["id"], f"GHN-2 {g2['id']:.1f} vs MLP-HN {mlp['id']:.1f}")
    card.record("beats_mlp_wide", g2["wide"] - mlp["wide"], f"GHN-2 {g2['wide']:.1f} vs MLP-HN {mlp['wide']:.1f}; "
                f"random {rnd['wide']:.1f}")
    card.record("wide_over_id", g2["wide"] / g2["id"], f"WIDE {g2['wide']:.1f} / ID {g2['id']:.1f}; a constant "
                f"(chance) predictor scores 1.0 at 10/10")
    card.record("deep_over_id", g2["deep"] / g2["id"], f"DEEP {g2['deep']:.1f} / ID {g2['id']:.1f}; "
                f"BN-free {g2['bn_free']:.1f}")
    r_g2, r_mlp = g2["wide"] / g2["id"], mlp["wide"] / mlp["id"]
    card.record("wide_ratio_beats_mlp", r_g2 - r_mlp, f"GHN-2 {r_g2:.3f} vs MLP-HN {r_mlp:.3f}")
    curve = ", ".join(f"{k}:{a:.1f}" for k, a in zip(ctx.cfg.ghn.adam_steps, adam_mean))
    card.record("adam_steps_equivalent", k_star, ("" if matched else "not matched within the steps tried "
                "(value is a lower bound); ") + f"GHN-2 {g2['id']:.1f} vs Adam {curve}; k=0 (random) {rnd['id']:.1f}")
    card.record("transfer_gain", transfer["ghn"] - transfer["random"],
                f"GHN init {transfer['ghn']:.1f} (lr {transfer['ghn_lr']:g}) vs random {transfer['random']:.1f} "
                f"(lr {transfer['random_lr']:g}) over {transfer['n_archs']} archs; chance 20")


def few_shot_transfer(ctx: RunContext, ghn: GHN, specs, digits: Digits) -> dict:
    """`ghn`: a GHN-2 trained on digits 0-4 only; it initialises nets for 10-shot digits 5-9."""
    cfg, c = ctx.cfg, ctx.cfg.ghn
    target = digits.classes(TRANSFER_TO)
    specs = [with_classes(a, len(TRANSFER_TO)) for a in specs]
    x_few, y_few = ev.few_shot_split(target.x_train, target.y_train, c.shots, cfg.seed)
    predicted = ev.predicted_params(ghn, specs)
    ghn_init = {i: ev.with_new_classifier(p, s, cfg.seed * 31 + i) for i, (p, s) in enumerate(zip(predicted, specs))}
    out = {"n_archs": len(specs), "shots": c.shots, "steps": c.finetune_steps}
    for name, init in (("ghn", lambda spec, i: ghn_init[i]), ("random", ev.random_init(cfg.seed * 31))):
        accs, lr = ev.few_shot(specs, init, x_few, y_few, target, c.adam_lrs, c.finetune_steps, cfg.seed)
        out |= {name: 100 * sum(accs) / len(accs), f"{name}_lr": lr, f"{name}_per_arch": accs}
    return out


def make_ghn(variant: str, c) -> GHN:
    return GHN(variant, hidden=c.hidden, decoder_hidden=c.decoder_hidden, s_max=c.s_max)


def train_ghn(ctx: RunContext, variant: str, stage: str, specs: list[ArchSpec], val_specs: list[ArchSpec],
              digits: Digits, steps: int) -> GHN:
    """One hypernetwork, trained as the Lightning stage `stage` and cached by its config."""
    cfg, c = ctx.cfg, ctx.cfg.ghn
    m = 1 if variant == "ghn1" else c.meta_batch  # GHN-1 sees one architecture per step
    params = {"seed": cfg.seed, "variant": variant, "steps": steps, "meta_batch": m,
              "optim": dataclasses.asdict(cfg.optim), "n_classes": specs[0].n_classes,
              "ghn": {k: getattr(c, k) for k in ("val_fraction", "test_fraction", "n_train_archs", "n_eval_archs",
                                                  "hidden", "decoder_hidden", "s_max", "val_archs")},
              "clip": cfg.trainer.gradient_clip_val}

    def build(tmp: Path) -> None:
        torch.manual_seed(cfg.seed * 31 + len(stage))
        ghn = make_ghn(variant, c)
        graphs = [build_graph(s, ghn.s_max) for s in specs]
        module = GHNModule(ghn, graphs, digits, [build_graph(s, ghn.s_max) for s in val_specs], cfg.optim, steps,
                           stage)
        loader = meta_batch_loader(module, len(graphs), steps, cfg.optim.batch_size, m, cfg.seed * 7 + len(stage))
        ctx.fit(stage, module, loader, one_item_loader(), max_steps=steps)
        torch.save(ghn.state_dict(), tmp / "ghn.pt")

    path = cached_stage(cfg.cache_dir, f"ghn_{stage}", params, build)
    ghn = make_ghn(variant, c)
    ghn.load_state_dict(torch.load(path / "ghn.pt", weights_only=True))
    return ghn.eval().requires_grad_(False)


def _net(spec: ArchSpec, params: dict[str, torch.Tensor]):
    from torch.func import functional_call

    from toyrepro.ghn.space import TargetNet

    net = TargetNet(spec)
    return lambda x: functional_call(net, params, (x,))
