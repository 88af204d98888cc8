"""The in-context regressor: the suite's GPT-2 with a linear read-in and a scalar read-out.

Garg et al. 2022 §2 train a GPT-2 (12 layers, 8 heads, 256 wide) whose token embedding is
replaced by a learned linear map R^d -> R^n_embd and whose unembedding is replaced by a
linear map R^n_embd -> R, read at the x tokens. We do the same with `core/transformer.py`:

- `GPT(cfg)` is built as usual and its blocks, learned position table (`wpe`), final
  LayerNorm (`ln_f`) and GPT-2 initialisation are used unchanged;
- its token embedding `wte` / tied `lm_head` are not used (`model.vocab_size: 1` keeps
  them one row); `read_in = Linear(d + 2, n_embd)` replaces `wte(idx)` (tokens: tasks.py);
- `read_out = Linear(n_embd, 1)` on `ln_f(h)` replaces the unembedding; the prediction
  for y_{k+1} is the read-out at the query token (x_{k+1}, 0, 0) (even positions 0, 2, 4, ...).

The forward below is GPT.forward's loop without the token table and the KV cache (those
are all it drops). `hidden_states` follow core's indexing: [0] = read-in + positions,
[i] = the residual stream after block i (before `ln_f`), which the probes read.

Training (`ICLModule`, Garg §2): the loss is the mean squared error of the prediction at
every x position, (1/K) sum_k (f(P_k) - y_{k+1})^2, averaged over the batch; AdamW with
warmup-cosine from `core.train.adamw` (Garg: Adam, constant lr 1e-4, 500k steps).
"""

from __future__ import annotations

import lightning as L
import torch
import torch.nn as nn

from toyrepro.core.config import OptimConfig
from toyrepro.core.train import adamw, check_finite, logs_this_step
from toyrepro.core.transformer import GPT, GPTConfig


class ICLTransformer(nn.Module):
    def __init__(self, cfg: GPTConfig, dims: int):
        super().__init__()
        self.gpt = GPT(cfg)  # blocks, position table, final LayerNorm, GPT-2 init
        self.read_in = nn.Linear(dims + 2, cfg.n_embd)  # token = (x, y, is_example): tasks.py
        self.read_out = nn.Linear(cfg.n_embd, 1)
        for m in (self.read_in, self.read_out):  # GPT-2's init for Linear layers (core/transformer.py)
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
            nn.init.zeros_(m.bias)

    def forward(self, tokens: torch.Tensor, output_hidden_states: bool = False):
        """tokens (B, 2K, d + 2) -> predictions (B, K) at the x tokens [, hidden states (B, 2K, C) per layer]."""
        T = tokens.size(1)
        if T > self.gpt.cfg.block_size:
            raise ValueError(f"prompt of {T} tokens exceeds model.block_size={self.gpt.cfg.block_size}")
        pos = torch.arange(T, device=tokens.device)
        x = self.gpt.drop(self.read_in(tokens) + self.gpt.wpe(pos))
        hidden = [x]
        for block in self.gpt.h:
            x, _ = block(x)
            hidden.append(x)
        pred = self.read_out(self.gpt.ln_f(x)).squeeze(-1)[:, 0::2]
        return (pred, tuple(hidden)) if output_hidden_states else pred

    @torch.no_grad()
    def predict(self, tokens: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
        """Predictions (n, K) in eval mode, in batches, on the model's device; returned on CPU."""
        was, dev = self.training, self.read_in.weight.device
        self.eval()
        out = torch.cat([self(t.to(dev)).float().cpu() for t in tokens.split(batch_size)])
        self.train(was)
        return out


def prompt_mse(pred: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """Garg §2's training loss: squared error averaged over every query position and prompt."""
    return ((pred.float() - ys.float()) ** 2).mean()


class ICLModule(L.LightningModule):
    """Fits an ICLTransformer on `PromptBatches` (each loader item is one whole batch)."""

    def __init__(self, model: ICLTransformer, optim: OptimConfig, max_steps: int, stage: str):
        super().__init__()
        self.model, self.optim, self.max_steps, self.stage = model, optim, max_steps, stage

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = prompt_mse(self.model(batch["tokens"]), batch["ys"])
        check_finite(loss, self.stage, self.global_step)
        if logs_this_step(self):
            d = batch["tokens"].size(-1) - 2  # a token is (x, y, is_example): tasks.interleave
            self.log(f"{self.stage}/loss", loss, prog_bar=True, batch_size=batch["ys"].size(0))
            self.log(f"{self.stage}/error_over_d", loss / d, batch_size=batch["ys"].size(0))  # Garg's plotted scale
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        loss = prompt_mse(self.model(batch["tokens"]), batch["ys"])
        self.log(f"{self.stage}/val_loss", loss, prog_bar=True, batch_size=batch["ys"].size(0))

    def configure_optimizers(self):
        return adamw(self.model, self.optim, self.max_steps)
