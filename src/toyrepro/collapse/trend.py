"""The statistics behind the claims: the trend over generations and how much mixing saves.

- trend: the least-squares slope of a per-generation curve against the generation index;
  its interval is a percentile bootstrap (Efron & Tibshirani 1993, §13) over independent
  units — replicate chains for the Gaussian and Zipf settings, held-out windows for the GPT
  (whose interval therefore covers evaluation noise, not training noise: the three seeds do that).
- degradation at the last generation: curve[0] - curve[G] in the direction that is worse
  (sigma and support fall, perplexity rises); the claim compares mixed to pure chains.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def slope(curve: np.ndarray) -> float:
    g = np.arange(len(curve), dtype=np.float64)
    return float(np.polyfit(g, np.asarray(curve, dtype=np.float64), 1)[0])


def bootstrap_slope(units: np.ndarray, statistic: Callable[[np.ndarray], np.ndarray], n_boot: int,
                    confidence: float, rng: np.random.Generator) -> tuple[float, float, float]:
    """(slope, low, high) of `statistic(units)`'s curve; `units` is (U, G+1): rows are resampled."""
    point = slope(statistic(units))
    boots = [slope(statistic(units[rng.integers(0, len(units), len(units))])) for _ in range(n_boot)]
    alpha = (1 - confidence) / 2
    low, high = np.quantile(boots, [alpha, 1 - alpha])
    return point, float(low), float(high)


def degradation(curve: np.ndarray, worse: str) -> float:
    """How much worse the last generation is than generation 0 (`worse` = "down" or "up")."""
    d = float(curve[0] - curve[-1])
    return d if worse == "down" else -d


def mean_curve(units: np.ndarray) -> np.ndarray:
    return units.mean(axis=0)


def perplexity_curve(nll: np.ndarray) -> np.ndarray:
    """Perplexity per generation from per-window mean NLL (nats), (U, G+1) -> (G+1,)."""
    return np.exp(nll.mean(axis=0))
