"""The `gpt` experiment: a from-scratch GPT-2 learns the Python standard library's source."""

from toyrepro.core.experiment import Experiment
from toyrepro.gpt.config import GPTTaskConfig

EXPERIMENT = Experiment(
    name="gpt",
    summary="a from-scratch GPT-2 learns Python's stdlib source: >= 1 bit/char below unigram",
    paper="GPT in 60 lines of NumPy (Mody 2023); GPT-2 (Radford et al. 2019)",
    run="toyrepro.gpt.experiment:run",
    claims="toyrepro.gpt.experiment:claims",
    section="gpt",
    schema=GPTTaskConfig,
    trained_stages=1,
    writeup="experiments/gpt/README.md",
    quick_minutes=5,
)
