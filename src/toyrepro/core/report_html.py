"""The plots and the self-contained HTML page of `toyrepro report` (core/report.py groups the runs).

Per (experiment, scale) group:
- `report_<exp>_<scale>.png`: each claim's value against the swept parameter (the first
  key that differs; one line per value of the others), mean over seeds with their std as
  error bars, every run as a dot, the threshold dashed; a group of one setting gets one bar
  per claim instead;
- `report_<exp>_<scale>_curves.png`: every run's logged losses from its `metrics.csv`
  against the step, coloured by setting;
- the HTML page: the settings table, the plots (base64, so the page is one file that can be
  mailed or attached to a W&B report), and one row per run (name, setting, seed, values).
"""

from __future__ import annotations

import base64
import csv
import html
import math
import statistics
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

if TYPE_CHECKING:
    from toyrepro.core.report import Group

MAX_CURVES = 4  # loss columns plotted per group


def _numeric(values: list) -> bool:
    return all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)


def claims_figure(group: Group) -> plt.Figure:
    from toyrepro.core.report import fmt_value

    claim_ids = list(group.settings[0].claims())
    fig, axes = plt.subplots(1, len(claim_ids), figsize=(4 * len(claim_ids), 3.4), squeeze=False)
    if len(group.settings) == 1:
        fig.clf()
        ax = fig.add_subplot(1, 1, 1)
        stats = group.settings[0].claims()
        for i, s in enumerate(stats.values()):
            if s.values:
                ax.bar(i, statistics.mean(s.values), color="#9bd", yerr=statistics.pstdev(s.values))
                ax.scatter([i] * len(s.values), s.values, color="k", s=10, zorder=3)
            ax.hlines(s.threshold, i - 0.4, i + 0.4, colors="r", linestyles="--")
        ax.set_xticks(range(len(stats)), list(stats), rotation=20, ha="right")
        ax.set_title(f"{group.experiment} (scale={group.scale}): value per claim, red = threshold")
        return fig
    x_key, others = group.keys[0], group.keys[1:]
    xs_all = [s.values[x_key] for s in group.settings]
    numeric = _numeric(xs_all)
    categories = sorted({fmt_value(v) for v in xs_all})
    log_x = numeric and min(xs_all) > 0 and max(xs_all) / min(xs_all) >= 10
    lines: dict[str, list] = {}
    for s in group.settings:
        lines.setdefault(", ".join(f"{k}={fmt_value(s.values[k])}" for k in others), []).append(s)
    for ax, cid in zip(axes[0], claim_ids):
        threshold = None
        for label, settings in lines.items():
            xs, means, stds = [], [], []
            for s in settings:
                st = s.claims().get(cid)
                if st is None or not st.values:
                    continue
                threshold = st.threshold
                x = s.values[x_key] if numeric else categories.index(fmt_value(s.values[x_key]))
                xs.append(x)
                means.append(statistics.mean(st.values))
                stds.append(statistics.pstdev(st.values))
                ax.scatter([x] * len(st.values), st.values, color="k", s=8, zorder=3)
            ax.errorbar(xs, means, yerr=stds, marker="o", capsize=4, label=label or None)
        if threshold is not None and math.isfinite(threshold):
            ax.axhline(threshold, color="r", linestyle="--", linewidth=1)
        if log_x:
            ax.set_xscale("log")
        if not numeric:
            ax.set_xticks(range(len(categories)), categories)
        ax.set_xlabel(x_key)
        ax.set_title(cid, fontsize=10)
        if others:
            ax.legend(fontsize=7)
    fig.suptitle(f"{group.experiment} (scale={group.scale}): claim value vs {x_key} (mean ± std over seeds, "
                 "dots = runs, red = threshold)", fontsize=10)
    fig.tight_layout()
    return fig


def read_curves(run_dir: Path) -> dict[str, tuple[list[float], list[float]]]:
    """{column: (steps, values)} of every loss column in `metrics.csv` (stage-prefixed names)."""
    path = run_dir / "metrics.csv"
    curves: dict[str, tuple[list[float], list[float]]] = {}
    if not path.exists():
        return curves
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            for col, v in row.items():
                if col and col.endswith("loss") and v not in ("", None) and row.get("step") not in ("", None):
                    steps, values = curves.setdefault(col, ([], []))
                    steps.append(float(row["step"]))
                    values.append(float(v))
    return curves


