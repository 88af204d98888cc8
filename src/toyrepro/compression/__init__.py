"""The `compression` experiment: the suite's GPT + arithmetic coding is a lossless compressor."""

from toyrepro.compression.config import CompressionConfig
from toyrepro.core.experiment import Experiment

EXPERIMENT = Experiment(
    name="compression",
    summary="GPT + arithmetic coding: lossless, beats gzip -9 on 2 KB chunks of code",
    paper="Language Modeling Is Compression (Deletang et al. 2023, arXiv 2309.10668); Shannon 1948",
    run="toyrepro.compression.experiment:run",
    claims="toyrepro.compression.experiment:claims",
    section="compression",
    schema=CompressionConfig,
    trained_stages=1,  # the gpt experiment's `train` stage (skipped when its model is cached)
    writeup="experiments/compression/README.md",
)
