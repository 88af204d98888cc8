"""The `rlhf` experiment: SFT -> preferences -> reward model -> PPO / DPO / best-of-n."""

from toyrepro.core.experiment import Experiment
from toyrepro.rlhf.config import RLHFConfig

EXPERIMENT = Experiment(
    name="rlhf",
    summary="PPO, DPO and best-of-n on a learned reward raise a hidden gold reward at bounded KL",
    paper="InstructGPT (Ouyang et al. 2022); DPO (Rafailov et al. 2023); Gao, Schulman & Hilton 2022",
    run="toyrepro.rlhf.experiment:run",
    claims="toyrepro.rlhf.experiment:claims",
    section="rlhf",
    schema=RLHFConfig,
    trained_stages=4,  # sft, reward_model, ppo, dpo
    writeup="experiments/rlhf/README.md",
    quick_minutes=10,
)
