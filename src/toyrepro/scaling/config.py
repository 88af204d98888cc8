"""Config section `scaling:` of the `scaling` and `scaling_point` experiments
(configs/experiment/scaling.yaml, configs/experiment/scaling_point.yaml).

Hoffmann et al. 2022, "Training Compute-Optimal Large Language Models" (Chinchilla,
arXiv 2203.15556); Muennighoff et al. 2023, "Scaling Data-Constrained Language Models"
(arXiv 2305.16264); Kaplan et al. 2020, "Scaling Laws for Neural Language Models"
(arXiv 2001.08361) for counting N. Section numbers below refer to those papers.

The grid is `len(widths)` model sizes x `len(steps)` token budgets; model size i is a GPT
of `layers[i]` blocks, `widths[i]` wide, `widths[i] // head_dim` heads (the rest of
`model:` as configured); budget j trains `steps[j]` steps of `optim.batch_size` windows of
`model.block_size` tokens, so D_j = steps[j] * batch_size * block_size. With `budget_scale`,
size i's budgets are its own: round(steps[j] * budget_scale[i]) steps (Hoffmann §3.2: each
size trained on the token counts near its own optimum, not one ladder for all).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from toyrepro.core.checks import check


def run_steps(s, size: int, budget: int) -> int:
    """Training steps of model size `size` at token budget `budget` (`s`: the `scaling:` section)."""
    return round(s.steps[budget] * s.budget_scale[size]) if s.budget_scale else s.steps[budget]


@dataclass
class ScalingConfig:
    """A grid of GPTs (N, D), the Chinchilla law fitted to it, and a repeated-data arm."""

    # -- the grid (Hoffmann §3: "over 400 models"; here 5 x 4) ------------------------------
    # sizes N = 3.3k, 7.3k, 21.7k, 56.6k, 150k (non-embedding): about evenly spaced in log N
    layers: list[int] = field(default_factory=lambda: [1, 1, 3, 2, 3])  # n_layer of each model size
    widths: list[int] = field(default_factory=lambda: [16, 24, 24, 48, 64])  # n_embd of each model size
    head_dim: int = 8  # n_head = width // head_dim (every width must be a multiple)
    # fourth protocol: 800-3200 steps of 16 windows, D = 819k-3.28M for every size (the third's 400-1600, doubled)
    steps: list[int] = field(default_factory=lambda: [800, 1600, 2400, 3200])  # training steps of each token budget
    budget_scale: list[float] = field(default_factory=list)  # size i trains round(steps[j] * budget_scale[i]) steps at budget j; [] = `steps` for every size
    lr_width: int = 64  # lr of size i = optim.lr * lr_width / widths[i] (lr ∝ 1/width, one rule for every size); 0 = optim.lr for every size
    warmup_fraction: float = 0.05  # linear warm-up, as a fraction of each run; then cosine to the run's end (Hoffmann §3, App. B: the cycle matches the run)
    # -- the fit (Hoffmann §3.3, App. D.2: approach 3) ----------------------------------------
    holdout: int = 3  # the main grid's largest-compute runs left out of the fit and predicted (0 = none)
    huber_delta: float = 1e-3  # delta of the Huber loss on log-loss residuals (Hoffmann: 1e-3)
    lbfgs_starts: int = 32  # L-BFGS runs from the best initialisations of Hoffmann's grid (Hoffmann: from all of it)
    bootstrap: int = 100  # bootstrap refits over resampled runs, for the parameters' intervals
    bootstrap_starts: int = 4  # L-BFGS starts per bootstrap refit (plus the full fit's optimum)
    # -- the data-constrained arm (Muennighoff §4-5) --------------------------------------------
    repeat_size: int = 3  # index into widths/layers of the model the repetition arm trains
    repeat_budget: int = 0  # index into steps of its token budget (-1 = the largest): compute fixed (quick: size 3 x 800 steps = 819k tokens)
    epochs: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16])  # unique data = D / epochs, repeated to D tokens (1 = the main grid's run)
    # -- data and evaluation ------------------------------------------------------------------
    max_files: int = 100_000  # stdlib .py files of the gpt experiment's corpus (gpt/corpus.py); 100000 = all pure-ASCII ones
    val_fraction: float = 0.1  # whole files held out for the evaluation loss
    eval_tokens: int = 32_768  # held-out tokens every run's loss is measured on (the same for every run)
    # -- running it as a sweep ----------------------------------------------------------------
    point: int = -1  # scaling_point: which point of the grid + arm this job trains (0 .. K-1); -1 = all (scaling)
    from_sweep: str = ""  # scaling: read the points from a scaling_point sweep dir instead of training them

    def sizes(self) -> list[tuple[int, int]]:
        return list(zip(self.layers, self.widths))

    def validate(self, p: str = "scaling") -> None:
        check(len(self.layers) == len(self.widths), f"{p}.layers", f"as long as {p}.widths ({len(self.widths)})",
              self.layers)
        check(len(self.widths) >= 2, f"{p}.widths", "at least 2 model sizes", self.widths)
        check(len(self.steps) >= 2, f"{p}.steps", "at least 2 token budgets", self.steps)
        check(all(n >= 1 for n in self.layers), f"{p}.layers", "all >= 1", self.layers)
        check(self.head_dim >= 1, f"{p}.head_dim", ">= 1", self.head_dim)
        check(all(w >= 1 and w % self.head_dim == 0 for w in self.widths), f"{p}.widths",
              f"multiples of {p}.head_dim={self.head_dim}", self.widths)
        check(all(s >= 1 for s in self.steps), f"{p}.steps", "all >= 1", self.steps)
        check(not self.budget_scale or (len(self.budget_scale) == len(self.widths) and all(
              run_steps(self, i, j) >= 1 for i in range(len(self.widths)) for j in range(len(self.steps)))),
              f"{p}.budget_scale", f"[] or one factor per model size ({len(self.widths)}), each giving >= 1 step",
              self.budget_scale)
        check(self.lr_width >= 0, f"{p}.lr_width", ">= 0 (0 = optim.lr for every size)", self.lr_width)
        check(0 <= self.warmup_fraction < 1, f"{p}.warmup_fraction", "in [0, 1)", self.warmup_fraction)
        n_runs = len(self.widths) * len(self.steps)
        check(0 <= self.holdout <= n_runs - 5, f"{p}.holdout",
              f"in [0, {n_runs - 5}] (the fit needs >= 5 runs for its 5 parameters)", self.holdout)
        check(self.huber_delta > 0, f"{p}.huber_delta", "> 0", self.huber_delta)
        check(self.lbfgs_starts >= 1, f"{p}.lbfgs_starts", ">= 1", self.lbfgs_starts)
        check(self.bootstrap >= 0, f"{p}.bootstrap", ">= 0", self.bootstrap)
        check(self.bootstrap_starts >= 1, f"{p}.bootstrap_starts", ">= 1", self.bootstrap_starts)
        check(0 <= self.repeat_size < len(self.widths), f"{p}.repeat_size", f"in [0, {len(self.widths) - 1}]",
              self.repeat_size)
        check(-len(self.steps) <= self.repeat_budget < len(self.steps), f"{p}.repeat_budget",
              f"in [-{len(self.steps)}, {len(self.steps) - 1}]", self.repeat_budget)
        check(len(self.epochs) >= 1 and self.epochs[0] == 1 and all(e >= 1 for e in self.epochs)
              and sorted(set(self.epochs)) == self.epochs, f"{p}.epochs",
              "increasing, starting at 1 (the unique-data run)", self.epochs)
        check(self.max_files >= 2, f"{p}.max_files", ">= 2", self.max_files)
        check(0 < self.val_fraction < 1, f"{p}.val_fraction", "in (0, 1)", self.val_fraction)
        check(self.eval_tokens >= 1, f"{p}.eval_tokens", ">= 1", self.eval_tokens)
        check(self.point >= -1, f"{p}.point", ">= -1 (-1 = the whole grid)", self.point)

    def validate_against(self, cfg, p: str = "scaling") -> None:
        """A scaling_point job trains one point; the whole-grid experiment trains all of them."""
        if cfg.name == "scaling_point":
            check(self.point >= 0, f"{p}.point", "the index of the point this job trains, >= 0 "
                  "(configs/sweep/scaling_grid.yaml sweeps it)", self.point)
        if cfg.name == "scaling":
            check(self.point == -1, f"{p}.point", "-1 under experiment=scaling (it trains every point); "
                  "use experiment=scaling_point for one", self.point)
