"""Run lifecycle: resume after a kill, corrupt checkpoints, W&B per job, sweeps through submitit."""

import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import claim_values, cli_env, run_cli, run_dirs, scorecard

# A smoke model trained long enough to be killed in the middle.
LONG = ["experiment=gpt", "scale=smoke", "seed=1", "logger=csv", "model.n_embd=64",
        "trainer.max_steps=200", "trainer.checkpoint_every_n_steps=20", "trainer.val_check_interval=100"]


def start_and_kill(args: list[str], cwd, cache_dir, ready, timeout: float = 180) -> None:
    """Start `toyrepro args`, send SIGTERM (what Slurm sends before preemption) as soon as
    `ready()` is true, and wait for the process to end."""
    proc = subprocess.Popen([sys.executable, "-m", "toyrepro", *args], cwd=cwd,
                            env=cli_env(cache_dir), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + timeout
    while not ready() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be killed: make the test's run longer"
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)


def ckpt_step(path) -> int:
    return torch.load(path, map_location="cpu", weights_only=False)["global_step"]


def reference_then_killed(base: list[str], stage: str, tmp_path, cache_dir):
    """Run `base` to the end (the reference), then start it again in its own run dir and
    SIGTERM it once `stage` has written its first checkpoint. Returns (ref_dir, run_dir,
    the killed run's args, its last checkpoint)."""
    ref = tmp_path / "ref"
    ref.mkdir()
    run_cli(base, ref, cache_dir)
    (ref_dir,) = run_dirs(ref)
    run_dir = tmp_path / "killed"
    args = [*base, f"hydra.run.dir={run_dir}"]
    last = run_dir / "checkpoints" / stage / "last.ckpt"
    start_and_kill(args, tmp_path, cache_dir, last.exists)
    return ref_dir, run_dir, args, last


@pytest.mark.slow  # a kill and a resume plus an uninterrupted reference run: make test-slow
def test_killed_run_resumes_to_the_same_scorecard(tmp_path, cache_dir):
    ref_dir, run_dir, args, last = reference_then_killed(LONG, "train", tmp_path, cache_dir)
    assert not (run_dir / "scorecard.json").exists(), "the killed run did not finish"
    step = ckpt_step(last)
    assert 0 < step < 200, f"killed at step {step}: the test must interrupt training midway"

    run_cli([*args, "resume=true"], tmp_path, cache_dir)
    assert claim_values(scorecard(run_dir)) == claim_values(scorecard(ref_dir))
    assert f"resuming stage from {last}" in (run_dir / "console.log").read_text()
    stages = (run_dir / "metrics.csv").read_text().splitlines()
    assert len(stages) > 2 and {line.split(",")[0] for line in stages[1:]} == {"train"}
    assert (run_dir / "csv" / "train.resume1" / "metrics.csv").exists(), "the first attempt's log is kept"


# rlhf at smoke size with a PPO stage long enough to be killed in the middle of it
RLHF_LONG = ["experiment=rlhf", "scale=smoke", "seed=3", "logger=csv", "rlhf.ppo.iterations=40",
             "rlhf.ppo.eval_every=4", "rlhf.ppo.rollout_size=32"]


@pytest.mark.slow  # a kill and a resume plus an uninterrupted reference run: make test-slow
def test_run_killed_during_ppo_resumes_to_the_same_scorecard(tmp_path):
    cache_dir = tmp_path / "cache"  # its own: the reference run must train the reward model (logs checked below)
    ref_dir, run_dir, args, last = reference_then_killed(RLHF_LONG, "ppo", tmp_path, cache_dir)
    assert not (run_dir / "scorecard.json").exists()
    assert not (run_dir / "checkpoints" / "dpo").exists(), "the kill must land inside PPO"
    done = ckpt_step(last)
    total = ckpt_step(ref_dir / "checkpoints" / "ppo" / "last.ckpt")
    assert 0 < done < total, f"killed at PPO step {done} of {total}: the test must interrupt PPO midway"

    run_cli([*args, "resume=true"], tmp_path, cache_dir)
    assert claim_values(scorecard(run_dir)) == claim_values(scorecard(ref_dir))
    assert f"resuming stage from {last}" in (run_dir / "console.log").read_text()
    # per-step statistics are logged only on logging steps (core.train.logs_this_step) but logged
    import csv

    rows = list(csv.DictReader((ref_dir / "metrics.csv").open()))
    for key in ("dpo/reward_accuracy", "dpo/logp_chosen", "reward_model/train_accuracy"):
        assert any(r.get(key) for r in rows), f"{key} never reached metrics.csv"


# toolformer at smoke size with an annotation stage long enough to be killed in the middle of it
TOOLFORMER_LONG = ["experiment=toolformer", "scale=smoke", "seed=3", "logger=csv",
                   "toolformer.annotate_docs=80", "toolformer.m=4"]


@pytest.mark.slow  # a kill and a resume plus an uninterrupted reference run: make test-slow
def test_run_killed_during_toolformer_annotation_resumes_to_the_same_scorecard(tmp_path, cache_dir):
    import shutil

    ref = tmp_path / "ref"
    ref.mkdir()
    own_cache = tmp_path / "cache"
    run_cli(TOOLFORMER_LONG, ref, own_cache)
    (ref_dir,) = run_dirs(ref)
    stages = own_cache / "stages"
    (annotation,) = stages.glob("toolformer-annotate-*/")
    shutil.rmtree(annotation)  # M0 stays cached; annotation must run again, and be killed

    run_dir = tmp_path / "killed"
    args = [*TOOLFORMER_LONG, f"hydra.run.dir={run_dir}"]
    log = run_dir / "console.log"

    def annotating() -> bool:
        return log.exists() and "stage toolformer-annotate: building" in log.read_text()

    start_and_kill(args, tmp_path, own_cache, annotating)
    assert not (run_dir / "scorecard.json").exists()
    assert not annotation.exists(), "the kill must land inside annotation (no artefact published)"

    run_cli([*args, "resume=true"], tmp_path, own_cache)
    assert claim_values(scorecard(run_dir)) == claim_values(scorecard(ref_dir))
    assert (annotation / "params.json").exists(), "annotation was redone from the cached M0"
