"""The `expert_loop` experiment: at a fixed budget of expert labels, asking the expert about the
model's own current outputs (iterative / online DPO) beats a static dataset collected up front."""

from toyrepro.core.experiment import Experiment
from toyrepro.expert_loop.config import ExpertLoopConfig

EXPERIMENT = Experiment(
    name="expert_loop",
    summary="online DPO that asks an expert about its own samples beats static DPO at the same label budget",
    paper="Xiong et al. 2024, Iterative Preference Learning from Human Feedback (arXiv 2312.11456); "
          "Guo et al. 2024, Direct Language Model Alignment from Online AI Feedback (arXiv 2402.04792)",
    run="toyrepro.expert_loop.experiment:run",
    claims="toyrepro.expert_loop.experiment:claims",
    section="expert_loop",
    schema=ExpertLoopConfig,
    trained_stages=1,  # the shared rlhf SFT stage (the arms' DPO rounds are not Lightning stages: checkpoints/arms/)
    writeup="experiments/expert_loop/README.md",
    quick_minutes=10,
)
