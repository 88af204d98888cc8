"""The GPU path, checked on CPU (issue 16): the step cap every stage honours, every `scale=full`
preset's first steps, every experiment under `bf16-mixed`, and the GPU check's dry run.

Runs go through the real CLI in a subprocess (`capped_run`) that counts every optimiser step with
torch's global step hook (`register_optimizer_step_post_hook`), so a loop that steps an optimiser
outside Lightning is counted too, and records the process's peak resident memory.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import toyrepro

from conftest import EXPERIMENTS, REPO, cli_env, run_dirs, scorecard

RUNNER = """
import atexit, json, resource, sys
from torch.optim.optimizer import register_optimizer_step_post_hook
seen, out = {"max_steps": 0, "optimisers": 0}, sys.argv[1]
def count(opt, args, kwargs):  # on the optimiser itself: ids of freed optimisers are reused
    opt._steps_taken = getattr(opt, "_steps_taken", 0) + 1
    seen["max_steps"] = max(seen["max_steps"], opt._steps_taken)
    seen["optimisers"] += opt._steps_taken == 1
register_optimizer_step_post_hook(count)
def dump():
    with open(out, "w") as f:
        json.dump(seen | {"peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6}, f)
atexit.register(dump)
from toyrepro.cli import main
main(sys.argv[2:])
"""

FULL_PRESETS = sorted(p.stem.removesuffix("_full") for p in (REPO / "configs" / "preset").glob("*_full.yaml"))


def capped_run(experiment: str, cwd: Path, overrides: list[str], timeout: float = 900) -> tuple[dict, dict, str]:
    """(scorecard, {max_steps: most steps any one optimiser took, optimisers, peak_rss_gb}, console)."""
    cwd.mkdir(parents=True)
    out = cwd / "steps.json"
    args = [f"experiment={experiment}", "seed=3", "logger=csv", "threads=1", *overrides]
    proc = subprocess.run([sys.executable, "-c", RUNNER, str(out), *args], cwd=cwd, env=cli_env(cwd / "cache"),
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"toyrepro {' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    (run_dir,) = run_dirs(cwd)
    return scorecard(run_dir), json.loads(out.read_text()), (run_dir / "console.log").read_text()


def test_full_presets_are_the_experiments():
    assert set(FULL_PRESETS) == set(EXPERIMENTS), "every experiment has a scale=full preset"


@pytest.mark.parametrize("experiment", ["gpt", "rlhf", "expert_loop", "ghn"])
def test_step_cap_bounds_every_optimiser(experiment, tmp_path):
    """`trainer.step_cap=2` at smoke: no optimiser anywhere takes a third step (Lightning fits, PPO's
    minibatch loop, expert_loop's DPO learner, GHN's Adam curves), the run still ends with a
    scorecard, and its stages are cached apart from uncapped ones."""
    card, steps, console = capped_run(experiment, tmp_path / "run", ["scale=smoke", "trainer.step_cap=2"])
    assert 1 <= steps["max_steps"] <= 2, steps
    assert card["claims"]
    assert "step_cap-2" in console and (tmp_path / "run" / "cache" / "step_cap-2").is_dir()
    ckpts = list((tmp_path / "run").rglob("checkpoints/*/last.ckpt"))
    import torch

    assert all(torch.load(p, map_location="cpu", weights_only=False)["global_step"] <= 2 for p in ckpts)


@pytest.mark.slow
@pytest.mark.parametrize("experiment", FULL_PRESETS)
def test_full_preset_first_steps_on_cpu(experiment, tmp_path):
    """Every `scale=full` preset composes and its first two steps of every stage run on CPU
    (shape, config and memory errors show here); the run's peak resident memory and the start's
    GPU-memory estimate fit one H200 (141 GB GPU, 128 GB RAM). torch.compile is off here (a CPU
    inductor build per model; `compile` has its own test)."""
    card, steps, console = capped_run(experiment, tmp_path / "run",
                                      ["scale=full", "trainer.step_cap=2", "trainer.compile=false"], timeout=1800)
    assert steps["max_steps"] <= 2, steps
    line = next(ln for ln in console.splitlines() if "memory: the model" in ln)
    print(f"\n{experiment}: peak RSS {steps['peak_rss_gb']:.2f} GB; {line.split('memory: ', 1)[1]}")
    assert "DOES NOT FIT" not in line
    assert steps["peak_rss_gb"] < 128
