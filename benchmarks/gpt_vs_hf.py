"""2. Training-step throughput: our `core/transformer.py` vs `transformers.GPT2LMHeadModel`.

Same config and weights (`GPT.to_hf()`), same batch, AdamW step included. Tokens/s ratio
(ours / HF), eager and with both models under `torch.compile` (inductor; on CPU it builds C++
with the system compiler; the first calls, which compile, are the untimed warm-up). Target >= 1.2
on CPU (>= 1.5 on GPU with bf16 + torch.compile).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from toyrepro.core.transformer import GPT, GPTConfig

from harness import compare, record


def step_fn(model, x, y, bf16: bool = False, fused: bool = False):
    """One AdamW training step of `model` on (x, y); `bf16`: the forward under bf16 autocast (the
    loss in float32, as the suite trains), `fused`: the fused CUDA AdamW (the GPU check's MFU)."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=fused)

    def step():
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = model(x).logits
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def run(tiny: bool = False) -> dict:
    cfg = GPTConfig(vocab_size=256, block_size=128 if not tiny else 16, n_layer=4 if not tiny else 1,
                    n_head=4 if not tiny else 2, n_embd=128 if not tiny else 16)
    bs = 16 if not tiny else 2
    torch.manual_seed(0)
    ours = GPT(cfg).train()
    theirs = ours.to_hf().train()
    # HF's default attention on CPU is SDPA too; make sure both run the same kernel family.
    x = torch.randint(0, cfg.vocab_size, (bs, cfg.block_size))
    y = torch.randint(0, cfg.vocab_size, (bs, cfg.block_size))
    reps, number = (1, 1) if tiny else (7, 3)
    t_ours, t_hf = compare(step_fn(ours, x, y), step_fn(theirs, x, y), reps=reps, number=number)
    tc_ours, tc_hf = compare(step_fn(torch.compile(ours), x, y), step_fn(torch.compile(theirs), x, y),
                             reps=reps, number=number, warmup=2)
    tokens = bs * cfg.block_size
    return record("gpt_vs_hf", {"ours_tokens_per_s": tokens / t_ours, "hf_tokens_per_s": tokens / t_hf,
                                "ours_compiled_tokens_per_s": tokens / tc_ours,
                                "hf_compiled_tokens_per_s": tokens / tc_hf,
                                "hf_attn_implementation": theirs.config._attn_implementation},
                  {"ours/HF training tokens/s": {"value": t_hf / t_ours, "target": 1.2},
                   "ours/HF training tokens/s, both compiled": {"value": tc_hf / tc_ours, "target": 1.2}})


if __name__ == "__main__":
    print(run())
