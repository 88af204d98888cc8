"""10. Training efficiency against this machine's matmul peak (issue 17, target 2).

- **Peak**: float32 `torch.mm` of two 2048 x 2048 matrices at the process's torch thread count,
  2 n^3 FLOP per call, median of the timed calls: what this CPU's BLAS can do at all.
- **The model's own matmuls**: the same for the shapes one training step of the `gpt` quick
  model multiplies most — (batch x context) x n_embd by n_embd x 4 n_embd (the MLP's first
  layer) — the ceiling for a model this narrow.
- **Training**: the `gpt` quick model (configs/model/gpt_tiny.yaml: 4 layers, 128 wide, context
  128; batch 32 of configs/preset/gpt_quick.yaml), forward + backward + AdamW on random bytes,
  counted with the PaLM / nanoGPT formula, FLOP per token = 6 N + 12 L d T (N the parameters
  but the position table; the attention term with d = heads x head width, T the context).

- **Every experiment's quick model** (figures, no target): the same training step at the model
  size, context and batch of each experiment whose model is the suite's GPT (`experiment_config`,
  so the figures follow the presets), and the share of the step's time spent in matmuls
  (torch.profiler: aten::mm / addmm / bmm and their backward kernels, self time), which says
  where a tiny model's time goes. It is the generic LM step (next-token loss, AdamW), not each
  experiment's own loop (PPO rollouts, Toolformer's filtering, icl's vector read-in); scaling's
  sizes come from its grid, not `model:`, so it is left out.

Ratios: training FLOP/s / peak (target >= 0.5 for gpt quick, the issue's), and the model-shape
matmul's FLOP/s / peak, which says how much of the gap is the model's narrow shapes rather
than the training code. Medians of alternating timings (harness.compare) do not apply here:
each figure is one kind of work, so each is the median of its own repetitions.
"""

from __future__ import annotations

import statistics
import time

import torch

from toyrepro.core.config import OptimConfig
from toyrepro.core.train import LMModule, adamw
from toyrepro.core.transformer import GPT, GPTConfig

from harness import record


def median_seconds(fn, reps: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def mm_flops(m: int, k: int, n: int, reps: int) -> float:
    a, b = torch.randn(m, k), torch.randn(k, n)
    return 2 * m * k * n / median_seconds(lambda: torch.mm(a, b), reps)


def training_flops_per_token(cfg: GPTConfig, model: GPT) -> float:
    n = sum(p.numel() for p in model.parameters()) - model.wpe.weight.numel()
    return 6 * n + 12 * cfg.n_layer * cfg.n_embd * cfg.block_size


def train_rate(cfg: GPTConfig, batch: int, steps: int, reps: int, profile: bool = False) -> dict:
    """GFLOP/s of `steps` training steps of GPT(cfg) at `batch` (median of reps), and with
    `profile` the share of the step's self CPU time in matmul kernels."""
    torch.manual_seed(0)
    model = GPT(cfg)
    optim, total_steps = OptimConfig(batch_size=batch), steps * (reps + 2)
    module = LMModule(model, optim, total_steps)
    optimizer = adamw(model, optim, total_steps)["optimizer"]
    x = torch.randint(0, cfg.vocab_size, (batch, cfg.block_size + 1))

    def train_steps():
        for _ in range(steps):
            loss = module.loss(x)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    per_step = median_seconds(train_steps, reps) / steps
    flop_per_token = training_flops_per_token(cfg, model)
    out = {"train_gflops": flop_per_token * batch * cfg.block_size / per_step / 1e9, "train_step_s": per_step,
           "tokens_per_step": batch * cfg.block_size, "flop_per_token": flop_per_token}
    if profile:
        with torch.profiler.profile() as prof:
            train_steps()
        ev = prof.key_averages()
        total = sum(e.self_cpu_time_total for e in ev)
        mm = sum(e.self_cpu_time_total for e in ev if e.key in ("aten::mm", "aten::addmm", "aten::bmm"))
        out["matmul_share_of_step"] = mm / total
    return out


def quick_models(tiny: bool) -> dict[tuple, list[str]]:
    """{(n_layer, n_embd, n_head, block, vocab, batch): [experiments]} at scale=quick."""
    import toyrepro

    from harness import experiment_config

    if tiny:
        return {(1, 16, 2, 16, 32, 4): ["(tiny)"]}
    sizes: dict[tuple, list[str]] = {}
    for name, exp in sorted(toyrepro.experiments().items()):
        if not exp.model_is_gpt or name.startswith("scaling"):
            continue
        c = experiment_config(name, "quick")
        m = c.model
        sizes.setdefault((m.n_layer, m.n_embd, m.n_head, m.block_size, max(m.vocab_size, 2), c.optim.batch_size),
                         []).append(name)
    return sizes


def run(tiny: bool = False) -> dict:
    size, reps = (128, 3) if tiny else (2048, 10)
    cfg = GPTConfig(block_size=32 if tiny else 128, n_layer=1 if tiny else 4, n_head=2 if tiny else 4,
                    n_embd=32 if tiny else 128)
    batch, steps = (4, 2) if tiny else (32, 10)
    peak = mm_flops(size, size, size, reps)
    tokens = batch * cfg.block_size
    shape = mm_flops(tokens, cfg.n_embd, 4 * cfg.n_embd, reps)
    gpt = train_rate(cfg, batch, steps, reps, profile=True)
    achieved = gpt["train_gflops"] * 1e9
    per_experiment = {}
    for (n_layer, n_embd, n_head, block, vocab, bs), names in quick_models(tiny).items():
        c = GPTConfig(vocab_size=vocab, block_size=block, n_layer=n_layer, n_head=n_head, n_embd=n_embd)
        # the gpt quick model is the headline's: its figures are reused, not measured again
        f = gpt if (c, bs) == (cfg, batch) else train_rate(c, bs, 2 if tiny else 10, 3 if tiny else 5, profile=True)
        per_experiment[", ".join(names)] = {"model": [n_layer, n_embd, n_head, block, vocab], "batch": bs,
                                            **f, "share_of_peak": f["train_gflops"] * 1e9 / peak}
    return record("cpu_efficiency", {
        "peak_mm_gflops": peak / 1e9, "mm_size": size, "model_shape_mm_gflops": shape / 1e9,
        "model_shape": [tokens, cfg.n_embd, 4 * cfg.n_embd], "train_gflops": achieved / 1e9,
        "train_step_s": gpt["train_step_s"], "tokens_per_step": tokens, "flop_per_token": gpt["flop_per_token"],
        "torch_threads": torch.get_num_threads(), "quick_models": per_experiment},
        {"gpt quick training FLOP/s / peak mm": {"value": achieved / peak, "target": 0.5},
         "model-shape mm / peak mm": {"value": shape / peak, "target": 0.5}},
        notes="peak = float32 torch.mm 2048^3; training counted as 6N + 12 L d T FLOP per token (PaLM App. B); "
              "quick_models: the generic LM step at each experiment's quick model, context and batch")


if __name__ == "__main__":
    print(run())
