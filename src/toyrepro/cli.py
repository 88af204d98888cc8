"""`toyrepro experiment=<name> [overrides]` — the Hydra entry point (also `python -m toyrepro`).

Also `toyrepro --help` (the suite's help), `toyrepro experiment=<name> --help` (that
experiment's options) and `toyrepro report RUN_DIR...` (same as `toyrepro-report`).

Flow of one job: compose config (Hydra: unknown experiment/key or wrong type stops here)
-> validate ranges, the experiment's section and the machine (ConfigError: one line, run
dir removed) -> seed -> the experiment's `run(ctx)` fills the scorecard core declared from
its claims -> write the scorecard. Known failures (a corrupt checkpoint, a damaged cache, a
non-finite loss, a missing extra) print one line naming the problem and the fix and exit
with status 2. Experiments come from the registry (`core/experiment.py`); this file names
none of them.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from toyrepro.core import config as schema
from toyrepro.core import experiment as registry

CONFIG_DIR = str(Path(__file__).resolve().parents[2] / "configs")

log = logging.getLogger("toyrepro")


def _run_suffix() -> str:
    job = os.environ.get("SLURM_ARRAY_JOB_ID") or os.environ.get("SLURM_JOB_ID")
    if job and os.environ.get("SLURM_ARRAY_TASK_ID"):
        job = f"{job}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    return f"_slurm{job}" if job else ""


if not OmegaConf.has_resolver("run_suffix"):
    OmegaConf.register_new_resolver("run_suffix", _run_suffix)
schema.register()


HYDRA_START_FILES = {".hydra", "console.log"}  # what Hydra writes into the run dir before the job starts


def only_hydra_start_files(run_dir: Path) -> bool:
    """True when the run dir holds nothing but what Hydra wrote for this job: a refused job may
    remove it. An existing run's dir named for `resume=true` holds checkpoints, metrics or a
    scorecard as well, and a typo in the resume command must not delete them."""
    return run_dir.is_dir() and {p.name for p in run_dir.iterdir()} <= HYDRA_START_FILES


def _fail(msg: str, run_dir: Path | None = None, remove: bool = False) -> None:
    if run_dir is not None and remove and only_hydra_start_files(run_dir):
        logging.shutdown()
        shutil.rmtree(run_dir, ignore_errors=True)
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(2)


def check_machine(cfg: schema.Config) -> None:
    import torch

    if cfg.trainer.accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise schema.ConfigError(
            f"trainer=gpu needs a CUDA GPU, but torch {torch.__version__} sees none here; "
            "use trainer=cpu, or run on a GPU node (hydra/launcher=slurm)"
        )


def checked_config(dcfg: DictConfig) -> schema.Config:
    """The typed, range-checked config of a known experiment with its section; ConfigError otherwise."""
    cfg = schema.validate(dcfg)
    exp = registry.get(cfg.name)
    if exp.section and getattr(cfg, exp.section, None) is None:
        raise schema.ConfigError(f"experiment {cfg.name} needs its `{exp.section}:` config section, which "
                                 f"configs/experiment/{cfg.name}.yaml provides; select it with experiment={cfg.name}")
    check_machine(cfg)
    return cfg


@hydra.main(config_path=CONFIG_DIR, config_name="config", version_base="1.3")
def _hydra_main(dcfg: DictConfig) -> None:
    run_dir = Path(OmegaConf.select(dcfg, "run_dir"))
    try:
        cfg = checked_config(dcfg)
    except schema.ConfigError as e:
        _fail(f"config error: {e}", run_dir, remove=True)
    try:
        run(cfg, OmegaConf.to_container(dcfg, resolve=True), run_dir)
    except RunFailed as e:
        _fail(str(e))


class RunFailed(RuntimeError):
    """A known failure (message names the fix); the CLI prints it as one line and exits 2."""


def run(cfg: schema.Config, config_dict: dict, run_dir: Path):
    """Run one experiment job in `run_dir` and return its Scorecard (raises RunFailed)."""
    import lightning as L

    from toyrepro.core.checks import UserError
    from toyrepro.core.data import DamagedCacheError
    from toyrepro.core.disk import DiskFullError, check_space, estimate_run_bytes, gpt_params
    from toyrepro.core.logging import quiet_frameworks
    from toyrepro.core.run import RunContext
    from toyrepro.core.scorecard import Scorecard
    from toyrepro.core.train import CorruptCheckpointError, NonFiniteLossError

    quiet_frameworks()
    if cfg.threads > 0:
        import torch

        torch.set_num_threads(cfg.threads)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    exp = registry.get(cfg.name)
    card = Scorecard(cfg.name, cfg.seed, cfg.scale.name).declare(exp.claims_fn()(cfg))
    ctx = RunContext(cfg, config_dict, run_dir, card=card)
    log.info("run dir: %s", run_dir)
    n_params = gpt_params(cfg.model.vocab_size, cfg.model.block_size, cfg.model.n_layer, cfg.model.n_embd)
    try:
        log.info(check_space(run_dir, estimate_run_bytes(n_params, n_stages=exp.stages_trained(cfg))))
        exp.run_fn()(ctx)
    except NonFiniteLossError as e:
        card.failure = str(e)
        ctx.close(card)
        raise RunFailed(str(e)) from e
    except (CorruptCheckpointError, DamagedCacheError, DiskFullError, UserError) as e:
        raise RunFailed(str(e)) from e
    ctx.close(card)
    return card


def _wants_help(argv: list[str]) -> bool:
    return any(a in ("--help", "-h") for a in argv)


def _with_search_path(argv: list[str]) -> list[str]:
    """Plugin experiments' config folders join Hydra's search path."""
    paths = registry.search_paths()
    if not paths or any(a.startswith("hydra.searchpath") for a in argv):
        return argv
    return [*argv, "hydra.searchpath=[" + ",".join(paths) + "]"]


def _with_run_dir(argv: list[str]) -> list[str]:
    """`run_dir=D` also makes D Hydra's output dir, so that `.hydra/` and `console.log` land in
    the run dir, not in a second, dated one under runs/. A sweep gives each job its own dir
    (`hydra.sweep.dir`), so there one `run_dir` for all its jobs is refused."""
    given = [a.split("=", 1)[1] for a in argv if a.startswith("run_dir=")]
    if not given:
        return argv
    if any(a in ("-m", "--multirun") for a in argv):
        _fail("run_dir= names one run's directory, but a sweep (-m) runs many jobs; drop run_dir= and "
              "set hydra.sweep.dir=<dir> (each job gets a subdir of it)")
    if any(a.startswith("hydra.run.dir=") for a in argv):
        return argv
    return [*argv, f"hydra.run.dir={given[-1]}"]


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["report"]:
        from toyrepro.core.report import main as report_main

        return report_main(argv[1:])
    if _wants_help(argv):
        from toyrepro.core.help import print_help

        return print_help(argv)
    sys.argv = [sys.argv[0], *_with_search_path(_with_run_dir(argv))]
    _hydra_main()


if __name__ == "__main__":
    main()
