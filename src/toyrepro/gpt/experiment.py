"""The `gpt` experiment, top to bottom: data -> train the from-scratch GPT -> score it.

Claims (scorecard):
- `beats_unigram`: held-out bits/char at least 1 bit below the character-frequency
  baseline (must pass at scale=quick);
- `beats_gzip`: held-out bits/char below gzip -9's on the same text (scale=full only;
  gzip's figure is reported in every run);
- `samples_are_text`: sampled continuations decode to printable text.
"""

from __future__ import annotations

import dataclasses
import logging
import sys

import matplotlib.pyplot as plt
import torch

from toyrepro.core.data import RandomWindows
from toyrepro.core.generate import generate
from toyrepro.core.run import RunContext
from toyrepro.core.scorecard import Claim
from toyrepro.core.stage import cached_stage
from toyrepro.core.transformer import GPT
from toyrepro.gpt.corpus import load_corpus
from toyrepro.gpt.evaluate import (
    gzip_bits_per_char,
    model_bits_per_char,
    printable_fraction,
    unigram_bits_per_char,
)

log = logging.getLogger("toyrepro")
SOURCE = "GPT in 60 lines of NumPy (Mody 2023); GPT-2 (Radford et al. 2019)"


def claims(cfg=None) -> list[Claim]:
    return [
        Claim("beats_unigram", "held-out bits/char at least 1 bit below the unigram baseline "
              "(value = unigram - model)", SOURCE, ">=", 1.0, scales=("quick", "full")),
        Claim("beats_gzip", "held-out bits/char below gzip -9 on the same text (value = gzip - model)",
              SOURCE, ">", 0.0, scales=("full",)),
        Claim("samples_are_text", "sampled continuations decode to printable text (fraction)",
              SOURCE, ">=", 0.95, scales=("quick", "full")),
    ]


def run(ctx: RunContext) -> None:
    cfg, task, card = ctx.cfg, ctx.cfg.gpt, ctx.card
    train_text, val_text = load_corpus(cfg.cache_dir, task.max_files, task.val_fraction)
    log.info("corpus: %d train / %d held-out characters", train_text.numel(), val_text.numel())

    model = train_model(ctx, train_text, val_text, task.max_files, task.val_fraction)

    held_out = val_text[: task.max_val_chars]
    bpc = model_bits_per_char(model, held_out)
    unigram = unigram_bits_per_char(train_text, held_out)
    gz = gzip_bits_per_char(held_out)
    card.record("beats_unigram", unigram - bpc, f"model {bpc:.3f}, unigram {unigram:.3f} bits/char")
    card.record("beats_gzip", gz - bpc, f"model {bpc:.3f}, gzip -9 {gz:.3f} bits/char")

    prompt = torch.tensor([list(b"def ")], device=next(model.parameters()).device)
    g = torch.Generator(device=prompt.device).manual_seed(cfg.seed)
    n_new = min(task.sample_chars, cfg.model.block_size - prompt.size(1))
    out = generate(model, prompt, n_new, temperature=task.sample_temperature, top_k=task.sample_top_k or None,
                   generator=g)
    sample = bytes(out[0].tolist()).decode("utf-8", errors="replace")
    frac = printable_fraction(sample)
    card.record("samples_are_text", frac, "see samples.txt")
    ctx.write_text("samples.txt", sample + "\n")
    log.info("sample:\n%s", sample)

    ctx.save_figure(bits_figure(bpc, unigram, gz), "bits_per_char")


def model_params(cfg, max_files: int, val_fraction: float) -> dict:
    """Everything that determines the trained model: its key in the stage cache (`gpt_model`)."""
    t = cfg.trainer
    return {"seed": cfg.seed, "model": dataclasses.asdict(cfg.model), "optim": dataclasses.asdict(cfg.optim),
            "steps": t.max_steps, "trainer": {"precision": t.precision, "gradient_clip_val": t.gradient_clip_val,
                                              "compile": t.compile},
            "data": {"max_files": max_files, "val_fraction": val_fraction, "python": sys.version.split()[0]}}


def train_model(ctx: RunContext, train_text: torch.Tensor, val_text: torch.Tensor, max_files: int,
                val_fraction: float) -> GPT:
    """Train the GPT (stage `train`), then publish its weights to the stage cache so another
    experiment (`compression`) with the same `model_params` loads them instead of training again.
    This experiment always trains (a rerun or a killed run redoes its own fit and checkpoints)."""
    cfg = ctx.cfg
    model = GPT(cfg.model)
    log.info("model: %.2fM parameters", model.num_params() / 1e6)
    bs, steps, T = cfg.optim.batch_size, cfg.trainer.max_steps, cfg.model.block_size
    ctx.train_lm("train", model,  # compiled by core under trainer.compile
                 RandomWindows(train_text, T, steps * bs, seed=cfg.seed),
                 RandomWindows(val_text, T, cfg.trainer.limit_val_batches * bs, seed=10_000 + cfg.seed))
    cached_stage(cfg.cache_dir, "gpt_model", model_params(cfg, max_files, val_fraction),
                 lambda tmp: torch.save(model.state_dict(), tmp / "model.pt"))
    return model


def bits_figure(model_bpc: float, unigram: float, gz: float) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(5, 3))
    names, values = ["unigram", "gzip -9", "GPT"], [unigram, gz, model_bpc]
    ax.bar(names, values, color=["#999", "#c96", "#369"])
    for i, v in enumerate(values):
        ax.text(i, v, f"{v:.2f}", ha="center", va="bottom")
    ax.set_ylabel("held-out bits / char")
    ax.set_title("GPT vs baselines (lower is better)")
    return fig
