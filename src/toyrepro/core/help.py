"""`toyrepro --help` and `toyrepro experiment=<name> --help`, written from the registry.

The suite's help lists every registered experiment (its one-line summary and paper), the
common overrides with the choices found in `configs/`, and where results go. An
experiment's help composes its config (with any overrides given) and shows its claims at
that scale and every key of its section with the current value and the meaning written
beside the field in its dataclass. Nothing here is a hand-kept list.
"""

from __future__ import annotations

import inspect
import re
import shutil
import textwrap
from dataclasses import fields, is_dataclass
from pathlib import Path

from toyrepro.core import experiment as registry

WIDTH = min(100, shutil.get_terminal_size((80, 24)).columns)


def _choices(config_dir: Path, group: str) -> str:
    return "|".join(sorted(p.stem for p in (config_dir / group).glob("*.yaml")))


def suite_help(config_dir: Path) -> str:
    exps = registry.experiments()
    w = max(len(n) for n in exps) + 2
    lines = [
        "toyrepro — toy-scale, honest reproductions of language-model papers. Each run",
        "ends with a scorecard: the paper's claim, the value this run measured, pass or",
        "fail.",
        "",
        "usage:",
        "  toyrepro experiment=NAME [scale=...] [key=value ...]   run one experiment",
        "  toyrepro experiment=NAME --help                      its options and claims",
        "  toyrepro -m experiment=NAME seed=0,1,2 [hydra/launcher=slurm]   a sweep",
        "  toyrepro report RUN_DIR... [--out FILE]              compare finished runs",
        "",
        "experiments:",
    ]
    for name, exp in exps.items():
        lines += textwrap.wrap(exp.summary, WIDTH, initial_indent=f"  {name:<{w}}", subsequent_indent=" " * (w + 2))
        lines += textwrap.wrap(exp.paper, WIDTH, initial_indent=" " * (w + 2), subsequent_indent=" " * (w + 4))
    lines += [
        "",
        "common overrides:",
        "  scale=smoke|quick|full   seconds (what the tests run) | minutes on 2 CPU",
        "      cores, every claim not marked full-only must pass (default) | one GPU",
        f"  trainer={_choices(config_dir, 'trainer')}   logger={_choices(config_dir, 'logger')}",
        "  seed=N   threads=N (torch CPU threads; 0 = one per core)   resume=true",
        "  workers=N   an experiment's independent stages in N processes at a time",
        f"  -m ... hydra/launcher={_choices(config_dir, 'hydra/launcher')}   sweep={_choices(config_dir, 'sweep')}",
        "  --cfg job   print the composed config and stop",
        "",
        "results:",
        "  runs/<experiment>/<date>_<time>/: scorecard.json (written last), metrics.csv,",
        "  figures/, checkpoints/, console.log, tensorboard/, wandb/ (offline unless",
        "  logged in). Dashboards: tensorboard --logdir runs;",
        "  wandb sync runs/*/*/wandb/offline-run-*",
    ]
    return "\n".join(lines) + "\n"


def field_docs(cls: type) -> dict[str, str]:
    """Field name -> the comment written beside it (or on the lines just above it)."""
    docs: dict[str, str] = {}
    above: list[str] = []
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return docs
    for line in source.splitlines():
        comment = re.match(r"\s*#\s?(.*)$", line)
        if comment:
            above.append(comment.group(1).strip())
            continue
        m = re.match(r"\s+(\w+)\s*:\s*[^#]*?(?:#\s*(.*))?$", line)
        if m and not line.lstrip().startswith(("def ", "@", '"', "'")):
            docs[m.group(1)] = m.group(2) or " ".join(above)
        above = []
    return docs


def _options(obj, prefix: str) -> list[tuple[str, object, str]]:
    docs = field_docs(type(obj))
    out = []
    for f in fields(obj):
        value = getattr(obj, f.name)
        if is_dataclass(value):
            out += _options(value, f"{prefix}.{f.name}")
        else:
            out.append((f"{prefix}.{f.name}", value, docs.get(f.name, "")))
    return out


