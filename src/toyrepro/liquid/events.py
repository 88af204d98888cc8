"""Task A: event-based digits, the CfC paper's event-based sequential MNIST on 8x8 digits.

Hasani et al. 2022 (CfC), §4 "Event-based sequential MNIST" (after Lechner & Hasani 2020,
"Learning long-term dependencies in irregularly-sampled time series", §6.2): the image is
thresholded to bits, read in raster order, and the bit stream is turned into *events*:
nothing is emitted while the bit stays the same, so the sequence is short and what made
the pixels is carried by the time between events.

Here an event is emitted when the bit changes and once at the end of the image; it carries
the bit that held since the previous event and the time elapsed since it (the run's
length). The bits of consecutive events alternate, so the bit column tells a model only
where the stream started and how many runs there were: a model that ignores the elapsed
times sees almost nothing of the digit (`time_unaware_ceiling` measures how little).

Deviations: scikit-learn's `load_digits` (1797 images of 8x8, pixel values 0..16) instead
of MNIST (70 000 of 28x28), so that nothing downloads; sequences are <= 64 events instead
of <= 256; the threshold is 8 of 16 (the paper's 128 of 255).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from toyrepro.core.checks import UserError


def to_bits(images: np.ndarray, threshold: int) -> np.ndarray:
    """(N, 8, 8) or (N, 64) pixel values 0..16 -> (N, 64) raster-order bits."""
    return (images.reshape(len(images), -1) >= threshold).astype(np.int64)


def encode_events(bits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Run-length encode one raster bit stream: (bit of each run, its length in pixels)."""
    bits = np.asarray(bits)
    if bits.ndim != 1 or bits.size == 0 or not np.isin(bits, (0, 1)).all():
        raise UserError(f"encode_events needs a non-empty 1-D stream of 0/1 bits, got shape {bits.shape}")
    change = np.flatnonzero(bits[1:] != bits[:-1]) + 1  # first pixel of every run but the first
    ends = np.append(change, bits.size)  # an event fires where each run ends
    starts = np.concatenate([[0], change])
    return bits[starts], ends - starts


def decode_events(values: np.ndarray, elapsed: np.ndarray) -> np.ndarray:
    """Inverse of `encode_events`: the raster bit stream back."""
    return np.repeat(np.asarray(values), np.asarray(elapsed).astype(np.int64))


@dataclass
class EventSequences:
    """Padded event sequences: inputs (N, T, 1) bits, elapsed (N, T, 1), lengths (N,), labels (N,)."""

    values: torch.Tensor
    elapsed: torch.Tensor
    lengths: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        return {"values": self.values[i], "elapsed": self.elapsed[i], "lengths": self.lengths[i],
                "labels": self.labels[i]}


def pad_events(bits: np.ndarray, labels: np.ndarray, time_scale: float, max_len: int) -> EventSequences:
    """Encode every image; pad to `max_len` events (padding: bit 0, elapsed 1, masked by `lengths`)."""
    n = len(bits)
    values = torch.zeros(n, max_len, 1)
    elapsed = torch.ones(n, max_len, 1)  # 1, not 0: a zero gap would divide by zero inside the LTC
    lengths = torch.zeros(n, dtype=torch.long)
    for i, b in enumerate(bits):
        v, e = encode_events(b)
        values[i, : len(v), 0] = torch.from_numpy(v.astype(np.float32))
        elapsed[i, : len(e), 0] = torch.from_numpy(e.astype(np.float32) * time_scale)
        lengths[i] = len(v)
    return EventSequences(values, elapsed, lengths, torch.as_tensor(labels, dtype=torch.long))


def digit_splits(threshold: int, time_scale: float, test_fraction: float, val_fraction: float, seed: int,
                 max_images: int = 0) -> dict[str, EventSequences]:
    """train / val / test event sequences of load_digits, stratified by class, split by `seed`."""
    images, labels = load_digits(return_X_y=True)
    if max_images:
        images, labels = images[:max_images], labels[:max_images]
    n_test = math.ceil(test_fraction * len(labels))
    n_val = math.ceil(val_fraction * (len(labels) - n_test))
    if min(n_test, n_val) < 10:
        raise UserError(f"digits: {len(labels)} images give {n_test} test and {n_val} validation images, fewer "
                        "than the 10 classes; raise liquid.digits.max_images or the test/val fractions")
    bits = to_bits(images, threshold)
    max_len = max(len(encode_events(b)[0]) for b in bits)
    idx = np.arange(len(labels))
    rest, test = train_test_split(idx, test_size=test_fraction, stratify=labels, random_state=seed)
    train, val = train_test_split(rest, test_size=val_fraction, stratify=labels[rest], random_state=seed)
    return {name: pad_events(bits[ix], labels[ix], time_scale, max_len)
            for name, ix in (("train", train), ("val", val), ("test", test))}


def time_unaware_ceiling(train: EventSequences, test: EventSequences) -> float:
    """Test accuracy of the best classifier of what a model blind to elapsed time sees.

    Without the gaps an event stream is fully described by (its first bit, its number of
    events), because the bits alternate. This looks up the majority class of each such pair
    in the training set (unseen pairs get the overall majority class)."""
    def keys(s: EventSequences):
        return list(zip(s.values[:, 0, 0].long().tolist(), s.lengths.tolist()))

    table: dict[tuple, Counter] = defaultdict(Counter)
    for k, y in zip(keys(train), train.labels.tolist()):
        table[k][y] += 1
    overall = Counter(train.labels.tolist()).most_common(1)[0][0]
    guess = [table[k].most_common(1)[0][0] if k in table else overall for k in keys(test)]
    return float(np.mean(np.array(guess) == test.labels.numpy()))
