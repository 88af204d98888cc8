"""icl development comparison (seeds 7, 8 only, never 0-2): a plain PyTorch loop with the Lightning stage's model,
AdamW + warm-up-cosine, clipping and PromptBatches; prints the worst error / d at k >= d+2 on 2000 held-out
prompts. Usage: python experiments/icl/dev/compare_variants.py seed=8 steps=1500 H=2 (keys: see `a`).
wk=1 (a diagnostic, not the experiment's loss): each query position k weighted by 1 / (1 + max(d - k, 0)),
normalised to mean 1, so the positions whose error is mostly irreducible (k < d: (d - k) of y's variance d)
carry less of the gradient's noise."""
import sys, time, json, torch, numpy as np
from toyrepro.core.transformer import GPTConfig
from toyrepro.core.config import OptimConfig
from toyrepro.core.train import adamw
from toyrepro.icl.model import ICLTransformer
from loop import train  # experiments/icl/dev/loop.py (the script's folder is on sys.path)
from toyrepro.icl.model import prompt_mse
from toyrepro.icl.tasks import PromptBatches, sample_prompts, interleave
from toyrepro.icl.baselines import error_curve
torch.set_num_threads(1)
a = dict(L=4, C=64, H=4, lr=1e-3, b2=0.95, bs=64, steps=2400, seed=7, warm=200, every=0, ds=2, ps=5, ev=500, wk=0)
for kv in sys.argv[1:]:
    k, v = kv.split("="); a[k] = type(a[k])(float(v)) if not isinstance(a[k], str) else v
torch.manual_seed(a["seed"])
d, K = 5, 11
m = ICLTransformer(GPTConfig(vocab_size=1, block_size=32, n_layer=a["L"], n_head=a["H"], n_embd=a["C"]), d)
o = adamw(m, OptimConfig(lr=a["lr"], weight_decay=0.0, beta2=a["b2"], warmup_steps=a["warm"], batch_size=a["bs"]), a["steps"])
opt, sch = o["optimizer"], o["lr_scheduler"]["scheduler"]
data = PromptBatches(a["steps"], a["bs"], d, K, 10 * a["seed"] + 1, curriculum_every=a["every"], dims_start=a["ds"], points_start=a["ps"])
ev = sample_prompts(2000, d, K, torch.Generator().manual_seed(99))
evt = interleave(ev.xs, ev.ys)
t0 = time.process_time()
def report(s):
    e = error_curve(m.predict(evt), ev.ys, d).numpy()
    gap = np.abs(e[:d] - (d - np.arange(d)) / d).max()
    print(json.dumps({"step": s, "cpu": round(time.process_time() - t0), "worst_k7+": round(float(e[d+2:].max()), 4),
                      "mn_gap": round(float(gap), 3), "k5": round(float(e[5]), 3), "k10": round(float(e[10]), 4)}), flush=True)
wts = 1.0 / (1.0 + np.clip(d - np.arange(K), 0, None))
wts = torch.tensor(wts / wts.mean(), dtype=torch.float32)
def weighted_mse(pred, ys):
    return (((pred.float() - ys.float()) ** 2) * wts).mean()
train(m, opt, sch, data, a["steps"], a["ev"], report, weighted_mse if a["wk"] else prompt_mse)
print("ARGS", a)
