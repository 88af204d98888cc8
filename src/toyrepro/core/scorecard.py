"""The scorecard: each paper claim, the value this run measured, and whether it held.

An experiment declares its claims up front (`Claim`: id, statement, source, comparison,
threshold) and records one measured value per claim. `Scorecard.write()` produces
`scorecard.json`:

    {"experiment", "seed", "scale", "config",
     "claims": [{"id", "statement", "source", "value", "threshold", "passed", ...}],
     "passed"}

A claim may apply only at some scales (`scales=("full",)`); elsewhere it is still
measured and shown, with `passed: null`, and does not count towards the verdict. A claim
with no measured value fails: nothing is ever assumed to hold.
"""

from __future__ import annotations

import io
import json
import math
import operator
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from toyrepro.core.io import atomic_write_text

COMPARISONS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}


QF = ("quick", "full")  # `scales` of a claim scored at quick and full (smoke only measures it)


@dataclass
class Claim:
    id: str
    statement: str  # what the paper claims, in words
    source: str  # paper, section / table / figure
    comparison: str  # one of COMPARISONS: value <comparison> threshold passes
    threshold: float
    scales: tuple[str, ...] = ("smoke", "quick", "full")  # where the claim must pass
    value: float | None = None
    note: str = ""  # context printed beside the value (baselines, units, ...)
    passed: bool | None = None

    def __post_init__(self) -> None:
        if self.comparison not in COMPARISONS:
            raise ValueError(f"claim {self.id}: comparison must be one of {list(COMPARISONS)}")


@dataclass
class Scorecard:
    experiment: str
    seed: int
    scale: str
    config: dict[str, Any] = field(default_factory=dict)
    claims: list[Claim] = field(default_factory=list)
    failure: str | None = None  # set when the run stopped early (e.g. a NaN loss)
    machine: dict[str, Any] = field(default_factory=dict)  # what it ran on (core/machine.py)

    def declare(self, claims: Iterable[Claim]) -> Scorecard:
        self.claims.extend(claims)
        return self

    def claim(self, claim_id: str) -> Claim:
        for c in self.claims:
            if c.id == claim_id:
                return c
        raise KeyError(f"no claim {claim_id!r}; declared: {[c.id for c in self.claims]}")

    def record(self, claim_id: str, value: float, note: str = "") -> None:
        c = self.claim(claim_id)
        c.value = float(value)
        c.note = note or c.note

    def evaluate(self) -> bool:
        for c in self.claims:
            applies = self.scale in c.scales
            if c.value is None or (isinstance(c.value, float) and math.isnan(c.value)):
                c.passed = False if applies else None
            else:
                ok = bool(COMPARISONS[c.comparison](c.value, c.threshold))
                c.passed = ok if applies else None
        return self.passed

    @property
    def passed(self) -> bool:
        if self.failure:
            return False
        return all(c.passed is not False for c in self.claims)

    def to_dict(self) -> dict[str, Any]:
        self.evaluate()
        return {
            "experiment": self.experiment,
            "seed": self.seed,
            "scale": self.scale,
            "config": self.config,
            "claims": [asdict(c) | {"scales": list(c.scales)} for c in self.claims],
            "failure": self.failure,
            "passed": self.passed,
            "machine": self.machine,
        }

    def write(self, run_dir: str | Path) -> Path:
        path = Path(run_dir) / "scorecard.json"
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2, default=str))
        return path

    def table(self) -> Table:
        """Four columns, so it reads in an 80-column terminal: the claim (its id, then its
        statement and source dimmed), the measured value (and its note), the threshold, the
        result. The JSON has every field."""
        self.evaluate()
        verdict = "[green]PASSED[/]" if self.passed else "[red]FAILED[/]"
        t = Table(title=f"scorecard: {self.experiment} (scale={self.scale}, seed={self.seed}) {verdict}",
                  show_lines=True)
        t.add_column("claim", overflow="fold", ratio=5)
        t.add_column("value", overflow="fold", ratio=3)
        t.add_column("pass if", no_wrap=True)
        t.add_column("result", no_wrap=True)
        for c in self.claims:
            value = "—" if c.value is None else f"{c.value:.4g}"
            if c.note:
                value += f"\n[dim]{c.note}[/]"
            result = {True: "[green]pass[/]", False: "[red]FAIL[/]", None: "[dim]n/a[/]"}[c.passed]
            t.add_row(f"[bold]{c.id}[/]\n[dim]{c.statement} ({c.source})[/]", value,
                      f"{c.comparison} {c.threshold:g}", result)
        caption = [f"[dim]n/a: measured, not scored at scale={self.scale}[/]"] if any(
            c.passed is None for c in self.claims) else []
        if self.failure:
            caption.append(f"[red]run stopped early: {self.failure}[/]")
        t.caption = "\n".join(caption) or None
        return t

    def print(self, console: Console | None = None) -> str:
        """Print the table; returns it as plain text (for the console log)."""
        import sys

        console = console or Console(width=None if sys.stdout.isatty() else 100)
        console.print(self.table())
        plain = Console(width=100, record=True, file=io.StringIO())
        plain.print(self.table())
        return plain.export_text()
