"""The `liquid` experiment: LTC and CfC cells (ncps) read elapsed time on irregular sequences."""

from toyrepro.core.experiment import Experiment
from toyrepro.liquid.config import LiquidConfig

EXPERIMENT = Experiment(
    name="liquid",
    summary="CfC/LTC cells read elapsed time: event digits >= 85 % where LSTMs <= 50 %",
    paper="Hasani et al. 2021, Liquid time-constant networks (AAAI); Hasani et al. 2022, "
          "Closed-form continuous-time neural networks (Nature Machine Intelligence 4)",
    run="toyrepro.liquid.experiment:run",
    claims="toyrepro.liquid.experiment:claims",
    section="liquid",
    schema=LiquidConfig,
    trained_stages=15,  # 6 models on task A, 6 on task B, 3 on the regular-sampling control
    writeup="experiments/liquid/README.md",
    model_is_gpt=False,  # LTC/CfC/LSTM cells
)
