"""8. Time to scorecard: wall time of `toyrepro experiment=X scale=quick`, from nothing cached.

Not part of `make bench` (together they take ~50 minutes on 2 CPU cores): run
`make bench-scorecard` or `python benchmarks/time_to_scorecard.py gpt rlhf ...`. Each run
gets a fresh cache directory (so every stage is built), CSV logging only, and its wall time,
the CPU time of the run (user + system of the child process) and the machine's load
average before and after are recorded: a wall time taken on a busy machine says little
without them. Each experiment's target is its registered `quick_minutes` (2 CPU cores).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import toyrepro

from harness import record


def time_one(experiment: str, scale: str, seed: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="toyrepro-tts-") as tmp:
        env = dict(os.environ, TOYREPRO_CACHE=str(Path(tmp) / "cache"), WANDB_MODE="offline")
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        load0 = os.getloadavg()[0]
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "toyrepro", f"experiment={experiment}", f"scale={scale}",
                               f"seed={seed}", "logger=csv"], cwd=tmp, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if proc.returncode != 0:
            raise RuntimeError(f"{experiment} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": wall, "cpu_s": cpu, "load_before": load0, "load_after": os.getloadavg()[0]}


def run(tiny: bool = False, experiments: list[str] | None = None) -> dict:
    scale = "smoke" if tiny else "quick"
    registered = toyrepro.experiments()
    experiments = experiments or (["gpt"] if tiny else sorted(registered))
    name = "time_to_scorecard" if not tiny else "time_to_scorecard_smoke"
    import harness

    old = harness.RESULTS / f"{name}.json"  # runs of other experiments are kept
    prev = json.loads(old.read_text()) if old.exists() else {"figures": {}, "ratios": {}}
    figures, ratios = prev["figures"], prev["ratios"]
    for exp in experiments:
        figures[exp] = time_one(exp, scale, seed=0)
        print(f"{exp}: {figures[exp]}", flush=True)
        ratios[f"{exp} quick wall (min)"] = {"value": figures[exp]["wall_s"] / 60, "target": registered[exp].quick_minutes,
                                            "higher_is_better": False}
    return record(name, figures, ratios,
                  notes=f"scale={scale}, seed 0, fresh cache, 2 CPU cores")


if __name__ == "__main__":
    print(run(experiments=sys.argv[1:] or None))
