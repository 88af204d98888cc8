"""Cached stage artefacts: a multi-stage pipeline trains each shared stage once.

`cached_stage(cache_dir, stage, params, build)` returns the directory
`<cache_dir>/stages/<stage>-<hash(params)>`, calling `build(tmp_dir)` to fill it only when
it is not there yet. `params` must hold everything that determines the artefact (the
config of the stage *and* of the stages it consumes, the seed): a sweep over PPO's KL
target then reuses one SFT model and one reward model, while a new seed builds new ones.

Safe side by side: a file lock makes concurrent jobs wait for one builder, and the
directory is filled under a temporary name and renamed into place, so a reader never sees
a half-written artefact and a job killed mid-build leaves nothing behind. A `params.json`
inside records what made it.

`version` is the artefact's code version: bump it when the code that builds the artefact
changes what it produces (not its config), so old caches are not reused. Version 1 adds
nothing to the key, so artefacts cached before versions existed keep their hash.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from filelock import FileLock

from toyrepro.core.io import atomic_dir, config_hash

log = logging.getLogger("toyrepro")


def stage_path(cache_dir: str | Path, stage: str, params: dict[str, Any]) -> Path:
    return Path(cache_dir) / "stages" / f"{stage}-{config_hash(params)}"


def cached_stage(
    cache_dir: str | Path, stage: str, params: dict[str, Any], build: Callable[[Path], None], version: int = 1
) -> Path:
    if version != 1:
        params = params | {"version": version}
    path = stage_path(cache_dir, stage, params)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        if (path / "params.json").exists():
            log.info("stage %s: reusing cached artefact %s", stage, path)
            return path
        log.info("stage %s: building %s", stage, path)
        with atomic_dir(path) as tmp:
            build(tmp)
            (tmp / "params.json").write_text(json.dumps(params, indent=2, sort_keys=True, default=str))
    return path
