"""Autoregressive sampling with a KV cache.

Each step feeds only the newest token and reuses the keys/values of the prefix
(`GPT.forward(past_kv=..., use_cache=True)`), so a step costs O(T) instead of O(T^2). The
keys/values live in a `core.kv_cache.KVCache` allocated once for prompt + new tokens and
written in place (the growing list-of-tuples cache copied the prefix at every step; without that
copying the collapse experiment's sampling runs 1.23x faster, `benchmarks/sampling.py`); the
samples are bitwise the same either way.
`use_cache=False` recomputes the whole prefix every step: the slow reference the tests
and `benchmarks/` compare against.

Sampling modes:
- exact sampling: temperature 1, no top-k — samples from the model's own distribution,
  which KL estimates in RLHF (Ziegler et al. 2019) require;
- temperature T: logits / T;  top-k: keep the k most likely tokens;  greedy: temperature 0.

Devices: a generator made on another device than the logits (the experiments' seeded CPU
generators, with the model on CUDA) is honoured by drawing on the CPU: the random stream, and so
the samples for equal probabilities, do not depend on where the model runs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from toyrepro.core.kv_cache import KVCache
from toyrepro.core.transformer import GPT


def sample_next(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Draw one token per row from logits (B, V). temperature 0 means greedy."""
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if top_k is not None and not 1 <= top_k <= logits.size(-1):
        raise ValueError(f"top_k must be in [1, vocab_size={logits.size(-1)}], got {top_k}")
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits.float() / temperature
    if top_k is not None:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = F.softmax(logits, dim=-1)
    if generator is not None and generator.device != probs.device:
        # the experiments seed one CPU generator per stream; drawing on the CPU keeps that stream
        # the same whichever device the model is on (torch.multinomial refuses a generator of
        # another device); the cost is one (B, V) copy per step, small at these vocabularies
        return torch.multinomial(probs.cpu(), 1, generator=generator).to(probs.device)
    return torch.multinomial(probs, 1, generator=generator)


@torch.no_grad()
def generate(
    model: GPT,
    idx: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    use_cache: bool = True,
    generator: torch.Generator | None = None,
    static_cache: bool = True,
) -> torch.Tensor:
    """Append `max_new_tokens` sampled tokens to `idx` (B, T); returns (B, T + new).

    `static_cache=False` keeps the keys/values in the growing list-of-tuples cache instead of a
    `KVCache` (the same samples, slower: the reference the tests and `benchmarks/sampling.py`
    compare against)."""
    if idx.size(1) + max_new_tokens > model.cfg.block_size:
        raise ValueError(
            f"prompt ({idx.size(1)}) + max_new_tokens ({max_new_tokens}) exceeds "
            f"block_size={model.cfg.block_size}"
        )
    was_training = model.training
    model.eval()
    out = idx
    past = KVCache(model.cfg.n_layer, idx.size(1) + max_new_tokens) if static_cache else None
    step_input = idx
    for _ in range(max_new_tokens):
        if use_cache:
            res = model(step_input, past_kv=past, use_cache=True)
            past = res.past_kv
        else:
            res = model(out)
        nxt = sample_next(res.logits[:, -1, :], temperature, top_k, generator)
        out = torch.cat([out, nxt], dim=1)
        step_input = nxt
    model.train(was_training)
    return out
