"""Run lifecycle: resume after a kill, corrupt checkpoints, W&B per job, sweeps through submitit."""

import signal
import subprocess
import sys
import time

import torch

from conftest import claim_values, cli_env, run_cli, run_dirs, scorecard

# A smoke model trained long enough to be killed in the middle.
LONG = ["experiment=gpt", "scale=smoke", "seed=1", "logger=csv", "model.n_embd=64",
        "trainer.max_steps=200", "trainer.checkpoint_every_n_steps=20", "trainer.val_check_interval=100"]


def test_killed_run_resumes_to_the_same_scorecard(tmp_path, cache_dir):
    ref = tmp_path / "ref"
    ref.mkdir()
    run_cli(LONG, ref, cache_dir)
    (ref_dir,) = run_dirs(ref)

    run_dir = tmp_path / "killed"
    args = [*LONG, f"hydra.run.dir={run_dir}"]
    proc = subprocess.Popen([sys.executable, "-m", "toyrepro", *args], cwd=tmp_path,
                            env=cli_env(cache_dir), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    last = run_dir / "checkpoints" / "train" / "last.ckpt"
    deadline = time.time() + 120
    while not last.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)  # what Slurm sends before preemption
    proc.wait(timeout=60)
    assert not (run_dir / "scorecard.json").exists(), "the killed run did not finish"
    step = torch.load(last, map_location="cpu", weights_only=False)["global_step"]
    assert 0 < step < 200, f"killed at step {step}: the test must interrupt training midway"

    run_cli([*args, "resume=true"], tmp_path, cache_dir)
    assert claim_values(scorecard(run_dir)) == claim_values(scorecard(ref_dir))
    assert f"resuming stage from {last}" in (run_dir / "console.log").read_text()
    stages = (run_dir / "metrics.csv").read_text().splitlines()
    assert len(stages) > 2 and {line.split(",")[0] for line in stages[1:]} == {"train"}
    assert (run_dir / "csv" / "train.resume1" / "metrics.csv").exists(), "the first attempt's log is kept"


def test_corrupt_checkpoint_is_refused_on_resume(tmp_path, cache_dir):
    run_dir = tmp_path / "run"
    last = run_dir / "checkpoints" / "train" / "last.ckpt"
    last.parent.mkdir(parents=True)
    last.write_bytes(b"PK\x03\x04 truncated")
    proc = run_cli(["experiment=gpt", "scale=smoke", "logger=none", f"hydra.run.dir={run_dir}",
                    "resume=true"], tmp_path, cache_dir, check=False)
    assert proc.returncode == 2
    assert "is corrupt or truncated" in proc.stderr and "delete it" in proc.stderr
    assert not (run_dir / "scorecard.json").exists()


def test_wandb_multirun_gives_one_offline_run_per_job(tmp_path, cache_dir):
    run_cli(["-m", "experiment=gpt", "scale=smoke", "seed=0,1", "logger=wandb"], tmp_path, cache_dir)
    jobs = run_dirs(tmp_path)
    assert len(jobs) == 2 and jobs[0] != jobs[1]
    offline = sorted(p.name for p in tmp_path.rglob("wandb/offline-run-*"))
    assert len(offline) == 2 and offline[0] != offline[1], offline
    assert sorted(scorecard(j)["seed"] for j in jobs) == [0, 1]


def test_sweep_through_submitit_local_launcher(tmp_path, cache_dir):
    run_cli(["-m", "experiment=gpt", "scale=smoke", "seed=0,1", "logger=csv",
             "hydra/launcher=local"], tmp_path, cache_dir)
    jobs = run_dirs(tmp_path)
    assert len(jobs) == 2
    cards = [scorecard(j) for j in jobs]
    assert sorted(c["seed"] for c in cards) == [0, 1]
    assert all(c["claims"] and c["claims"][0]["value"] is not None for c in cards)
    assert list(tmp_path.rglob(".submitit")), "the jobs went through submitit"
