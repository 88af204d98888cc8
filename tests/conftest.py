"""Shared test helpers: run the real CLI in a subprocess, in a scratch directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import toyrepro

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = sorted(toyrepro.experiments())  # the registry: a new experiment is tested with no edit here


def cli_env(tmp_cache: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(WANDB_MODE="offline", WANDB_SILENT="true", TOYREPRO_CACHE=str(tmp_cache),
               PYTHONUNBUFFERED="1", HYDRA_FULL_ERROR="0", OMP_NUM_THREADS="2")
    return env


def run_cli(args: list[str], cwd: Path, cache: Path, check: bool = True, timeout: float = 600,
            **popen) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "toyrepro", *args], cwd=cwd, env=cli_env(cache),
                          capture_output=True, text=True, timeout=timeout, **popen)
    if check and proc.returncode != 0:
        raise AssertionError(f"toyrepro {' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def run_dirs(root: Path) -> list[Path]:
    return sorted(p.parent.parent for p in root.rglob(".hydra/config.yaml"))


def scorecard(run_dir: Path) -> dict:
    return json.loads((run_dir / "scorecard.json").read_text())


LOADS_SMOLLM2 = {"lre_smollm2", "quantization_smollm2"}  # 135M parameters from the GGUF: ~30 s CPU each


def smollm2_slow(experiments) -> list:
    """Pytest params of `experiments`, those whose smoke loads SmolLM2 marked slow."""
    return [pytest.param(e, marks=pytest.mark.slow) if e in LOADS_SMOLLM2 else e for e in experiments]


def unexplained_unmeasured(card: dict) -> list[str]:
    """Claims the quick scale scores that a run left unmeasured (None) without a note saying why."""
    return [c["id"] for c in card["claims"] if "quick" in c["scales"] and c["value"] is None and not c.get("note")]


def claim_values(card: dict) -> dict[str, float | None]:
    return {c["id"]: c["value"] for c in card["claims"]}


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """One dataset/stage cache for the whole session: data is built once."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def one_thread():
    """torch on one thread for a module of tiny models (token-by-token steps are several times
    faster than on two threads, and much faster on a loaded machine); restored afterwards. A module
    opts in with `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
