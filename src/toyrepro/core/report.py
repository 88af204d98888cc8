"""`toyrepro report RUN_DIR... [--out report.md]`: many runs' scorecards, one row per setting.

Finds every `scorecard.json` under the given directories (a sweep dir works) and groups the
runs by (experiment, scale) and then by **setting**: the config keys whose values differ
between the runs of that experiment (a sweep's `optim.lr`, say), seeds excluded — the
runs of one setting are its seeds. For each setting: per claim, mean ± std of the measured
value over its seeds, the pass rate, and how many runs passed every claim.

Writes `report.md` (markdown), `report.html` beside it (one self-contained page: the
tables, each claim's value against the swept parameter with seeds as error bars, and the
runs' learning curves overlaid from their `metrics.csv`, plots embedded) and the plots as
PNG files (`report_<experiment>_<scale>*.png`). The HTML and plots: `core/report_html.py`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# how a run was started, not what it computes: never a "setting" (the seed is the replicate axis)
NOT_SETTINGS = {"seed", "run_dir", "resume", "cache_dir", "threads"}


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


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"optim": {"lr": 1e-3}} -> {"optim.lr": 1e-3}; lists become JSON text."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = json.dumps(v) if isinstance(v, list) else v
    return out


def settings_of(card: dict) -> dict[str, Any]:
    """The run's config as dotted keys, minus what is not a setting (and the run's own paths)."""
    run_dir = str(card.get("config", {}).get("run_dir") or card.get("_path", ""))
    flat = flatten(card.get("config", {}))
    return {k: v for k, v in flat.items()
            if k not in NOT_SETTINGS and not (run_dir and isinstance(v, str) and run_dir in v)}


def varying_keys(cards: list[dict]) -> list[str]:
    """Config keys whose value is not the same in every card (in config order)."""
    flats = [settings_of(c) for c in cards]
    keys: list[str] = []
    for f in flats:
        keys += [k for k in f if k not in keys]
    return [k for k in keys if len({json.dumps(f.get(k), sort_keys=True) for f in flats}) > 1]


def _sort_key(v: Any) -> tuple:
    return (0, v, "") if isinstance(v, int | float) and not isinstance(v, bool) else (1, 0, str(v))


@dataclass
class ClaimStats:
    statement: str
    comparison: str
    threshold: float
    values: list[float] = field(default_factory=list)
    passed: list[bool | None] = field(default_factory=list)

    def value_text(self) -> str:
        return fmt(self.values)

    def pass_rate(self) -> str:
        applicable = [p for p in self.passed if p is not None]
        return f"{sum(applicable)}/{len(applicable)}" if applicable else "n/a"


@dataclass
class Setting:
    """The runs (seeds) of one setting: `values` = the varying keys' values."""

    values: dict[str, Any]
    cards: list[dict] = field(default_factory=list)

    @property
    def label(self) -> str:
        return ", ".join(f"{k}={fmt_value(v)}" for k, v in self.values.items()) or "all runs"

    @property
    def seeds(self) -> list[int]:
        return sorted(c["seed"] for c in self.cards)

    def claims(self) -> dict[str, ClaimStats]:
        out: dict[str, ClaimStats] = {}
        for card in sorted(self.cards, key=lambda c: c["seed"]):
            for c in card["claims"]:
                s = out.setdefault(c["id"], ClaimStats(c["statement"], c["comparison"], c["threshold"]))
                if c["value"] is not None:
                    s.values.append(float(c["value"]))
                s.passed.append(c["passed"])
        return out

    def passed_every_claim(self) -> int:
        return sum(1 for c in self.cards if c["passed"])


@dataclass
class Group:
    experiment: str
    scale: str
    keys: list[str]  # the settings that differ between its runs
    settings: list[Setting]

    @property
    def cards(self) -> list[dict]:
        return [c for s in self.settings for c in s.cards]

    @property
    def slug(self) -> str:
        return f"{self.experiment}_{self.scale}"


def group_runs(cards: list[dict]) -> list[Group]:
    """(experiment, scale) groups, each split into settings by the keys that vary inside it."""
    by_exp: dict[tuple[str, str], list[dict]] = {}
    for card in cards:
        by_exp.setdefault((card["experiment"], card["scale"]), []).append(card)
    groups = []
    for (exp, scale), members in by_exp.items():
        keys = varying_keys(members)
        settings: dict[str, Setting] = {}
        for card in members:
            flat = settings_of(card)
            values = {k: flat.get(k) for k in keys}
            settings.setdefault(json.dumps(values, sort_keys=True, default=str), Setting(values)).cards.append(card)
        ordered = sorted(settings.values(), key=lambda s: [_sort_key(s.values[k]) for k in keys])
        groups.append(Group(exp, scale, keys, ordered))
    return groups


def fmt(values: list[float]) -> str:
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.4g}"
    return f"{statistics.mean(values):.4g} ± {statistics.stdev(values):.2g}"


def fmt_value(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def claim_table(setting: Setting) -> list[str]:
    lines = ["| claim | value (mean ± std) | threshold | pass rate |", "|---|---|---|---|"]
    for cid, s in setting.claims().items():
        lines.append(f"| {cid} | {s.value_text()} | {s.comparison} {s.threshold:g} | {s.pass_rate()} |")
    return lines


def settings_table(group: Group) -> list[str]:
    """One row per setting: its values, seeds, each claim's mean ± std (pass rate), verdicts."""
    claim_ids = list(group.settings[0].claims())
    head = [*group.keys, "seeds", *claim_ids, "passed every claim"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in group.settings:
        stats = s.claims()
        cells = [fmt_value(s.values[k]) for k in group.keys] + [",".join(map(str, s.seeds))]
        cells += [f"{stats[c].value_text()} ({stats[c].pass_rate()})" if c in stats else "—" for c in claim_ids]
        cells.append(f"{s.passed_every_claim()}/{len(s.cards)}")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def markdown(cards: list[dict]) -> str:
    lines = []
    for g in group_runs(cards):
        n, ok = len(g.cards), sum(1 for c in g.cards if c["passed"])
        lines += [f"## {g.experiment} — scale={g.scale} — {n} run(s), {ok}/{n} passed every claim", ""]
        if len(g.settings) == 1:
            lines += [*claim_table(g.settings[0]), ""]
            continue
        lines += [f"{len(g.settings)} settings (config keys that differ: {', '.join(f'`{k}`' for k in g.keys)}); "
                  "value = mean ± std over seeds (pass rate)", "", *settings_table(g), ""]
        for s in g.settings:
            lines += [f"### {s.label} — {len(s.cards)} run(s) (seeds {', '.join(map(str, s.seeds))}), "
                      f"{s.passed_every_claim()}/{len(s.cards)} passed every claim", "", *claim_table(s), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    from toyrepro.core.report_html import html_page, plot_group

    ap = argparse.ArgumentParser(prog="toyrepro report", description=__doc__.splitlines()[0])
    ap.add_argument("dirs", nargs="+", help="run or sweep directories (searched recursively)")
    ap.add_argument("--out", default="report.md", help="markdown file to write (the HTML page and plots go beside it)")
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
    groups = group_runs(cards)
    plots = {g.slug: plot_group(g, out.parent) for g in groups}
    page = out.with_suffix(".html")
    page.write_text(html_page(groups, plots))
    print(text)
    print(f"wrote {out}, {page} and {sum(len(p) for p in plots.values())} plot(s)")


if __name__ == "__main__":
    main()
