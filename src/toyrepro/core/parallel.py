"""Independent jobs of one run side by side, in worker processes (the config's `workers`).

Some experiments train pieces that do not depend on each other: the hypernetworks and Adam
baselines of `ghn`, the 24 grid points of `scaling`, the two GPT chains of `collapse`, the three
fine-tunes of `toolformer` and the evaluation of each of its models. Their
models are too small to keep a second core busy (a 2-layer, 16-wide GPT gains nothing from a
second thread), so on a 2-core machine two of them at a time, one thread each, finish sooner
(scaling's grid: 1.7x; the CPU time of each job grows by ~20-30 % when two share the machine):

    records = ctx.side_by_side(train_point, [(p, text) for p in todo], cost=[p.steps for p in todo])

calls `fn(ctx, *args)` for every args tuple and returns the results in the order given.
With `workers=1` (the default) that is a plain loop in this process. With `workers=k > 1`
it runs in k spawned processes (`concurrent.futures`), each at `threads` torch threads; the
costliest jobs (by `cost`) go first, so the last one to finish is short (LPT scheduling).

For a job to give the same numbers either way it must
- seed its own randomness (a worker's global RNG state is not this process's);
- return what the run needs (it is pickled back) and record no claim (a worker has no
  scorecard); its stage's loggers, checkpoints and cached artefacts are written by the worker
  exactly as here (each stage has its own directories; the stage cache's file lock does the rest);
- be a module-level function with arguments that pickle.
At one thread per job the results are then bitwise those of the plain loop (tests/test_parallel.py).

A worker logs where this process does (the run's console.log, and stdout), tagged with its
number; its Lightning stages print the periodic progress line, never a progress bar (two bars
would overwrite each other).
It falls back to the plain loop, and says why, where worker processes would be wrong:
inside a Slurm job (the requeue signal reaches this process, which runs no training loop while
it waits) and on a GPU (one process owns the device).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from typing import Any

log = logging.getLogger("toyrepro")
WORKER_ENV = "TOYREPRO_WORKER"  # set in a worker process: its number
_ctx = None  # the worker's RunContext


def in_worker() -> bool:
    return WORKER_ENV in os.environ


def sequential_reason(cfg) -> str | None:
    """Why this run's jobs must stay in this process, or None."""
    import torch

    from toyrepro.core.train import on_slurm

    if on_slurm():
        return "inside a Slurm job the requeue signal reaches this process only"
    acc = str(cfg.trainer.accelerator)
    if acc in ("gpu", "cuda", "mps") or (acc == "auto" and torch.cuda.is_available()):
        return "the stages train on a GPU, which one process owns"
    return None


def worker_threads(cfg, workers: int) -> int:
    return cfg.threads if cfg.threads > 0 else max(1, (os.cpu_count() or 1) // workers)


def side_by_side(ctx, fn: Callable[..., Any], calls: Sequence[tuple], cost: Sequence[float] | None = None) -> list:
    """[fn(ctx, *args) for args in calls], in `ctx.cfg.workers` processes when that is > 1."""
    calls = [tuple(c) for c in calls]
    if cost is not None and len(cost) != len(calls):
        raise ValueError(f"side_by_side: {len(cost)} costs for {len(calls)} jobs")
    workers = min(ctx.cfg.workers, len(calls))
    reason = sequential_reason(ctx.cfg) if workers > 1 else None
    if reason:
        log.info("workers=%d ignored: %s; the %d jobs run one after another", ctx.cfg.workers, reason, len(calls))
    if workers <= 1 or reason or in_worker():
        return [fn(ctx, *c) for c in calls]

    threads = worker_threads(ctx.cfg, workers)
    if workers * threads > (os.cpu_count() or 1):
        log.warning("workers=%d x %d threads on %d cores: the workers will wait for each other's threads",
                    workers, threads, os.cpu_count())
    order = sorted(range(len(calls)), key=lambda i: -cost[i]) if cost is not None else list(range(len(calls)))
    log.info("%d jobs of %s on %d worker processes, %d thread(s) each", len(calls), fn.__name__, workers, threads)
    results: list[Any] = [None] * len(calls)
    start = time.perf_counter()
    spawn = multiprocessing.get_context("spawn")
    ids = spawn.Queue()  # each worker takes its number from here
    for k in range(workers):
        ids.put(k + 1)
    # the files this process logs to (Hydra's console.log, or the Python API's), for the workers to append to
    files = [h.baseFilename for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]
    pool = ProcessPoolExecutor(workers, mp_context=spawn, initializer=_start_worker,
                               initargs=(ctx, threads, ids, files or [str(ctx.run_dir / "console.log")]))
    try:
        futures = {pool.submit(_job, fn, calls[i]): i for i in order}
        for done, fut in enumerate(as_completed(futures), 1):
            results[futures[fut]] = fut.result()
            log.info("side by side: %d of %d jobs done (%.0f s)", done, len(calls), time.perf_counter() - start)
    except BrokenProcessPool as e:
        from toyrepro.core.checks import UserError

        raise UserError(f"a worker process died while running {fn.__name__} (killed, or out of memory?); run "
                        "again with workers=1 to keep every job in one process (resume=true continues the "
                        "stages that saved a checkpoint)") from e
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # after a failure: the running jobs finish, no new one starts
    return results


def _start_worker(ctx, threads: int, ids, log_files: list[str]) -> None:
    import torch

    from toyrepro.core.logging import quiet_frameworks

    global _ctx
    k = ids.get()
    os.environ[WORKER_ENV] = str(k)
    torch.set_num_threads(threads)
    quiet_frameworks()
    fmt = logging.Formatter(f"[%(asctime)s][%(name)s][%(levelname)s] - [worker {k}] %(message)s")
    root = logging.getLogger()
    for handler in [*(logging.FileHandler(f) for f in log_files), logging.StreamHandler(sys.stdout)]:
        handler.setFormatter(fmt)
        root.addHandler(handler)
    root.setLevel(logging.INFO)
    _ctx = ctx


def _job(fn: Callable[..., Any], args: tuple) -> Any:
    import lightning as L

    from toyrepro.core.logging import finish_loggers

    L.seed_everything(_ctx.cfg.seed, workers=True, verbose=False)  # as the run's own process starts
    try:
        return fn(_ctx, *args)
    finally:
        finish_loggers(_ctx._loggers)
        _ctx._loggers, _ctx._stages = [], []
