"""Sweeps, DDP and preemption on a real Slurm cluster (`slurm/cluster.sh up`; `make test-slurm`).

Every job goes through `sbatch` via hydra-submitit-launcher (`hydra/launcher=slurm`, with the
overrides that fit the one-node CPU cluster). Jobs are gpt at smoke size with one torch
thread each, so the whole file fits in a few minutes on 2 cores.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
from filelock import FileLock

from conftest import REPO, claim_values, cli_env, run_cli, run_dirs, scorecard

pytestmark = pytest.mark.slurm

SLURM_DIR = Path(os.environ.get("TOYREPRO_SLURM_DIR", "/tmp/toyrepro-slurm"))

# the launcher config of a GPU cluster, fitted to this CPU node by override (slurm/README.md)
ON_LOCAL_CLUSTER = ["hydra/launcher=slurm", "hydra.launcher.partition=local", "hydra.launcher.gpus_per_node=0",
                    "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=2", "hydra.launcher.timeout_min=20",
                    "threads=1"]
SWEEP = ["experiment=gpt", "scale=smoke", "seed=0,1", "optim.lr=1e-3,3e-3", "threads=1"]
# <job num>_slurm<array job id>_<array task id>; a sweep of one job is no array: <job num>_slurm<job id>
RUN_NAME = re.compile(r"^(\d+)_slurm(\d+)(?:_(\d+))?$")


def slurm(*args: str) -> str:
    return subprocess.run(list(args), capture_output=True, text=True, check=True, timeout=60).stdout


@pytest.fixture(scope="session", autouse=True)
def cluster():
    """The cluster `make test-slurm` brought up; a missing one is an error, not a skip."""
    os.environ.setdefault("SLURM_CONF", str(SLURM_DIR / "conf" / "slurm.conf"))  # what `cluster.sh env` says
    proc = subprocess.run(["bash", str(REPO / "slurm" / "cluster.sh"), "status"], capture_output=True, text=True)
    assert proc.returncode == 0 and " idle " in proc.stdout, (
        f"no local Slurm cluster: run `slurm/cluster.sh up` (or `make test-slurm`)\n{proc.stdout}{proc.stderr}")


def slurm_sweep(base: Path, cache: Path) -> tuple[Path, float]:
    """The 2 seeds x 2 learning rates sweep through sbatch, run once per session (the dashboard
    tests read the same sweep). Returns (sweep dir, wall seconds)."""
    done = base / "sweep.json"
    if not done.exists():
        base.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        run_cli(["-m", *SWEEP, *ON_LOCAL_CLUSTER, f"hydra.sweep.dir={base / 'sweep'}"], base, cache, timeout=900)
        wait_until_idle()
        done.write_text(json.dumps({"wall_s": time.perf_counter() - t0}))
    return base / "sweep", json.loads(done.read_text())["wall_s"]


@pytest.fixture(scope="session")
def sweep(tmp_path_factory, cache_dir) -> Path:
    sweep_dir, wall = slurm_sweep(tmp_path_factory.getbasetemp() / "slurm_sweep", cache_dir)
    print(f"measured: 4-task sweep through sbatch took {wall:.0f} s")
    return sweep_dir


def setting(run_dir: Path) -> tuple[int, float]:
    card = scorecard(run_dir)
    return card["seed"], card["config"]["optim"]["lr"]


def test_sweep_is_four_array_tasks_with_their_own_run_dirs(sweep):
    runs = run_dirs(sweep)
    assert len(runs) == 4 and len({r.name for r in runs}) == 4
    names = [RUN_NAME.match(r.name) for r in runs]
    assert all(names), [r.name for r in runs]
    assert len({m.group(2) for m in names}) == 1, "one array job"
    assert sorted(int(m.group(3)) for m in names) == [0, 1, 2, 3]
    assert sorted(int(m.group(1)) for m in names) == [0, 1, 2, 3]
    array_id = names[0].group(2)
    assert sorted(setting(r) for r in runs) == [(0, 1e-3), (0, 3e-3), (1, 1e-3), (1, 3e-3)]
    for r in runs:
        card = scorecard(r)
        assert card["experiment"] == "gpt" and card["scale"] == "smoke"
        assert {c["id"] for c in card["claims"]} == {"beats_unigram", "beats_gzip", "samples_are_text"}
        assert all(c["value"] is not None for c in card["claims"]), card["claims"]
        assert card["config"]["run_dir"] == str(r)
    # submitit's logs sit in the sweep dir, one folder per array task, with each job's output
    for task in range(4):
        logs = sweep / ".submitit" / f"{array_id}_{task}"
        out = (logs / f"{array_id}_{task}_0_log.out").read_text() + (logs / f"{array_id}_{task}_0_log.err").read_text()
        assert "scorecard:" in out and f"_slurm{array_id}_{task}" in out
    # and Slurm's accounting (sacct, what submitit polls) saw every task complete
    states = accounted(array_id, [], until=lambda rows: len(rows) == 4 and not any(finishing(r) for r in rows))
    assert sorted(states) == [f"{array_id}_{t}|COMPLETED" for t in range(4)]


def test_sweep_on_slurm_gives_the_scorecards_of_local_runs(sweep, tmp_path, cache_dir):
    run_cli(["-m", *SWEEP, f"hydra.sweep.dir={tmp_path / 'local'}"], tmp_path, cache_dir)
    local = {setting(r): claim_values(scorecard(r)) for r in run_dirs(tmp_path / "local")}
    on_slurm = {setting(r): claim_values(scorecard(r)) for r in run_dirs(sweep)}
    assert len(local) == 4 and on_slurm == local


def wait_until_idle(timeout: float = 120) -> None:
    """Until no job is left in the queue: submitit returns as soon as a job has written its
    result file, a moment before Slurm marks it COMPLETED."""
    deadline = time.time() + timeout
    while slurm("squeue", "-h", "-o", "%i").strip() and time.time() < deadline:
        time.sleep(0.5)


def job_state(job: str) -> str:
    """PENDING, RUNNING, ... or "" once Slurm no longer lists it."""
    proc = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True, timeout=60)
    return proc.stdout.strip() if proc.returncode == 0 else ""


def wait_until_gone(job: str, timeout: float = 120) -> None:
    """Until Slurm has finished the job (submitit returns when the result file is written)."""
    deadline = time.time() + timeout
    while job_state(job) and time.time() < deadline:
        time.sleep(0.5)


def accounted(job: str, flags: list[str], until, timeout: float = 60) -> list[str]:
    """`sacct`'s JobID|State rows for `job`, polled until `until(rows)` holds: slurmctld tells
    slurmdbd of a job's end a moment after squeue stops listing it."""
    deadline = time.time() + timeout
    while True:
        rows = slurm("sacct", "-j", job, "-X", "-n", "-P", *flags, "-o", "JobID,State").split()
        if until(rows) or time.time() > deadline:
            return rows
        time.sleep(0.5)


