"""The synthetic language and the hidden gold reward that plays the human labeller.

The language is a random sparse Markov chain over `vocab` tokens: each token may be
followed by `branching` successors, with Dirichlet(1) transition probabilities. A tiny GPT
learns it by SFT on chain samples. Prompts are the first `prompt_len` tokens of a chain
sample (uniform start); completions are `completion_len` tokens.

The gold reward (hidden from every policy; only preference *labels* drawn from it are
seen, as in DPO §6.1 where a sentiment classifier plays this role):

    gold(prompt, completion) = sum_v sentiment[v] * (1 + rho + ... + rho^(count_v - 1))
                               - fluency_penalty * #illegal(y)

- `sentiment`: a fraction of tokens is positive (weight U(0.5, 1.5)), as many negative
  (-U(0.5, 1.5)), the rest neutral (0): the "positive vs negative token counts" of the
  issue, with continuous weights so that two completions almost never tie;
- diminishing returns on repeats (`repeat_decay` rho): the k-th occurrence of the same
  token counts rho^(k-1) (saying "great" five times is not five times as positive). rho = 1
  is a plain weighted count. (Added after a first version with rho = 1 gave a best-of-n
  gold curve exactly linear in sqrt(KL): see experiments/rlhf/README.md.)
- `#illegal`: transitions (including prompt's last token -> first completion token) the
  chain never makes. SFT samples almost never contain one, so preference data says little
  about them: this is the term a proxy can miss (Gao et al. 2022's over-optimisation).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from toyrepro.rlhf.config import LanguageConfig


@dataclass
class Language:
    transition: torch.Tensor  # (V, V) row-stochastic, zero outside the allowed successors
    sentiment: torch.Tensor  # (V,) gold sentiment weight of each token
    fluency_penalty: float
    repeat_decay: float
    prompt_len: int
    completion_len: int

    @property
    def vocab(self) -> int:
        return self.transition.size(0)

    @property
    def allowed(self) -> torch.Tensor:
        return self.transition > 0

    def sample(self, n: int, length: int, generator: torch.Generator) -> torch.Tensor:
        """n chain samples of `length` tokens, uniform first token: (n, length) long."""
        x = torch.empty(n, length, dtype=torch.long)
        x[:, 0] = torch.randint(0, self.vocab, (n,), generator=generator)
        for t in range(1, length):
            x[:, t] = torch.multinomial(self.transition[x[:, t - 1]], 1, generator=generator).squeeze(1)
        return x

    def prompts(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return self.sample(n, self.prompt_len, generator)

    def illegal_transitions(self, seq: torch.Tensor) -> torch.Tensor:
        """Count of transitions the chain never makes in each row of `seq` (B, T)."""
        return (~self.allowed[seq[:, :-1], seq[:, 1:]]).sum(dim=1)

    def gold_reward(self, prompts: torch.Tensor, completions: torch.Tensor) -> torch.Tensor:
        """The hidden reward of each (prompt, completion) pair: (B,) float."""
        prompts, completions = prompts.cpu(), completions.cpu()
        counts = torch.zeros(completions.size(0), self.vocab).scatter_add_(
            1, completions, torch.ones(completions.shape))
        rho = self.repeat_decay
        effective = counts if rho == 1 else (1 - rho**counts) / (1 - rho)  # 1 + rho + ... + rho^(count-1)
        sentiment = effective @ self.sentiment
        boundary = torch.cat([prompts[:, -1:], completions], dim=1)
        return sentiment - self.fluency_penalty * self.illegal_transitions(boundary).float()


def make_language(cfg: LanguageConfig, vocab: int, seed: int) -> Language:
    """A random language, fixed by `seed` (each run seed draws its own language)."""
    if cfg.branching > vocab:
        raise ValueError(f"rlhf.language.branching={cfg.branching} exceeds model.vocab_size={vocab}; "
                         "lower the branching or raise the vocabulary")
    g = torch.Generator().manual_seed(10_007 * seed + 17)
    transition = torch.zeros(vocab, vocab)
    for a in range(vocab):
        succ = torch.randperm(vocab, generator=g)[: cfg.branching]
        w = -torch.log(torch.rand(cfg.branching, generator=g))  # Exp(1) -> Dirichlet(1) after normalising
        transition[a, succ] = w / w.sum()
    n_sent = max(1, round(cfg.sentiment_fraction * vocab))
    order = torch.randperm(vocab, generator=g)
    magnitude = 0.5 + torch.rand(vocab, generator=g)
    sentiment = torch.zeros(vocab)
    sentiment[order[:n_sent]] = magnitude[order[:n_sent]]
    sentiment[order[n_sent : 2 * n_sent]] = -magnitude[order[n_sent : 2 * n_sent]]
    return Language(transition, sentiment, cfg.fluency_penalty, cfg.repeat_decay, cfg.prompt_len,
                    cfg.completion_len)
