"""What the `gpt` scorecard measures: held-out bits/char of the model and two baselines.

- model: cross-entropy in bits per character on held-out files, with a sliding window of
  `block_size` and stride `block_size // 2` (every character after the first window is
  scored with at least half a window of context);
- unigram: the character-frequency model of the training text (add-one smoothing), i.e.
  the entropy a model with no context pays;
- gzip -9: compressed size x 8 / length, on the same held-out text — the bar the
  "GPT in 60 lines" spirit sets at scale=full: a language model is a compressor.
"""

from __future__ import annotations

import gzip
import math

import torch
import torch.nn.functional as F

from toyrepro.core.transformer import GPT


@torch.no_grad()
def model_bits_per_char(model: GPT, text: torch.Tensor, batch_size: int = 16) -> float:
    model.eval()
    T = model.cfg.block_size
    stride = T // 2
    device = next(model.parameters()).device
    n = text.numel()
    starts = list(range(0, max(1, n - T), stride))
    total_nll, total_count = 0.0, 0
    for i in range(0, len(starts), batch_size):
        chunk = starts[i : i + batch_size]
        windows = torch.stack([text[s : s + T + 1].long() for s in chunk if s + T + 1 <= n])
        if windows.numel() == 0:
            break
        windows = windows.to(device)
        logits = model(windows[:, :-1]).logits.float()
        nll = F.cross_entropy(logits.transpose(1, 2), windows[:, 1:], reduction="none")  # (B, T)
        for row, s in zip(nll, chunk):
            scored = row if s == 0 else row[T - stride :]
            total_nll += float(scored.sum())
            total_count += scored.numel()
    return total_nll / max(1, total_count) / math.log(2)


def unigram_bits_per_char(train: torch.Tensor, val: torch.Tensor, vocab: int = 256) -> float:
    counts = torch.bincount(train.long(), minlength=vocab).double() + 1.0
    logp = torch.log2(counts / counts.sum())
    return float(-logp[val.long()].mean())


def gzip_bits_per_char(val: torch.Tensor) -> float:
    raw = bytes(val.tolist())
    return len(gzip.compress(raw, compresslevel=9)) * 8 / len(raw)


def printable_fraction(text: str) -> float:
    ok = sum(1 for ch in text if ch.isprintable() or ch in "\n\t")
    return ok / max(1, len(text))
