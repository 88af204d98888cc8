"""A key/value cache allocated once, for sampling (`core/generate.py`).

The list-of-tuples cache (`GPT.forward(past_kv=[(k, v), ...])`) grows by `torch.cat` at every
step, which copies the whole prefix: O(T^2) bytes moved over T steps. Profiled on the collapse
experiment's sampling (2 layers x 64 wide, 500 sequences of 64 bytes, one thread, 2026-12-07),
`aten::cat` took 44 % of the time under torch.profiler (whose overhead inflates it: timed without
it, this cache samples 1.23x faster, `benchmarks/sampling.py`). Here every layer's keys and values live in one buffer of
`capacity` positions, written in place; attention reads a view of the filled prefix.

The values attention sees are the same numbers in the same order, so the samples are
bitwise those of the growing cache (`tests/test_gpt.py` checks it at one and two threads);
only the copying is gone.
"""

from __future__ import annotations

import torch


class KVCache:
    """Keys and values of every layer for up to `capacity` positions of `batch` sequences.

    Pass it as `past_kv` with `use_cache=True`; each forward appends its positions and the
    output's `past_kv` is this same object, `length` positions long. The buffers are allocated
    on the first forward, in the dtype and on the device of its keys."""

    def __init__(self, n_layer: int, capacity: int):
        if n_layer < 0 or capacity < 1:
            raise ValueError(f"KVCache needs n_layer >= 0 and capacity >= 1, got {n_layer} and {capacity}")
        self.n_layer, self.capacity, self.length = n_layer, capacity, 0
        self.k: torch.Tensor | None = None  # (n_layer, B, n_head, capacity, head_dim)
        self.v: torch.Tensor | None = None

    def layer(self, i: int) -> LayerCache:
        return LayerCache(self, i)

    def extend(self, i: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write layer i's new keys/values (B, n_head, T, head_dim) after the `length` cached
        positions; return all of them (views of the buffers)."""
        end = self.length + k.size(2)
        if end > self.capacity:
            raise ValueError(f"KVCache holds {self.capacity} positions; {self.length} cached + {k.size(2)} new "
                             "do not fit: make it with a larger capacity")
        if self.k is None:
            shape = (self.n_layer, k.size(0), k.size(1), self.capacity, k.size(3))
            self.k = torch.empty(shape, dtype=k.dtype, device=k.device)
            self.v = torch.empty(shape, dtype=v.dtype, device=v.device)
        self.k[i, :, :, self.length : end] = k
        self.v[i, :, :, self.length : end] = v
        return self.k[i, :, :, :end], self.v[i, :, :, :end]

    def advance(self, n: int) -> None:
        """Mark n more positions as cached (the model calls this once every layer has written them)."""
        self.length += n


class LayerCache:
    """Layer i's view of a KVCache, what one attention block is handed as `past`."""

    def __init__(self, cache: KVCache, i: int):
        self.cache, self.i = cache, i

    def extend(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cache.extend(self.i, k, v)
