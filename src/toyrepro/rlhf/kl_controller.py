"""KL-penalty coefficient controllers for PPO (Ziegler et al. 2019, §2.2).

Adaptive (Ziegler et al. 2019, §2.2): after each batch with measured sequence KL `KL_t`,

    e_t = clip(KL_t / KL_target - 1, -0.2, 0.2)
    beta_{t+1} = beta_t * (1 + K_beta * e_t),     K_beta = n_samples / horizon

(the horizon form is trl's and the paper's code: K_beta = 0.1 per 10000-sample horizon
scaled by the batch size). KL above target raises beta (pulls the policy back), KL below
lowers it. Fixed: beta never changes.

Deviation: horizon 2000 samples instead of 10000 at quick scale (a run only sees ~8000
samples; with 10000 beta could barely move).
"""

from __future__ import annotations


class FixedKLController:
    def __init__(self, init_kl_coef: float):
        self.value = init_kl_coef

    def update(self, current_kl: float, n_samples: int) -> float:
        return self.value


class AdaptiveKLController:
    def __init__(self, init_kl_coef: float, target: float, horizon: int):
        if target <= 0 or horizon <= 0:
            raise ValueError(f"target ({target}) and horizon ({horizon}) must be > 0")
        self.value, self.target, self.horizon = init_kl_coef, target, horizon

    def update(self, current_kl: float, n_samples: int) -> float:
        error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_samples / self.horizon
        return self.value


def make_controller(kind: str, init_kl_coef: float, target: float, horizon: int):
    if kind == "adaptive":
        return AdaptiveKLController(init_kl_coef, target, horizon)
    if kind == "fixed":
        return FixedKLController(init_kl_coef)
    raise ValueError(f"rlhf.ppo.kl_controller must be 'adaptive' or 'fixed' (got {kind!r})")
