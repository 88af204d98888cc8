"""`toyrepro experiment=<name> [overrides]` — the Hydra entry point (also `python -m toyrepro`).

Also `toyrepro report RUN_DIR...` (same as `toyrepro-report`): aggregate scorecards.

Flow of one job: compose config (Hydra: unknown experiment/key or wrong type stops here)
-> validate ranges and the machine (ConfigError: one line, run dir removed) -> seed ->
run the experiment's stages -> write the scorecard. Known failures (a corrupt checkpoint,
a damaged cache, a non-finite loss, a missing extra) print one line naming the problem
and the fix and exit with status 2.
"""

from __future__ import annotations

import importlib
import logging
import os
import shutil
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from toyrepro.core import config as schema
from toyrepro.core.checks import UserError  # noqa: F401  (re-exported for experiments)

CONFIG_DIR = str(Path(__file__).resolve().parents[2] / "configs")

# experiment name -> "module:function" taking a RunContext and returning a Scorecard
EXPERIMENTS = {
    "gpt": "toyrepro.gpt.experiment:run",
    "rlhf": "toyrepro.rlhf.experiment:run",
    "toolformer": "toyrepro.toolformer.experiment:run",
    "lre": "toyrepro.probing.experiment:run",
    "lre_smollm2": "toyrepro.probing.experiment:run",
}

# trained stages per experiment (for the disk estimate printed at the start of a run)
STAGES = {"gpt": 1, "rlhf": 5, "toolformer": 4, "lre": 1, "lre_smollm2": 0}

log = logging.getLogger("toyrepro")


def _run_suffix() -> str:
    job = os.environ.get("SLURM_ARRAY_JOB_ID") or os.environ.get("SLURM_JOB_ID")
    if job and os.environ.get("SLURM_ARRAY_TASK_ID"):
        job = f"{job}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    return f"_slurm{job}" if job else ""


if not OmegaConf.has_resolver("run_suffix"):
    OmegaConf.register_new_resolver("run_suffix", _run_suffix)
schema.register()


def _fail(msg: str, run_dir: Path | None = None, remove: bool = False) -> None:
    if run_dir is not None and remove and not (run_dir / "scorecard.json").exists():
        logging.shutdown()
        shutil.rmtree(run_dir, ignore_errors=True)
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(2)


def _check_machine(cfg: schema.Config) -> None:
    import torch

    if cfg.trainer.accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise schema.ConfigError(
            f"trainer=gpu needs a CUDA GPU, but torch {torch.__version__} sees none here; "
            "use trainer=cpu, or run on a GPU node (hydra/launcher=slurm)"
        )


@hydra.main(config_path=CONFIG_DIR, config_name="config", version_base="1.3")
def _hydra_main(dcfg: DictConfig) -> None:
    run_dir = Path(OmegaConf.select(dcfg, "run_dir"))
    try:
        cfg = schema.validate(dcfg)
        _check_machine(cfg)
        if cfg.name not in EXPERIMENTS:
            raise schema.ConfigError(f"name={cfg.name!r} has no runner; known: {sorted(EXPERIMENTS)}")
    except schema.ConfigError as e:
        _fail(f"config error: {e}", run_dir, remove=True)
    run(cfg, OmegaConf.to_container(dcfg, resolve=True), run_dir)


def run(cfg: schema.Config, config_dict: dict, run_dir: Path):
    import lightning as L

    from toyrepro.core.data import DamagedCacheError
    from toyrepro.core.disk import DiskFullError, check_space, estimate_run_bytes, gpt_params
    from toyrepro.core.lm import MissingExtraError
    from toyrepro.core.run import RunContext
    from toyrepro.core.train import CorruptCheckpointError, NonFiniteLossError

    if cfg.threads > 0:
        import torch

        torch.set_num_threads(cfg.threads)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    module, fn = EXPERIMENTS[cfg.name].split(":")
    ctx = RunContext(cfg, config_dict, run_dir)
    log.info("run dir: %s", run_dir)
    n_params = gpt_params(cfg.model.vocab_size, cfg.model.block_size, cfg.model.n_layer, cfg.model.n_embd)
    try:
        log.info(check_space(run_dir, estimate_run_bytes(n_params, n_stages=STAGES.get(cfg.name, 1))))
        card = getattr(importlib.import_module(module), fn)(ctx)
    except NonFiniteLossError as e:
        from toyrepro.core.scorecard import Scorecard

        card = Scorecard(cfg.name, cfg.seed, cfg.scale.name, failure=str(e))
        ctx.close(card)
        _fail(str(e))
    except (CorruptCheckpointError, DamagedCacheError, DiskFullError, UserError) as e:
        _fail(str(e))
    except MissingExtraError as e:  # names its install command
        _fail(str(e))
    ctx.close(card)
    return card


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["report"]:
        from toyrepro.core.report import main as report_main

        return report_main(argv[1:])
    sys.argv = [sys.argv[0], *argv]
    _hydra_main()


if __name__ == "__main__":
    main()
