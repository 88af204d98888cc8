"""Arithmetic (range) coding with a language model's next-byte probabilities.

Deletang et al. 2023, §2-§3: a predictive model p(x_i | x_<i) and an arithmetic coder give a
lossless code whose length is, up to a constant, the model's log-loss

    len(code(x)) ~= sum_i -log2 p(x_i | x_<i)        (Shannon 1948; arithmetic coding, Pasco 1977, Rissanen 1976)

and each 2048-byte chunk is coded on its own (the model starts with no context at every chunk).

The entropy coder is `constriction`'s range coder (Bamler 2022; `stream.queue.RangeEncoder`,
32-bit words, probabilities quantised to fixed point by `stream.model.Categorical(perfect=False)`),
not a hand-written one. The model side is here:

- `conditionals` runs the model over a batch of chunks byte by byte and hands each position's
  distribution (B, 256) to a callback that returns the bytes at that position. The encoder's
  callback returns the known bytes; the decoder's decodes them from the codes. Both run the very
  same sequence of tensor operations on the same batch shapes, so they see bit-identical
  probabilities: an exact round trip does not rely on two different code paths agreeing in floats.
- context: a chunk starts from one newline byte (a stand-in for a beginning-of-sequence token,
  which the byte-level GPT does not have); after that the chunk is read in segments of
  `block_size // 2` bytes, each segment primed with the previous one through the KV cache, so
  every byte after the first segment has between block_size/2 and block_size - 1 bytes of
  context (the sliding window of `gpt.evaluate`).

Termination (`terminate`): `constriction` seals a chunk with one whole 32-bit word, the
smallest word-aligned value inside the coder's final interval, and its decoder reads bits past
the end of the data as zeros. Any value in that interval decodes the same chunk, so the code is
stored as bytes (words big-endian) with the last word rounded up to the multiple of 256^j, for
the largest j in 0..4, that still decodes the chunk exactly, and its j zero bytes dropped. A
chunk's code then ends within a byte of where an arithmetic coder's would, instead of at the next
32-bit word (which cost 0-32 bits per chunk, 16 on average). Every candidate is checked by
decoding it with `constriction` under the very probabilities it was coded with; the decoder
(`decode`) pads the bytes back to whole words with zeros.

Deviations from Deletang: their models see a whole 2048-byte chunk in context; ours sees at
most `block_size - 1` bytes. Code lengths are whole bytes (a file's), not bits.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import constriction
import numpy as np
import torch

from toyrepro.core.transformer import GPT

BOS = 10  # "\n": the context of a chunk's first byte

# (position, probabilities (B, 256) float64) -> the bytes at that position (B,) int64
Emit = Callable[[int, np.ndarray], np.ndarray]


@torch.no_grad()
def conditionals(model: GPT, batch: int, n: int, emit: Emit) -> torch.Tensor:
    """Feed `batch` chunks of `n` bytes through `model`, calling `emit` at each position; returns
    the (batch, n) bytes that `emit` gave."""
    model.eval()
    device = next(model.parameters()).device
    seg = model.cfg.block_size // 2
    known = torch.empty(batch, n, dtype=torch.long, device=device)
    for start in range(0, n, seg):
        prefix = known[:, start - seg : start] if start else torch.full((batch, 1), BOS, device=device)
        out = model(prefix, use_cache=True)
        for i in range(start, min(start + seg, n)):
            probs = torch.softmax(out.logits[:, -1].double(), dim=-1).cpu().numpy()
            known[:, i] = torch.as_tensor(emit(i, probs), device=device)
            if i + 1 < min(start + seg, n):
                out = model(known[:, i : i + 1], past_kv=out.past_kv, use_cache=True)
    return known


@dataclass
class Coded:
    codes: list[bytes]  # one per chunk: constriction's range-coder words, big-endian, tail trimmed (`terminate`)
    ideal_bits: np.ndarray  # per chunk: sum_i -log2 p(x_i | x_<i) under the probabilities coded with
    symbol_bits: np.ndarray  # per chunk: sum_i ceil(-log2 p), a code with whole bits per byte (Shannon code)
    seconds: float  # wall time of encoding (model + coder)

    @property
    def code_bits(self) -> np.ndarray:
        return np.array([8 * len(c) for c in self.codes], dtype=np.float64)


def _decodes(words: np.ndarray, symbols: np.ndarray, probs: np.ndarray) -> bool:
    """Whether `words` decode to `symbols` under `probs`; a code outside the coder's final interval
    may also make constriction's decoder refuse it (an AssertionError there), which is a no."""
    dec = constriction.stream.queue.RangeDecoder(words)
    try:
        out = dec.decode(constriction.stream.model.Categorical(perfect=False), probs)
    except AssertionError:
        return False
    return np.array_equal(out, symbols)


