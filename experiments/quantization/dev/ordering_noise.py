"""quantization diagnostic: is `order_perplexity`'s violated inequality within evaluation noise?

Trains (or reuses from the stage cache) the toy LM of `toyrepro experiment=quantization
scale=quick seed=S`, then, for per-tensor / per-channel / group-128 / group-32 RTN at 4, 3 and 2 bits,
scores the preset's held-out rows (quantization.ppl_rows = 64) and a larger fresh set of rows,
keeping every row's summed NLL. For each of the claim's 9 inequalities it prints the perplexity
ratio and a 95 % paired bootstrap interval over rows (same rows for both formats).
Not part of any scorecard. Usage: python experiments/quantization/dev/ordering_noise.py SEED [ROWS]
"""

import math
import sys

import numpy as np
import torch
import torch.nn.functional as F

import toyrepro.quantization.experiment as qx
from toyrepro.quantization.formats import parse
from toyrepro.quantization.measure import padding_mask, toy_heldout_rows
from toyrepro.quantization.weights import quantized

SEED, ROWS = int(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 2048
FORMATS = [f"rtn{b}_{s}" for b in (4, 3, 2) for s in ("tensor", "channel", "g128", "g32")]


@torch.no_grad()
def row_nll(lm, rows, mask):
    """(summed NLL, target count) per row."""
    logits = lm(rows[:, :-1]).logits.float()
    ce = F.cross_entropy(logits.transpose(1, 2), rows[:, 1:], reduction="none")
    return (ce * mask).sum(1).double().numpy(), mask.sum(1).double().numpy()


def interval(a, b, n, g, reps=2000):
    """ppl(a) / ppl(b) and its 95 % paired bootstrap interval over rows."""
    ratio = lambda i: math.exp((a[i].sum() - b[i].sum()) / n[i].sum())  # noqa: E731
    boot = [ratio(g.integers(0, len(a), len(a))) for _ in range(reps)]
    return ratio(np.arange(len(a))), np.percentile(boot, [2.5, 97.5])


captured = {}


def capture(ctx):  # stop after the model is ready: only its LM and KB are needed here
    captured["lm"], _, _, _, _ = qx.setup_toy(ctx)
    captured["cfg"] = ctx.cfg
    raise SystemExit


qx.run = capture
try:
    import toyrepro

    toyrepro.run("quantization", scale="quick", seed=SEED, overrides=["logger=csv"],
                 run_dir=f"/tmp/ordering_noise_s{SEED}")
except SystemExit:
    pass
lm, cfg = captured["lm"], captured["cfg"]
from toyrepro.lre.toy import make_kb  # noqa: E402

lre = cfg.lre
kb = make_kb(lre.n_subjects, lre.n_countries, lre.n_continents, lre.n_ids, cfg.seed, lre.subject_tokens,
             cfg.model.vocab_size, lre.subject_pool)
sets = {"preset rows": toy_heldout_rows(kb, lre, cfg.quantization.ppl_rows, cfg.seed),
        f"{ROWS} rows": toy_heldout_rows(kb, lre, ROWS, 50_000 + cfg.seed)}
g = np.random.default_rng(0)
for label, rows in sets.items():
    mask = padding_mask(rows).double()
    nll = {}
    for name in FORMATS:
        with quantized(lm.model, parse(name), cfg.quantization.quantize_embeddings):
            nll[name], n = row_nll(lm, rows, mask)
    print(f"seed {SEED}, {label} ({int(n.sum())} targets):")
    for b in (4, 3, 2):
        for fine, coarse in (("g32", "channel"), ("g128", "channel"), ("channel", "tensor")):
            r, (lo, hi) = interval(nll[f"rtn{b}_{fine}"], nll[f"rtn{b}_{coarse}"], n, g)
            flag = "VIOLATED" if r > 1 else ""
            print(f"  {b} bits  ppl {fine}/{coarse} = {r:.5f}  95% CI [{lo:.5f}, {hi:.5f}] {flag}")
