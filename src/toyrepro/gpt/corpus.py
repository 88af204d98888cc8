"""The corpus: the Python standard library's own source, present on every machine.

Files are the stdlib's pure-ASCII `.py` files (so one byte is one character and bits/byte
*is* bits/char), sorted by path, the first `max_files` of them. Whole files are held out
for validation, chosen by a hash of their path, so no validation line was seen in training.
"""

from __future__ import annotations

import hashlib
import sys
import sysconfig
from pathlib import Path

import torch
from datasets import Dataset

from toyrepro.core.data import cached_dataset


def stdlib_files(max_files: int) -> list[Path]:
    root = Path(sysconfig.get_paths()["stdlib"])
    files = []
    for p in sorted(root.rglob("*.py")):
        if "site-packages" in p.parts or "test" in p.parts or "tests" in p.parts:
            continue
        try:
            p.read_bytes().decode("ascii")
        except (UnicodeDecodeError, OSError):
            continue
        files.append(p)
        if len(files) >= max_files:
            break
    return files


def is_validation(path: str, val_fraction: float) -> bool:
    h = int(hashlib.sha256(path.encode()).hexdigest()[:8], 16)
    return h / 0xFFFFFFFF < val_fraction


def build_corpus(max_files: int, val_fraction: float) -> Dataset:
    root = Path(sysconfig.get_paths()["stdlib"])
    rows = {"path": [], "text": [], "split": []}
    for p in stdlib_files(max_files):
        rel = str(p.relative_to(root))
        rows["path"].append(rel)
        rows["text"].append(p.read_text(encoding="ascii"))
        rows["split"].append("validation" if is_validation(rel, val_fraction) else "train")
    if "validation" not in rows["split"] or "train" not in rows["split"]:
        raise ValueError(f"max_files={max_files} gives an empty split; use more files")
    return Dataset.from_dict(rows)


def load_corpus(cache_dir: str, max_files: int, val_fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(train bytes, validation bytes) as uint8 tensors; the Dataset is cached on disk."""
    params = {"max_files": max_files, "val_fraction": val_fraction, "python": sys.version.split()[0]}
    ds = cached_dataset(cache_dir, "stdlib-py", params, lambda: build_corpus(max_files, val_fraction))
    out = []
    for split in ("train", "validation"):
        text = "\n".join(t for t, s in zip(ds["text"], ds["split"]) if s == split)
        out.append(torch.frombuffer(bytearray(text.encode("ascii")), dtype=torch.uint8).clone())
    return out[0], out[1]