def finishing(row: str) -> bool:
    """A JobID|State row of a job Slurm has not yet recorded as ended."""
    return row.split("|")[1] in ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING")


def submitit_logs(sweep_dir: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted((sweep_dir / ".submitit").rglob("*_log.*"))}


def test_ddp_job_with_two_tasks_keeps_ranks_identical(sweep, tmp_path, cache_dir):
    """trainer=ddp under Slurm: 2 tasks on the node, ranks from SLURM_* (Lightning's
    SLURMEnvironment), gloo on CPU; every rank logs its parameter digest (core.train.RankAgreement).
    The ranks split each batch (core.train.StepShardSampler), so the model is the one a single
    process trains: the scorecard matches the sweep's seed-0, lr=1e-3 job."""
    sweep_dir = tmp_path / "sweep"
    run_cli(["-m", "experiment=gpt", "scale=smoke", "trainer=ddp", "logger=csv", *ON_LOCAL_CLUSTER,
             "hydra.launcher.tasks_per_node=2", f"hydra.sweep.dir={sweep_dir}"], tmp_path, cache_dir, timeout=900)
    (run_dir,) = run_dirs(sweep_dir)
    assert RUN_NAME.match(run_dir.name), run_dir.name
    logs = "\n".join(submitit_logs(sweep_dir).values())
    ranks = dict(re.findall(r"\[train\] rank (\d)/2 parameters sha256 before \w+ after (\w+)", logs))
    assert set(ranks) == {"0", "1"}, logs[-3000:]
    assert ranks["0"] == ranks["1"], "the two DDP ranks ended with different parameters"
    before = re.search(r"rank 0/2 parameters sha256 before (\w+)", logs).group(1)
    assert before != ranks["0"], "training changed the parameters"
    (single,) = [r for r in run_dirs(sweep) if setting(r) == (0, 1e-3)]
    ddp, one = claim_values(scorecard(run_dir)), claim_values(scorecard(single))
    assert ddp == pytest.approx(one, rel=1e-5), "2 ranks x half batches = the single-process model"


