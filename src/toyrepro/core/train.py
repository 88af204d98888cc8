"""Lightning glue: the causal-LM LightningModule, the Trainer from config, and `fit_stage`.

- `LMModule`: next-token cross-entropy; AdamW (weight decay on matrices only, as in
  GPT-2/nanoGPT) with linear warmup then cosine decay; gradient clipping by the Trainer.
- `build_trainer`: a `lightning.Trainer` from `TrainerConfig`, with ModelCheckpoint
  (`last.ckpt` every `checkpoint_every_n_steps`), atomic checkpoint writes, the loggers of
  the stage, and a rich progress bar on interactive terminals (a plain periodic log line
  in batch jobs, where progress bars only clutter Slurm logs).
- `cap_steps`: `trainer.step_cap`, honoured by every Trainer built here (its steps and its
  validation batches) and by the few loops that step an optimiser themselves.
- `fit_stage`: runs one stage, resuming from `<run_dir>/checkpoints/<stage>/last.ckpt`
  when the run is started with `resume=true`.
- Under Slurm: Lightning's `SLURMEnvironment` gives the ranks (`trainer=ddp` with
  `tasks_per_node` tasks, `resolve_devices`), and `SlurmRequeue` survives preemption and
  time-outs: on the warning signal (SIGUSR1, `--signal=USR1@<s>` in the launcher config) it
  runs Lightning's own auto-requeue (save `hpc_ckpt_<n>.ckpt`, `scontrol requeue`) at the end
  of the current step, then exits; the requeued job starts again in the same run dir and
  `resume_checkpoint` picks that checkpoint up with no `resume=true`. Lightning's handler is
  deferred to the step boundary because, called from the signal, it saves wherever the
  signal lands (between an optimizer step and its LR-scheduler step, say), and the resumed
  run would then differ from an uninterrupted one. `RankAgreement` logs each rank's
  parameter digest after a multi-process fit and fails if the ranks diverged.
A non-finite loss stops the stage with its name and step (`NonFiniteLossError`); the last
good checkpoint is left as it was.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, RichProgressBar
from lightning.pytorch.plugins.io import TorchCheckpointIO

from toyrepro.core.config import OptimConfig, TrainerConfig
from toyrepro.core.disk import DiskFullError, is_disk_full
from toyrepro.core.io import atomic_path

log = logging.getLogger("toyrepro")


class NonFiniteLossError(RuntimeError):
    def __init__(self, stage: str, step: int, value: float):
        super().__init__(
            f"stage '{stage}': loss became {value} at step {step}; the last good checkpoint "
            "is kept. Lower optim.lr or check the data, then rerun with resume=true."
        )
        self.stage, self.step = stage, step


class CorruptCheckpointError(RuntimeError):
    pass


class AtomicCheckpointIO(TorchCheckpointIO):
    """torch.save to a temporary file, then rename: a kill mid-write keeps the old file."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        try:
            with atomic_path(path) as tmp:
                torch.save(checkpoint, tmp)
        except OSError as e:
            if is_disk_full(e):  # the previous checkpoint is untouched (atomic rename)
                raise DiskFullError(
                    f"disk full while writing checkpoint {path}; the previous checkpoint is "
                    "intact. Free some space and rerun with resume=true"
                ) from e
            raise


def logs_this_step(module: L.LightningModule) -> bool:
    """Whether the Trainer writes training metrics at this step (every `log_every_n_steps`).
    A `self.log` call costs ~1 ms in Lightning (it moves and wraps every value), so modules
    with many per-step statistics only log them when they will be written; per-step values
    (`on_step`) are not aggregated, so nothing that reaches the loggers changes."""
    conn = getattr(module.trainer, "_logger_connector", None)
    return True if conn is None else bool(conn.should_update_logs)


def check_finite(loss: torch.Tensor, stage: str, step: int) -> None:
    if not torch.isfinite(loss).all():
        raise NonFiniteLossError(stage, step, float(loss.detach().float().mean()))


def warmup_cosine(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """LR multiplier: linear warmup to 1, then cosine decay to `min_ratio` at `total`."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def adamw(module: torch.nn.Module, o: OptimConfig, max_steps: int):
    """AdamW on a module's trainable parameters, decaying only matrices, + warmup-cosine."""
    params = [p for p in module.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": o.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=o.lr, betas=(o.beta1, o.beta2),
    )
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: warmup_cosine(s, o.warmup_steps, max_steps, o.min_lr_ratio)
    )
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


