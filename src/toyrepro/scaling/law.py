"""The Chinchilla law L(N, D) = E + A / N^alpha + B / D^beta and how it is fitted.

Approach 3 (Hoffmann et al. 2022, §3.3 and App. D.2, eq. 2-3): minimise, over
theta = (a, b, e, alpha, beta) with A = exp(a), B = exp(b), E = exp(e),

    sum_runs Huber_delta( LSE(a - alpha log N, b - beta log D, e) - log L ),   delta = 1e-3,

with L-BFGS from a grid of initialisations (alpha, beta in {0, 0.5, ..., 2}, e in
{-1, -0.5, ..., 1}, a, b in {0, 5, ..., 25}) and keep the best. Deviation: Hoffmann run
L-BFGS from every point of the grid; here the objective is evaluated at every point and
L-BFGS runs from the best `starts` of them (the grid's 4500 starts x 200 bootstrap refits
would cost more CPU than the runs). Intervals: refits on runs resampled with replacement
(Hoffmann report none for approach 3; Besiroglu et al. 2024's replication bootstraps).

Compute-optimal allocation under C = 6 N D (Hoffmann eq. 4):
N_opt(C) = G (C/6)^a with a = beta / (alpha + beta), G = (alpha A / (beta B))^(1/(alpha+beta)).

Approach 2 (IsoFLOP profiles, Hoffmann §3.2) as the cross-check, from the grid: at each
compute level, each model size's loss is interpolated (linear in log D) between its
trained budgets; a parabola in log N through the sizes gives that level's N_opt, and a
line through log N_opt vs log C gives the exponent. Deviation: Hoffmann train every point
of an IsoFLOP profile at exactly that compute; here they are interpolated between budgets.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from threadpoolctl import threadpool_limits

HOFFMANN_GRID = {  # App. D.2's initialisations
    "a": np.arange(0, 26, 5.0), "b": np.arange(0, 26, 5.0), "e": np.arange(-1, 1.01, 0.5),
    "alpha": np.arange(0, 2.01, 0.5), "beta": np.arange(0, 2.01, 0.5),
}


@dataclass
class Law:
    E: float
    A: float
    B: float
    alpha: float
    beta: float
    objective: float = float("nan")  # the Huber objective at the optimum
    # log A and log B as fitted: a fit with a large exponent can put A past float64's range
    # (exp(a) = inf) while A / N^alpha is still an ordinary number; None = log of A, B
    log_A: float | None = None
    log_B: float | None = None

    @property
    def a(self) -> float:
        return float(np.log(self.A)) if self.log_A is None else self.log_A

    @property
    def b(self) -> float:
        return float(np.log(self.B)) if self.log_B is None else self.log_B

    def loss(self, N, D):
        """E + A / N^alpha + B / D^beta, each term as exp(log A - alpha log N) so it stays finite."""
        logN, logD = np.log(np.asarray(N, float)), np.log(np.asarray(D, float))
        return self.E + np.exp(self.a - self.alpha * logN) + np.exp(self.b - self.beta * logD)

    @property
    def optimal_exponent(self) -> float:
        """a in N_opt ∝ C^a (Hoffmann eq. 4)."""
        return self.beta / (self.alpha + self.beta)

    def optimal_N(self, C):
        G = np.exp((np.log(self.alpha / self.beta) + self.a - self.b) / (self.alpha + self.beta))
        return G * (np.asarray(C, float) / 6) ** self.optimal_exponent

    def frontier(self, C):
        """The loss of the compute-optimal model at compute C."""
        N = self.optimal_N(C)
        return self.loss(N, np.asarray(C, float) / (6 * N))

    def as_dict(self) -> dict:
        return {"E": self.E, "A": self.A, "B": self.B, "alpha": self.alpha, "beta": self.beta}


def _terms(theta: np.ndarray, logN: np.ndarray, logD: np.ndarray) -> np.ndarray:
    a, b, e, alpha, beta = theta
    return np.stack([a - alpha * logN, b - beta * logD, np.full_like(logN, e)])  # (3, runs)


def _logsumexp(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """log sum exp over axis 0 and the softmax weights (plain numpy: scipy's wrappers cost
    more than the whole objective on 20 runs)."""
    m = t.max(axis=0)
    x = np.exp(t - m)
    s = x.sum(axis=0)
    return m + np.log(s), x / s


def huber(r: np.ndarray, delta: float) -> np.ndarray:
    return np.where(np.abs(r) <= delta, 0.5 * r ** 2, delta * (np.abs(r) - 0.5 * delta))


def objective(theta: np.ndarray, logN, logD, logL, delta: float) -> tuple[float, np.ndarray]:
    """Hoffmann's approach-3 objective and its gradient in theta."""
    lse, weights = _logsumexp(_terms(theta, logN, logD))
    r = lse - logL
    g_r = np.clip(r, -delta, delta)  # d Huber / d r
    w = weights * g_r  # d objective / d term
    grad = np.array([w[0].sum(), w[1].sum(), w[2].sum(), -(w[0] * logN).sum(), -(w[1] * logD).sum()])
    return float(huber(r, delta).sum()), grad


