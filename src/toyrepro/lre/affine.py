"""The linear relational embedding and its baselines, as plain tensor algebra.

Hernandez et al. 2023, §2-§4 (arXiv 2308.09124):

- LRE (eq. 3-4): W = E_i[J_i], J_i = dz/dh (h_i) (mean Jacobian over the n training
  samples), b = E_i[z_i - J_i h_i] (each sample's own first-order intercept, averaged, as in
  eq. 4 and the paper's code), and LRE(h) = beta * W h + b. beta > 1 corrects the Jacobian's
  underestimate of the slope (§3.1; beta ~ 2.25 on GPT-J). beta multiplies W h only; b
  is kept as estimated (as in the paper's code).
- Causality edit (§4.2): to make subject s say the object of s', add
  dh = W_r^+ (z' - z) to h, where W_r^+ is the rank-r pseudo-inverse of W (from its SVD).
  Paper: beta is not used in the inverse, so neither is it here.
- Baselines (§4, the paper's code): translation (W = I: z ~ h + E[z - h], the word2vec
  offset), bias-only (z ~ b), a learned linear map fitted by least squares on the same n
  samples (minimum-norm solution: n << d, deviation: the paper's code fits with Adam),
  and the logit lens (z ~ h).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class AffineMap:
    """z ~ beta * W h + b for one relation at one layer."""

    W: torch.Tensor  # (D, D)
    b: torch.Tensor  # (D,)
    beta: float = 1.0

    def __call__(self, h: torch.Tensor) -> torch.Tensor:
        """h (..., D) -> predicted z (..., D)."""
        return self.beta * h @ self.W.T + self.b

    def with_beta(self, beta: float) -> AffineMap:
        return AffineMap(self.W, self.b, beta)


def estimate_lre(jacobians: torch.Tensor, h: torch.Tensor, z: torch.Tensor, bias: str = "per_sample") -> AffineMap:
    """LRE from per-sample Jacobians (n, D, D), subject states h (n, D) and outputs z (n, D) (eq. 4):
    W = mean_i J_i, b = mean_i (z_i - J_i h_i). `bias="mean"`: b = mean(z) - W mean(h) instead
    (the suite's estimate before issue 14; the two differ wherever the Jacobian varies across
    samples)."""
    W = jacobians.mean(0)
    if bias == "mean":
        return AffineMap(W, (z - h @ W.T).mean(0))
    b = (z - torch.einsum("nij,nj->ni", jacobians, h)).mean(0)
    return AffineMap(W, b)


def translation(h: torch.Tensor, z: torch.Tensor) -> AffineMap:
    """W = I, b = mean(z - h): the "king - man + woman" offset baseline."""
    D = h.size(-1)
    return AffineMap(torch.eye(D, dtype=h.dtype, device=h.device), (z - h).mean(0))


def bias_only(lre: AffineMap) -> AffineMap:
    """The LRE's own bias alone (beta = 0): predicts the same object for every subject."""
    return AffineMap(torch.zeros_like(lre.W), lre.b)


def logit_lens(D: int, dtype=torch.float32, device=None) -> AffineMap:
    """z ~ h: decode the subject state directly through the final norm and unembedding."""
    return AffineMap(torch.eye(D, dtype=dtype, device=device), torch.zeros(D, dtype=dtype, device=device))


def least_squares(h: torch.Tensor, z: torch.Tensor) -> AffineMap:
    """Minimum-norm affine least squares z ~ W h + b on the training samples."""
    hm, zm = h.mean(0), z.mean(0)
    W = (z - zm).T @ torch.linalg.pinv(h - hm).T  # (D, n) @ (n, D)
    return AffineMap(W, zm - W @ hm)


def pinv_rank(W: torch.Tensor, rank: int) -> torch.Tensor:
    """Rank-r pseudo-inverse V_r S_r^-1 U_r^T of W (§4.2); rank is clipped to W's numerical rank."""
    U, S, Vh = torch.linalg.svd(W)
    tol = S.max() * max(W.shape) * torch.finfo(W.dtype).eps
    r = min(rank, int((S > tol).sum()))
    return Vh[:r].T @ torch.diag(1.0 / S[:r]) @ U[:, :r].T


def edit_delta(W_pinv: torch.Tensor, z_orig: torch.Tensor, z_target: torch.Tensor) -> torch.Tensor:
    """dh = W^+ (z_target - z_orig), batched over leading dims (§4.2, eq. 6)."""
    return (z_target - z_orig) @ W_pinv.T
