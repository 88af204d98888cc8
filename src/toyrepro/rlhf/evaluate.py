"""How every policy is scored: gold reward, proxy reward and KL to the SFT reference.

On a fixed set of held-out prompts, `Evaluator(policy)` samples one completion per prompt
by exact sampling (temperature 1, no top-k, as KL estimates require) and returns

- `gold`: mean hidden gold reward;  `proxy`: mean (normalised) reward-model score;
- `kl`: mean sequence KL(policy || SFT) by the k1 estimator sum_t log pi/pi_ref (unbiased);
- `kl_k3`: the k3 estimator (unbiased, non-negative, lower variance).

Every call uses the same random stream, so two policies are compared on common random
numbers. The SFT reference's own gold mean and standard deviation are the units in which
the claims state improvements.
"""

from __future__ import annotations

import torch

from toyrepro.core.transformer import GPT
from toyrepro.rlhf.language import Language
from toyrepro.rlhf.policy import completion_logprobs, in_float32, sample_completions
from toyrepro.rlhf.ppo import kl_estimators
from toyrepro.rlhf.reward_model import RewardModel


class Evaluator:
    def __init__(self, lang: Language, ref: GPT, rm: RewardModel, n_prompts: int, seed: int):
        self.lang, self.ref, self.rm, self.seed = lang, ref, rm, seed
        self.prompts = lang.prompts(n_prompts, torch.Generator().manual_seed(seed * 31 + 3))
        base = self(ref)
        self.ref_gold, self.ref_proxy = base["gold"], base["proxy"]
        self.ref_gold_std = base["gold_std"]

    def __call__(self, policy: GPT) -> dict[str, float]:
        """Gold, proxy and KL to the reference, in float32 even when called from inside a
        bf16-mixed training step, so every point is comparable with the SFT baseline."""
        with torch.no_grad(), in_float32(next(policy.parameters()).device):
            return self._measure(policy)

    def _measure(self, policy: GPT) -> dict[str, float]:
        g = torch.Generator().manual_seed(self.seed * 31 + 4)
        was = policy.training
        policy.eval()
        device = next(policy.parameters()).device
        comps = sample_completions(policy, self.prompts, self.lang.completion_len, g)
        p, c = self.prompts.to(device), comps.to(device)
        ref = self.ref.to(device).eval()
        k1, k3 = kl_estimators(completion_logprobs(policy, p, c), completion_logprobs(ref, p, c))
        gold = self.lang.gold_reward(self.prompts, comps)
        policy.train(was)
        return {"gold": float(gold.mean()), "gold_std": float(gold.std()),
                "proxy": float(self.rm.to(device).score(p, c).mean()),
                "kl": float(k1.mean()), "kl_k3": float(k3.mean()),
                "illegal": float(self.lang.illegal_transitions(torch.cat([self.prompts[:, -1:], comps], 1))
                                 .float().mean())}

    def gain(self, gold: float) -> float:
        """Gold-reward improvement over the SFT reference, in reference standard deviations."""
        return (gold - self.ref_gold) / self.ref_gold_std
