"""The `lre` and `lre_smollm2` experiments: relations decoded by one affine map (Hernandez et al. 2023)."""

from toyrepro.core.experiment import Experiment
from toyrepro.lre.config import LREConfig

PAPER = "Linearity of Relation Decoding in Transformer LMs (Hernandez et al. 2023, arXiv 2308.09124)"
_COMMON = dict(paper=PAPER, run="toyrepro.lre.experiment:run", claims="toyrepro.lre.experiment:claims",
               section="lre", schema=LREConfig, writeup="experiments/lre/README.md")

EXPERIMENTS = [
    Experiment(name="lre", summary="a toy GPT's fact lookup is one affine map o = beta W s + b: faithful and causal",
               trained_stages=1, quick_minutes=5, **_COMMON),
    Experiment(name="lre_smollm2", summary="the same on SmolLM2-135M and real facts (needs the `real` extra)",
               trained_stages=0, quick_minutes=15, model_is_gpt=False, **_COMMON),
]