class LMModule(L.LightningModule):
    """Causal language modelling: batches are (B, T+1) token windows.

    `compile=True` (`trainer.compile`) runs the training and validation forward passes through
    `torch.compile(model)` (inductor; the same parameters). The compiled wrapper is kept out of
    the module's submodules, so checkpoints and state dicts hold the plain model's keys whether
    or not it was compiled."""

    def __init__(self, model: torch.nn.Module, optim: OptimConfig, max_steps: int, stage: str = "train",
                 compile: bool = False):
        super().__init__()
        self.model, self.optim, self.max_steps, self.stage = model, optim, max_steps, stage
        # not an nn.Module attribute (that would register `_orig_mod.*` keys a second time)
        self.__dict__["forward_model"] = torch.compile(model) if compile else model

    def loss(self, batch: torch.Tensor) -> torch.Tensor:
        x, y = batch[:, :-1], batch[:, 1:]
        logits = self.forward_model(x).logits
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), y.reshape(-1))

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        loss = self.loss(batch)
        check_finite(loss, self.stage, self.global_step)
        if logs_this_step(self):
            self.log(f"{self.stage}/loss", loss, prog_bar=True)
            self.log(f"{self.stage}/lr", self.optimizers().param_groups[0]["lr"])
        return loss

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        loss = self.loss(batch)
        self.log(f"{self.stage}/val_loss", loss, prog_bar=True, sync_dist=True)
        self.log(f"{self.stage}/val_bits_per_token", loss / math.log(2), sync_dist=True)

    def configure_optimizers(self):
        return adamw(self.model, self.optim, self.max_steps)


class ProgressLog(Callback):
    """One log line every `every` steps (loss, steps/s) for non-interactive runs."""

    def __init__(self, stage: str, every: int):
        self.stage, self.every, self.t0 = stage, every, time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if step % self.every == 0 or step == trainer.max_steps:
            # this step's loss (modules log only on logging steps: logs_this_step)
            loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
            if loss is None:
                loss = trainer.callback_metrics.get(f"{self.stage}/loss")
            rate = step / max(1e-9, time.perf_counter() - self.t0)
            log.info("[%s] step %d/%d loss %.4f (%.1f steps/s)", self.stage, step, trainer.max_steps,
                     float("nan") if loss is None else float(loss), rate)


REQUEUE_SIGNAL = signal.SIGUSR1  # what `additional_parameters.signal` in configs/hydra/launcher/slurm.yaml sends
_requeue_requested = False


def on_slurm() -> bool:
    """Inside a Slurm job step (Lightning's test: SLURM_NTASKS set, not an interactive shell)."""
    return SLURMEnvironment.detect()


def _note_requeue_signal(signum, frame) -> None:
    global _requeue_requested
    _requeue_requested = True
    log.warning("received %s: checkpoint and requeue at the end of this step", signal.Signals(signum).name)


def install_requeue_handler() -> None:
    """SIGUSR1 only sets a flag: `SlurmRequeue` acts on it at a step boundary. Installed once per
    process, so a warning that lands between two stages is kept for the next one."""
    if signal.getsignal(REQUEUE_SIGNAL) is not _note_requeue_signal:
        signal.signal(REQUEUE_SIGNAL, _note_requeue_signal)


class SlurmRequeue(Callback):
    """Lightning's SLURM auto-requeue, run at the end of a training step instead of inside the
    signal handler: every rank agrees on the flag (DDP), the trainer saves
    `hpc_ckpt_<n>.ckpt` in the stage's checkpoint dir and rank 0 calls `scontrol requeue`
    (Lightning's `_slurm_sigusr_handler_fn`), then the job exits without a scorecard.
    If the requeue fails, training goes on (the job then ends at its time limit)."""

    def on_train_batch_end(self, trainer: L.Trainer, pl_module, outputs, batch, batch_idx) -> None:
        global _requeue_requested
        flag = _requeue_requested
        if trainer.world_size > 1:
            flag = trainer.strategy.reduce_boolean_decision(flag, all=False)
        if not flag:
            return
        _requeue_requested = False
        connector = trainer._signal_connector  # Lightning's auto-requeue: save, then scontrol requeue
        connector._slurm_sigusr_handler_fn(REQUEUE_SIGNAL, None)
        if _job_requeued():
            log.warning("step %d saved to %s; job requeued, exiting: the next start resumes from it",
                        trainer.global_step, trainer._checkpoint_connector._hpc_resume_path)
            raise SystemExit(0)  # not an Exception: submitit writes no result, the requeued job does


