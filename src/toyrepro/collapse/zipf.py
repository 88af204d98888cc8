"""Setting (b): a categorical distribution refit by counts (Shumailov et al. 2024, §3.1).

The truth is Zipf(s) over V ranks, p(k) ~ k^-s. Generation 0 is the empirical distribution of
N real samples; generation g the empirical distribution (counts / N) of N samples of generation
g-1. A category that draws no sample gets probability 0 and can never come back, so the support
only shrinks (an absorbing Markov chain, Shumailov §3.1): the tails go first. In the mixed
chains, categories present in the kept real data are re-injected every generation.

All `chains` chains run side by side: data is (chains, N) category ids, a model is (chains, V).
"""

from __future__ import annotations

import numpy as np

from toyrepro.collapse.chain import ArraySetting, chain_seed


def zipf(vocab: int, exponent: float) -> np.ndarray:
    p = np.arange(1, vocab + 1, dtype=np.float64) ** -exponent
    return p / p.sum()


def draw(probs: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """n categorical draws per row of probs (chains, V) by inverse CDF: (chains, n)."""
    cdf = np.cumsum(probs, axis=1)
    u = rng.random((len(probs), n)) * cdf[:, -1:]
    return np.stack([np.searchsorted(c, row, side="right") for c, row in zip(cdf, u)]).clip(0, probs.shape[1] - 1)


class ZipfSetting(ArraySetting):
    def __init__(self, vocab: int, exponent: float, samples: int, chains: int, tail_rank: int, seed: int):
        self.vocab, self.n, self.chains, self.tail_rank, self.seed = vocab, samples, chains, tail_rank, seed
        self.truth = zipf(vocab, exponent)
        rng = np.random.default_rng(chain_seed(seed, 0, "real"))
        self.data0 = draw(np.tile(self.truth, (chains, 1)), samples, rng)

    def fit(self, data: np.ndarray, generation: int = 0, chain: str = "") -> np.ndarray:
        counts = np.stack([np.bincount(row, minlength=self.vocab) for row in data])
        return counts / counts.sum(axis=1, keepdims=True)

    def sample(self, model: np.ndarray, n: int, generation: int, chain: str) -> np.ndarray:
        return draw(model, n, np.random.default_rng(chain_seed(self.seed, generation, chain)))

    def measure(self, model: np.ndarray, generation: int, chain: str) -> dict[str, np.ndarray]:
        return {"support": (model > 0).sum(axis=1).astype(np.float64),
                "tail_mass": model[:, self.tail_rank:].sum(axis=1)}

    def control(self, generations: int) -> np.ndarray:
        """Support of fits to fresh real samples every generation (no recursion): (chains, G+1)."""
        truth = np.tile(self.truth, (self.chains, 1))
        return np.stack([(self.fit(draw(truth, self.n, np.random.default_rng(chain_seed(self.seed, g, "control"))))
                          > 0).sum(axis=1) for g in range(generations + 1)], axis=1).astype(np.float64)