def curves_figure(group: Group) -> plt.Figure | None:
    runs = [(s, c, read_curves(Path(c["_path"]))) for s in group.settings for c in s.cards]
    columns: list[str] = []
    for _, _, curves in runs:
        columns += [k for k in curves if k not in columns]
    columns = sorted(columns, key=lambda k: ("val" not in k, k))[:MAX_CURVES]
    if not columns:
        return None
    fig, axes = plt.subplots(1, len(columns), figsize=(4.5 * len(columns), 3.4), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    styles = ["-", "--", ":", "-."]
    for ax, col in zip(axes[0], columns):
        for i, setting in enumerate(group.settings):
            for j, card in enumerate(sorted(setting.cards, key=lambda c: c["seed"])):
                curve = next(cv for s, c, cv in runs if c is card).get(col)
                if curve:
                    ax.plot(*curve, color=colours[i % len(colours)], linestyle=styles[j % len(styles)],
                            linewidth=1, label=f"{setting.label} seed {card['seed']}")
        ax.set_title(col, fontsize=10)
        ax.set_xlabel("step")
    axes[0][0].legend(fontsize=6)
    fig.suptitle(f"{group.experiment} (scale={group.scale}): learning curves of every run (metrics.csv)", fontsize=10)
    fig.tight_layout()
    return fig


def plot_group(group: Group, out_dir: Path) -> list[Path]:
    paths = []
    for suffix, fig in (("", claims_figure(group)), ("_curves", curves_figure(group))):
        if fig is None:
            continue
        path = out_dir / f"report_{group.slug}{suffix}.png"
        fig.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(fig)
        paths.append(path)
    return paths


def _table(head: list[str], rows: list[tuple[str, list[str]]], cls: str) -> str:
    """rows: (data-label, cells)."""
    out = [f'<table class="{cls}"><thead><tr>' + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr></thead><tbody>"]
    for label, cells in rows:
        out.append(f'<tr class="{cls[:-1]}" data-label="{html.escape(label)}">'
                   + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    return "\n".join(out) + "</tbody></table>"


def html_page(groups: list[Group], plots: dict[str, list[Path]]) -> str:
    from toyrepro.core.report import fmt_value

    body = []
    for g in groups:
        n, ok = len(g.cards), sum(1 for c in g.cards if c["passed"])
        body.append(f'<section id="{html.escape(g.slug)}"><h2>{html.escape(g.experiment)} — scale={html.escape(g.scale)} '
                    f"— {n} run(s), {ok}/{n} passed every claim</h2>")
        claim_stats = g.settings[0].claims()
        body.append("<ul class=\"claims\">" + "".join(
            f"<li><b>{html.escape(cid)}</b> ({html.escape(s.comparison)} {s.threshold:g}): {html.escape(s.statement)}</li>"
            for cid, s in claim_stats.items()) + "</ul>")
        keys = g.keys or []
        head = [*keys, "runs", "seeds", *claim_stats, "passed every claim"]
        rows = []
        for s in g.settings:
            stats = s.claims()
            cells = [fmt_value(s.values[k]) for k in keys] + [str(len(s.cards)), ",".join(map(str, s.seeds))]
            cells += [f"{stats[c].value_text()} ({stats[c].pass_rate()})" if c in stats else "—" for c in claim_stats]
            cells.append(f"{s.passed_every_claim()}/{len(s.cards)}")
            rows.append((s.label, cells))
        body.append(f"<h3>Settings ({len(g.settings)}): mean ± std over seeds (pass rate)</h3>")
        body.append(_table(head, rows, "settings"))
        for p in plots.get(g.slug, []):
            data = base64.b64encode(p.read_bytes()).decode()
            body.append(f'<figure><img alt="{html.escape(p.stem)}" src="data:image/png;base64,{data}"></figure>')
        run_rows = []
        for s in g.settings:
            for c in sorted(s.cards, key=lambda c: c["seed"]):
                values = {x["id"]: x["value"] for x in c["claims"]}
                run_rows.append((Path(c["_path"]).name, [
                    Path(c["_path"]).name, s.label, str(c["seed"]),
                    *[("—" if values.get(cid) is None else f"{values[cid]:.4g}") for cid in claim_stats],
                    "yes" if c["passed"] else "no"]))
        body.append(f"<h3>Runs ({len(run_rows)})</h3>")
        body.append(_table(["run", "setting", "seed", *claim_stats, "passed"], run_rows, "runs"))
        body.append("</section>")
    style = ("body{font-family:sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse;margin:1em 0}"
             "td,th{border:1px solid #ccc;padding:4px 8px;font-size:14px}th{background:#eef}img{max-width:100%}")
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>toyrepro report</title>"
            f"<style>{style}</style></head><body><h1>toyrepro report</h1>\n" + "\n".join(body) + "\n</body></html>\n")