def experiment_help(name: str, overrides: list[str], config_dir: Path) -> str:
    from hydra import compose, initialize_config_dir

    from toyrepro.core import config as schema

    exp = registry.get(name)
    with initialize_config_dir(str(config_dir), version_base="1.3"):
        dcfg = compose("config", overrides=[*overrides, "run_dir=-"])  # no run dir: nothing runs
    cfg = schema.validate(dcfg)
    lines = textwrap.wrap(f"{name}: {exp.summary}", WIDTH) + textwrap.wrap(f"paper: {exp.paper}", WIDTH)
    if exp.writeup:
        lines.append(f"write-up: {exp.writeup}")
    lines += ["", f"claims (scale={cfg.scale.name}; 'n/a' = measured, not scored at this scale):"]
    for c in exp.claims_fn()(cfg):
        applies = "" if cfg.scale.name in c.scales else "  [n/a]"
        lines += textwrap.wrap(f"{c.id} {c.comparison} {c.threshold:g}{applies}: {c.statement}", WIDTH,
                               initial_indent="  ", subsequent_indent="      ")
    if exp.section and getattr(cfg, exp.section, None) is not None:
        lines += ["", f"options (key = value at scale={cfg.scale.name}; set with key=value):"]
        for key, value, doc in _options(getattr(cfg, exp.section), exp.section):
            lines += textwrap.wrap(f"{key} = {value!r}" + (f"  — {doc}" if doc else ""), WIDTH,
                                   initial_indent="  ", subsequent_indent="      ")
    lines += ["", "shared sections: model.*, optim.*, trainer.* (toyrepro experiment=NAME --cfg job shows",
              "them all); common overrides: toyrepro --help"]
    return "\n".join(lines) + "\n"


def print_help(argv: list[str]) -> None:
    from toyrepro.cli import CONFIG_DIR, _with_search_path

    rest = [a for a in argv if a not in ("--help", "-h")]
    chosen = [a.split("=", 1)[1] for a in rest if a.startswith("experiment=")]
    if not chosen:
        print(suite_help(Path(CONFIG_DIR)), end="")
        return
    from toyrepro.core.checks import ConfigError

    overrides = [a for a in _with_search_path(rest) if not a.startswith("-")]
    try:
        print(experiment_help(chosen[-1], overrides, Path(CONFIG_DIR)), end="")
    except ConfigError as e:
        import sys

        print(f"error: config error: {e}", file=sys.stderr)
        sys.exit(2)


TABLE_BEGIN = "<!-- experiments: generated by `make docs` from the registry; do not edit by hand -->"
TABLE_END = "<!-- /experiments -->"


def experiments_markdown() -> str:
    """The README's experiment table, one row per registered experiment."""
    rows = ["| experiment | what it reproduces | paper | write-up |", "|---|---|---|---|"]
    for name, exp in registry.experiments().items():
        link = f"[{exp.writeup.rsplit('/', 2)[-2] if '/' in exp.writeup else exp.writeup}]({exp.writeup})" \
            if exp.writeup else "—"
        rows.append(f"| `{name}` | {exp.summary} | {exp.paper} | {link} |")
    return "\n".join(rows)


def update_readme(path: Path) -> bool:
    """Rewrite the table between the markers in `path`; True if it changed."""
    text = path.read_text()
    if TABLE_BEGIN not in text or TABLE_END not in text:
        raise SystemExit(f"error: {path} has no experiment-table markers ({TABLE_BEGIN} ... {TABLE_END})")
    head, rest = text.split(TABLE_BEGIN, 1)
    _, tail = rest.split(TABLE_END, 1)
    new = f"{head}{TABLE_BEGIN}\n{experiments_markdown()}\n{TABLE_END}{tail}"
    if new != text:
        path.write_text(new)
    return new != text


if __name__ == "__main__":  # python -m toyrepro.core.help README.md  (make docs)
    import sys

    for arg in sys.argv[1:]:
        print(f"{arg}: {'updated' if update_readme(Path(arg)) else 'up to date'}")
