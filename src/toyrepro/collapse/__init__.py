"""The `collapse` experiment: models fit to their own samples lose the tails (Shumailov et al.)."""

from toyrepro.collapse.config import CollapseConfig, capped_lm
from toyrepro.core.experiment import Experiment

EXPERIMENT = Experiment(
    name="collapse",
    summary="fit to own samples, Gaussian/Zipf/GPT lose tails; 10% real data halves it",
    paper="Shumailov et al. 2024, AI models collapse when trained on recursively generated data "
          "(Nature 631; arXiv 2305.17493)",
    run="toyrepro.collapse.experiment:run",
    claims="toyrepro.collapse.experiment:claims",
    section="collapse",
    schema=CollapseConfig,
    trained_stages=lambda cfg: 1 + 2 * capped_lm(cfg).generations,  # GPT fits: generation 0, then G pure and G mixed
    writeup="experiments/collapse/README.md",
)
