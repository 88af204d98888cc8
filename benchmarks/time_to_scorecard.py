"""8. Time to scorecard: wall time of `toyrepro experiment=X scale=quick`, from nothing cached.

Not part of `make bench` (together they take about an hour on 2 CPU cores): run
`make bench-scorecard` or `python benchmarks/time_to_scorecard.py gpt rlhf ...`. Each run
gets a fresh cache directory (so every stage is built), CSV logging only, and its wall time,
the CPU time of the run (user + system of the child process) and the machine's load
average before and after are recorded: a wall time taken on a busy machine says little
without them. Each experiment's target is its registered `quick_minutes` (2 CPU cores).
The run's scorecard is read back: which claims passed and which failed are recorded too.

The machine's own speed is recorded beside each run, because on a shared virtual machine it
drifts even when the load average says "idle": the same `gpt` quick run took 2:43 wall / 313 s
CPU and, three hours later, 4:02 / 459 s (2026-12-07; a float32 `torch.mm` 2048^3 on two
threads 357 GFLOP/s on 2026-12-01, 249-254 that afternoon). `speed_before` / `speed_after` are
GFLOP/s of a float32 1024^3 `torch.mm` on one thread in this (otherwise idle) harness process,
the median of 9 calls (~0.1 s): a wall time is comparable with another only at a similar speed.

`--check` (`make test-quick`, issue 17 target 6) is the same job as a gate: it exits 1 when
any experiment crashed, failed a quick claim, or took more than 1.5x its `quick_minutes`
of wall time, and prints one line per reason. A crash is recorded and the next experiment
still runs in either mode, so one broken experiment never loses the others' figures.
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

OVER_BUDGET = 1.5  # --check fails a run whose wall time exceeds this multiple of quick_minutes


def scorecard_claims(run_root: Path) -> dict:
    """{"passed": bool, "failed_claims": [ids], "claims": n, "values": {id: value}} from the one
    scorecard.json under run_root (the values of every scored claim, so a failure's margin is kept)."""
    cards = sorted(run_root.glob("runs/**/scorecard.json"))
    if len(cards) != 1:
        return {"error": f"expected one scorecard.json under {run_root}/runs, found {len(cards)}"}
    card = json.loads(cards[0].read_text())
    scored = [c for c in card["claims"] if c.get("passed") is not None]
    return {"passed": bool(card["passed"]), "claims": len(scored),
            "failed_claims": [c["id"] for c in scored if not c["passed"]],
            "values": {c["id"]: c.get("value") for c in scored}}


def machine_speed(n: int = 1024, reps: int = 9) -> float:
    """GFLOP/s of a float32 n^3 `torch.mm` on one thread (`cpu_efficiency.mm_flops`: median of reps calls)."""
    import torch
    from cpu_efficiency import mm_flops

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return mm_flops(n, n, n, reps) / 1e9
    finally:
        torch.set_num_threads(threads)


def time_one(experiment: str, scale: str, seed: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="toyrepro-tts-") as tmp:
        env = dict(os.environ, TOYREPRO_CACHE=str(Path(tmp) / "cache"), WANDB_MODE="offline")
        speed0 = machine_speed()
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        load0 = os.getloadavg()[0]
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "toyrepro", f"experiment={experiment}", f"scale={scale}",
                               f"seed={seed}", "logger=csv"], cwd=tmp, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        fig = {"wall_s": wall, "cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
               "load_before": load0, "load_after": os.getloadavg()[0],
               "speed_before": speed0, "speed_after": machine_speed()}
        if proc.returncode != 0:
            return fig | {"error": f"exit {proc.returncode}: {proc.stderr[-2000:]}"}
        return fig | scorecard_claims(Path(tmp))


def problems(figures: dict, budgets: dict[str, float]) -> list[str]:
    """One line per reason `--check` fails: a crash, a failed quick claim, a run over budget."""
    out = []
    for exp, f in sorted(figures.items()):
        if "error" in f:
            out.append(f"{exp}: crashed or wrote no single scorecard: {f['error'].strip().splitlines()[-1]}")
            continue
        if f["failed_claims"]:
            values = f.get("values", {})
            out.append(f"{exp}: quick claims failed: " + ", ".join(
                f"{c} ({values[c]:.4g})" if isinstance(values.get(c), (int, float)) else c for c in f["failed_claims"]))
        limit = OVER_BUDGET * budgets[exp]
        if f["wall_s"] / 60 > limit:
            out.append(f"{exp}: {f['wall_s'] / 60:.1f} min wall > {OVER_BUDGET} x its {budgets[exp]:g}-minute budget "
                       f"(CPU {f['cpu_s'] / 60:.1f} min, load {f['load_before']:.1f} -> {f['load_after']:.1f}"
                       + (f", machine {f['speed_before']:.0f} -> {f['speed_after']:.0f} GFLOP/s" if "speed_before" in f else "")
                       + ")")
    return out


def run(tiny: bool = False, experiments: list[str] | None = None) -> dict:
    scale = "smoke" if tiny else "quick"
    registered = toyrepro.experiments()
    unknown = sorted(set(experiments or []) - set(registered))
    if unknown:
        raise SystemExit(f"unknown experiment(s) {', '.join(unknown)}; registered: {', '.join(sorted(registered))}")
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
    res = record(name, figures, ratios, notes=f"scale={scale}, seed 0, fresh cache, 2 CPU cores")
    res["problems"] = problems({e: figures[e] for e in experiments}, {e: registered[e].quick_minutes for e in experiments})
    return res


def main(argv: list[str]) -> int:
    check = "--check" in argv
    res = run(experiments=[a for a in argv if a != "--check"] or None)
    for line in res["problems"]:
        print(line, file=sys.stderr)
    if check and res["problems"]:
        print(f"test-quick: {len(res['problems'])} problem(s) above", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
