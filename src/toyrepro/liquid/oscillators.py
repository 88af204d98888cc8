"""Task B: irregularly sampled dynamics, in the style of the CfC paper's Walker2d protocol.

Hasani et al. 2022 (CfC), §4 "Physical dynamics modeling" (after Lechner & Hasani 2020,
§6.4): a regularly sampled simulation is made irregular by dropping frames at random, and a
model predicts the next state from the frames it was shown. Here the dynamics are damped
harmonic oscillators with a random frequency, damping ratio, amplitude and phase,

    x(t) = A exp(-zeta w t) cos(w sqrt(1 - zeta^2) t + phi),        t = 0, 1, ..., T

observed on the grid t = 0..T-1 with each step kept with probability p (step 0 is always
kept, so every sequence has a start). After every observation the model predicts x at the
*next grid step*. That needs the current phase and velocity, which the last observations
give only together with the times between them: the task separates models that read
elapsed time from models that cannot.

Deviations: a 1-D analytic oscillator (not 17-D MuJoCo Walker2d) so that nothing
downloads and the answer is known; the loss is the MSE of the next grid value rather than
of the next observed frame, so that the target's distance in time is the same for every
model (and the regular-sampling control p = 1.0 is exactly "predict the next frame").
Baselines reported beside the MSE: predicting 0 (the signal's second moment) and
persistence (predicting the last observed value).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class ObservedSequences:
    """Padded irregular observations: values (N, T, 1), elapsed (N, T, 1), targets (N, T, 1), lengths (N,)."""

    values: torch.Tensor
    elapsed: torch.Tensor
    targets: torch.Tensor
    lengths: torch.Tensor

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, i):
        return {"values": self.values[i], "elapsed": self.elapsed[i], "targets": self.targets[i],
                "lengths": self.lengths[i]}

    def mask(self) -> torch.Tensor:
        """(N, T) True at real observations, False at padding."""
        return torch.arange(self.values.size(1))[None, :] < self.lengths[:, None]


def oscillators(n: int, grid_steps: int, omega: tuple[float, float], damping_max: float,
                generator: torch.Generator) -> torch.Tensor:
    """(n, grid_steps + 1) damped oscillator trajectories on the grid t = 0..grid_steps."""
    u = torch.rand(n, 4, generator=generator)
    w = omega[0] + (omega[1] - omega[0]) * u[:, :1]
    zeta = damping_max * u[:, 1:2]
    amplitude = 0.5 + u[:, 2:3]  # in [0.5, 1.5)
    phase = 2 * torch.pi * u[:, 3:4]
    t = torch.arange(grid_steps + 1, dtype=torch.float32)[None, :]
    return amplitude * torch.exp(-zeta * w * t) * torch.cos(w * torch.sqrt(1 - zeta**2) * t + phase)


def observe(trajectories: torch.Tensor, keep: float, generator: torch.Generator) -> ObservedSequences:
    """Keep each grid step in [0, T-1] with probability `keep` (step 0 always); target = x(step + 1).

    The elapsed time of an observation is the number of grid steps since the previous one
    (1 for the first). Padding: value 0, elapsed 1 (never 0: the LTC divides by it)."""
    n, t_plus_1 = trajectories.shape
    grid = t_plus_1 - 1
    kept = torch.rand(n, grid, generator=generator) < keep
    kept[:, 0] = True
    lengths = kept.sum(1)
    max_len = int(lengths.max())
    values = torch.zeros(n, max_len, 1)
    elapsed = torch.ones(n, max_len, 1)
    targets = torch.zeros(n, max_len, 1)
    for i in range(n):
        steps = torch.nonzero(kept[i]).squeeze(1)
        k = len(steps)
        values[i, :k, 0] = trajectories[i, steps]
        targets[i, :k, 0] = trajectories[i, steps + 1]
        gaps = torch.diff(steps, prepend=torch.tensor([-1]))
        elapsed[i, :k, 0] = gaps.float()
    return ObservedSequences(values, elapsed, targets, lengths)


def dynamics_set(n: int, keep: float, cfg, seed: int) -> ObservedSequences:
    """n sequences observed with probability `keep`, from one seeded generator (`cfg`: DynamicsConfig)."""
    g = torch.Generator().manual_seed(seed)
    traj = oscillators(n, cfg.grid_steps, (cfg.omega_min, cfg.omega_max), cfg.damping_max, g)
    return observe(traj, keep, g)


def baseline_mse(data: ObservedSequences) -> dict[str, float]:
    """MSE of two trivial predictors of the next grid value: 0, and the last observed value."""
    m = data.mask()
    y, last = data.targets[..., 0][m], data.values[..., 0][m]
    return {"zero": float((y**2).mean()), "persistence": float(((y - last) ** 2).mean())}
