"""Side-by-side timing: both sides in one process, alternating, after warm-up; medians and ratio.

These machines are noisy, so a single figure means little; what counts is the *ratio* of
two sides measured in the same conditions. Each repetition times side A then side B (then
B then A on the next, so drift hits both equally) with `time.perf_counter` (CUDA
synchronised); the median over repetitions is kept. (`torch.utils.benchmark.Timer` was used
at first: its `timeit` runs two untimed warm-up calls before every measurement and pins
torch to one thread, which tripled the cost of second-long sides.)
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

# TOYREPRO_BENCH_RESULTS: write the JSON elsewhere (CI's gate keeps the tracked results untouched)
RESULTS = Path(os.environ.get("TOYREPRO_BENCH_RESULTS") or Path(__file__).resolve().parent / "results")


def machine() -> dict:
    from toyrepro.core.machine import describe

    m = describe()
    return {
        "machine": platform.node(), "processor": m["cpu"], "cpu_flags": m["cpu_flags"],
        "cpus": m["cpus"], "torch_threads": m["torch_threads"],
        "load_average": list(os.getloadavg()), "torch": m["torch"], "device": m["gpu"] or "cpu",
    }


def compare(a: Callable[[], object], b: Callable[[], object], reps: int = 5, number: int = 1,
            warmup: int = 1) -> tuple[float, float]:
    """Median seconds per call of a and b, measured alternately (A B, then B A, ...) after
    `warmup` untimed calls of each; `number` calls per timing. Runs at the process's torch
    thread count (recorded by `machine()`); CUDA work is synchronised before each reading."""
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)

    def timed(fn) -> float:
        sync()
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        sync()
        return (time.perf_counter() - t0) / number

    for _ in range(warmup):
        a(), b()
    ta, tb = [], []
    for r in range(reps):
        order = [(a, ta), (b, tb)] if r % 2 == 0 else [(b, tb), (a, ta)]
        for fn, out in order:
            out.append(timed(fn))
    return statistics.median(ta), statistics.median(tb)


def record(name: str, figures: dict, ratios: dict[str, dict], notes: str = "") -> dict:
    """Write benchmarks/results/<name>.json; ratios: label -> {value, target, higher_is_better}."""
    for r in ratios.values():
        hib = r.get("higher_is_better", True)
        r["met"] = (r["value"] >= r["target"]) if hib else (r["value"] <= r["target"])
    result = {"name": name, **machine(), "figures": figures, "ratios": ratios, "notes": notes}
    import harness  # the folder may be redirected by run_all --out

    harness.RESULTS.mkdir(parents=True, exist_ok=True)
    (harness.RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2))
    return result


def results_table(results: list[dict]) -> str:
    lines = ["| benchmark | ratio | value | target | met | device |", "|---|---|---|---|---|---|"]
    for res in results:
        for label, r in res["ratios"].items():
            op = ">=" if r.get("higher_is_better", True) else "<="
            lines.append(f"| {res['name']} | {label} | {r['value']:.2f} | {op} {r['target']} | "
                         f"{'yes' if r['met'] else '**no**'} | {res['device']} |")
    return "\n".join(lines)


def experiment_config(experiment: str, scale: str = "quick", overrides: tuple[str, ...] = ()):
    """The typed config an experiment runs with at `scale` (so a benchmark measures the sizes
    the experiment really uses, and follows them when a preset changes)."""
    from hydra import compose, initialize_config_dir

    from toyrepro.core import config as schema

    schema.register()
    with initialize_config_dir(str(Path(__file__).resolve().parents[1] / "configs"), version_base="1.3"):
        cfg = compose("config", overrides=[f"experiment={experiment}", f"scale={scale}", "run_dir=/tmp/bench",
                                           *overrides])
    return schema.validate(cfg)
