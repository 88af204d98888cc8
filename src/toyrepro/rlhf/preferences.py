"""Preference pairs labelled by the hidden gold reward (DPO App. C.1 protocol).

For each prompt, `k` completions are sampled from the SFT model and all k(k-1)/2 pairs are
labelled (DPO App. C.1: 4 samples, 6 pairs per prompt). A label is a Bradley-Terry draw

    P(a preferred to b) = sigmoid((gold(a) - gold(b)) / temperature)

(noisy, like human raters), or with `deterministic=True` simply the higher gold reward.
Pairs with exactly equal gold reward carry no preference and are dropped.

Bayes ceiling: no reward model can predict a noisy label better than the gold reward
itself, which agrees with it with probability sigmoid(|Δgold| / temperature). We report
both that expectation and the empirical agreement of gold with the drawn labels on the
held-out pairs (the latter is what the reward-model claim compares against).

Deviation: DPO labels with a sentiment classifier's probability; we draw from the gold
reward directly (the classifier *is* our gold reward).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from toyrepro.core.checks import UserError


class PreferenceDataError(UserError):
    """Bad preference data: the message names the offending item and the fix."""


def check_samples(completions: Sequence[Sequence[Sequence[int]]] | torch.Tensor,
                  rewards: Sequence[Sequence[float]] | torch.Tensor) -> None:
    """Reject empty completions and non-finite rewards, naming the first offender."""
    for i, (comps, rs) in enumerate(zip(completions, rewards)):
        if len(comps) != len(rs):
            raise PreferenceDataError(f"preference data: prompt {i} has {len(comps)} completions but "
                                      f"{len(rs)} rewards; give one reward per completion")
        for j, (c, r) in enumerate(zip(comps, rs)):
            if len(c) == 0:
                raise PreferenceDataError(
                    f"preference data: completion {j} of prompt {i} is empty; every completion needs at "
                    "least one token (check the sampler's completion length)")
            if not math.isfinite(float(r)):
                raise PreferenceDataError(
                    f"preference data: reward of completion {j} of prompt {i} is {float(r)}; rewards must be "
                    "finite (fix the reward function or drop that sample)")


@dataclass
class Pairs:
    prompt: torch.Tensor  # (N, P)
    chosen: torch.Tensor  # (N, L)
    rejected: torch.Tensor  # (N, L)
    gold_chosen: torch.Tensor  # (N,)
    gold_rejected: torch.Tensor  # (N,)
    p_agree: torch.Tensor  # (N,) P(label agrees with the gold preference) under the label model
    prompt_id: torch.Tensor  # (N,) which prompt the pair comes from

    def __len__(self) -> int:
        return self.prompt.size(0)

    @property
    def gold_agrees(self) -> torch.Tensor:
        """Whether the gold reward prefers the labelled-chosen completion."""
        return self.gold_chosen > self.gold_rejected

    def bayes_ceiling(self) -> tuple[float, float]:
        """(empirical agreement of gold with the labels, its expectation under Bradley-Terry)."""
        return float(self.gold_agrees.float().mean()), float(self.p_agree.mean())

    def subset(self, idx: torch.Tensor) -> Pairs:
        return Pairs(*(getattr(self, f)[idx] for f in self.__dataclass_fields__))

    def to_dict(self) -> dict[str, torch.Tensor]:
        return {f: getattr(self, f) for f in self.__dataclass_fields__}


def make_pairs(prompts: torch.Tensor, completions: torch.Tensor, gold: torch.Tensor, deterministic: bool,
               temperature: float, generator: torch.Generator) -> Pairs:
    """All pairs among each prompt's samples, labelled by the gold reward.

    prompts (M, P), completions (M, k, L), gold (M, k)."""
    check_samples(completions, gold)
    M, k, _ = completions.shape
    rows = []
    for a in range(k):
        for b in range(a + 1, k):
            rows.append((a, b))
    ia = torch.tensor([a for a, _ in rows]).repeat(M)
    ib = torch.tensor([b for _, b in rows]).repeat(M)
    im = torch.arange(M).repeat_interleave(len(rows))
    ga, gb = gold[im, ia], gold[im, ib]
    keep = ga != gb
    im, ia, ib, ga, gb = im[keep], ia[keep], ib[keep], ga[keep], gb[keep]
    delta = (ga - gb) / temperature
    if deterministic:
        a_wins = delta > 0
        p_agree = torch.ones_like(delta)
    else:
        a_wins = torch.rand(delta.shape, generator=generator) < torch.sigmoid(delta)
        p_agree = torch.sigmoid(delta.abs())
    ca = completions[im, ia]
    cb = completions[im, ib]
    w = a_wins.unsqueeze(1)
    return Pairs(
        prompt=prompts[im],
        chosen=torch.where(w, ca, cb),
        rejected=torch.where(w, cb, ca),
        gold_chosen=torch.where(a_wins, ga, gb),
        gold_rejected=torch.where(a_wins, gb, ga),
        p_agree=p_agree,
        prompt_id=im,
    )


def split_by_prompt(pairs: Pairs, n_prompts: int, val_fraction: float) -> tuple[Pairs, Pairs]:
    """Hold out whole prompts: the pairs of the last `val_fraction` of prompts are validation."""
    n_val = max(1, int(round(val_fraction * n_prompts)))
    is_val = pairs.prompt_id >= n_prompts - n_val
    return pairs.subset(~is_val), pairs.subset(is_val)
