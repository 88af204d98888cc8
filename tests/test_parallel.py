"""core/parallel.py: independent jobs of one run in worker processes give the plain loop's results."""

from __future__ import annotations

import json
import os
import pickle
import signal
import time
from types import SimpleNamespace

import pytest
import torch

from toyrepro.core.run import RunContext

from conftest import run_cli, run_dirs, scorecard


def _ctx(tmp_path, workers: int, threads: int = 1) -> RunContext:
    cfg = SimpleNamespace(name="ghn", seed=3, workers=workers, threads=threads, cache_dir=str(tmp_path),
                          trainer=SimpleNamespace(step_cap=None, accelerator="cpu"))
    return RunContext(cfg, {}, tmp_path)


def draw(ctx, n: int, scale: float) -> dict:
    """A job: seeds itself, draws, and says where it ran."""
    g = torch.Generator().manual_seed(ctx.cfg.seed * 100 + n)
    return {"x": (scale * torch.randn(n, generator=g)).tolist(), "pid": os.getpid(),
            "threads": torch.get_num_threads(), "worker": os.environ.get("TOYREPRO_WORKER")}


def fail(ctx, n: int) -> None:
    if n == 2:
        raise ValueError(f"job {n} refuses")


def test_two_workers_return_the_plain_loops_results_in_order(tmp_path):
    calls = [(n, 0.5 * n) for n in range(1, 6)]
    plain = _ctx(tmp_path, workers=1).side_by_side(draw, calls)
    side = _ctx(tmp_path, workers=2).side_by_side(draw, calls, cost=[1, 5, 2, 4, 3])
    assert [r["x"] for r in side] == [r["x"] for r in plain]
    assert {r["pid"] for r in plain} == {os.getpid()} and all(r["worker"] is None for r in plain)
    assert os.getpid() not in {r["pid"] for r in side}
    assert {r["worker"] for r in side} <= {"1", "2"} and {r["threads"] for r in side} == {1}


def test_a_failing_job_raises_its_own_error_in_the_run(tmp_path):
    with pytest.raises(ValueError, match="job 2 refuses"):
        _ctx(tmp_path, workers=2).side_by_side(fail, [(1,), (2,), (3,)])


def die(ctx, n: int) -> None:
    if n == 2:
        os.kill(os.getpid(), signal.SIGKILL)  # what the kernel's OOM killer does
    time.sleep(0.5)


def test_a_killed_worker_stops_the_run_with_one_clear_message(tmp_path):
    from toyrepro.core.checks import UserError

    with pytest.raises(UserError, match=r"a worker process died while running die \(killed, or out of memory\?\); "
                                        r"run again with workers=1"):
        _ctx(tmp_path, workers=2).side_by_side(die, [(1,), (2,), (3,)])


def test_inside_a_slurm_job_the_jobs_stay_in_this_process(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("SLURM_NTASKS", "1")
    monkeypatch.setenv("SLURM_JOB_NAME", "toyrepro")
    with caplog.at_level("INFO", logger="toyrepro"):
        out = _ctx(tmp_path, workers=2).side_by_side(draw, [(1, 1.0), (2, 1.0)])
    assert {r["pid"] for r in out} == {os.getpid()}
    assert "workers=2 ignored: inside a Slurm job the requeue signal reaches this process only" in caplog.text


def test_costs_must_match_the_jobs(tmp_path):
    with pytest.raises(ValueError, match="side_by_side: 1 costs for 2 jobs"):
        _ctx(tmp_path, workers=2).side_by_side(draw, [(1, 1.0), (2, 1.0)], cost=[1])


def test_the_typed_config_pickles_by_name():
    from hydra import compose, initialize_config_dir

    from toyrepro import cli

    with initialize_config_dir(cli.CONFIG_DIR, version_base="1.3"):
        d = compose("config", ["experiment=ghn", "scale=smoke", "run_dir=/tmp/unused"])
    cfg = cli.checked_config(d)
    back = pickle.loads(pickle.dumps(cfg))
    assert type(back) is type(cfg) and back == cfg and cfg.workers == 1


def test_zero_workers_is_refused(tmp_path):
    proc = run_cli(["experiment=gpt", "scale=smoke", "workers=0"], tmp_path, tmp_path / "cache", check=False)
    assert proc.returncode == 2
    assert "workers must be >= 1 (1 = every stage in this process) (got 0)" in proc.stderr


@pytest.mark.slow  # two CLI runs of 7 points, one of them spawning two workers (~40 s): make test-slow
def test_scaling_grid_on_two_workers_gives_the_one_process_numbers(tmp_path):
    """7 points (3 sizes x 2 budgets + a 2-epoch run), trained in this process and on two workers."""
    common = ["experiment=scaling", "scale=smoke", "seed=3", "logger=csv", "scaling.layers=[1,1,1]",
              "scaling.widths=[8,16,24]", "scaling.steps=[4,8]", "scaling.repeat_budget=-1", "scaling.epochs=[1,2]",
              "scaling.holdout=1"]
    for w in (1, 2):
        (tmp_path / f"w{w}").mkdir()
        run_cli([*common, f"workers={w}"], tmp_path / f"w{w}", tmp_path / f"cache{w}")
    (one,), (two,) = run_dirs(tmp_path / "w1"), run_dirs(tmp_path / "w2")
    results = [json.loads((d / "results.json").read_text()) for d in (one, two)]
    assert [r["loss"] for r in results[0]["runs"]] == [r["loss"] for r in results[1]["runs"]]
    assert [(c["id"], c["value"]) for c in scorecard(one)["claims"]] == \
           [(c["id"], c["value"]) for c in scorecard(two)["claims"]]
    log = (two / "console.log").read_text()
    assert "7 jobs of train_point on 2 worker processes, 1 thread(s) each" in log and "[worker 2]" in log
    assert len(list(two.glob("csv/*/metrics.csv"))) == 7  # every stage's metrics, written by the workers


@pytest.mark.slow  # six smoke runs (~15-25 s each): make test-slow
@pytest.mark.parametrize("experiment", ["ghn", "collapse", "toolformer"])
def test_smoke_run_on_two_workers_gives_the_same_scorecard(experiment, tmp_path):
    """The experiments whose stages run side by side: their smoke scorecard is the one-process one
    (and toolformer's Table 4, whose perplexities carry every digit, byte for byte)."""
    cards, tables = [], []
    for w in (1, 2):
        (tmp_path / f"w{w}").mkdir()
        run_cli([f"experiment={experiment}", "scale=smoke", "logger=csv", "threads=1", f"workers={w}"],
                tmp_path / f"w{w}", tmp_path / f"cache{w}")
        (d,) = run_dirs(tmp_path / f"w{w}")
        cards.append([(c["id"], c["value"], c["note"]) for c in scorecard(d)["claims"]])
        tables.append((d / "results.json").read_text() if experiment == "toolformer" else "")
        if w == 2:
            assert "on 2 worker processes, 1 thread(s) each" in (d / "console.log").read_text()
    assert cards[0] == cards[1]
    assert tables[0] == tables[1]
