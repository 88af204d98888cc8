"""Run experiments from Python (a notebook, a script): `toyrepro.run(...)` returns the Scorecard.

    import toyrepro
    card = toyrepro.run("rlhf", scale="smoke", seed=0, overrides=["rlhf.dpo.beta=0.2"])
    card = toyrepro.run("gpt", scale="smoke", optim__lr=3e-3)   # `__` stands for `.`
    print(card.passed, card.claim("beats_unigram").value)

The config is composed by Hydra's compose API from the same `configs/` as the CLI and goes
through the same checks (an unknown key, a wrong type or a value out of range raises
`ConfigError` before any work); the run directory is the one the CLI would make
(`runs/<experiment>/<date>_<time.us>`, or `run_dir=`), with `.hydra/config.yaml` and
`console.log` in it. Known failures raise `toyrepro.cli.RunFailed` with the CLI's message.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any


def _overrides(name: str, scale: str | None, seed: int | None, overrides: list[str], kwargs: dict[str, Any]) -> list[str]:
    out = [f"experiment={name}"]
    if scale is not None:
        out.append(f"scale={scale}")
    if seed is not None:
        out.append(f"seed={seed}")
    out += list(overrides)
    for key, value in kwargs.items():
        value = str(value).lower() if isinstance(value, bool) else value
        out.append(f"{key.replace('__', '.')}={value}")
    return out


def run(name: str, scale: str | None = None, seed: int | None = None, overrides: list[str] = (),
        run_dir: str | Path | None = None, **kwargs: Any):
    """Compose, check and run experiment `name`; returns its `Scorecard`."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf, open_dict

    from toyrepro import cli

    ov = cli._with_search_path(_overrides(name, scale, seed, list(overrides), kwargs))
    with initialize_config_dir(cli.CONFIG_DIR, version_base="1.3"):
        dcfg = compose("config", overrides=ov, return_hydra_config=True)
    HydraConfig.instance().set_config(dcfg)  # resolves ${now:...} and the run-dir pattern
    path = Path(run_dir) if run_dir is not None else Path(OmegaConf.select(dcfg, "hydra.run.dir"))
    with open_dict(dcfg):
        dcfg.run_dir = str(path)
        del dcfg["hydra"]
    cfg = cli.checked_config(dcfg)  # ConfigError (also for an unknown experiment) before any work
    (path / ".hydra").mkdir(parents=True, exist_ok=True)
    OmegaConf.save(dcfg, path / ".hydra" / "config.yaml")
    OmegaConf.save(OmegaConf.create(ov), path / ".hydra" / "overrides.yaml")
    handler = logging.FileHandler(path / "console.log")
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    try:
        return cli.run(cfg, OmegaConf.to_container(dcfg, resolve=True), path)
    finally:
        root.removeHandler(handler)
        handler.close()
