"""Training batches that a resumed run replays exactly.

`Resampled` serves `num_samples` rows drawn (with replacement) from a dict of equal-length
tensors; row i depends on (seed, i) only. With the core's `StepOffsetSampler` (which starts
at `trainer.global_step * batch_size`), a stage resumed from `last.ckpt` sees the batches an
uninterrupted run would have seen — the same contract as `core.data.RandomWindows`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from toyrepro.core.data import StepOffsetSampler


class Resampled(torch.utils.data.Dataset):
    def __init__(self, tensors: dict[str, torch.Tensor] | torch.Tensor, num_samples: int, seed: int):
        self.single = isinstance(tensors, torch.Tensor)  # a bare tensor: rows are tensors, not dicts
        tensors = {"x": tensors} if self.single else tensors
        n = {v.size(0) for v in tensors.values()}
        if len(n) != 1 or 0 in n:
            raise ValueError(f"tensors must be non-empty and of equal length, got lengths {sorted(n)}")
        self.tensors, self.num_samples = tensors, num_samples
        g = torch.Generator().manual_seed(seed)
        self.index = torch.randint(0, n.pop(), (num_samples,), generator=g)

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, i: int):
        j = int(self.index[i])
        if self.single:
            return self.tensors["x"][j]
        return {k: v[j] for k, v in self.tensors.items()}


def loader(tensors: dict[str, torch.Tensor] | torch.Tensor, steps: int, batch_size: int, seed: int,
           global_step: Callable[[], int] | None = None) -> torch.utils.data.DataLoader:
    """`steps` batches of `batch_size` rows; resumable when `global_step` is given."""
    ds = Resampled(tensors, steps * batch_size, seed)
    sampler = StepOffsetSampler(len(ds), batch_size, global_step) if global_step else None
    return torch.utils.data.DataLoader(ds, batch_size=batch_size, sampler=sampler)


class Rows(torch.utils.data.Dataset):
    """Every row of a dict of equal-length tensors, in order (validation sets)."""

    def __init__(self, tensors: dict[str, torch.Tensor]):
        self.tensors = tensors
        self.n = next(iter(tensors.values())).size(0)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {k: v[i] for k, v in self.tensors.items()}
