"""icl diagnostic (no training): stored clean checkpoints (runs/icl/<run dir>) scored again on 8 fresh
sets of 4000 held-out prompts, to tell evaluation noise from a worse model; also how heavy the error's tail is.
Usage: [LAYERS=12] python experiments/icl/dev/reevaluate.py RUN_DIR_NAME|CKPT_PATH [...] (64-wide, d = 5; 8 layers unless LAYERS)
"""
import os
import sys

import numpy as np
import torch

from toyrepro.core.transformer import GPTConfig
from toyrepro.icl.model import ICLTransformer
from toyrepro.icl.tasks import interleave, sample_prompts

torch.set_num_threads(2)
d, K = 5, 11
LAYERS = int(os.environ.get("LAYERS", 8))
for run in sys.argv[1:]:
    ck = torch.load(run if run.endswith(".ckpt") else f"runs/icl/{run}/checkpoints/clean/last.ckpt", map_location="cpu", weights_only=False)
    sd = {k[len("model."):]: v for k, v in ck["state_dict"].items() if k.startswith("model.")}
    m = ICLTransformer(GPTConfig(vocab_size=1, block_size=32, n_layer=LAYERS, n_head=2, n_embd=64), d)
    m.load_state_dict(sd)
    worst, per_k = [], []
    for s in range(8):
        p = sample_prompts(4000, d, K, torch.Generator().manual_seed(555_000 + s))
        pred = m.predict(interleave(p.xs, p.ys)).double()
        err = ((pred - p.ys.double()) ** 2).mean(0).numpy() / d
        worst.append(err[d + 2:].max()); per_k.append(err)
    e = np.array(per_k)
    # per-prompt heavy tail at k = d+2 on one big set
    p = sample_prompts(32000, d, K, torch.Generator().manual_seed(777))
    pred = m.predict(interleave(p.xs, p.ys)).double()
    sq = ((pred - p.ys.double()) ** 2).numpy()[:, d + 2] / d
    print(run, "worst k>=d+2 over 8 sets of 4000:", np.round(worst, 4), "| 32000 prompts, k=d+2 mean %.4f, share of the mean from the top 1%% prompts %.2f" % (
        sq.mean(), np.sort(sq)[-320:].sum() / sq.sum()), "| mean per k:", np.round(e.mean(0)[d:], 4))
