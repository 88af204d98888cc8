"""Loggers from config: CSV and TensorBoard locally, Weights & Biases as the team dashboard.

`configs/logger/*.yaml` name Lightning loggers by `_target_`; `build_loggers` instantiates
them for one stage of a run, adding what only the run knows:
- CSV / TensorBoard: `version=<stage>`, so `<run_dir>/csv/<stage>/metrics.csv` and
  `<run_dir>/tensorboard/<stage>/` hold one stage each;
- W&B: one W&B run per (job, stage): `group` = experiment, `job_type` = stage, the resolved
  config as the run config, and `mode` offline unless WANDB_MODE is set or an API key is
  configured (`wandb login`), so nothing ever blocks on a network that is not there.

At the end of a run (`RunContext.close`), `log_scorecard_hparams` writes the run's
hyperparameters with its claim values as metrics to `<run_dir>/tensorboard/scorecard/`, so
TensorBoard's HPARAMS tab over a sweep dir lists one row per job with its claims;
the hyperparameters are `sweep_hparams`: the seed and every key the job's command line set
(a sweep's varied keys among them).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hydra.utils import get_class
from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger, WandbLogger


def wandb_mode() -> str:
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    netrc = Path.home() / ".netrc"
    if netrc.exists() and "api.wandb.ai" in netrc.read_text(errors="ignore"):
        return "online"
    return "offline"


def _fresh_version(root: Path, stage: str) -> str:
    """`stage`, or `stage.resume<k>` when an earlier attempt of the stage already logged."""
    version, k = stage, 0
    while (root / version / "metrics.csv").exists():
        k += 1
        version = f"{stage}.resume{k}"
    return version


def build_loggers(
    logger_cfg: dict[str, Any], stage: str, run_name: str, config: dict[str, Any]
) -> list[Logger]:
    loggers: list[Logger] = []
    for spec in logger_cfg.values():
        cls = get_class(spec["_target_"])
        extra: dict[str, Any] = {}
        if issubclass(cls, TensorBoardLogger):
            extra["version"] = stage  # a resumed stage adds event files beside the old ones
        if issubclass(cls, CSVLogger):  # Lightning would delete a resumed stage's old CSV
            extra["version"] = _fresh_version(Path(spec["save_dir"]) / spec.get("name", ""), stage)
        if issubclass(cls, WandbLogger):
            extra.update(
                job_type=stage, name=f"{run_name}-{stage}", config=config, mode=wandb_mode(),
                settings={"silent": True, "console": "off"},
            )
            os.makedirs(spec.get("save_dir", "."), exist_ok=True)
        kwargs = {k: v for k, v in spec.items() if k != "_target_"}
        loggers.append(cls(**kwargs, **extra))  # = hydra instantiate; `config` clashes with its signature
    return loggers


def finish_loggers(loggers: list[Logger]) -> None:
    """Flush every logger; end the W&B run so the next stage/job gets its own."""
    for lg in loggers:
        lg.finalize("success")
        if isinstance(lg, WandbLogger) and lg._experiment is not None:
            lg.experiment.finish()


def log_summary(loggers: list[Logger], summary: dict[str, Any]) -> None:
    for lg in loggers:
        if isinstance(lg, WandbLogger):
            lg.experiment.summary.update(summary)


def log_image(loggers: list[Logger], key: str, path: Path, step: int = 0) -> None:
    import matplotlib.image as mpimg

    for lg in loggers:
        if isinstance(lg, WandbLogger):
            lg.log_image(key=key, images=[str(path)], step=step)
        elif isinstance(lg, TensorBoardLogger):
            img = mpimg.imread(str(path))[..., :3]
            lg.experiment.add_image(key, img, global_step=step, dataformats="HWC")


def is_global_zero() -> bool:
    """Rank 0 of a multi-process (DDP) job, or a single process."""
    from lightning.pytorch.utilities import rank_zero_only

    return getattr(rank_zero_only, "rank", 0) == 0


def sweep_hparams(config: dict[str, Any]) -> dict[str, Any]:
    """The seed and each command-line override of this job (Hydra's `overrides.task`: for a sweep
    job, the values of the swept keys), with the value the resolved config gave it."""
    params: dict[str, Any] = {"seed": config.get("seed")}
    try:
        from hydra.core.hydra_config import HydraConfig

        overrides = list(HydraConfig.get().overrides.task)
    except (ValueError, ImportError):  # not started by Hydra (the Python API): the seed only
        overrides = []
    for o in overrides:
        key, _, raw = o.lstrip("+~").partition("=")
        if key.startswith("hydra.") or key.startswith("hydra/") or not raw:
            continue
        node: Any = config
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        value = node if isinstance(node, bool | int | float | str) else raw  # a group choice: its name
        params[key] = value
    return params


def log_scorecard_hparams(logger_cfg: dict[str, Any], hparams: dict[str, Any], metrics: dict[str, float]) -> None:
    """The HPARAMS tab's row for this run: `hparams` with the claims as metrics (a session of
    its own in `tensorboard/scorecard/`, the metrics also as scalars, which the tab reads)."""
    from torch.utils.tensorboard import SummaryWriter
    from torch.utils.tensorboard.summary import hparams as hparams_summary

    for spec in logger_cfg.values():
        if not issubclass(get_class(spec["_target_"]), TensorBoardLogger):
            continue
        writer = SummaryWriter(str(Path(spec["save_dir"]) / spec.get("name", "") / "scorecard"))
        exp, ssi, sei = hparams_summary(hparams, metrics)
        for summary in (exp, ssi, sei):
            writer.file_writer.add_summary(summary)
        for k, v in metrics.items():
            writer.add_scalar(k, v, 0)
        writer.close()


def quiet_frameworks() -> None:
    """The console shows the suite's progress and results, not framework chatter: Lightning's
    device banners and its advert for a hosted logger (INFO from `rank_zero`), matplotlib's
    font-cache notice, a deprecation warning torch raises inside Lightning's own code, and
    Lightning's hint to prepend `srun` wherever Slurm is installed (a run outside a Slurm job is
    meant to be one; the suite's Slurm jobs go through submitit, slurm/README.md).
    Lightning's other warnings and errors still show."""
    import logging
    import warnings

    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero",
                 "matplotlib.font_manager"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
    warnings.filterwarnings("ignore", message=r"The `srun` command is available on your system but is not used")
