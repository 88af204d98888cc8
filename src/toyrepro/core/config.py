"""Structured-config schemas: every key has a type, and `validate()` checks every range.

Hydra composes `configs/` on top of `Config` (registered in the ConfigStore as
`toyrepro_schema`), so an unknown key or a wrong type stops the run at composition with
Hydra's message. Ranges (a negative layer count, a learning rate <= 0, ...) are checked by
`validate()` right after composition, before any work, and reported as one line:

    config error: model.n_layer must be >= 1 (got -1)

`Config` holds what every experiment shares. Each experiment owns its section's dataclass
and its checks, and declares both on its `Experiment` (core/experiment.py);
`schema_class()` adds one optional field per declared section, so one schema covers the
whole config tree without core naming any experiment.
"""

from __future__ import annotations

__all__ = ["Config", "ConfigError", "GPTConfig", "check", "register", "schema_class", "validate"]

from dataclasses import dataclass, field, fields, is_dataclass, make_dataclass
from functools import cache
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from toyrepro.core.checks import ConfigError, check
from toyrepro.core.transformer import GPTConfig


@dataclass
class OptimConfig:
    """AdamW with linear warmup then cosine decay to `min_lr_ratio * lr` (GPT-2/3 recipe)."""

    lr: float = 1e-3
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    warmup_steps: int = 50
    min_lr_ratio: float = 0.1
    batch_size: int = 32

    def validate(self, p: str = "optim") -> None:
        check(self.lr > 0, f"{p}.lr", "> 0", self.lr)
        check(self.weight_decay >= 0, f"{p}.weight_decay", ">= 0", self.weight_decay)
        check(0 <= self.beta1 < 1 and 0 <= self.beta2 < 1, f"{p}.beta1/beta2", "in [0, 1)", (self.beta1, self.beta2))
        check(self.warmup_steps >= 0, f"{p}.warmup_steps", ">= 0", self.warmup_steps)
        check(0 <= self.min_lr_ratio <= 1, f"{p}.min_lr_ratio", "in [0, 1]", self.min_lr_ratio)
        check(self.batch_size >= 1, f"{p}.batch_size", ">= 1", self.batch_size)


@dataclass
class TrainerConfig:
    """Keyword arguments of `lightning.Trainer` (plus `max_steps` per stage)."""

    accelerator: str = "auto"
    devices: Any = "auto"
    strategy: str = "auto"
    num_nodes: int = 1
    precision: str = "32-true"
    max_steps: int = 1000
    val_check_interval: int = 200  # steps between validations
    limit_val_batches: int = 20
    log_every_n_steps: int = 10
    gradient_clip_val: float = 1.0
    checkpoint_every_n_steps: int = 100
    compile: bool = False  # torch.compile the model (GPU runs)
    # At most this many optimiser steps (and validation batches) in every stage of every
    # experiment (each Lightning fit, and the loops that step an optimiser themselves: PPO's
    # minibatches, expert_loop's DPO learner, GHN's Adam curves), whatever the stage's own step
    # count; evaluations outside Lightning keep their sizes. For checking a preset
    # (shapes, config, memory) in seconds, e.g. `scale=full trainer.step_cap=2`: the claims of
    # a capped run mean nothing. Its stage artefacts are cached apart, under
    # <cache_dir>/step_cap-<n>/, so an uncapped run never reuses a capped model. None = no cap.
    step_cap: int | None = None

    def validate(self, p: str = "trainer") -> None:
        check(self.max_steps >= 1, f"{p}.max_steps", ">= 1", self.max_steps)
        check(self.step_cap is None or self.step_cap >= 1, f"{p}.step_cap", ">= 1 or null", self.step_cap)
        check(self.val_check_interval >= 1, f"{p}.val_check_interval", ">= 1", self.val_check_interval)
        check(self.limit_val_batches >= 1, f"{p}.limit_val_batches", ">= 1", self.limit_val_batches)
        check(self.log_every_n_steps >= 1, f"{p}.log_every_n_steps", ">= 1", self.log_every_n_steps)
        check(self.gradient_clip_val >= 0, f"{p}.gradient_clip_val", ">= 0", self.gradient_clip_val)
        check(self.checkpoint_every_n_steps >= 1, f"{p}.checkpoint_every_n_steps", ">= 1", self.checkpoint_every_n_steps)
        check(self.num_nodes >= 1, f"{p}.num_nodes", ">= 1", self.num_nodes)


@dataclass
class ScaleConfig:
    name: str = MISSING  # smoke | quick | full


@dataclass
class Config:
    name: str = MISSING  # the experiment (set by configs/experiment/<name>.yaml)
    seed: int = 0
    threads: int = 0  # torch CPU threads; 0 = torch's default (one per core)
    # processes for an experiment's independent stages (core/parallel.py); each runs `threads` threads
    workers: int = 1
    resume: bool = False  # continue from <run_dir>/checkpoints/<stage>/last.ckpt
    run_dir: str = "${hydra:runtime.output_dir}"
    cache_dir: str = "${oc.env:TOYREPRO_CACHE,.cache/toyrepro}"  # stage/dataset cache
    scale: ScaleConfig = field(default_factory=ScaleConfig)
    model: GPTConfig = field(default_factory=GPTConfig)  # the one model-config type (core/transformer.py)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: dict[str, Any] = field(default_factory=dict)  # name -> Lightning logger (_target_)


@cache
def schema_class() -> type[Config]:
    """`Config` plus one optional section per experiment section in the registry."""
    from toyrepro.core.experiment import sections

    extra = [(name, schema | None, field(default=None)) for name, schema in sorted(sections().items())]
    cls = make_dataclass("ToyreproConfig", extra, bases=(Config,))
    cls.__module__ = __name__  # pickles by name through the module's __getattr__ below
    return cls


def __getattr__(name: str) -> Any:
    """`toyrepro.core.config.ToyreproConfig` resolves to `schema_class()`, so a typed config
    pickles by name (what a worker process of core/parallel.py receives)."""
    if name == "ToyreproConfig":
        return schema_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def register() -> None:
    ConfigStore.instance().store(name="toyrepro_schema", node=schema_class())


def validate(cfg: DictConfig) -> Config:
    """Build the typed config and check every section's ranges; raises ConfigError."""
    obj = OmegaConf.to_object(cfg)
    assert isinstance(obj, Config)
    check(obj.threads >= 0, "threads", ">= 0 (0 = torch's default)", obj.threads)
    check(obj.workers >= 1, "workers", ">= 1 (1 = every stage in this process)", obj.workers)
    for f in fields(obj):
        section = getattr(obj, f.name)
        if is_dataclass(section) and hasattr(section, "validate"):
            section.validate(f.name)
        if is_dataclass(section) and hasattr(section, "validate_against"):  # cross-section checks
            section.validate_against(obj, f.name)
    return obj
