"""The recursion of Shumailov et al. 2024 (§2, Fig. 1): generation g+1 is fit to samples of generation g.

    D_0 = real data,  M_0 = fit(D_0)
    D_g = sample(M_{g-1}, N - n_real)  [+ n_real items of D_0, the mixed chains]
    M_g = fit(D_g)

`run_chain` is that loop and nothing else; a setting (Gaussian, Zipf, GPT) supplies `fit`,
`sample`, `real` (items of D_0), `join` and `measure` (the statistics of one generation).
Generation g's data holds samples of M_{g-1} only, plus real items when mixing is on: never
data of g-2 or earlier (`tests/test_collapse.py` checks the lineage).

Mixing follows Shumailov §4 ("10% of the original data preserved"): each generation keeps a
fresh random `real_fraction` of the original real data D_0, the rest is synthetic.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np


class Setting(Protocol):
    def fit(self, data: Any, generation: int, chain: str) -> Any: ...
    def sample(self, model: Any, n: int, generation: int, chain: str) -> Any: ...
    def real(self, n: int, generation: int, chain: str) -> Any: ...
    def join(self, synthetic: Any, real: Any) -> Any: ...
    def measure(self, model: Any, generation: int, chain: str) -> dict[str, Any]: ...


def run_chain(setting: Setting, model0: Any, n: int, generations: int, real_fraction: float,
              chain: str) -> list[dict[str, Any]]:
    """Statistics of generations 0..G of one chain started from `model0` (= fit(D_0), shared)."""
    n_real = round(real_fraction * n)
    model, stats = model0, [setting.measure(model0, 0, chain)]
    for g in range(1, generations + 1):
        data = setting.sample(model, n - n_real, g - 1, chain)  # generation g-1's samples only
        if n_real:
            data = setting.join(data, setting.real(n_real, g, chain))
        model = setting.fit(data, g, chain)
        stats.append(setting.measure(model, g, chain))
    return stats


class ArraySetting:
    """Shared by the settings whose data are (chains, N) numpy arrays with the real data in
    `self.data0`: a fresh random subset of each chain's real items per generation, and
    synthetic + real joined along the sample axis."""

    seed: int
    chains: int
    n: int
    data0: np.ndarray

    def real(self, n: int, generation: int, chain: str):
        """n of each chain's N real samples, without replacement, a fresh subset each generation."""
        import numpy as np

        rng = np.random.default_rng(chain_seed(self.seed, generation, chain + "/real"))
        idx = np.argsort(rng.random((self.chains, self.n)), axis=1)[:, :n]
        return np.take_along_axis(self.data0, idx, axis=1)

    def join(self, synthetic, real):
        import numpy as np

        return np.concatenate([synthetic, real], axis=1)


def chain_seed(seed: int, generation: int, chain: str) -> list[int]:
    """A seed sequence for one (run seed, generation, chain): chains and generations draw independently."""
    return [seed, generation, sum(ord(c) * 31**i for i, c in enumerate(chain)) % 2**31]
