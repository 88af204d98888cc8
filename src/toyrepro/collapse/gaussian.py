"""Setting (a): a 1-D Gaussian refit from its own samples (Shumailov et al. 2024, §3.2, Theorem 3.1).

Generation 0 is fit to N real samples of N(0, 1); generation g to N samples of generation g-1.
The fit is the maximum-likelihood one (sample mean, std with 1/N), as in Shumailov's analysis:
E[sigma_g^2] = ((N-1)/N)^g sigma_0^2 -> 0, and log sigma_g is a random walk with negative drift,
so every chain's variance collapses to 0 while a 10 % share of real data holds it near 1.

All `chains` chains run side by side: data is (chains, N), a model is (mu, sigma) per chain.
"""

from __future__ import annotations

import numpy as np

from toyrepro.collapse.chain import ArraySetting, chain_seed


class GaussianSetting(ArraySetting):
    def __init__(self, samples: int, chains: int, seed: int):
        self.n, self.chains, self.seed = samples, chains, seed
        self.data0 = np.random.default_rng(chain_seed(seed, 0, "real")).normal(size=(chains, samples))

    def fit(self, data: np.ndarray, generation: int = 0, chain: str = "") -> tuple[np.ndarray, np.ndarray]:
        return data.mean(axis=1), data.std(axis=1)  # MLE: ddof=0

    def sample(self, model, n: int, generation: int, chain: str) -> np.ndarray:
        mu, sigma = model
        rng = np.random.default_rng(chain_seed(self.seed, generation, chain))
        return mu[:, None] + sigma[:, None] * rng.normal(size=(self.chains, n))

    def measure(self, model, generation: int, chain: str) -> dict[str, np.ndarray]:
        return {"sigma": model[1]}

    def control(self, generations: int) -> np.ndarray:
        """sigma of fits to fresh real samples every generation (no recursion): (chains, G+1)."""
        out = [self.fit(np.random.default_rng(chain_seed(self.seed, g, "control")).normal(
            size=(self.chains, self.n)))[1] for g in range(generations + 1)]
        return np.stack(out, axis=1)