# gpt smoke, long enough to be preempted in the middle of training
LONG = ["experiment=gpt", "scale=smoke", "seed=2", "logger=csv", "threads=1", "trainer.max_steps=400",
        "trainer.checkpoint_every_n_steps=20", "trainer.val_check_interval=200"]
STAMP = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]")


def log_time(console: str, needle: str) -> datetime:
    for line in console.splitlines():
        if needle in line and (m := STAMP.match(line)):
            return datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f")
    raise AssertionError(f"no log line with {needle!r}")


def test_preempted_job_is_requeued_and_resumes_in_its_run_dir(tmp_path, cache_dir):
    """SIGUSR1 (what `--signal=USR1@120` sends before preemption or the time limit), mid-training:
    the job saves a checkpoint, requeues itself, starts again in the same run dir, resumes with
    no resume=true and ends with the scorecard of an uninterrupted run."""
    sweep_dir = tmp_path / "sweep"
    launcher = subprocess.Popen([sys.executable, "-m", "toyrepro", "-m", *LONG, *ON_LOCAL_CLUSTER,
                                 f"hydra.sweep.dir={sweep_dir}"], cwd=tmp_path, env=cli_env(cache_dir),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    job = None
    try:
        deadline = time.time() + 600
        ckpt = None
        while time.time() < deadline and launcher.poll() is None:
            found = list(sweep_dir.glob("*_slurm*/checkpoints/train/last.ckpt"))
            if found:
                ckpt = found[0]
                break
            time.sleep(0.2)
        assert ckpt is not None, "the job did not start training"
        run_dir = ckpt.parents[2]
        job = RUN_NAME.match(run_dir.name).group(2)
        slurm("scancel", "--signal=USR1", job)
        signalled = datetime.now()
        # Slurm makes a requeued job eligible only ~120 s later (its own delay, on every cluster);
        # the test lifts it once the job is pending again so as not to wait for it
        while job_state(job) != "PENDING" and time.time() < deadline and launcher.poll() is None:
            time.sleep(0.2)
        pending = datetime.now()
        slurm("scontrol", "update", f"JobId={job}", "StartTime=now")
        out, _ = launcher.communicate(timeout=600)
    finally:
        if launcher.poll() is None:  # the test failed: leave no job behind
            launcher.kill()
            if job:
                subprocess.run(["scancel", job])
    assert launcher.returncode == 0, out[-3000:]

    assert run_dirs(sweep_dir) == [run_dir], "the requeued job continued in its own run dir"
    console = (run_dir / "console.log").read_text()
    hpc = run_dir / "checkpoints" / "train" / "hpc_ckpt_1.ckpt"
    m = re.search(rf"resuming stage from {re.escape(str(hpc))} \(step (\d+)\)", console)
    assert m, console[-3000:]
    assert 0 < int(m.group(1)) < 400, f"saved at step {m.group(1)}: the signal must land mid-training"
    assert scorecard(run_dir)["config"]["resume"] is False
    # Slurm saw it: the task ran twice (sacct --duplicates keeps the requeued attempt)
    wait_until_gone(job)
    attempts = accounted(job, ["-D"], until=lambda rows: len(rows) == 2 and not any(finishing(r) for r in rows))
    assert attempts == [f"{job}|REQUEUED", f"{job}|COMPLETED"], attempts
    resumed = log_time(console, "resuming stage from")
    print(f"measured: signal -> pending again {(pending - signalled).total_seconds():.1f} s, "
          f"signal -> resumed at step {m.group(1)} {(resumed - signalled).total_seconds():.1f} s "
          "(with Slurm's 120 s requeue delay lifted)")

    ref = tmp_path / "ref"
    ref.mkdir()
    run_cli(LONG, ref, cache_dir)
    (ref_dir,) = run_dirs(ref)
    assert claim_values(scorecard(run_dir)) == claim_values(scorecard(ref_dir))


# two rlhf smoke jobs that differ only after the SFT stage, so both need the same SFT model
SHARED_SFT = ["experiment=rlhf", "scale=smoke", "seed=4", "logger=csv", "rlhf.dpo.beta=0.1,1.0"]


def sft_lock(cache: Path) -> Path:
    """The lock file `core.stage.cached_stage` takes for the sweep's SFT model (both tasks share
    it: DPO's beta is not in the SFT stage's key)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    from toyrepro import cli
    from toyrepro.core.stage import stage_path
    from toyrepro.rlhf.stages import sft_params

    one_task = [o if not o.startswith("rlhf.dpo.beta=") else "rlhf.dpo.beta=0.1" for o in SHARED_SFT]
    with initialize_config_dir(cli.CONFIG_DIR, version_base="1.3"):
        dcfg = compose("config", overrides=cli._with_search_path([*one_task, "threads=1"]))
    with open_dict(dcfg):
        dcfg.run_dir = "unused"
    params = sft_params(SimpleNamespace(cfg=cli.checked_config(dcfg)))
    return Path(str(stage_path(cache, "rlhf_sft", params)) + ".lock")


def test_job_waits_for_the_cached_stage_another_job_is_building(tmp_path):
    """Two array tasks need the same SFT model (core.stage.cached_stage): one builds it, the
    other blocks on its lock while it does, then reads the finished artefact.

    The test holds that lock itself until both tasks have started, so the overlap does not
    depend on when Slurm starts the second task (a 1-s scheduling pass can start it after a
    short SFT stage is done). Released, the lock goes to one task, which builds; the other
    waits for it."""
    cache = tmp_path / "cache"  # its own: the SFT stage must be built here, not found
    sweep_dir = tmp_path / "sweep"
    lock = sft_lock(cache)
    lock.parent.mkdir(parents=True)
    gate = FileLock(str(lock))
    gate.acquire()
    launcher = subprocess.Popen([sys.executable, "-m", "toyrepro", "-m", *SHARED_SFT, *ON_LOCAL_CLUSTER,
                                 f"hydra.sweep.dir={sweep_dir}"], cwd=tmp_path, env=cli_env(cache),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline, consoles = time.time() + 600, []
        while time.time() < deadline and launcher.poll() is None:
            consoles = list(sweep_dir.glob("*_slurm*/console.log"))
            if len(consoles) == 2 and all("run dir:" in c.read_text() for c in consoles):
                break
            time.sleep(0.2)
        assert launcher.poll() is None and len(consoles) == 2, "the two tasks did not both start"
        gate.release()
        out, _ = launcher.communicate(timeout=900)
    finally:
        gate.release(force=True)
        if launcher.poll() is None:  # the test failed: leave no job behind
            launcher.kill()
            for run in sweep_dir.glob("*_slurm*"):
                subprocess.run(["scancel", RUN_NAME.match(run.name).group(2)])
    assert launcher.returncode == 0, out[-3000:]
    wait_until_idle()
    runs = run_dirs(sweep_dir)
    assert len(runs) == 2 and all((r / "scorecard.json").exists() for r in runs)
    (artefact,) = [p for p in (cache / "stages").glob("rlhf_sft-*") if p.is_dir()]  # not its .lock
    assert str(artefact) + ".lock" == str(lock), "the test held the lock of another artefact"
    built_at = datetime.fromtimestamp((artefact / "params.json").stat().st_mtime)
    logs = {r: (r / "console.log").read_text() for r in runs}
    (builder,) = [r for r, log in logs.items() if f"stage rlhf_sft: building {artefact}" in log]
    (waiter,) = [r for r, log in logs.items() if f"stage rlhf_sft: reusing cached artefact {artefact}" in log]
    started = log_time(logs[waiter], "run dir:")
    reused = log_time(logs[waiter], "stage rlhf_sft: reusing cached artefact")
    assert started < built_at <= reused, (
        f"the second job started at {started}, the SFT model was finished at {built_at}, read at {reused}: "
        "it must have been waiting while the other job built it")
    assert builder != waiter and not list((cache / "stages").glob(".*.tmp")), "no half-written artefact left"
