"""The `toolformer` experiment: a model teaches itself calculator calls (Schick et al. 2023)."""

from toyrepro.core.experiment import Experiment
from toyrepro.toolformer.config import ToolformerConfig

EXPERIMENT = Experiment(
    name="toolformer",
    summary="a model keeps only the calculator calls that lower its own loss, then multiplies 4-6 by 2-3 digits",
    paper="Toolformer (Schick et al. 2023, arXiv 2302.04761)",
    run="toyrepro.toolformer.experiment:run",
    claims="toyrepro.toolformer.experiment:claims",
    section="toolformer",
    schema=ToolformerConfig,
    trained_stages=4,  # m0, finetune_cc, finetune_toolformer, finetune_unfiltered
    writeup="experiments/toolformer/README.md",
    quick_minutes=15,
)
