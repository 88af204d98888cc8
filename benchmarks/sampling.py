"""3. Sampling 128 new tokens: KV cache vs recomputing the prefix, and vs HF `generate`.

Greedy decoding (so every side does the same work), batch 8, same weights. Targets:
cache / recompute speed-up >= 5; ours / `GPT2LMHeadModel.generate` >= 1.0.

Also the preallocated `KVCache` against the growing list-of-tuples cache it replaced
(`generate(static_cache=False)`), on the collapse experiment's sampling workload (2 layers x 64,
500 sequences, 64 new bytes, temperature 1, seeded): the same samples (asserted), no target of
an issue; 1.0 would mean it bought nothing.
"""

from __future__ import annotations

import torch

from toyrepro.core.generate import generate
from toyrepro.core.transformer import GPT, GPTConfig

from harness import compare, record


def run(tiny: bool = False) -> dict:
    new = 8 if tiny else 128
    cfg = GPTConfig(block_size=256, n_layer=1 if tiny else 4, n_head=2 if tiny else 4,
                    n_embd=32 if tiny else 128)
    torch.manual_seed(0)
    model = GPT(cfg).eval()
    hf = model.to_hf()
    prompt = torch.randint(0, 256, (8, 16))

    def cached():
        generate(model, prompt, new, temperature=0, use_cache=True)

    def recompute():
        generate(model, prompt, new, temperature=0, use_cache=False)

    @torch.no_grad()
    def hf_generate():
        hf.generate(prompt, max_new_tokens=new, min_new_tokens=new, do_sample=False,
                    attention_mask=torch.ones_like(prompt), pad_token_id=0)

    reps = 1 if tiny else 5
    small = GPT(GPTConfig(block_size=72, n_layer=1 if tiny else 2, n_head=2, n_embd=64)).eval()
    rows, bos = (8 if tiny else 500), torch.full((8 if tiny else 500, 1), 10, dtype=torch.long)

    def sample(static: bool) -> torch.Tensor:
        return generate(small, bos, new if tiny else 64, temperature=1.0, generator=torch.Generator().manual_seed(0),
                        static_cache=static)

    assert torch.equal(sample(True), sample(False))
    t_static, t_growing = compare(lambda: sample(True), lambda: sample(False), reps=reps)
    t_cache, t_full = compare(cached, recompute, reps=reps)
    t_cache2, t_hf = compare(cached, hf_generate, reps=reps)
    assert torch.equal(generate(model, prompt, new, temperature=0),
                       hf.generate(prompt, max_new_tokens=new, min_new_tokens=new, do_sample=False,
                                   attention_mask=torch.ones_like(prompt), pad_token_id=0))
    return record("sampling", {"cache_s": t_cache, "recompute_s": t_full, "hf_generate_s": t_hf,
                               "cache_s_vs_hf_run": t_cache2, "new_tokens": new, "batch": 8,
                               "static_cache_s": t_static, "growing_cache_s": t_growing, "static_rows": rows},
                  {"KV cache vs recompute": {"value": t_full / t_cache, "target": 5.0},
                   "ours vs HF generate": {"value": t_hf / t_cache2, "target": 1.0},
                   "preallocated vs growing KV cache (collapse's sampling)": {"value": t_growing / t_static,
                                                                              "target": 1.0}})


if __name__ == "__main__":
    print(run())
