"""Config section `icl:` of the `icl` experiment (configs/experiment/icl.yaml).

Garg, Tsipras, Liang & Valiant 2022, "What Can Transformers Learn In-Context? A Case Study
of Simple Function Classes" (arXiv 2208.01066); Akyürek, Schuurmans, Andreas, Ma & Zhou
2022, "What learning algorithm is in-context learning? Investigations with linear models"
(arXiv 2211.15661). Section numbers below refer to those papers.
"""

from __future__ import annotations

from dataclasses import dataclass

from toyrepro.core.checks import check


@dataclass
class ICLConfig:
    """In-context linear regression: prompts (x_1, y_1, ..., x_K, y_K), y_i = w.x_i (+ noise)."""

    # -- the task (Garg §2) ------------------------------------------------------------------
    dims: int = 5  # d: x and w live in R^d, w ~ N(0, I_d), x ~ N(0, I_d) (Garg: d = 20)
    n_points: int = 0  # K: examples per prompt; 0 = 2d + 1 (Garg §2); needs 2K <= model.block_size
    noise_std: float = 0.5  # sigma of the noisy variant's label noise y = w.x + N(0, sigma^2) (issue: sigma^2 = 0.25)
    # -- curriculum (Garg App. A): train on the first dims_start coordinates and points_start points,
    #    growing by 1 coordinate and 2 points every curriculum_every steps; 0 = no curriculum
    curriculum_every: int = 0  # steps between curriculum increments (0 = off: full d and K from step 0)
    dims_start: int = 1  # curriculum's first d (Garg: 5)
    points_start: int = 3  # curriculum's first K (Garg: 11)
    # -- the noisy variant's model (Garg §4 "noisy linear regression") ---------------------------
    noisy_steps: int = 0  # training steps of the noisy-label model; 0 = trainer.max_steps
    noisy_init: str = "clean"  # clean = start from the trained noiseless model (deviation); scratch = Garg
    noisy_lr: float = 0.0  # peak learning rate of the noisy stage (warm-up + cosine of `optim`); 0 = optim.lr
    # -- evaluation (Garg Fig. 2 and §4) ------------------------------------------------------
    eval_prompts: int = 4000  # held-out prompts every error curve is averaged over (same prompts for all methods)
    knn_neighbors: int = 3  # the nearest-neighbour baseline's k (Garg: 3)
    skew_power: float = 2.0  # OOD "skewed covariance": eigenvalues of Cov(x) proportional to 1/i^power (trace d)
    query_scale: float = 3.0  # OOD: the query x multiplied by this (Garg §4: x3)
    # -- probing (Akyürek §4) ----------------------------------------------------------------
    probe_prompts: int = 4000  # prompts whose hidden states the probes see (half fit, half score R^2)
    probe_k: int = 0  # in-context examples before the probed query; 0 = K - 1 (the last query, as Akyürek)
    probe_alpha: float = 1e-3  # ridge penalty of the linear probes (sklearn Ridge alpha; ~ plain least squares)

    def points(self) -> int:
        return self.n_points or 2 * self.dims + 1

    def validate(self, p: str = "icl") -> None:
        check(self.dims >= 1, f"{p}.dims", ">= 1", self.dims)
        check(self.n_points >= 0, f"{p}.n_points", ">= 0 (0 = 2 * dims + 1)", self.n_points)
        check(self.noise_std >= 0, f"{p}.noise_std", ">= 0", self.noise_std)
        check(self.curriculum_every >= 0, f"{p}.curriculum_every", ">= 0 (0 = no curriculum)", self.curriculum_every)
        check(1 <= self.dims_start <= self.dims, f"{p}.dims_start", f"in [1, dims={self.dims}]", self.dims_start)
        check(1 <= self.points_start <= self.points(), f"{p}.points_start", f"in [1, K={self.points()}]",
              self.points_start)
        check(self.noisy_steps >= 0, f"{p}.noisy_steps", ">= 0 (0 = trainer.max_steps)", self.noisy_steps)
        check(self.noisy_init in ("clean", "scratch"), f"{p}.noisy_init", "clean or scratch", self.noisy_init)
        check(self.noisy_lr >= 0, f"{p}.noisy_lr", ">= 0 (0 = optim.lr)", self.noisy_lr)
        check(self.eval_prompts >= 10, f"{p}.eval_prompts", ">= 10", self.eval_prompts)
        check(self.knn_neighbors >= 1, f"{p}.knn_neighbors", ">= 1", self.knn_neighbors)
        check(self.skew_power >= 0, f"{p}.skew_power", ">= 0", self.skew_power)
        check(self.query_scale > 0, f"{p}.query_scale", "> 0", self.query_scale)
        check(self.probe_prompts >= 20, f"{p}.probe_prompts", ">= 20", self.probe_prompts)
        check(0 <= self.probe_k < self.points(), f"{p}.probe_k", f"in [0, K - 1 = {self.points() - 1}] (0 = K - 1)",
              self.probe_k)
        check(self.probe_alpha > 0, f"{p}.probe_alpha", "> 0", self.probe_alpha)

    def validate_against(self, cfg, p: str = "icl") -> None:
        """A prompt of K examples is 2K tokens (x and y alternate): it must fit the position table."""
        k = self.points()
        check(2 * k <= cfg.model.block_size, f"{p}.n_points",
              f"<= model.block_size / 2 = {cfg.model.block_size // 2} (a prompt of K examples is 2K tokens); "
              f"lower it or raise model.block_size", k)