def _job_requeued() -> bool:
    """Whether `scontrol requeue` took: Slurm no longer lists this job as RUNNING."""
    import re
    import subprocess

    job = os.environ.get("SLURM_ARRAY_JOB_ID")
    job = f"{job}_{os.environ['SLURM_ARRAY_TASK_ID']}" if job else os.environ.get("SLURM_JOB_ID", "")
    try:
        out = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False
    state = re.search(r"JobState=(\w+)", out)
    return state is not None and state.group(1) != "RUNNING"


def param_digest(module: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, p in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


class RankAgreement(Callback):
    """Multi-process fits: each rank logs a digest of its parameters before and after the fit,
    and the fit fails if the ranks do not end with identical parameters (DDP keeps them equal
    by all-reducing gradients; a rank that diverged would silently train another model)."""

    def __init__(self, stage: str):
        self.stage, self.before = stage, ""

    def on_fit_start(self, trainer: L.Trainer, pl_module) -> None:
        self.before = param_digest(pl_module) if trainer.world_size > 1 else ""

    def on_fit_end(self, trainer: L.Trainer, pl_module) -> None:
        if trainer.world_size <= 1:
            return
        after = param_digest(pl_module)
        log.info("[%s] rank %d/%d parameters sha256 before %s after %s", self.stage, trainer.global_rank,
                 trainer.world_size, self.before, after)
        digests = trainer.strategy.all_gather(torch.tensor([int(after[:15], 16)], dtype=torch.int64))
        if len(set(digests.flatten().tolist())) != 1:
            raise RuntimeError(f"stage '{self.stage}': DDP ranks ended with different parameters")


def resolve_devices(t: TrainerConfig) -> tuple[Any, int]:
    """(devices, num_nodes) for the Trainer. `devices: auto` with a DDP strategy means: under
    Slurm, the job's tasks per node (Lightning requires that they match); without GPU, 2 CPU
    processes (Lightning's `auto` would be 1 on CPU); otherwise Lightning's `auto` (all GPUs)."""
    devices, nodes = t.devices, t.num_nodes
    if on_slurm() and nodes == 1 and int(os.environ.get("SLURM_NNODES", "1")) > 1:
        nodes = int(os.environ["SLURM_NNODES"])
    if devices == "auto" and t.strategy.startswith("ddp"):
        if on_slurm() and os.environ.get("SLURM_NTASKS_PER_NODE"):
            devices = int(os.environ["SLURM_NTASKS_PER_NODE"].split("(")[0])
        elif t.accelerator == "cpu" or not torch.cuda.is_available():
            devices = 2
    return devices, nodes


def cap_steps(t: TrainerConfig, steps: int) -> int:
    """`steps`, or `trainer.step_cap` when that is smaller: what every stage that counts optimiser
    steps runs (a Lightning fit here; loops that step an optimiser themselves call it too)."""
    return steps if t.step_cap is None else min(steps, t.step_cap)


def build_trainer(t: TrainerConfig, ckpt_dir: Path, loggers: list, stage: str, max_steps: int | None = None) -> L.Trainer:
    steps = cap_steps(t, max_steps or t.max_steps)
    callbacks: list[Callback] = [
        ModelCheckpoint(dirpath=ckpt_dir, save_last=True, save_top_k=0,
                        every_n_train_steps=min(t.checkpoint_every_n_steps, steps)),
        RankAgreement(stage),
    ]
    from toyrepro.core.parallel import in_worker

    interactive = sys.stdout.isatty() and not in_worker()  # a worker's bar would overwrite the others'
    if interactive:
        callbacks.append(RichProgressBar())
    else:
        callbacks.append(ProgressLog(stage, max(1, steps // 10)))
    plugins: list[Any] = [AtomicCheckpointIO()]
    if on_slurm():  # ranks from SLURM_*; the requeue runs at step boundaries (SlurmRequeue), not in the handler
        plugins.append(SLURMEnvironment(auto_requeue=False))
        callbacks.append(SlurmRequeue())
        install_requeue_handler()
    devices, num_nodes = resolve_devices(t)
    return L.Trainer(
        accelerator=t.accelerator, devices=devices, strategy=t.strategy, num_nodes=num_nodes,
        precision=t.precision, max_steps=steps, val_check_interval=min(t.val_check_interval, steps),
        check_val_every_n_epoch=None, limit_val_batches=cap_steps(t, t.limit_val_batches),
        log_every_n_steps=t.log_every_n_steps, gradient_clip_val=t.gradient_clip_val or None,
        num_sanity_val_steps=0, callbacks=callbacks, logger=loggers or False,
        plugins=plugins, enable_progress_bar=interactive,
        enable_model_summary=False, default_root_dir=str(ckpt_dir),
    )


def resume_checkpoint(ckpt_dir: Path, resume: bool) -> str | None:
    """The checkpoint the stage continues from, or None for a fresh start: under `resume=true`
    its `last.ckpt`; in a Slurm job that was requeued, the `hpc_ckpt_<n>.ckpt` it saved before
    (no `resume=true` needed); the newer of the two when both exist. A damaged one is refused."""
    candidates = [ckpt_dir / "last.ckpt"] if resume else []
    if on_slurm():
        hpc = sorted(ckpt_dir.glob("hpc_ckpt_*.ckpt"), key=lambda p: int(p.stem.rsplit("_", 1)[1]))
        candidates += hpc[-1:]
    candidates = [p for p in candidates if p.exists()]
    if not candidates:
        return None
    last = max(candidates, key=lambda p: p.stat().st_mtime)
    try:
        fs = get_filesystem(str(last))
        with fs.open(str(last), "rb") as f:
            ck = torch.load(f, map_location="cpu", weights_only=False)
        if "state_dict" not in ck or "global_step" not in ck:
            raise ValueError("no state_dict/global_step inside")
    except Exception as e:
        raise CorruptCheckpointError(
            f"checkpoint {last} is corrupt or truncated ({type(e).__name__}: {e}); "
            f"delete it to restart the stage from scratch, or start a new run without resume=true"
        ) from e
    log.info("resuming stage from %s (step %d)", last, ck["global_step"])
    return str(last)


class StepShardSampler(torch.utils.data.DistributedSampler):
    """`core.data.StepOffsetSampler` split between DDP ranks: at step s, rank r of w reads rows
    [s*B + r*B/w, s*B + (r+1)*B/w) of the global batch B. The ranks together read exactly the
    batches of a single-process run (and DDP averages their gradients), so `trainer=ddp`
    trains the same model on the same data, and a resumed stage starts at `global_step`.
    A DistributedSampler, so Lightning leaves it in place; the rank is read when iterating
    (after the process group is up)."""

    def __init__(self, length: int, global_batch: int, world: int, offset):
        self.length, self.global_batch, self.world, self.offset = length, global_batch, world, offset
        self.local = global_batch // world
        self.epoch, self.shuffle, self.drop_last = 0, False, False

    def __iter__(self):
        import torch.distributed as dist

        rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
        steps = self.length // self.global_batch
        for s in range(min(self.offset(), steps), steps):
            base = s * self.global_batch + rank * self.local
            yield from range(base, base + self.local)

    def __len__(self) -> int:
        return (self.length // self.global_batch) * self.local

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch


def shard_for_ddp(loader, world: int):
    """A step-offset loader (the suite's LM recipe) split between `world` ranks; others as they are
    (Lightning gives them a DistributedSampler)."""
    from toyrepro.core.data import StepOffsetSampler

    sampler = getattr(loader, "sampler", None)
    if world <= 1 or not isinstance(sampler, StepOffsetSampler):
        return loader
    if sampler.batch_size % world:
        raise ValueError(f"optim.batch_size={sampler.batch_size} must be a multiple of the {world} DDP processes")
    return torch.utils.data.DataLoader(
        loader.dataset, batch_size=sampler.batch_size // world, num_workers=loader.num_workers,
        sampler=StepShardSampler(sampler.length, sampler.batch_size, world, sampler.offset))


def fit_stage(module: L.LightningModule, train_loader, val_loader, t: TrainerConfig, ckpt_dir: Path,
              loggers: list, stage: str, resume: bool, max_steps: int | None = None) -> L.Trainer:
    trainer = build_trainer(t, ckpt_dir, loggers, stage, max_steps)
    train_loader = shard_for_ddp(train_loader, trainer.world_size)
    trainer.fit(module, train_loader, val_loader, ckpt_path=resume_checkpoint(ckpt_dir, resume))
    return trainer
