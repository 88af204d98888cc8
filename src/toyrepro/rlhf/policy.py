"""What every stage does with a policy: sample completions, score their log-probabilities.

Sequences are `prompt (P tokens) + completion (L tokens)`, all of the same length (the
language has no end-of-sequence token), so no padding or masks are needed anywhere.

- `sample_completions`: exact sampling (temperature 1, no top-k/top-p) through the core's
  KV-cache `generate`, so the samples come from the policy itself and KL estimates from
  them are unbiased (Ziegler et al. 2019 §2);
- `completion_logprobs`: log pi(y_t | prompt, y_<t) for each completion token, (B, L), and
  optionally the hidden state the value head reads;
- `PolicyValue`: the PPO policy, a GPT plus a scalar value head on the final (post
  LayerNorm) hidden state, as in trl's `AutoModelForCausalLMWithValueHead`.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from toyrepro.core.generate import generate
from toyrepro.core.transformer import GPT


@torch.no_grad()
def sample_completions(model: GPT, prompts: torch.Tensor, length: int, generator: torch.Generator,
                       batch_size: int = 1024) -> torch.Tensor:
    """(B, L) completions sampled exactly from `model` after each prompt."""
    device = next(model.parameters()).device
    outs = []
    for i in range(0, prompts.size(0), batch_size):
        p = prompts[i : i + batch_size].to(device)
        outs.append(generate(model, p, length, temperature=1.0, generator=generator)[:, p.size(1):].cpu())
    return torch.cat(outs)


def in_float32(device: torch.device):
    """Autocast off on `device`: log-probs that are compared with ones computed outside training
    (DPO's precomputed reference, the evaluator's SFT baseline) are computed in float32 on both
    sides, whatever `trainer.precision` is (under bf16-mixed, DPO's first loss is then log 2)."""
    return torch.autocast(device.type, enabled=False)


def completion_logprobs(model: GPT, prompts: torch.Tensor, completions: torch.Tensor,
                        return_hidden: bool = False):
    """log-probs (B, L) of the completion tokens; with `return_hidden`, also the entropy (B, L)
    and the post-LayerNorm hidden states (B, L, C) at the positions that predict them."""
    P = prompts.size(1)
    seq = torch.cat([prompts, completions], dim=1)
    out = model(seq[:, :-1], output_hidden_states=return_hidden)
    logits = out.logits[:, P - 1 :].float()  # position P-1+t predicts completion token t
    logp_all = F.log_softmax(logits, dim=-1)
    logp = logp_all.gather(-1, completions.unsqueeze(-1)).squeeze(-1)
    if not return_hidden:
        return logp
    entropy = -(logp_all.exp() * logp_all).sum(-1)
    hidden = model.ln_f(out.hidden_states[-1][:, P - 1 :])
    return logp, entropy, hidden


class PolicyValue(nn.Module):
    """A GPT policy with a scalar value head V(s_t) on the state before each completion token."""

    def __init__(self, gpt: GPT):
        super().__init__()
        self.gpt = gpt
        self.value_head = nn.Linear(gpt.cfg.n_embd, 1)
        nn.init.zeros_(self.value_head.weight)
        nn.init.zeros_(self.value_head.bias)

    def forward(self, prompts: torch.Tensor, completions: torch.Tensor):
        """(log-probs (B, L), entropy (B, L), values (B, L))."""
        logp, entropy, hidden = completion_logprobs(self.gpt, prompts, completions, return_hidden=True)
        return logp, entropy, self.value_head(hidden).squeeze(-1)
