"""The learning algorithms the transformer is compared with (Garg et al. 2022 §3, Fig. 2).

Every baseline reads the same prompts as the model and returns, like the model, one
prediction per position: `pred[:, k]` predicts y_{k+1} from the first k examples (X_k, y_k)
and the query x_{k+1}. Computed in float64.

- least squares: w_hat = X_k^+ y_k (Moore-Penrose pseudo-inverse), i.e. the minimum-norm
  interpolant for k < d. For w ~ N(0, I) and noiseless labels it is the Bayes posterior
  mean, and its expected error / d is (d - k)/d for k < d, 0 for k >= d (Garg §3).
- ridge: w_hat = (X^T X + lambda I)^-1 X^T y. With w ~ N(0, I) and noise N(0, sigma^2),
  lambda = sigma^2 makes it the posterior mean, i.e. Bayes-optimal for squared error
  (Garg §4 "noisy linear regression" compare with the same estimator).
- k-nearest neighbours: the mean label of the n nearest x_i (Euclidean; all of them when
  k < n), Garg's 3-NN.
- averaging: w_hat = (1/k) sum_i y_i x_i (Garg §3 "averaging"; E[w_hat] = w for
  x ~ N(0, I)).
- one step of gradient descent from w = 0 on L(w) = (1/2k) sum_i (w.x_i - y_i)^2 (von
  Oswald et al. 2023, "Transformers learn in-context by gradient descent", §2): w_1 =
  eta * (1/k) sum_i y_i x_i, a rescaled averaging estimator. We use the step size that is
  optimal in expectation for the training distribution, eta_k = k / (k + d + 1 + sigma^2)
  (from E[w.a] = d and E|a|^2 = d (k + d + 1 + sigma^2) / k for a = (1/k) sum y_i x_i,
  x ~ N(0, I)); von Oswald et al. learn eta instead.

A prediction with no examples (k = 0) is 0 for every method, the prior mean.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Estimator = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (X (n,k,d), y (n,k)) -> w_hat (n,d)


def least_squares_weights(X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Minimum-norm least squares w_hat = X^+ y, batched: (n, k, d), (n, k) -> (n, d)."""
    return (torch.linalg.pinv(X.double()) @ y.double().unsqueeze(-1)).squeeze(-1)


def ridge_weights(X: torch.Tensor, y: torch.Tensor, lam: float) -> torch.Tensor:
    """w_hat = (X^T X + lam I)^-1 X^T y; lam = 0 falls back to minimum-norm least squares."""
    if lam == 0:
        return least_squares_weights(X, y)
    X, y = X.double(), y.double()
    gram = X.transpose(1, 2) @ X + lam * torch.eye(X.size(-1), dtype=X.dtype)
    return torch.linalg.solve(gram, (X.transpose(1, 2) @ y.unsqueeze(-1))).squeeze(-1)


def averaging_weights(X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (X.double() * y.double().unsqueeze(-1)).mean(1)


def gd_step_size(k: int, dims: int, noise_var: float) -> float:
    """The expected-loss-optimal step of one GD step from 0 (module docstring)."""
    return k / (k + dims + 1 + noise_var)


def per_position(xs: torch.Tensor, ys: torch.Tensor, estimator: Estimator) -> torch.Tensor:
    """pred[:, k] = x_{k+1} . estimator(first k examples), for k = 0 .. K-1 (0 at k = 0)."""
    n, K, _ = xs.shape
    pred = torch.zeros(n, K, dtype=torch.float64)
    for k in range(1, K):
        w_hat = estimator(xs[:, :k], ys[:, :k])
        pred[:, k] = (xs[:, k].double() * w_hat).sum(-1)
    return pred


def knn_predictions(xs: torch.Tensor, ys: torch.Tensor, neighbors: int = 3) -> torch.Tensor:
    n, K, _ = xs.shape
    pred = torch.zeros(n, K, dtype=torch.float64)
    for k in range(1, K):
        dist = (xs[:, :k].double() - xs[:, k : k + 1].double()).pow(2).sum(-1)  # (n, k)
        idx = dist.topk(min(neighbors, k), dim=1, largest=False).indices
        pred[:, k] = ys.double().gather(1, idx).mean(1)
    return pred


def all_baselines(xs: torch.Tensor, ys: torch.Tensor, noise_var: float, neighbors: int = 3) -> dict[str, torch.Tensor]:
    """Every baseline's per-position predictions on the same prompts (names as in the figures)."""
    dims = xs.size(-1)
    out = {
        "least squares": per_position(xs, ys, least_squares_weights),
        f"{neighbors}-NN": knn_predictions(xs, ys, neighbors),
        "averaging": per_position(xs, ys, averaging_weights),
        "1 GD step": per_position(xs, ys, lambda X, y: gd_step_size(X.size(1), dims, noise_var)
                                  * averaging_weights(X, y)),
    }
    if noise_var > 0:
        out[f"ridge (lambda={noise_var:g})"] = per_position(xs, ys, lambda X, y: ridge_weights(X, y, noise_var))
    return out


def error_curve(pred: torch.Tensor, ys: torch.Tensor, dims: int) -> torch.Tensor:
    """Garg's y-axis: mean over prompts of the squared error divided by d, for each k = 0 .. K-1."""
    return ((pred.double() - ys.double()) ** 2).mean(0) / dims
