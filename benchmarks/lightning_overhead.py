"""1. Lightning overhead: `core.train.LMModule` under the Trainer vs a bare PyTorch loop.

Same model, data, AdamW + schedule, grad clipping and number of steps; the Trainer runs
without loggers, checkpoints or validation (their cost is a choice, not overhead).
Target: wall-time ratio (Lightning / bare) <= 1.10.
"""

from __future__ import annotations

import lightning as L
import torch

from toyrepro.core.config import OptimConfig
from toyrepro.core.data import RandomWindows
from toyrepro.core.train import LMModule, adamw
from toyrepro.core.transformer import GPT, GPTConfig

from harness import compare, record


def setup(tiny: bool):
    cfg = GPTConfig(block_size=32 if tiny else 128, n_layer=1 if tiny else 4, n_head=2 if tiny else 4,
                    n_embd=32 if tiny else 128)
    steps, bs = (3 if tiny else 60), (4 if tiny else 32)
    tokens = torch.randint(0, 256, (200_000,), generator=torch.Generator().manual_seed(0))
    data = RandomWindows(tokens, cfg.block_size, steps * bs, seed=0)
    return cfg, steps, bs, data


def run(tiny: bool = False) -> dict:
    cfg, steps, bs, data = setup(tiny)
    optim = OptimConfig(batch_size=bs)

    def lightning_side():
        module = LMModule(GPT(cfg), optim, steps)
        trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=steps, logger=False,
                            enable_checkpointing=False, enable_progress_bar=False,
                            enable_model_summary=False, gradient_clip_val=1.0, limit_val_batches=0)
        trainer.fit(module, torch.utils.data.DataLoader(data, batch_size=bs))

    def bare_side():
        model = GPT(cfg)
        opt = adamw(model, optim, steps)
        optimizer, sched = opt["optimizer"], opt["lr_scheduler"]["scheduler"]
        module = LMModule(model, optim, steps)  # its loss(), nothing else
        for batch in torch.utils.data.DataLoader(data, batch_size=bs):
            loss = module.loss(batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            sched.step()

    t_l, t_b = compare(lightning_side, bare_side, reps=1 if tiny else 5)
    return record("lightning_overhead", {"lightning_s": t_l, "bare_s": t_b, "steps": steps},
                  {"lightning/bare wall time": {"value": t_l / t_b, "target": 1.10, "higher_is_better": False}})


if __name__ == "__main__":
    print(run())
