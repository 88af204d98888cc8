"""Every config composes; bad input stops before any work with one clear line."""

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from toyrepro import cli  # noqa: F401  (registers the schema and the run_suffix resolver)
from toyrepro.core import config as schema

from conftest import EXPERIMENTS, REPO, run_cli, run_dirs


@pytest.mark.parametrize("experiment", EXPERIMENTS)
@pytest.mark.parametrize("scale", ["smoke", "quick", "full"])
def test_every_experiment_config_composes_and_validates(experiment, scale):
    with initialize_config_dir(str(REPO / "configs"), version_base="1.3"):
        cfg = compose("config", overrides=[f"experiment={experiment}", f"scale={scale}"])
    cfg.run_dir = "/tmp/x"  # outside a Hydra run the hydra: resolver is unavailable
    typed = schema.validate(cfg)
    assert typed.name == experiment and typed.scale.name == scale


def test_scale_presets_differ():
    with initialize_config_dir(str(REPO / "configs"), version_base="1.3"):
        smoke = compose("config", overrides=["experiment=gpt", "scale=smoke"])
        full = compose("config", overrides=["experiment=gpt", "scale=full"])
    assert smoke.trainer.max_steps < full.trainer.max_steps
    assert full.model.n_layer > smoke.model.n_layer


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.n_layer=-1", "model.n_layer must be >= 1 (got -1)"),
        ("optim.lr=-0.1", "optim.lr must be > 0 (got -0.1)"),
        ("optim.batch_size=0", "optim.batch_size must be >= 1 (got 0)"),
        ("model.n_embd=33", "model.n_embd must be divisible by model.n_head=2 (got 33)"),
        ("gpt.sample_top_k=300", "gpt.sample_top_k must be <= model.vocab_size (256); lower it, or 0 for no "
                                 "top-k (got 300)"),
        ("experiment=rlhf rlhf.dpo.beta=0", "rlhf.dpo.beta must be > 0 (got 0.0)"),
        ("experiment=toolformer toolformer.decode_top_k=500", "toolformer.decode_top_k must be <= the vocabulary (85 characters) (got 500)"),
    ],
)
def test_out_of_range_values_stop_with_one_line(tmp_path, cache_dir, override, message):
    args = override.split()
    if not args[0].startswith("experiment="):
        args.insert(0, "experiment=gpt")
    proc = run_cli([*args, "scale=smoke"], tmp_path, cache_dir, check=False)
    assert proc.returncode == 2
    assert proc.stderr == f"error: config error: {message}\n", "exactly one line, no traceback"
    assert run_dirs(tmp_path) == [], "a refused run leaves no run dir behind"


@pytest.mark.parametrize(
    "args, expected",
    [
        (["scale=smoke"], "You must specify 'experiment'"),
        (["experiment=nope"], "Could not find 'experiment/nope'"),
        (["experiment=gpt", "model.n_layers=2"], "Key 'n_layers' not in 'GPTConfig'"),
        (["experiment=gpt", "model.n_layer=two"], "model.n_layer"),
    ],
)
def test_composition_errors_name_the_problem(tmp_path, cache_dir, args, expected):
    proc = run_cli(args, tmp_path, cache_dir, check=False)
    assert proc.returncode != 0
    assert expected in proc.stderr, proc.stderr
    if "experiment" in expected:  # the message lists what is available
        for name in EXPERIMENTS:
            assert name in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_gpu_trainer_without_cuda_is_refused(tmp_path, cache_dir):
    proc = run_cli(["experiment=gpt", "scale=smoke", "trainer=gpu"], tmp_path, cache_dir, check=False)
    assert proc.returncode == 2
    assert "trainer=gpu needs a CUDA GPU" in proc.stderr and "trainer=cpu" in proc.stderr
    assert run_dirs(tmp_path) == []


def test_schema_rejects_wrong_types_directly():
    cfg = OmegaConf.structured(schema.Config)
    with pytest.raises(Exception, match="n_layer"):
        cfg.model.n_layer = "many"


def test_slurm_launcher_composes_with_its_settings():
    with initialize_config_dir(str(REPO / "configs"), version_base="1.3"):
        cfg = compose("config", overrides=["experiment=gpt", "hydra/launcher=slurm",
                                           "hydra.launcher.partition=gpu"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert launcher.partition == "gpu" and launcher.gpus_per_node == 1
    for key in ("timeout_min", "mem_gb", "array_parallelism", "setup"):
        assert key in launcher


def test_refused_resume_command_keeps_the_interrupted_run(tmp_path, cache_dir):
    """A typo in `resume=true hydra.run.dir=<run>` is refused, and the run's checkpoints stay."""
    run = tmp_path / "interrupted"
    (run / "checkpoints" / "train").mkdir(parents=True)
    (run / "checkpoints" / "train" / "last.ckpt").write_bytes(b"weights")
    proc = run_cli(["experiment=gpt", "scale=smoke", "resume=true", f"hydra.run.dir={run}", "model.n_layer=0"],
                   tmp_path, cache_dir, check=False)
    assert proc.returncode == 2 and proc.stderr == "error: config error: model.n_layer must be >= 1 (got 0)\n"
    assert (run / "checkpoints" / "train" / "last.ckpt").read_bytes() == b"weights"


def test_run_dir_is_hydra_output_dir(tmp_path, cache_dir):
    """`run_dir=D`: Hydra's `.hydra/` and `console.log` land in D, and no dated dir appears under runs/."""
    cwd, mine = tmp_path / "cwd", tmp_path / "mine"
    cwd.mkdir()
    run_cli(["experiment=lre", "scale=smoke", f"run_dir={mine}", "logger=csv"], cwd, cache_dir)
    assert (mine / "scorecard.json").exists() and (mine / ".hydra" / "config.yaml").exists()
    assert "scorecard: " in (mine / "console.log").read_text()
    assert not (cwd / "runs").exists(), "nothing written under the default runs/ dir"


def test_run_dir_in_a_sweep_is_refused(tmp_path, cache_dir):
    proc = run_cli(["-m", "experiment=gpt", "scale=smoke", f"run_dir={tmp_path / 'x'}", "seed=0,1"],
                   tmp_path, cache_dir, check=False)
    assert proc.returncode == 2
    assert proc.stderr == ("error: run_dir= names one run's directory, but a sweep (-m) runs many jobs; drop "
                           "run_dir= and set hydra.sweep.dir=<dir> (each job gets a subdir of it)\n")
    assert run_dirs(tmp_path) == []
