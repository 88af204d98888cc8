"""Active selection: ask the expert only about the pairs the policy is least sure of.

The DPO policy carries an implicit reward r(x, y) = beta * log(pi(y|x) / pi_ref(y|x))
(Rafailov et al. 2023, §5, eq. 5 up to the partition function, which cancels in a pair), so
its Bradley-Terry belief that y_a beats y_b is sigmoid(m) with the margin

    m = r(x, y_a) - r(x, y_b) = beta * [(log pi(y_a) - log ref(y_a)) - (log pi(y_b) - log ref(y_b))].

Uncertainty sampling (Lewis & Gale 1994; for preference pairs, e.g. Mehta et al. 2023,
"Sample Efficient RLHF via Active Exploration") asks about the pairs with the smallest |m|,
where the policy's belief is closest to a coin flip. Issue 22 names this criterion ("smallest
implicit-reward margin"); a reward-model ensemble's disagreement is the other it allows and is
not built here. In the first round the policy is the reference, every margin is 0, and the
choice falls back to the pool's order (a random sample): active = online in round 1.
"""

from __future__ import annotations

import torch

from toyrepro.core.transformer import GPT
from toyrepro.rlhf.dpo import sequence_logprobs


def implicit_margin(pi_a: torch.Tensor, pi_b: torch.Tensor, ref_a: torch.Tensor, ref_b: torch.Tensor,
                    beta: float) -> torch.Tensor:
    """beta * [(log pi(a) - log ref(a)) - (log pi(b) - log ref(b))] from sequence log-probs."""
    return beta * ((pi_a - ref_a) - (pi_b - ref_b))


@torch.no_grad()
def implicit_margins(policy: GPT, ref: GPT, prompts: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
                     beta: float) -> torch.Tensor:
    """The policy's implicit-reward margin of a over b for each pair (N,)."""
    return implicit_margin(sequence_logprobs(policy, prompts, a), sequence_logprobs(policy, prompts, b),
                           sequence_logprobs(ref, prompts, a), sequence_logprobs(ref, prompts, b), beta)


def smallest_margin(margins: torch.Tensor, n: int) -> torch.Tensor:
    """Indices of the n pairs with the smallest |margin|, ties kept in pool order."""
    if not 1 <= n <= margins.numel():
        raise ValueError(f"cannot pick {n} of {margins.numel()} candidate pairs; pick between 1 and the pool size")
    return torch.sort(torch.argsort(margins.abs(), stable=True)[:n]).values
