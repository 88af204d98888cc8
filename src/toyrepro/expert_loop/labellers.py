"""Who answers the pairwise questions: the expert, the crowd, or the policy itself.

A question is a prompt and two completions; an answer is which of the two is preferred. The
expert is the `rlhf` experiment's labeller (`rlhf.preferences.make_pairs`): a Bradley-Terry
draw from the hidden gold reward,

    P(a preferred to b) = sigmoid((gold(a) - gold(b)) / temperature)        (Bradley & Terry 1952)

with rlhf's temperature; the crowd is the same labeller at a much higher temperature (noisier
answers). Only the labeller holds the `Language` (and so the gold reward): the round loop
receives chosen/rejected completions and nothing else (no gold values, no agreement
probabilities), so the policy learns from labels alone.

Every question asked counts against the budget, including the rare pair whose two
completions have exactly equal gold reward: the expert answers "no preference" (make_pairs
drops it), which is a spent question that yields no training pair.

`SelfLabeller` is the self-rewarding control (issue 22, arm 4; cf. Yuan et al. 2024, with the
DPO implicit reward beta * log(pi / pi_ref) as the judge instead of an LLM-as-a-judge prompt):
the policy prefers whichever completion its own implicit reward ranks higher, a fair coin
where the two tie (always so in the first round, when the policy is the reference). It asks
no expert, so it spends no labels.
"""

from __future__ import annotations

import torch

from toyrepro.core.transformer import GPT
from toyrepro.expert_loop.active import implicit_margins
from toyrepro.rlhf.language import Language
from toyrepro.rlhf.preferences import make_pairs


class Labeller:
    """The expert (or the crowd): answers questions from the hidden gold reward; counts them."""

    def __init__(self, lang: Language, temperature: float, deterministic: bool, seed: int):
        self._lang = lang  # private: the gold reward never leaves this object
        self.temperature, self.deterministic = temperature, deterministic
        self._g = torch.Generator().manual_seed(seed)
        self.asked = 0  # questions answered so far (the labels counted against the budget)

    def __call__(self, prompts: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(prompt, chosen, rejected) for the answered questions (ties carry no preference)."""
        self.asked += prompts.size(0)
        comps = torch.stack([a, b], 1)
        gold = self._lang.gold_reward(prompts.repeat_interleave(2, 0), comps.flatten(0, 1)).view(-1, 2)
        pairs = make_pairs(prompts, comps, gold, self.deterministic, self.temperature, self._g)
        return pairs.prompt, pairs.chosen, pairs.rejected


class SelfLabeller:
    """The self-rewarding control: the current policy judges its own pairs; asks no expert."""

    def __init__(self, ref: GPT, beta: float, seed: int):
        self.ref, self.beta = ref, beta
        self.policy: GPT | None = None  # the judge: set by the round loop to the current policy
        self._g = torch.Generator().manual_seed(seed)
        self.asked = 0  # expert questions: always 0
        self.judged = 0  # pairs the policy judged itself

    def __call__(self, prompts: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, ...]:
        self.judged += prompts.size(0)
        margin = implicit_margins(self.policy, self.ref, prompts, a, b, self.beta)
        coin = torch.rand(margin.shape, generator=self._g) < 0.5
        a_wins = torch.where(margin == 0, coin, margin > 0).unsqueeze(1)
        return prompts, torch.where(a_wins, a, b), torch.where(a_wins, b, a)
