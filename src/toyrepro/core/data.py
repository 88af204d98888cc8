"""Synthetic / shipped data as `datasets.Dataset`, cached on disk by config hash.

`cached_dataset(cache_dir, kind, params, build)` returns the dataset that `build()` makes
for `params`, building it at most once per machine: the Arrow files live under
`<cache_dir>/datasets/<kind>-<hash(params)>`, written to a temporary directory and renamed
into place, under a file lock, so four sweep jobs that need the same data build it once
and all read a complete copy. A damaged cache entry (unreadable Arrow files) is reported
with the path to delete.

`RandomWindows` serves language-model training windows from one long token array. The
window for sample i depends on (seed, i) only, and `StepOffsetSampler` starts each epoch at
the trainer's global step, so a run resumed from a checkpoint sees exactly the batches an
uninterrupted run would have seen.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import datasets
import torch
from datasets import Dataset, load_from_disk
from filelock import FileLock

from toyrepro.core.io import atomic_dir, config_hash

log = logging.getLogger(__name__)
datasets.disable_progress_bars()


class DamagedCacheError(RuntimeError):
    pass


def cached_dataset(
    cache_dir: str | Path, kind: str, params: dict[str, Any], build: Callable[[], Dataset]
) -> Dataset:
    root = Path(cache_dir) / "datasets"
    path = root / f"{kind}-{config_hash(params)}"
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        if not path.exists():
            log.info("building dataset %s -> %s", kind, path)
            ds = build()
            with atomic_dir(path) as tmp:
                ds.save_to_disk(str(tmp))
    try:
        return load_from_disk(str(path))
    except Exception as e:  # any Arrow / JSON failure means the directory is damaged
        raise DamagedCacheError(
            f"cached dataset {path} is damaged ({type(e).__name__}: {e}); "
            f"delete it (rm -r {path}) and run again to rebuild it"
        ) from e


class RandomWindows(torch.utils.data.Dataset):
    """Sample i = a (block_size + 1)-token window of `tokens` at a position fixed by (seed, i)."""

    def __init__(self, tokens: torch.Tensor, block_size: int, num_samples: int, seed: int):
        if tokens.numel() <= block_size + 1:
            raise ValueError(f"corpus of {tokens.numel()} tokens is shorter than block_size+1={block_size + 1}")
        self.tokens, self.block_size, self.num_samples, self.seed = tokens, block_size, num_samples, seed

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, i: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + i)
        start = int(torch.randint(0, self.tokens.numel() - self.block_size - 1, (1,), generator=g))
        return self.tokens[start : start + self.block_size + 1].long()


class StepOffsetSampler(torch.utils.data.Sampler[int]):
    """Sequential indices starting at `offset() * batch_size` (offset = trainer.global_step)."""

    def __init__(self, length: int, batch_size: int, offset: Callable[[], int]):
        self.length, self.batch_size, self.offset = length, batch_size, offset

    def __iter__(self) -> Iterator[int]:
        return iter(range(min(self.offset() * self.batch_size, self.length), self.length))

    def __len__(self) -> int:
        return self.length
