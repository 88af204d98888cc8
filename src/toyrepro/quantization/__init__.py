"""The `quantization` and `quantization_smollm2` experiments: weight formats vs loss, facts, and LREs."""

from toyrepro.core.experiment import Experiment
from toyrepro.quantization.config import QuantConfig

PAPER = ("llama.cpp block formats (gguf.quants); Frantar et al. 2022, GPTQ (arXiv 2210.17323) RTN baselines; "
         "Allen-Zhu & Li 2024, Physics of LMs 3.3 (arXiv 2404.05405); Hernandez et al. 2023 (LRE)")
_COMMON = dict(paper=PAPER, run="toyrepro.quantization.experiment:run", claims="toyrepro.quantization.experiment:claims",
               section="quantization", schema=QuantConfig, writeup="experiments/quantization/README.md")

EXPERIMENTS = [
    Experiment(name="quantization", summary="Q8_0 is lossless on the lre toy; facts vs perplexity at <= 4 bits",
               trained_stages=1, quick_minutes=10, **_COMMON),  # trains lre's toy GPT unless lre cached it
    Experiment(name="quantization_smollm2", summary="the same on SmolLM2-135M (shipped Q4_1), quantised further",
               trained_stages=0, quick_minutes=15, model_is_gpt=False, **_COMMON),
]
