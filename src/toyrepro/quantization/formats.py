"""Weight formats: llama.cpp's block formats (through `gguf.quants`) and GPTQ's round-to-nearest.

llama.cpp block formats (ggml-quants.c; numpy ports in the `gguf` package, `gguf.quants`):
a row is cut into blocks of 32 consecutive weights along the input dimension (GGUF's ne0,
torch's last axis of an (out, in) weight), and each block stores its own fp16 scale:

    Q8_0   x = d * q,         q in [-127, 127], d = max|x| / 127           34 bytes / 32 = 8.5 bits
    Q5_0   x = d * (q - 16),  q in [0, 31],     d = x_absmax / -16         22 bytes / 32 = 5.5 bits
    Q5_1   x = d * q + m,     q in [0, 31],     d = (max - min) / 31, m = min   6.0 bits
    Q4_0   x = d * (q - 8),   q in [0, 15],     d = x_absmax / -8          18 bytes / 32 = 4.5 bits
    Q4_1   x = d * q + m,     q in [0, 15],     d = (max - min) / 15, m = min   5.0 bits
    MXFP4  x = 2^e * fp4(q),  one shared E8M0 exponent per block (OCP MX)  17 bytes / 32 = 4.25 bits

(x_absmax is the block's value of largest magnitude, with its sign.) The K-quants (Q2_K..Q6_K,
super-blocks of 256) are not here: gguf 0.19.0 implements only their *de*quantisation in numpy
(`quantize` raises NotImplementedError), and the suite does not hand-write a library's format.

Round-to-nearest (RTN), GPTQ's baseline (Frantar et al. 2022, §5 and Table 3; their
`quant.py`): asymmetric min-max quantisation to b bits over a group of weights,

    scale = (max(x_max, 0) - min(x_min, 0)) / (2^b - 1),   zero = round(-min(x_min, 0) / scale)
    q = clamp(round(x / scale) + zero, 0, 2^b - 1),        x_hat = scale * (q - zero)

with one (scale, zero) per tensor, per output channel (a row of the (out, in) weight) or per
group of g consecutive weights of a row (g = 32, 128; a row whose length is not a multiple of
g ends in one shorter group — SmolLM2's 576-wide rows at g = 128; GPTQ's OPT rows divide
evenly). Bits per weight count an fp16 scale and a b-bit zero per group: b + (16 + b) / g.

Every format is dequantised to float32 for the forward pass ("the model ends up seeing f32
again"), as llama.cpp's reference path does; only the weights' values change.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch

from toyrepro.core.checks import UserError

# gguf is imported where a block format is used, not here: the config schema imports this file
# whenever the CLI starts, and a missing gguf must only stop the runs that need it.

GGUF_FORMATS = ("q8_0", "q5_1", "q5_0", "q4_1", "q4_0", "mxfp4")  # gguf.quants has numpy quantisers for these
RTN_BITS = (8, 6, 4, 3, 2)
RTN_GROUPINGS = ("tensor", "channel", "g128", "g32")  # coarse to fine
RTN_FORMATS = tuple(f"rtn{b}_{g}" for b in RTN_BITS for g in RTN_GROUPINGS)
ALL_FORMATS = ("f32", *GGUF_FORMATS, *RTN_FORMATS)
_RTN = re.compile(r"rtn(\d+)_(tensor|channel|g(\d+))")


@dataclass(frozen=True)
class Format:
    """One weight format: `name` as in the config, `scheme` (f32 | gguf | tensor | channel | group),
    `bits` (the integer code width; 32 for f32) and `group` (RTN's group size; 0 otherwise)."""

    name: str
    scheme: str
    bits: int
    group: int = 0

    def bits_per_weight(self, shape: tuple[int, ...]) -> float:
        """Storage per weight including scales (and zeros / minima) for a tensor of `shape`."""
        if self.scheme == "f32":
            return 32.0
        if self.scheme == "gguf":
            from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

            block, nbytes = GGML_QUANT_SIZES[GGMLQuantizationType[self.name.upper()]]
            return 8.0 * nbytes / block
        n, n_in = int(np.prod(shape)), shape[-1]
        rows = n // n_in
        groups = {"tensor": 1, "channel": rows}.get(self.scheme, rows * -(-n_in // max(self.group, 1)))
        return self.bits + (16 + self.bits) * groups / n


def parse(name: str) -> Format:
    """The Format called `name`; UserError naming the known formats otherwise."""
    if name == "f32":
        return Format("f32", "f32", 32)
    if name in GGUF_FORMATS:
        return Format(name, "gguf", {"q8_0": 8, "q5_1": 5, "q5_0": 5, "q4_1": 4, "q4_0": 4, "mxfp4": 4}[name])
    m = _RTN.fullmatch(name)
    if m and 2 <= int(m.group(1)) <= 8 and (m.group(3) is None or int(m.group(3)) >= 2):
        bits, grouping = int(m.group(1)), m.group(2)
        if grouping in ("tensor", "channel"):
            return Format(name, grouping, bits)
        return Format(name, "group", bits, int(m.group(3)))
    raise UserError(f"unknown weight format {name!r}; use f32, one of {', '.join(GGUF_FORMATS)}, "
                    f"or rtn<bits 2-8>_<tensor|channel|g<size>> (e.g. rtn4_g32)")


def gguf_roundtrip(w: torch.Tensor, name: str) -> torch.Tensor:
    """`w` (..., in) quantised by gguf.quants to format `name` and dequantised to float32."""
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, quants

    qtype = GGMLQuantizationType[name.upper()]
    block = GGML_QUANT_SIZES[qtype][0]
    if w.shape[-1] % block:
        raise UserError(f"format {name} needs rows whose length is a multiple of {block}; a weight of shape "
                        f"{tuple(w.shape)} has rows of {w.shape[-1]} (leave it out or use an rtn format)")
    x = w.detach().cpu().float().numpy()
    out = quants.dequantize(quants.quantize(x, qtype), qtype)
    return torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32)).reshape(w.shape).to(w.device)


def rtn_groups(x: torch.Tensor, bits: int) -> torch.Tensor:
    """GPTQ's asymmetric min-max RTN applied to each row of `x` (groups, size) independently."""
    maxq = 2 ** bits - 1
    xmin = x.min(-1, keepdim=True).values.clamp(max=0)
    xmax = x.max(-1, keepdim=True).values.clamp(min=0)
    flat = (xmin == 0) & (xmax == 0)  # an all-zero group: GPTQ sets the range to [-1, 1]
    xmin, xmax = torch.where(flat, -1.0, xmin), torch.where(flat, 1.0, xmax)
    scale = (xmax - xmin) / maxq
    zero = torch.round(-xmin / scale)
    q = torch.clamp(torch.round(x / scale) + zero, 0, maxq)
    return scale * (q - zero)


def rtn(w: torch.Tensor, bits: int, grouping: str, group: int = 0) -> torch.Tensor:
    """Round-to-nearest of an (out, in) weight (or any tensor: rows = last axis) per tensor,
    per output channel (row), or per group of `group` consecutive weights of a row."""
    x = w.detach().float()
    if grouping == "tensor":
        return rtn_groups(x.reshape(1, -1), bits).reshape(w.shape)
    rows = x.reshape(-1, x.shape[-1])
    if grouping == "channel":
        return rtn_groups(rows, bits).reshape(w.shape)
    n_in = rows.shape[1]
    full = n_in // group * group
    parts = []
    if full:
        parts.append(rtn_groups(rows[:, :full].reshape(-1, group), bits).reshape(rows.shape[0], full))
    if full < n_in:  # the row's last, shorter group
        parts.append(rtn_groups(rows[:, full:], bits))
    return torch.cat(parts, 1).reshape(w.shape)


def roundtrip(w: torch.Tensor, fmt: Format) -> torch.Tensor:
    """`w` in format `fmt`, dequantised to float32 (a new tensor; `w` is left unchanged)."""
    if fmt.scheme == "f32":
        return w.detach().float().clone()
    if fmt.scheme == "gguf":
        return gguf_roundtrip(w, fmt.name)
    return rtn(w, fmt.bits, fmt.scheme, fmt.group)
