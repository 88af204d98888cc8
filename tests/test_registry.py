"""The experiment registry: core finds experiments (ours and a user's installed package's),
and the schema, the CLI, `--help` and the Python API all come from it."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import toyrepro
from toyrepro.core import experiment as registry

from conftest import REPO, cli_env, run_dirs

PLUGIN = '''
"""A user's own experiment, in their own package: one claim, one config section."""
from dataclasses import dataclass

from toyrepro.core.checks import check
from toyrepro.core.experiment import Experiment
from toyrepro.core.scorecard import Claim


@dataclass
class CountConfig:
    n: int = 3  # how many ones to add up

    def validate(self, p: str) -> None:
        check(self.n >= 1, f"{p}.n", ">= 1", self.n)


def claims(cfg):
    return [Claim("sum_is_n", "adding n ones gives n (value = sum - n)", "arithmetic", "<=", 0.0)]


def run(ctx):
    total = sum(1 for _ in range(ctx.cfg.count.n))
    ctx.log_metrics("count", {"count/total": total})
    ctx.card.record("sum_is_n", abs(total - ctx.cfg.count.n), f"sum {total}")


EXPERIMENT = Experiment(name="count_ones", summary="a trivial plugin experiment: adding n ones gives n",
                        paper="none (a test)", run=run, claims=claims, section="count", schema=CountConfig,
                        trained_stages=0, config_dir="pkg://count_plugin.configs")
