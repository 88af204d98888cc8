"""The sweep path's fit step: read the points a `scaling_point` multirun left in its sweep dir.

`toyrepro -m experiment=scaling_point sweep=scaling_grid [hydra/launcher=local|slurm]` runs one
job per point; each job's run dir holds `point.json` (grid.write_point) and its resolved config.
`toyrepro experiment=scaling scaling.from_sweep=<sweep dir>` then reads them here instead of
training, and fits and scores exactly as the one-process run does. A point is accepted only
if the job that trained it had this run's seed and the same settings of everything that
determines a point (model, optimiser, trainer, the `scaling:` grid and data), so a sweep of
another grid or seed is refused rather than mixed in.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from toyrepro.core.checks import UserError

# the `scaling:` keys that do not change what a point's training produces
NOT_TRAINING = ("point", "from_sweep", "holdout", "huber_delta", "lbfgs_starts", "bootstrap", "bootstrap_starts")


def training_settings(config: dict) -> dict:
    """The parts of a resolved config that determine every point's result."""
    scaling = {k: v for k, v in config["scaling"].items() if k not in NOT_TRAINING}
    trainer = {k: config["trainer"][k] for k in ("precision", "gradient_clip_val", "limit_val_batches")}
    return {"seed": config["seed"], "threads": config["threads"], "model": config["model"],
            "optim": config["optim"], "trainer": trainer, "scaling": scaling}


def read_sweep(sweep_dir: str | Path, config: dict, n_points: int) -> list[dict]:
    """The `n_points` point records of `sweep_dir`, by index; UserError if any is missing or
    was trained with other settings than `config` (this run's resolved config)."""
    root = Path(sweep_dir)
    if not root.is_dir():
        raise UserError(f"scaling.from_sweep={sweep_dir}: no such directory; pass the sweep dir of a "
                        "`toyrepro -m experiment=scaling_point ...` multirun (runs/scaling_point/<date>_sweep)")
    want = training_settings(config)
    found: dict[int, dict] = {}
    for path in sorted(root.rglob("point.json")):
        job_config = yaml.safe_load((path.parent / ".hydra" / "config.yaml").read_text())
        theirs = training_settings(job_config)
        if theirs != want:
            diff = sorted(k for k in want if want[k] != theirs.get(k))
            raise UserError(f"{path.parent} was trained with other settings ({', '.join(diff)} differ from this "
                            "run's); rerun the fit with the sweep's overrides")
        record = json.loads(path.read_text())
        if record["index"] in found:
            raise UserError(f"{sweep_dir} holds point {record['index']} twice; keep one sweep per directory")
        found[record["index"]] = record
    missing = [i for i in range(n_points) if i not in found]
    if missing:
        raise UserError(f"{sweep_dir} lacks points {missing} of this grid's {n_points} (0..{n_points - 1}); "
                        "run them (scaling.point=<index>) or wait for the sweep to finish")
    return [found[i] for i in range(n_points)]
