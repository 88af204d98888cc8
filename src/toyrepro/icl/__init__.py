"""The `icl` experiment: in-context linear regression (Garg et al. 2022; Akyürek et al. 2022)."""

from toyrepro.core.experiment import Experiment
from toyrepro.icl.config import ICLConfig

EXPERIMENT = Experiment(
    name="icl",
    summary="a GPT trained on regression prompts matches least squares in context",
    paper="Garg et al. 2022, What Can Transformers Learn In-Context? (arXiv 2208.01066); "
          "Akyürek et al. 2022, What learning algorithm is in-context learning? (arXiv 2211.15661)",
    run="toyrepro.icl.experiment:run",
    claims="toyrepro.icl.experiment:claims",
    section="icl",
    schema=ICLConfig,
    trained_stages=2,  # clean, noisy
    writeup="experiments/icl/README.md",
)
