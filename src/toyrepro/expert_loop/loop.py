"""The arms at one label budget B: static DPO, and the ask-then-update round loop.

Issue 22's protocol (after Xiong et al. 2024, iterative DPO, Alg. 1; Guo et al. 2024, online
AI feedback, Alg. 1):

- `run_static`: B pairs sampled from the SFT model up front and labelled by the expert (the
  `rlhf` experiment's cached preference data), then DPO on them: one round.
- `run_rounds`: R rounds; in each, sample B/R questions (a prompt and two completions) from
  the *current* policy, have them answered, continue DPO from the current policy on the
  answers. With `pool_factor`, sample pool_factor * B/R candidate pairs and ask only the B/R
  with the smallest implicit-reward margin (active.py). With a `SelfLabeller` the policy
  answers itself (the self-rewarding control); with a high-temperature `Labeller`, the crowd.

The loop sees prompts through `prompts(n, generator)` and answers through `label(prompts, a,
b) -> (prompt, chosen, rejected)`; it is never handed the language's gold reward. `evaluate`
(the experimenter's measurement: gold reward and KL on held-out prompts) is called after each
round and its result only goes into the trajectory, never back into training.

A question whose two completions are token-for-token identical is not asked (the learner can
see there is nothing to compare); it is resampled, up to `MAX_RESAMPLES` times, after which
the remaining questions are asked as they are (an expert answers "no preference": a label
spent for nothing). Every question asked counts against B, exactly.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from toyrepro.core.transformer import GPT
from toyrepro.expert_loop.active import implicit_margins, smallest_margin
from toyrepro.expert_loop.learner import DPOLearner
from toyrepro.rlhf.policy import sample_completions

MAX_RESAMPLES = 10
Prompts = Callable[[int, torch.Generator], torch.Tensor]
Label = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
Evaluate = Callable[[GPT], dict[str, float]] | None


def sample_questions(policy: GPT, prompts: Prompts, n: int, length: int, g: torch.Generator
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """n (prompt, a, b) questions, two exact samples of `policy` per prompt, a != b where possible."""
    got: list[tuple[torch.Tensor, ...]] = []
    have = 0
    for attempt in range(MAX_RESAMPLES + 1):
        p = prompts(n - have, g)
        c = sample_completions(policy, p.repeat_interleave(2, 0), length, g).view(-1, 2, length)
        keep = (c[:, 0] != c[:, 1]).any(1) if attempt < MAX_RESAMPLES else torch.ones(len(p), dtype=torch.bool)
        got.append((p[keep], c[keep, 0], c[keep, 1]))
        have += int(keep.sum())
        if have == n:
            break
    return tuple(torch.cat(parts) for parts in zip(*got))


def point(round_: int, labels: int, pairs: int, learner: DPOLearner, evaluate: Evaluate) -> dict[str, float]:
    """One trajectory entry: labels spent and pairs trained on so far, and the measurement."""
    out = {"round": round_, "labels": labels, "pairs": pairs, "steps": learner.steps}
    return out | (evaluate(learner.policy) if evaluate else {})


def run_static(learner: DPOLearner, data: tuple[torch.Tensor, torch.Tensor, torch.Tensor], budget: int,
               evaluate: Evaluate = None) -> list[dict[str, float]]:
    """Offline DPO on the first `budget` labelled SFT pairs of `data` (prompt, chosen, rejected)."""
    if data[0].size(0) < budget:
        raise ValueError(f"static arm: budget {budget} exceeds the {data[0].size(0)} labelled SFT pairs available; "
                         "raise rlhf.preferences.n_prompts or lower expert_loop.budgets")
    prompt, chosen, rejected = (t[:budget] for t in data)
    learner.update(prompt, chosen, rejected)
    return [point(1, budget, budget, learner, evaluate)]


def run_rounds(learner: DPOLearner, label: Label, prompts: Prompts, length: int, budget: int, rounds: int,
               seed: int, pool_factor: int = 0, evaluate: Evaluate = None, spends_labels: bool = True
               ) -> list[dict[str, float]]:
    """R rounds of: sample B/R questions from the current policy (the smallest-margin B/R of a
    pool of pool_factor * B/R when pool_factor > 0), get them answered, update by DPO."""
    if budget % rounds:
        raise ValueError(f"budget {budget} is not a multiple of rounds={rounds}; each round asks budget/rounds "
                         "questions, so pick a budget divisible by the rounds")
    per_round = budget // rounds
    g = torch.Generator().manual_seed(seed)
    asked = pairs = 0
    trajectory = []
    for r in range(1, rounds + 1):
        policy = learner.policy.eval()
        if pool_factor:
            p, a, b = sample_questions(policy, prompts, pool_factor * per_round, length, g)
            keep = smallest_margin(implicit_margins(policy, learner.ref, p, a, b, learner.beta), per_round)
            p, a, b = p[keep], a[keep], b[keep]
        else:
            p, a, b = sample_questions(policy, prompts, per_round, length, g)
        if hasattr(label, "policy"):  # the self-rewarding judge is the current policy
            label.policy = policy
        prompt, chosen, rejected = label(p, a, b)
        asked += p.size(0) if spends_labels else 0
        pairs += prompt.size(0)
        learner.update(prompt, chosen, rejected)
        trajectory.append(point(r, asked, pairs, learner, evaluate))
    return trajectory
