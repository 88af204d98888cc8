"""`toyrepro-report RUN_DIR... [--out report.md]`: many runs' scorecards in one table.

Finds every `scorecard.json` under the given directories (a sweep dir works), groups them
by (experiment, scale), and writes a markdown table: per claim, mean +- std of the measured
value across runs (seeds, sweep jobs), the threshold, and the pass rate. One bar plot per
group (mean +- std per claim, each run as a dot) is saved beside the report.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def find_scorecards(dirs: list[str]) -> list[dict]:
    cards = []
    for d in dirs:
        p = Path(d)
        if not p.exists():
            raise FileNotFoundError(f"{p} does not exist")
        for f in sorted([p] if p.is_file() else p.rglob("scorecard.json")):
            card = json.loads(f.read_text())
            card["_path"] = str(f.parent)
            cards.append(card)
    return cards


def _fmt(values: list[float]) -> str:
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.4g}"
    return f"{statistics.mean(values):.4g} ± {statistics.stdev(values):.2g}"


def aggregate(cards: list[dict]) -> dict[tuple[str, str], dict[str, dict]]:
    groups: dict[tuple[str, str], dict[str, dict]] = defaultdict(dict)
    for card in cards:
        g = groups[(card["experiment"], card["scale"])]
        for c in card["claims"]:
            row = g.setdefault(c["id"], {"statement": c["statement"], "threshold": c["threshold"],
                                         "comparison": c["comparison"], "values": [], "passed": []})
            if c["value"] is not None:
                row["values"].append(float(c["value"]))
            row["passed"].append(c["passed"])
    return groups


def markdown(cards: list[dict]) -> str:
    lines = []
    for (exp, scale), rows in aggregate(cards).items():
        n = sum(1 for c in cards if (c["experiment"], c["scale"]) == (exp, scale))
        ok = sum(1 for c in cards if (c["experiment"], c["scale"]) == (exp, scale) and c["passed"])
        lines += [f"## {exp} — scale={scale} — {n} run(s), {ok}/{n} passed every claim", "",
                  "| claim | value (mean ± std) | threshold | pass rate |", "|---|---|---|---|"]
        for cid, r in rows.items():
            applicable = [p for p in r["passed"] if p is not None]
            rate = f"{sum(applicable)}/{len(applicable)}" if applicable else "n/a"
            lines.append(f"| {cid} | {_fmt(r['values'])} | {r['comparison']} {r['threshold']:g} | {rate} |")
        lines.append("")
    return "\n".join(lines)


def plot(cards: list[dict], out_dir: Path) -> list[Path]:
    paths = []
    for (exp, scale), rows in aggregate(cards).items():
        fig, ax = plt.subplots(figsize=(1.6 * len(rows) + 2, 3.5))
        for i, r in enumerate(rows.values()):
            if r["values"]:
                ax.bar(i, statistics.mean(r["values"]), color="#9bd", yerr=statistics.pstdev(r["values"]))
                ax.scatter([i] * len(r["values"]), r["values"], color="k", s=10, zorder=3)
            ax.hlines(r["threshold"], i - 0.4, i + 0.4, colors="r", linestyles="--")
        ax.set_xticks(range(len(rows)), list(rows), rotation=20, ha="right")
        ax.set_title(f"{exp} (scale={scale}): value per claim, red = threshold")
        path = out_dir / f"report_{exp}_{scale}.png"
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="toyrepro-report", description=__doc__.splitlines()[0])
    ap.add_argument("dirs", nargs="+", help="run or sweep directories (searched recursively)")
    ap.add_argument("--out", default="report.md", help="markdown file to write (plots go beside it)")
    args = ap.parse_args(argv)
    try:
        cards = find_scorecards(args.dirs)
    except (FileNotFoundError, json.JSONDecodeError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    if not cards:
        print(f"error: no scorecard.json under {args.dirs}; finished runs write one", file=sys.stderr)
        sys.exit(2)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    text = markdown(cards)
    out.write_text(text)
    plots = plot(cards, out.parent)
    print(text)
    print(f"wrote {out} and {len(plots)} plot(s)")


if __name__ == "__main__":
    main()
