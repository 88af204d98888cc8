"""One run of one experiment: its directory, its stages' loggers and checkpoints, its figures.

Layout of a run directory (`runs/<experiment>/<date>_<time.microseconds>[_<slurm id>]`):

    .hydra/config.yaml        the resolved config (Hydra writes it)
    console.log               the console log
    scorecard.json            claims, measured values, verdict (written last, atomically)
    metrics.csv               every stage's logged metrics, with a `stage` column
    checkpoints/<stage>/      last.ckpt (+ stage artefacts)
    csv/<stage>/ tensorboard/<stage>/ wandb/    logger output
    figures/*.png             plots

`scorecard.json` is the mark of a finished run: it is written only at the very end.

The mechanics an experiment's `run(ctx)` calls, so that its file holds only the science:
`ctx.card` (the scorecard core declared from the experiment's claims), `ctx.fit(stage, ...)`
(one Lightning stage: its loggers, checkpoints and resume, named once), `ctx.train_lm(...)`
(the suite's one causal-LM training recipe), `ctx.log_metrics(stage, ...)` (metrics
computed outside Lightning), `ctx.side_by_side(fn, calls)` (independent jobs in `workers`
processes, core/parallel.py), `ctx.save_figure`, `ctx.write_text`.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from lightning.pytorch.loggers import Logger  # noqa: E402

from toyrepro.core.config import Config  # noqa: E402
from toyrepro.core.io import atomic_path, atomic_write_text  # noqa: E402
from toyrepro.core.logging import build_loggers, finish_loggers, log_image, log_summary  # noqa: E402
from toyrepro.core.scorecard import Scorecard  # noqa: E402
from toyrepro.core.train import LMModule, fit_stage  # noqa: E402

log = logging.getLogger("toyrepro")


@dataclass
class RunContext:
    cfg: Config
    config_dict: dict[str, Any]  # the resolved config, for loggers and the scorecard
    run_dir: Path
    card: Scorecard | None = None  # declared by core from the experiment's claims
    _loggers: list[Logger] = field(default_factory=list)
    _stages: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        """At the start of a run: a run under `trainer.step_cap` caches its stages and datasets
        under <cache_dir>/step_cap-<n>/ (a capped model is never reused by an uncapped run), and
        the memory estimate of the config's GPT is logged (core/memory.py)."""
        from toyrepro.core.experiment import experiments
        from toyrepro.core.memory import memory_line, no_estimate_line

        cap = self.cfg.trainer.step_cap
        if cap is not None and not str(self.cfg.cache_dir).rstrip("/").endswith(f"step_cap-{cap}"):
            self.cfg.cache_dir = str(Path(self.cfg.cache_dir) / f"step_cap-{cap}")
            log.info("trainer.step_cap=%d: at most %d optimiser steps per stage; cache %s", cap, cap,
                     self.cfg.cache_dir)
        exp = experiments().get(self.cfg.name)
        if exp is not None and not exp.model_is_gpt:
            log.info(no_estimate_line(exp.name))
        else:
            log.info(memory_line(self.cfg.model, self.cfg.optim.batch_size, self.cfg.trainer.precision))

    def __getstate__(self) -> dict[str, Any]:
        """What a worker process receives (core/parallel.py): no loggers, no scorecard."""
        return self.__dict__ | {"card": None, "_loggers": [], "_stages": []}

    def side_by_side(self, fn, calls, cost=None) -> list:
        """[fn(self, *args) for args in calls], in `cfg.workers` processes (core/parallel.py)."""
        from toyrepro.core.parallel import side_by_side

        return side_by_side(self, fn, calls, cost)

    @property
    def name(self) -> str:
        return self.run_dir.name

    def stage_dir(self, stage: str) -> Path:
        d = self.run_dir / "checkpoints" / stage
        d.mkdir(parents=True, exist_ok=True)
        return d

    def loggers(self, stage: str) -> list[Logger]:
        """Loggers for `stage`; the previous stage's are finished first."""
        if self._stages and self._stages[-1] == stage:
            return self._loggers
        finish_loggers(self._loggers)
        self._loggers = build_loggers(self.cfg.logger, stage, self.name, self.config_dict)
        self._stages.append(stage)
        return self._loggers

    def fit(self, stage: str, module, train_loader, val_loader=None, max_steps: int | None = None,
            trainer=None):
        """Fit `module` as the run's stage `stage`: the stage's loggers, `checkpoints/<stage>/`,
        resume from its `last.ckpt` under `resume=true`. `trainer` replaces `cfg.trainer`."""
        return fit_stage(module, train_loader, val_loader, trainer or self.cfg.trainer, self.stage_dir(stage),
                         self.loggers(stage), stage, self.cfg.resume, max_steps=max_steps)

    def train_lm(self, stage: str, model, train, val, steps: int | None = None, optim=None) -> LMModule:
        """The suite's causal-LM recipe (`core.train.LMModule`: next-token cross-entropy, AdamW,
        warmup-cosine) on datasets of (T+1)-token rows. `train` holds `steps * batch_size` rows and
        is read from `global_step * batch_size` on, so a resumed stage replays the same batches.
        Under `trainer.compile` the model trains through `torch.compile` (every experiment that
        trains its GPT here: gpt, compression, toolformer, collapse, lre, rlhf's SFT, scaling)."""
        from torch.utils.data import DataLoader

        from toyrepro.core.data import StepOffsetSampler

        optim = optim or self.cfg.optim
        steps = steps or self.cfg.trainer.max_steps
        module = LMModule(model, optim, steps, stage=stage, compile=self.cfg.trainer.compile)
        train_loader = DataLoader(train, batch_size=optim.batch_size,
                                  sampler=StepOffsetSampler(len(train), optim.batch_size, lambda: module.global_step))
        self.fit(stage, module, train_loader, DataLoader(val, batch_size=optim.batch_size), max_steps=steps)
        return module

    def log_metrics(self, stage: str, metrics: dict[str, float], step: int = 0) -> None:
        """Metrics computed outside Lightning, to every logger of `stage`."""
        for lg in self.loggers(stage):
            lg.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)

    def save_figure(self, fig: plt.Figure, name: str) -> Path:
        path = self.run_dir / "figures" / f"{name}.png"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
        plt.close(fig)
        log_image(self._loggers, f"figures/{name}", path)
        log.info("figure: %s", path)
        return path

    def merge_metrics(self) -> Path:
        """Concatenate every stage's CSV into <run_dir>/metrics.csv with a `stage` column."""
        rows, cols = [], ["stage"]
        for f in sorted((self.run_dir / "csv").glob("*/metrics.csv"), key=lambda p: p.stat().st_mtime):
            stage = f.parent.name.split(".resume")[0]
            with open(f, newline="") as fh:
                for row in csv.DictReader(fh):
                    rows.append({"stage": stage, **row})
                    cols += [k for k in row if k not in cols]
        out = self.run_dir / "metrics.csv"
        with atomic_path(out) as tmp, open(tmp, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=cols)
            w.writeheader()
            w.writerows(rows)
        return out

    def close(self, scorecard: Scorecard) -> Path:
        """Write the scorecard (last), print it, put it in the W&B summary and TensorBoard's
        HPARAMS tab (the run's swept keys and seed, its claims as metrics), end the loggers."""
        from toyrepro.core.logging import is_global_zero, log_scorecard_hparams, sweep_hparams
        from toyrepro.core.machine import describe

        scorecard.config = self.config_dict
        scorecard.machine = describe()
        summary = {f"claim/{c.id}": c.value for c in scorecard.claims} | {
            f"claim/{c.id}/passed": c.passed for c in scorecard.claims
        } | {"scorecard/passed": scorecard.passed}
        text = scorecard.print()
        with open(self.run_dir / "console.log", "a") as fh:  # the console log gets it too
            fh.write(text)
        log_summary(self._loggers, summary)
        finish_loggers(self._loggers)
        self._loggers = []
        if is_global_zero():
            metrics = {k: float(v) for k, v in summary.items() if isinstance(v, int | float)}
            log_scorecard_hparams(self.cfg.logger, sweep_hparams(self.config_dict), metrics)
        self.merge_metrics()
        path = scorecard.write(self.run_dir)
        log.info("scorecard: %s", path)
        return path

    def write_text(self, relpath: str, text: str) -> Path:
        path = self.run_dir / relpath
        atomic_write_text(path, text)
        return path