'''


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory) -> Path:
    """A package installed the way pip installs one: importable, with an entry point in its
    dist-info (`[toyrepro.experiments] count_ones = count_plugin:EXPERIMENT`)."""
    root = tmp_path_factory.mktemp("site")
    pkg = root / "count_plugin"
    (pkg / "configs" / "experiment").mkdir(parents=True)
    (pkg / "__init__.py").write_text(PLUGIN)
    (pkg / "configs" / "__init__.py").write_text("")
    (pkg / "configs" / "experiment" / "count_ones.yaml").write_text(
        "# @package _global_\nname: count_ones\ncount:\n  n: 4\n")
    info = root / "count_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: count-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[toyrepro.experiments]\ncount_ones = count_plugin:EXPERIMENT\n")
    return root


def run_with_plugin(args: list[str], plugin_path: Path, cwd: Path, cache: Path, python: str | None = None):
    env = cli_env(cache) | {"PYTHONPATH": str(plugin_path), "COLUMNS": "80"}
    cmd = [sys.executable, "-c", python] if python else [sys.executable, "-m", "toyrepro", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_builtin_experiments_are_found_with_their_configs():
    exps = toyrepro.experiments()
    assert {"gpt", "rlhf", "toolformer", "lre", "lre_smollm2"} <= set(exps)
    for name, exp in exps.items():
        assert (REPO / "configs" / "experiment" / f"{name}.yaml").exists() or exp.config_dir, name
        assert exp.summary and exp.paper and exp.writeup, name
        assert (REPO / exp.writeup).exists(), exp.writeup
        assert callable(exp.run_fn()) and callable(exp.claims_fn()), name


def test_core_imports_no_experiment_folder():
    folders = {p.name for p in (REPO / "src" / "toyrepro").iterdir() if p.is_dir() and p.name not in ("core", "__pycache__")}
    for f in (REPO / "src" / "toyrepro" / "core").glob("*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                parts = name.split(".")
                assert not (parts[0] == "toyrepro" and len(parts) > 1 and parts[1] in folders), \
                    f"core/{f.name} imports {name}"


def test_a_plugin_experiment_is_listed_composed_run_and_shown(plugin_path, tmp_path, cache_dir):
    helped = run_with_plugin(["--help"], plugin_path, tmp_path, cache_dir)
    assert helped.returncode == 0, helped.stderr
    assert "count_ones" in helped.stdout and "adding n ones gives n" in helped.stdout
    assert all(len(line) <= 80 for line in helped.stdout.splitlines()), "the help fits 80 columns"

    options = run_with_plugin(["experiment=count_ones", "--help"], plugin_path, tmp_path, cache_dir)
    assert options.returncode == 0, options.stderr
    assert "count.n = 4  — how many ones to add up" in options.stdout
    assert "sum_is_n <= 0" in options.stdout

    proc = run_with_plugin(["experiment=count_ones", "scale=smoke", "logger=csv", "count.n=5"], plugin_path,
                           tmp_path, cache_dir)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (run_dir,) = run_dirs(tmp_path)
    assert run_dir.parent.name == "count_ones"
    card = json.loads((run_dir / "scorecard.json").read_text())
    assert card["passed"] and card["claims"][0]["value"] == 0.0 and card["claims"][0]["note"] == "sum 5"
    assert card["config"]["count"] == {"n": 5}

    bad = run_with_plugin(["experiment=count_ones", "scale=smoke", "count.n=0"], plugin_path, tmp_path, cache_dir)
    assert bad.returncode == 2 and "config error: count.n must be >= 1 (got 0)" in bad.stderr

    api = run_with_plugin([], plugin_path, tmp_path, cache_dir, python=textwrap.dedent(f"""
        import toyrepro
        card = toyrepro.run("count_ones", scale="smoke", count__n=7, logger="csv", run_dir={str(tmp_path / 'api')!r})
        print("VALUE", card.claim("sum_is_n").note, card.passed)
    """))
    assert api.returncode == 0, api.stderr[-2000:]
    assert "VALUE sum 7 True" in api.stdout
    assert (tmp_path / "api" / "scorecard.json").exists() and (tmp_path / "api" / ".hydra" / "config.yaml").exists()
    # nothing of the plugin is in the suite: its code, configs and runs live outside the repository
    mentions = subprocess.run(["git", "grep", "-l", "count_ones"], cwd=REPO, capture_output=True, text=True).stdout
    assert mentions.split() == ["tests/test_registry.py"]
    assert not (REPO / "configs" / "experiment" / "count_ones.yaml").exists() and not (REPO / "runs" / "count_ones").exists()


def test_duplicate_experiment_names_are_refused(monkeypatch):
    exp = toyrepro.experiments()["gpt"]
    monkeypatch.setattr(registry, "_plugins", lambda: [(exp, "entry point gpt = my_pkg:EXPERIMENT")])
    registry.experiments.cache_clear()
    try:
        with pytest.raises(registry.RegistryError, match="experiment name 'gpt' is declared twice: by "
                           "toyrepro.gpt.EXPERIMENT and by entry point gpt = my_pkg:EXPERIMENT; rename one"):
            registry.experiments()
    finally:
        registry.experiments.cache_clear()


def test_suite_help_lists_every_experiment_without_a_traceback(tmp_path, cache_dir):
    env = cli_env(cache_dir) | {"COLUMNS": "80"}
    proc = subprocess.run([sys.executable, "-m", "toyrepro", "--help"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr
    for name in toyrepro.experiments():
        assert f"  {name} " in proc.stdout
    for common in ("scale=", "trainer=", "logger=", "seed=", "-m ", "scorecard.json"):
        assert common in proc.stdout


def test_experiment_help_shows_documented_options(tmp_path, cache_dir):
    env = cli_env(cache_dir) | {"COLUMNS": "100"}
    proc = subprocess.run([sys.executable, "-m", "toyrepro", "experiment=rlhf", "--help"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "rlhf.dpo.beta = 0.1" in proc.stdout
    assert "rm_accuracy" in proc.stdout and "experiments/rlhf/README.md" in proc.stdout
    unknown = subprocess.run([sys.executable, "-m", "toyrepro", "experiment=nope", "--help"], cwd=tmp_path,
                             env=env, capture_output=True, text=True, timeout=120)
    assert unknown.returncode == 2
    known = ", ".join(sorted(toyrepro.experiments()))
    assert unknown.stderr.strip() == f"error: config error: no experiment named 'nope'; known: {known}"


def test_a_missing_section_is_one_line(tmp_path, cache_dir):
    env = cli_env(cache_dir)
    proc = subprocess.run([sys.executable, "-m", "toyrepro", "experiment=gpt", "scale=smoke", "gpt=null"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("error: config error: experiment gpt needs its `gpt:` config section, which "
                                   "configs/experiment/gpt.yaml provides; select it with experiment=gpt")
    assert run_dirs(tmp_path) == []


def test_python_api_returns_the_cli_scorecard(tmp_path, cache_dir):
    """`toyrepro.run` (Hydra's compose API) and the CLI give the same scorecard values."""
    code = textwrap.dedent(f"""
        import json, toyrepro
        card = toyrepro.run("gpt", scale="smoke", seed=1, logger="csv", run_dir={str(tmp_path / 'api')!r})
        print(json.dumps({{c.id: c.value for c in card.claims}}))
    """)
    api = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=cli_env(cache_dir),
                         capture_output=True, text=True, timeout=300)
    assert api.returncode == 0, api.stderr[-2000:]
    values = json.loads(api.stdout.strip().splitlines()[-1])
    cli = subprocess.run([sys.executable, "-m", "toyrepro", "experiment=gpt", "scale=smoke", "seed=1", "logger=csv",
                          f"hydra.run.dir={tmp_path / 'cli'}"], cwd=tmp_path, env=cli_env(cache_dir),
                         capture_output=True, text=True, timeout=300)
    assert cli.returncode == 0, cli.stderr[-2000:]
    card = json.loads((tmp_path / "cli" / "scorecard.json").read_text())
    assert values == {c["id"]: c["value"] for c in card["claims"]}
    assert os.path.exists(tmp_path / "api" / "console.log")
    bad = subprocess.run([sys.executable, "-c", "import toyrepro; toyrepro.run('gpt', scale='smoke', model__n_layer=-1)"],
                         cwd=tmp_path, env=cli_env(cache_dir), capture_output=True, text=True, timeout=120)
    assert "ConfigError: model.n_layer must be >= 1 (got -1)" in bad.stderr


def _baseline():
    """The config before any experiment YAML: the schema with config.yaml's default groups."""
    from omegaconf import OmegaConf

    from toyrepro.core.config import schema_class

    base = OmegaConf.structured(schema_class())
    for group, choice in (("model", "gpt_tiny"), ("trainer", "cpu")):
        base = OmegaConf.merge(base, {group: OmegaConf.load(REPO / "configs" / group / f"{choice}.yaml")})
    return base


@pytest.mark.parametrize("name", sorted(toyrepro.experiments()))
def test_experiment_yaml_holds_deltas_only(name):
    """Every value an experiment YAML sets differs from what it would be without it."""
    import yaml
    from omegaconf import OmegaConf

    path = REPO / "configs" / "experiment" / f"{name}.yaml"
    base, sections = _baseline(), registry.sections()
    repeated = []

    def walk(node: dict, prefix: str) -> None:
        for key, value in node.items():
            p = f"{prefix}.{key}" if prefix else key
            if isinstance(value, dict) and value:
                walk(value, p)
                continue
            top, _, rest = p.partition(".")
            default = (OmegaConf.select(OmegaConf.structured(sections[top]), rest) if top in sections and rest
                       else OmegaConf.select(base, p))
            if isinstance(default, type(OmegaConf.create())) or hasattr(default, "_content"):
                default = OmegaConf.to_container(default)
            if default == value and p != "name":
                repeated.append(f"{p}: {value!r}")

    walk(yaml.safe_load(path.read_text()) or {}, "")
    assert not repeated, f"{path.name} repeats defaults (remove them): {repeated}"
