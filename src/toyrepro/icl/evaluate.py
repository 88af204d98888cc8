"""Error curves: the transformer and every baseline on the same held-out prompts, per k.

Garg et al. 2022 Fig. 2: squared error / d of the prediction for the query after k
in-context examples, k = 0 .. K-1, averaged over prompts. `error_curves` computes it for
the trained model and each baseline of `baselines.py` on one prompt set; `ood_curves` does
the same for the three out-of-distribution prompts of Garg §4 (the model trained on
x ~ N(0, I), noiseless labels):

- skewed covariance: x ~ N(0, S), eigenvalues of S ~ 1/i^power (`tasks.skewed_covariance`);
- noisy labels: y = w.x + N(0, sigma^2) (the noiseless model, no retraining);
- scaled query: the in-context examples as in training, the query x multiplied by 3.
  The prediction after k examples is read from a prompt whose (k+1)-th input alone is
  scaled, so the examples the model conditions on are never scaled. Errors are on the
  scaled target (w . 3x), still divided by d.
"""

from __future__ import annotations

import numpy as np
import torch

from toyrepro.icl.baselines import (
    all_baselines,
    error_curve,
    least_squares_weights,
    per_position,
    ridge_weights,
)
from toyrepro.icl.model import ICLTransformer
from toyrepro.icl.tasks import Prompts, interleave, sample_prompts, scale_query, skewed_covariance

TRANSFORMER = "transformer"


def error_curves(model: ICLTransformer, prompts: Prompts, noise_var: float, neighbors: int) -> dict[str, np.ndarray]:
    """name -> error / d at each k (numpy, length K); the transformer first."""
    dims = prompts.xs.size(-1)
    preds = {TRANSFORMER: model.predict(interleave(prompts.xs, prompts.ys))}
    preds |= all_baselines(prompts.xs, prompts.ys, noise_var, neighbors)
    return {name: error_curve(p, prompts.ys, dims).numpy() for name, p in preds.items()}


def scaled_query_predictions(model: ICLTransformer, xs: torch.Tensor, ys: torch.Tensor, factor: float):
    """(transformer, least squares, targets) per k when only the query after k examples is scaled."""
    n, K, _ = xs.shape
    t_pred, ls_pred, target = (torch.zeros(n, K, dtype=torch.float64) for _ in range(3))
    for k in range(K):
        xs_k = scale_query(xs, k, factor)
        ys_k = ys.clone()
        ys_k[:, k] = ys[:, k] * factor  # noiseless: the scaled query's label is w . (factor x)
        t_pred[:, k] = model.predict(interleave(xs_k, ys_k))[:, k].double()
        if k > 0:
            ls_pred[:, k] = (xs_k[:, k].double() * least_squares_weights(xs[:, :k], ys[:, :k])).sum(-1)
        target[:, k] = ys_k[:, k].double()
    return t_pred, ls_pred, target


def ood_curves(model: ICLTransformer, dims: int, points: int, n: int, noise_std: float, skew_power: float,
               query_factor: float, seed: int) -> dict[str, dict[str, np.ndarray]]:
    """setting -> {transformer, least squares[, ridge]} error / d per k, for the noiseless model."""
    g = torch.Generator().manual_seed(seed)
    out: dict[str, dict[str, np.ndarray]] = {}

    cov_sqrt = skewed_covariance(dims, skew_power, g)
    p = sample_prompts(n, dims, points, g, cov_sqrt=cov_sqrt)
    out["skewed covariance"] = _two(model, p, dims)

    p = sample_prompts(n, dims, points, g, noise_std=noise_std)
    curves = _two(model, p, dims)
    ridge = per_position(p.xs, p.ys, lambda X, y: ridge_weights(X, y, noise_std ** 2))
    curves[f"ridge (lambda={noise_std ** 2:g})"] = error_curve(ridge, p.ys, dims).numpy()
    out[f"noisy labels (sigma={noise_std:g})"] = curves

    p = sample_prompts(n, dims, points, g)
    t_pred, ls_pred, target = scaled_query_predictions(model, p.xs, p.ys, query_factor)
    out[f"query x{query_factor:g}"] = {TRANSFORMER: error_curve(t_pred, target, dims).numpy(),
                                       "least squares": error_curve(ls_pred, target, dims).numpy()}
    return out


def _two(model: ICLTransformer, p: Prompts, dims: int) -> dict[str, np.ndarray]:
    t = model.predict(interleave(p.xs, p.ys))
    ls = per_position(p.xs, p.ys, least_squares_weights)
    return {TRANSFORMER: error_curve(t, p.ys, dims).numpy(), "least squares": error_curve(ls, p.ys, dims).numpy()}
