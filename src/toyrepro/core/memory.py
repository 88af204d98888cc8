"""Memory: what one training step of the config's GPT (`model:`) holds, said at the start of a run.

An estimate, not a measurement, of the terms that dominate (Korthikanti et al. 2022, "Reducing
Activation Recomputation in Large Transformer Models", §4.1):

- weights, gradients and AdamW's two moments in float32: 16 bytes per parameter (mixed precision
  keeps float32 master weights; autocast's bf16 copies are transient);
- activations saved for the backward pass: (34 C + 5 h T) bytes per token per layer at 16 bits
  (Korthikanti's eq. for a GPT layer without recomputation; the 5 h T term is the attention
  matrix, which a fused attention kernel does not keep, so this is an upper bound), twice that
  in float32;
- the logits: B T V values kept in the model's precision, their float32 copy for the loss and its
  gradient (2 + 4 + 4 bytes each under bf16-mixed, 12 in float32).

Experiments whose models are not the `model:` GPT (GHN, liquid, SmolLM2: `Experiment.model_is_gpt`
False) get `no_estimate_line` instead, which says so; the peak resident memory their capped full
presets measured on CPU is in tests/test_gpu_path.py's docstring and their README's GPU section.
"""

from __future__ import annotations

from toyrepro.core.disk import gpt_params
from toyrepro.core.transformer import GPTConfig

GPU_BYTES = 141e9  # one H200
RAM_BYTES = 128e9  # the H200 machine's host memory


def gpt_training_bytes(m: GPTConfig, batch: int, precision: str) -> dict[str, float]:
    """Bytes of one training step: {'state', 'activations', 'logits', 'total'}."""
    n = gpt_params(m.vocab_size, m.block_size, m.n_layer, m.n_embd)
    half = precision.startswith(("bf16", "16"))
    tokens = batch * m.block_size
    per_token_layer = (34 * m.n_embd + 5 * m.n_head * m.block_size) * (1 if half else 2)
    out = {"params": float(n), "state": 16.0 * n, "activations": float(tokens * m.n_layer * per_token_layer),
           "logits": float(tokens * m.vocab_size * (10 if half else 12))}
    out["total"] = out["state"] + out["activations"] + out["logits"]
    return out


def memory_line(m: GPTConfig, batch: int, precision: str) -> str:
    """One log line: the estimate in GB and whether it fits one H200 (GPU) and its host RAM."""
    e = gpt_training_bytes(m, batch, precision)
    fits = "fits" if e["total"] < min(GPU_BYTES, RAM_BYTES) else "DOES NOT FIT"
    return (f"memory: the model: GPT ({e['params'] / 1e6:.1f}M parameters) at batch {batch} x {m.block_size}, "
            f"{precision}: ~{e['total'] / 1e9:.2f} GB per training step (weights+grads+AdamW "
            f"{e['state'] / 1e9:.2f}, activations {e['activations'] / 1e9:.2f}, logits {e['logits'] / 1e9:.2f}); "
            f"{fits} one H200 (141 GB GPU, 128 GB RAM)")


def no_estimate_line(name: str) -> str:
    """The start-of-run line of an experiment whose models are not the `model:` GPT."""
    return (f"memory: the model: {name}'s models are not the `model:` GPT, so no estimate is made here; "
            "the capped full preset's measured peak resident memory is in tests/test_gpu_path.py")
