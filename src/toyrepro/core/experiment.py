"""An experiment is one object its folder exposes; core finds them all here.

An experiment package declares itself in its `__init__.py`, with nothing heavy imported:

    EXPERIMENT = Experiment(
        name="gpt", summary="GPT-2 from scratch learns the stdlib's source: beats unigram by >= 1 bit/char",
        paper="GPT in 60 lines of NumPy (Mody 2023); GPT-2 (Radford et al. 2019)",
        run="toyrepro.gpt.experiment:run", claims="toyrepro.gpt.experiment:claims",
        section="gpt", schema=GPTTaskConfig, trained_stages=1, writeup="experiments/gpt/README.md")

(or `EXPERIMENTS = [...]` when one folder holds several). `run` and `claims` are
"module:function" strings (imported only when the experiment runs, so `--help` stays fast)
or callables. `claims(cfg) -> list[Claim]`; `run(ctx)` fills `ctx.card`, the scorecard core
declared from those claims.

Discovery (`experiments()`), as big_vision finds its models: by convention, every
subpackage `toyrepro.<folder>` that defines `EXPERIMENT`/`EXPERIMENTS`; and through the
entry-point group `toyrepro.experiments` of any installed distribution, so a researcher
can add an experiment in their own package:

    [project.entry-points."toyrepro.experiments"]
    my_idea = "my_pkg:EXPERIMENT"

A plugin's Hydra configs (`experiment/<name>.yaml`, `preset/<name>_<scale>.yaml`) live in
the folder named by `config_dir` (a path or `pkg://my_pkg.configs`), which the CLI adds to
Hydra's search path. Nothing in `core/` imports an experiment folder by name.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

ENTRY_POINT_GROUP = "toyrepro.experiments"


@dataclass(frozen=True)
class Experiment:
    name: str  # what `experiment=<name>` selects; also the run dir's parent folder
    summary: str  # one line for `--help`: what is reproduced and the headline claim
    paper: str  # the paper(s), citable
    run: str | Callable  # run(ctx) -> None: fills ctx.card ("module:function" or a callable)
    claims: str | Callable  # claims(cfg) -> list[Claim], declared before the run starts
    section: str | None = None  # the config section the experiment reads (cfg.<section>)
    schema: type | None = None  # that section's dataclass (types, defaults, `validate`)
    # Lightning fits that checkpoint (the disk estimate; the smoke test checks it on a cold cache):
    # a number, or cfg -> number where it depends on the config (e.g. generations, grid points)
    trained_stages: int | Callable[[Any], int] = 1
    writeup: str = ""  # the write-up, relative to the repository root
    quick_minutes: float = 10.0  # time budget of one scale=quick run on 2 CPU cores (benchmarks/time_to_scorecard.py)
    # whether the run's models are the `model:` GPT, so that core/memory.py's start-of-run estimate
    # describes them (False: GHN, liquid cells, SmolLM2 — the run says it has no estimate)
    model_is_gpt: bool = True
    config_dir: str | None = None  # extra Hydra search path holding experiment/<name>.yaml (plugins)

    def stages_trained(self, cfg: Any) -> int:
        """How many stages a run with config `cfg` trains when nothing is cached."""
        return self.trained_stages(cfg) if callable(self.trained_stages) else self.trained_stages

    def run_fn(self) -> Callable:
        return _resolve(self.run)

    def claims_fn(self) -> Callable:
        return _resolve(self.claims)


class RegistryError(RuntimeError):
    """Two experiments claim one name, or a registered object is not an `Experiment`."""


def _resolve(target: str | Callable) -> Callable:
    if callable(target):
        return target
    module, _, fn = target.partition(":")
    return getattr(importlib.import_module(module), fn)


def _declared(obj: Any, where: str) -> list[Experiment]:
    items = obj if isinstance(obj, (list, tuple)) else [obj]
    for item in items:
        if not isinstance(item, Experiment):
            raise RegistryError(f"{where} must be an Experiment (or a list of them), got {type(item).__name__}")
    return list(items)


def _builtin() -> list[tuple[Experiment, str]]:
    import toyrepro

    found = []
    for info in sorted(pkgutil.iter_modules(toyrepro.__path__), key=lambda m: m.name):
        if not info.ispkg or info.name == "core":
            continue
        pkg = importlib.import_module(f"toyrepro.{info.name}")
        for attr in ("EXPERIMENTS", "EXPERIMENT"):
            if hasattr(pkg, attr):
                where = f"toyrepro.{info.name}.{attr}"
                found += [(e, where) for e in _declared(getattr(pkg, attr), where)]
    return found


def _plugins() -> list[tuple[Experiment, str]]:
    found = []
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        where = f"entry point {ep.name} = {ep.value}"
        found += [(e, where) for e in _declared(ep.load(), where)]
    return found


@cache
def experiments() -> dict[str, Experiment]:
    """Every experiment, by name: this package's first, then installed plugins'."""
    out: dict[str, Experiment] = {}
    origin: dict[str, str] = {}
    for exp, where in _builtin() + _plugins():
        if exp.name in out:
            raise RegistryError(f"experiment name {exp.name!r} is declared twice: by {origin[exp.name]} "
                                f"and by {where}; rename one")
        out[exp.name], origin[exp.name] = exp, where
    return out


def get(name: str) -> Experiment:
    from toyrepro.core.checks import ConfigError

    known = experiments()
    if name not in known:
        raise ConfigError(f"no experiment named {name!r}; known: {', '.join(sorted(known))}")
    return known[name]


def sections() -> dict[str, type]:
    """Config section -> schema dataclass, over all experiments (sections may be shared)."""
    out: dict[str, type] = {}
    for exp in experiments().values():
        if exp.section is None or exp.schema is None:
            continue
        if out.get(exp.section, exp.schema) is not exp.schema:
            raise RegistryError(f"config section {exp.section!r} has two schemas: "
                                f"{out[exp.section].__name__} and {exp.schema.__name__}")
        out[exp.section] = exp.schema
    return out


def search_paths() -> list[str]:
    """Hydra search-path entries of plugin experiments (their configs/ folders)."""
    return [e.config_dir for e in experiments().values() if e.config_dir]
