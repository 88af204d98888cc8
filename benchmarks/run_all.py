"""`make bench`: run every comparison, write results/<name>.json and RESULTS.md's table.

`python benchmarks/run_all.py [--tiny] [--only NAME ...]`. --tiny runs each with toy
sizes (what the test suite does to check they run; those figures mean nothing).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

BENCHMARKS = ["lightning_overhead", "gpt_vs_hf", "sampling", "dpo_vs_trl", "ppo_vs_trl", "toolformer_filtering",
              "lre_jacobian", "cpu_efficiency"]  # time_to_scorecard (~50 min) runs on its own: make bench-scorecard


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--only", nargs="*", default=None)
    ap.add_argument("--out", default=None, help="results folder (default benchmarks/results)")
    args = ap.parse_args(argv)
    import harness
    from harness import results_table

    if args.out:
        harness.RESULTS = Path(args.out)

    results = []
    for name in args.only or BENCHMARKS:
        t0 = time.perf_counter()
        print(f"== {name}", flush=True)
        res = importlib.import_module(name).run(tiny=args.tiny)
        print(json.dumps(res["ratios"], indent=1), f"({time.perf_counter() - t0:.0f} s)", flush=True)
        results.append(res)
    if not args.tiny:
        all_results = [json.loads(p.read_text()) for p in sorted(harness.RESULTS.glob("*.json"))]
        table = results_table(all_results)
        (harness.RESULTS / "table.md").write_text(table + "\n")
        print(table)
    return results


if __name__ == "__main__":
    main()