def init_grid() -> np.ndarray:
    g = HOFFMANN_GRID
    mesh = np.meshgrid(g["a"], g["b"], g["e"], g["alpha"], g["beta"], indexing="ij")
    return np.stack([m.ravel() for m in mesh], axis=1)  # (4500, 5)


def grid_objective(inits: np.ndarray, logN, logD, logL, delta: float) -> np.ndarray:
    """The objective at every initialisation at once (to choose where L-BFGS starts)."""
    a, b, e, alpha, beta = (inits[:, k : k + 1] for k in range(5))
    t = np.stack([a - alpha * logN, b - beta * logD, np.broadcast_to(e, (len(inits), len(logN)))])
    return huber(_logsumexp(t)[0] - logL, delta).sum(axis=1)


def fit_law(N, D, L, delta: float = 1e-3, starts: int = 32, extra_inits: list[np.ndarray] | None = None) -> Law:
    """Approach 3: the best L-BFGS optimum over the `starts` best grid initialisations."""
    logN, logD, logL = (np.log(np.asarray(x, float)) for x in (N, D, L))
    inits = init_grid()
    order = np.argsort(grid_objective(inits, logN, logD, logL, delta), kind="stable")
    candidates = [inits[i] for i in order[:starts]] + list(extra_inits or [])
    best = None
    with threadpool_limits(1):  # a multi-threaded BLAS makes each tiny L-BFGS step ~20x slower
        for x0 in candidates:
            res = minimize(objective, x0, args=(logN, logD, logL, delta), jac=True, method="L-BFGS-B",
                           options={"maxiter": 2000, "ftol": 1e-15, "gtol": 1e-12})
            if best is None or res.fun < best.fun:
                best = res
    a, b, e, alpha, beta = best.x
    with np.errstate(over="ignore"):
        A, B = float(np.exp(a)), float(np.exp(b))
    return Law(float(np.exp(e)), A, B, float(alpha), float(beta), float(best.fun), log_A=float(a), log_B=float(b))


def theta(law: Law) -> np.ndarray:
    return np.array([law.a, law.b, np.log(law.E), law.alpha, law.beta])


def bootstrap(N, D, L, law: Law, n: int, seed: int, delta: float, starts: int) -> list[Law]:
    """Refits on the runs resampled with replacement (the full fit's optimum is one start)."""
    rng = np.random.default_rng(seed)
    N, D, L = (np.asarray(x, float) for x in (N, D, L))
    out = []
    for _ in range(n):
        idx = rng.integers(0, len(L), len(L))
        out.append(fit_law(N[idx], D[idx], L[idx], delta, starts, extra_inits=[theta(law)]))
    return out


def interval(values, level: float = 0.9) -> tuple[float, float]:
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if not len(v):
        return float("nan"), float("nan")
    q = (1 - level) / 2
    return float(np.quantile(v, q)), float(np.quantile(v, 1 - q))


def isoflop_optima(N_sizes, D_budgets, losses, levels: int = 8) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """Approach 2 from a grid: losses[i, j] of size N_sizes[i] at D_budgets[i][j]. Returns the
    compute levels with an interior minimum, their N_opt, and every level's profile (for plots)."""
    N_sizes = np.asarray(N_sizes, float)
    logD = np.log(np.asarray(D_budgets, float))
    lo, hi = np.log(6 * N_sizes[:, None] * np.exp(logD)).min(), np.log(6 * N_sizes[:, None] * np.exp(logD)).max()
    Cs, Nopt, profiles = [], [], []
    for logC in np.linspace(lo, hi, levels + 2)[1:-1]:
        xs, ys = [], []
        for i, n in enumerate(N_sizes):
            d = logC - np.log(6 * n)
            if logD[i].min() <= d <= logD[i].max():
                xs.append(np.log(n))
                ys.append(np.interp(d, logD[i], np.log(losses[i])))
        if len(xs) < 3:
            continue
        c2, c1, _ = np.polyfit(xs, ys, 2)
        vertex = -c1 / (2 * c2) if c2 > 0 else np.nan
        interior = bool(np.isfinite(vertex) and min(xs) < vertex < max(xs))
        profiles.append({"C": float(np.exp(logC)), "logN": xs, "loss": np.exp(ys).tolist(),
                         "N_opt": float(np.exp(vertex)) if interior else None})
        if interior:
            Cs.append(np.exp(logC))
            Nopt.append(np.exp(vertex))
    return np.array(Cs), np.array(Nopt), profiles


def power_exponent(C, N) -> float:
    """Slope of log N against log C (least squares); nan with fewer than 2 points."""
    if len(C) < 2:
        return float("nan")
    return float(np.polyfit(np.log(C), np.log(N), 1)[0])
