"""icl development check (seeds 7, 8 only, never 0-2): continue a run's clean model on noisy labels in a plain
loop (AdamW + warm-up-cosine over `steps`, clipping, PromptBatches with noise, as the `noisy` stage) and print the
worst ratio transformer / Bayes ridge - 1 over k >= d every `ev` steps, on 4000 held-out noisy prompts.
Usage: python experiments/icl/dev/noisy_steps.py RUN_DIR seed=7 steps=5000 L=8 (keys: see `a`)."""
import sys, time, json, torch, numpy as np
from toyrepro.core.transformer import GPTConfig
from toyrepro.core.config import OptimConfig
from toyrepro.core.train import adamw
from toyrepro.icl.model import ICLTransformer
from loop import train  # experiments/icl/dev/loop.py (the script's folder is on sys.path)
from toyrepro.icl.tasks import PromptBatches, sample_prompts, interleave
from toyrepro.icl.baselines import error_curve, per_position, ridge_weights
torch.set_num_threads(1)
a = dict(L=8, C=64, H=2, lr=1e-3, bs=64, steps=5000, seed=7, warm=200, ev=1000, sigma=0.5)
for kv in sys.argv[2:]:
    k, v = kv.split("="); a[k] = type(a[k])(float(v))
d, K = 5, 11
m = ICLTransformer(GPTConfig(vocab_size=1, block_size=32, n_layer=a["L"], n_head=a["H"], n_embd=a["C"]), d)
ck = torch.load(f"{sys.argv[1]}/checkpoints/clean/last.ckpt", map_location="cpu", weights_only=False)
m.load_state_dict({k.removeprefix("model."): v for k, v in ck["state_dict"].items()})
o = adamw(m, OptimConfig(lr=a["lr"], weight_decay=0.0, warmup_steps=a["warm"], batch_size=a["bs"]), a["steps"])
opt, sch = o["optimizer"], o["lr_scheduler"]["scheduler"]
data = PromptBatches(a["steps"], a["bs"], d, K, 10 * a["seed"] + 2, a["sigma"])
ev = sample_prompts(4000, d, K, torch.Generator().manual_seed(99), noise_std=a["sigma"])
evt = interleave(ev.xs, ev.ys)
ridge = error_curve(per_position(ev.xs, ev.ys, lambda X, y: ridge_weights(X, y, a["sigma"] ** 2)), ev.ys, d).numpy()
t0 = time.process_time()
def report(s):
    e = error_curve(m.predict(evt), ev.ys, d).numpy()
    r = e[d:] / ridge[d:] - 1
    print(json.dumps({"step": s, "cpu": round(time.process_time() - t0), "worst": round(float(r.max()), 4),
                      "per_k": np.round(r, 3).tolist()}), flush=True)
report(0)
train(m, opt, sch, data, a["steps"], a["ev"], report)
print("ARGS", a)
