"""The classical compressors of Deletang et al. 2023, Table 1, and the data the model never saw.

Compressors (Python's standard library, the same algorithms as the command-line tools):
gzip -9 (DEFLATE + the gzip header/trailer, as `gzip -9` writes a file), bzip2 -9, and
LZMA (xz preset 9). Each is applied to every chunk on its own (the setting the model is in)
and to the whole held-out text at once (where their long-range matching pays).

Other modalities (Deletang §3.1 code ImageNet patches and LibriSpeech audio with text models;
nothing here is downloaded):
- `image`: the 8x8 grey-level digit images shipped with scikit-learn (`load_digits`), scaled
  from 0..16 to 0..255, one byte per pixel, image after image;
- `digits`: uniformly random ASCII digits, 3.32 bits/byte of entropy (log2 10) — the rate no
  compressor can beat.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import time
from collections.abc import Callable

import numpy as np

COMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    "gzip -9": lambda b: gzip.compress(b, compresslevel=9, mtime=0),
    "bzip2 -9": lambda b: bz2.compress(b, compresslevel=9),
    "lzma -9": lambda b: lzma.compress(b, preset=9),
}


def chunked(data: np.ndarray, chunk_bytes: int, max_chunks: int) -> np.ndarray:
    """The first `max_chunks` whole chunks of a byte array, as rows (N, chunk_bytes) uint8."""
    n = min(max_chunks, len(data) // chunk_bytes)
    if n < 1:
        raise ValueError(f"{len(data)} bytes hold no whole chunk of {chunk_bytes} bytes")
    return np.ascontiguousarray(data[: n * chunk_bytes].reshape(n, chunk_bytes))


def rates(chunks: np.ndarray) -> dict[str, dict[str, float]]:
    """Per compressor: bits/byte per chunk (summed over chunks), on the whole concatenation, and
    bytes/s compressed per chunk."""
    out = {}
    raw = chunks.size
    for name, fn in COMPRESSORS.items():
        t0 = time.perf_counter()
        per_chunk = sum(len(fn(row.tobytes())) for row in chunks)
        seconds = time.perf_counter() - t0
        whole = len(fn(chunks.tobytes()))
        out[name] = {"chunk": 8 * per_chunk / raw, "whole": 8 * whole / raw, "bytes_per_s": raw / seconds}
    return out


def unigram_bits(train: np.ndarray, data: np.ndarray) -> float:
    """Bits/byte of the training text's byte frequencies (add-one) on `data`: a model with no context."""
    counts = np.bincount(train, minlength=256).astype(np.float64) + 1.0
    return float(-np.log2(counts / counts.sum())[data].mean())


def image_bytes() -> np.ndarray:
    from sklearn.datasets import load_digits

    images = load_digits().images  # (1797, 8, 8), grey levels 0..16
    return np.round(images * (255 / 16)).astype(np.uint8).reshape(-1)


def random_digits(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (ord("0") + rng.integers(0, 10, size=n)).astype(np.uint8)
