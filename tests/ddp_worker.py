"""Run by test_ddp.py: LMModule under Lightning DDP with 2 CPU processes (gloo)."""

import sys
from pathlib import Path

import lightning as L
import torch

from toyrepro.core.config import OptimConfig, TrainerConfig
from toyrepro.core.data import RandomWindows
from toyrepro.core.train import LMModule, build_trainer
from toyrepro.core.transformer import GPT, GPTConfig

out = Path(sys.argv[1])
L.seed_everything(0)
model = GPT(GPTConfig(vocab_size=32, block_size=16, n_layer=1, n_head=2, n_embd=16))
before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
module = LMModule(model, OptimConfig(batch_size=4, warmup_steps=1), max_steps=5)
data = torch.utils.data.DataLoader(RandomWindows(torch.arange(500) % 32, 16, 200, seed=0), batch_size=4)
t = TrainerConfig(accelerator="cpu", devices=2, strategy="ddp", max_steps=5, val_check_interval=5,
                  limit_val_batches=1, checkpoint_every_n_steps=5)
trainer = build_trainer(t, out / "ckpt", [], "ddp", max_steps=5)
trainer.fit(module, data, data)
after = torch.cat([p.detach().flatten() for p in model.parameters()])
torch.save({"before": before, "after": after, "world": trainer.world_size},
           out / f"rank{trainer.global_rank}.pt")
