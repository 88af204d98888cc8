"""Disk use: say up front what a run will write, and fail clearly when the disk is full.

The estimate counts what dominates: each trained stage's `last.ckpt` holds the weights
and AdamW's two moment buffers (3 x 4 bytes per parameter, kept once per stage since
checkpoints are overwritten in place, plus one temporary copy while a new one is written),
and a margin for logs and figures.
"""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

LOG_MARGIN = 20 * 2**20  # CSV, TensorBoard, W&B offline files, figures


class DiskFullError(RuntimeError):
    pass


def gpt_params(vocab: int, block: int, n_layer: int, n_embd: int) -> int:
    """Parameter count of core.transformer.GPT (tied embeddings, biases)."""
    per_layer = 12 * n_embd * n_embd + 13 * n_embd
    return vocab * n_embd + block * n_embd + n_layer * per_layer + 2 * n_embd


def estimate_run_bytes(n_params: int, n_stages: int = 1) -> int:
    return n_stages * 2 * 12 * n_params + LOG_MARGIN


def human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024:
            return f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PB"


def check_space(path: Path, needed: int) -> str:
    """A one-line report; raises DiskFullError when less than `needed` bytes are free."""
    path.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(path).free
    line = f"disk: this run will write about {human(needed)} under {path} ({human(free)} free)"
    if free < needed:
        raise DiskFullError(f"{line}: not enough space; free some disk or set hydra.run.dir elsewhere")
    return line


def is_disk_full(e: BaseException) -> bool:
    return isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT)
