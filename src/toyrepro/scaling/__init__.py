"""The `scaling` experiments: a Chinchilla law fitted on the suite's GPTs, and repeated data
(Hoffmann et al. 2022; Muennighoff et al. 2023). `scaling` runs the whole grid in one process
(or fits a sweep's points); `scaling_point` trains one point, a job of the sweep."""

from toyrepro.core.experiment import Experiment
from toyrepro.scaling.config import ScalingConfig

PAPERS = ("Hoffmann et al. 2022, Training Compute-Optimal Large Language Models (arXiv 2203.15556); "
          "Muennighoff et al. 2023, Scaling Data-Constrained Language Models (arXiv 2305.16264)")


def _grid_size(cfg) -> int:
    """Points the one-process run trains: the grid, then the repetition arm's extra epochs."""
    from toyrepro.scaling.grid import points  # imported late: --help reads this file without torch

    return len(points(cfg))


EXPERIMENTS = [
    Experiment(
        name="scaling",
        summary="a fitted L(N, D) predicts held-out runs within 2 %; 4 epochs of repeats ~ free",
        paper=PAPERS,
        run="toyrepro.scaling.experiment:run",
        claims="toyrepro.scaling.experiment:claims",
        section="scaling",
        schema=ScalingConfig,
        trained_stages=_grid_size,  # the grid plus the repetition arm's extra epochs (24 at smoke and quick)
        writeup="experiments/scaling/README.md",
        quick_minutes=15,
    ),
    Experiment(
        name="scaling_point",
        summary="one point of the scaling grid (a sweep job; fit with scaling.from_sweep)",
        paper=PAPERS,
        run="toyrepro.scaling.experiment:run_point",
        claims="toyrepro.scaling.experiment:point_claims",
        section="scaling",
        schema=ScalingConfig,
        trained_stages=1,
        writeup="experiments/scaling/README.md",
        quick_minutes=2,
    ),
]
