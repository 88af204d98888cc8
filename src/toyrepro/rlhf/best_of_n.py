"""Best-of-n sampling against the proxy, and Gao et al.'s functional forms.

Best-of-n (Nakano et al. 2021; Gao et al. 2022 §2.2): draw n completions from the SFT
model, keep the one the proxy (reward model) scores highest, score it with the gold reward.

- Expected best-of-n reward from N >= n samples per prompt, by the unbiased estimator of
  Nakano et al. / Gao et al. App. I: sorting the N samples by proxy (ranks i = 1..N
  ascending), E[best of n] = sum_i C(i-1, n-1) / C(N, n) * value_i.
- KL(best-of-n || SFT), analytic (Stiennon et al. 2020 App. G; Gao et al. §2.2):
  log n - (n - 1) / n.
- KL over a pool of N distinct samples (`pool_kl`): the exact KL of best-of-n over the
  N-sample pool taken as uniform, P(rank i) = (i/N)^n - ((i-1)/N)^n, KL = sum_i P_i log(N P_i).
  A formula in N and n, not a measurement from the samples: it ignores duplicate completions
  and proxy ties, so, like log n - (n-1)/n, it is an upper bound on the true KL (Beirami et al.
  2024, "Theoretical guarantees on the best-of-n alignment policy"); it saturates at log N as
  n grows past N.

Gao et al. §3 fits, with d = sqrt(KL) and R the gold-reward gain over the SFT policy:
best-of-n R(d) = d (alpha - beta d); RL R(d) = d (alpha - beta log d). Both are linear in
(alpha, beta), so ordinary least squares (no intercept: R(0) = 0) fits them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


def analytic_kl(n: int) -> float:
    return math.log(n) - (n - 1) / n


def order_weights(N: int, n: int) -> torch.Tensor:
    """w_i = C(i-1, n-1) / C(N, n), i = 1..N: P(the best of n drawn without replacement is rank i)."""
    i = torch.arange(1, N + 1, dtype=torch.float64)
    valid = i >= n
    logw = torch.full((N,), -math.inf, dtype=torch.float64)
    iv = i[valid]
    logw[valid] = (torch.lgamma(iv) - math.lgamma(n) - torch.lgamma(iv - n + 1)
                   - (math.lgamma(N + 1) - math.lgamma(n + 1) - math.lgamma(N - n + 1)))
    return logw.exp()


def pool_kl(N: int, n: int) -> float:
    i = torch.arange(1, N + 1, dtype=torch.float64)
    p = (i / N) ** n - ((i - 1) / N) ** n
    p = p[p > 0]
    return float((p * torch.log(N * p)).sum())


@dataclass
class BestOfN:
    n: list[int]
    gold: list[float]  # expected gold reward of the best-by-proxy sample
    proxy: list[float]  # expected proxy reward of the same sample
    kl_analytic: list[float]
    kl_pool: list[float]


def sort_by_proxy(proxy: torch.Tensor, gold: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(proxy, gold) of each prompt's samples in ascending proxy order, float64."""
    order = proxy.argsort(dim=1)
    return proxy.gather(1, order).double(), gold.gather(1, order).double()


def best_of_n_curve(proxy: torch.Tensor, gold: torch.Tensor, max_n: int, presorted: bool = False) -> BestOfN:
    """proxy, gold: (M prompts, N samples). Returns the curve for n = 1, 2, 4, ..., max_n.
    `presorted`: rows already in ascending proxy order (`sort_by_proxy`)."""
    M, N = proxy.shape
    if max_n > N:
        raise ValueError(f"best-of-{max_n} needs at least {max_n} samples per prompt, got {N}")
    proxy_sorted, gold_sorted = (proxy.double(), gold.double()) if presorted else sort_by_proxy(proxy, gold)
    ns = [2**k for k in range(int(math.log2(max_n)) + 1)]
    out = BestOfN(ns, [], [], [], [])
    for n in ns:
        w = order_weights(N, n)
        # elementwise product + torch's sum, not a BLAS gemv, whose last bits can depend on
        # memory alignment: a resumed run must give the same values to the bit
        out.gold.append(float((gold_sorted * w).sum(1).mean()))
        out.proxy.append(float((proxy_sorted * w).sum(1).mean()))
        out.kl_analytic.append(analytic_kl(n))
        out.kl_pool.append(pool_kl(N, n))
    return out


@dataclass
class Fit:
    alpha: float
    beta: float
    r2: float
    form: str

    def __call__(self, d: torch.Tensor | float):
        d = torch.as_tensor(d, dtype=torch.float64)
        if self.form == "bon":
            return d * (self.alpha - self.beta * d)
        return d * (self.alpha - self.beta * torch.log(d.clamp_min(1e-12)))


def fit_gao(kl: list[float], gain: list[float], form: str) -> Fit:
    """Least-squares fit of R(d) with d = sqrt(KL); form 'bon': d(a - b d), 'rl': d(a - b log d).

    Two parameters, no intercept: the 2x2 normal equations, summed with `math.fsum` (exactly
    rounded, so the fit does not depend on summation order or memory alignment)."""
    if form not in ("bon", "rl"):
        raise ValueError(f"form must be 'bon' or 'rl', got {form!r}")
    d = [math.sqrt(max(k, 0.0)) for k in kl]
    x1 = d
    x2 = [-(v * v) if form == "bon" else -(v * math.log(max(v, 1e-12))) for v in d]
    s11, s12, s22 = (math.fsum(a * b for a, b in zip(u, v)) for u, v in ((x1, x1), (x1, x2), (x2, x2)))
    t1, t2 = math.fsum(a * y for a, y in zip(x1, gain)), math.fsum(b * y for b, y in zip(x2, gain))
    det = s11 * s22 - s12 * s12
    if det == 0:
        raise ValueError("fit_gao needs at least two distinct non-zero KL values")
    alpha, beta = (t1 * s22 - t2 * s12) / det, (s11 * t2 - s12 * t1) / det
    mean = math.fsum(gain) / len(gain)
    ss_tot = math.fsum((y - mean) ** 2 for y in gain)
    ss_res = math.fsum((y - alpha * a - beta * b) ** 2 for y, a, b in zip(gain, x1, x2))
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan")
    return Fit(alpha, beta, r2, form)


def bootstrap_fit(proxy: torch.Tensor, gold: torch.Tensor, max_n: int, unit: float, form: str = "bon",
                  n_boot: int = 200, seed: int = 0) -> tuple[float, float]:
    """95% interval of the fitted beta when the prompts are resampled with replacement (how far
    the curvature is from 0 given only `M` prompts). Gains are divided by `unit`."""
    g = torch.Generator().manual_seed(seed)
    M = proxy.size(0)
    proxy, gold = sort_by_proxy(proxy, gold)  # once: resampling prompts keeps each row's order
    betas = []
    for _ in range(n_boot):
        idx = torch.randint(0, M, (M,), generator=g)
        c = best_of_n_curve(proxy[idx], gold[idx], max_n, presorted=True)
        betas.append(fit_gao(c.kl_analytic, [(v - c.gold[0]) / unit for v in c.gold], form).beta)
    q = torch.tensor(betas).quantile(torch.tensor([0.025, 0.975]))
    return float(q[0]), float(q[1])