def words(code: bytes) -> np.ndarray:
    """The uint32 words a stored code stands for: its bytes, zero-padded to whole big-endian words."""
    return np.frombuffer(code + bytes(-len(code) % 4), dtype=">u4").astype(np.uint32)


def terminate(sealed: np.ndarray, symbols: np.ndarray, probs: np.ndarray) -> bytes:
    """The shortest byte string, among `sealed` with its last word rounded up to a multiple of
    256^j (j = 4, 3, 2, 1) and those j zero bytes dropped, that decodes `symbols` under `probs`;
    `sealed` itself (as bytes) when none does. The rounded word stays in the final interval, and
    so decodes, while it is not above the interval's top; larger j rounds further up."""
    body, last = sealed[:-1], int(sealed[-1])
    for j in (4, 3, 2, 1):
        step = 256**j
        word = -(-last // step) * step
        if word >= 2**32:
            continue
        candidate = np.append(body, np.uint32(word))
        if _decodes(candidate, symbols, probs):
            return candidate.astype(">u4").tobytes()[: 4 * len(sealed) - j]
    return sealed.astype(">u4").tobytes()


def encode(model: GPT, chunks: np.ndarray, batch_size: int) -> Coded:
    """Range-code each row of `chunks` (N, n) uint8 on its own with the model's probabilities."""
    t0 = time.perf_counter()
    codes, ideal, whole = [], [], []
    n = chunks.shape[1]
    for b in range(0, len(chunks), batch_size):
        rows = chunks[b : b + batch_size].astype(np.int64)
        probs = np.empty((len(rows), n, 256))

        def emit(i: int, p: np.ndarray, rows=rows, probs=probs) -> np.ndarray:
            probs[:, i] = p
            return rows[:, i]

        conditionals(model, len(rows), n, emit)
        for row, p in zip(rows, probs):
            enc = constriction.stream.queue.RangeEncoder()
            enc.encode(row.astype(np.int32), constriction.stream.model.Categorical(perfect=False), p)
            codes.append(terminate(enc.get_compressed(), row, p))
            info = -np.log2(p[np.arange(n), row] / p.sum(axis=1))
            ideal.append(float(info.sum()))
            whole.append(float(np.ceil(info).sum()))
    return Coded(codes, np.array(ideal), np.array(whole), time.perf_counter() - t0)


def decode(model: GPT, codes: list[bytes], n: int, batch_size: int) -> np.ndarray:
    """Decode `n` bytes from each code with the same model and batches as `encode`: (N, n) uint8."""
    out = []
    for b in range(0, len(codes), batch_size):
        decoders = [constriction.stream.queue.RangeDecoder(words(c)) for c in codes[b : b + batch_size]]

        def emit(i: int, p: np.ndarray, decoders=decoders) -> np.ndarray:
            return np.array([d.decode(constriction.stream.model.Categorical(row, perfect=False))
                             for d, row in zip(decoders, p)], dtype=np.int64)

        out.append(conditionals(model, len(decoders), n, emit).cpu().numpy().astype(np.uint8))
    return np.concatenate(out)
