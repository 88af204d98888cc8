"""The `ghn` experiment: a graph hypernetwork (GHN-2) predicts parameters for unseen architectures."""

from toyrepro.core.experiment import Experiment
from toyrepro.ghn.config import GHNConfig

EXPERIMENT = Experiment(
    name="ghn",
    summary="GHN-2 predicts unseen nets' weights in one pass: >= 60 % on digits, no training",
    paper="Knyazev, Drozdzal, Taylor & Romero-Soriano 2021, Parameter Prediction for Unseen Deep "
          "Architectures (GHN-2), NeurIPS 2021, arXiv 2110.13100",
    run="toyrepro.ghn.experiment:run",
    claims="toyrepro.ghn.experiment:claims",
    section="ghn",
    schema=GHNConfig,
    trained_stages=4,  # ghn2, mlp_hypernet, ghn1, ghn2_transfer
    writeup="experiments/ghn/README.md",
    model_is_gpt=False,  # GHN-2 and the nets it predicts
)
