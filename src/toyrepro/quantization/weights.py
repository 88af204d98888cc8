"""Which weights of a model are quantised, and the model temporarily in one format.

"Every linear weight" (GPTQ §5 quantises every nn.Linear of the transformer blocks; llama.cpp
every 2-D tensor): each `nn.Linear` weight, plus (the `quantize_embeddings` knob) each
`nn.Embedding` weight, the token and position embeddings. An unembedding tied to the token
embedding (our GPT, SmolLM2) *is* that embedding and follows the knob. Biases and norms stay
float32 (as in both).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn as nn

from toyrepro.quantization.formats import Format, roundtrip


def quantizable(model: nn.Module, embeddings: bool) -> dict[str, nn.Parameter]:
    """name -> weight for every nn.Linear (and, if `embeddings`, nn.Embedding) weight, each once."""
    embedding_ids = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    out: dict[str, nn.Parameter] = {}
    seen: set[int] = set()
    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear | nn.Embedding) or id(module.weight) in seen:
            continue
        if id(module.weight) in embedding_ids and not embeddings:
            continue
        seen.add(id(module.weight))
        out[f"{name}.weight"] = module.weight
    return out


@dataclass
class WeightReport:
    """What a format did to the quantised weights."""

    n_weights: int  # scalars quantised
    bits_per_weight: float  # storage incl. scales, averaged over those scalars
    rel_error: float  # ||W_q - W||_F / ||W||_F over all of them together
    max_tensor_error: float  # the largest per-tensor relative error


@contextmanager
def quantized(model: nn.Module, fmt: Format, embeddings: bool = False) -> Iterator[WeightReport]:
    """`model` with its quantizable weights replaced in place by their `fmt` round trip
    (dequantised float32); the original values are restored on exit, bit for bit."""
    weights = quantizable(model, embeddings)
    originals = {n: w.detach().clone() for n, w in weights.items()}
    err2 = ref2 = 0.0
    bits = worst = 0.0
    n_total = 0
    try:
        with torch.no_grad():
            for name, w in weights.items():
                q = roundtrip(originals[name], fmt).to(w.dtype)
                e2, r2 = float(((q - originals[name]).double() ** 2).sum()), float((originals[name].double() ** 2).sum())
                err2, ref2 = err2 + e2, ref2 + r2
                worst = max(worst, (e2 / r2) ** 0.5 if r2 else 0.0)
                bits += fmt.bits_per_weight(tuple(w.shape)) * w.numel()
                n_total += w.numel()
                w.copy_(q)
        yield WeightReport(n_total, bits / max(n_total, 1), (err2 / ref2) ** 0.5 if ref2 else 0.0, worst)
    finally:
        with torch.no_grad():
            for name, w in weights.items():
                w.copy_(originals[name])
