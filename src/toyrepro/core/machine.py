"""What a run was measured on: the CPU model, its matrix extensions, cores, torch and threads.

A scorecard's values are not only a function of the config and the seed: MKL chooses its matrix
kernels by CPU, so the same run can sum in another order on another CPU, and a small model's
fragile claim can move (experiments/toolformer/README.md: the same quick preset scored 0.815 and
0.955 on one seed on two machines). Wall times differ by CPU even more. `describe()` goes into
every `scorecard.json` and every benchmark JSON, so two runs are compared knowing whether they
shared a machine.
"""

from __future__ import annotations

import os
import platform
from functools import lru_cache
from pathlib import Path

MATRIX_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")  # what MKL/oneDNN dispatch on


@lru_cache(maxsize=1)
def cpu_info() -> tuple[str, tuple[str, ...]]:
    """(model name, the MATRIX_FLAGS it has) from /proc/cpuinfo; the platform's name elsewhere."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine(), ()
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    flags = set(fields.get("flags", "").split())
    return fields.get("model name", platform.machine()), tuple(f for f in MATRIX_FLAGS if f in flags)


def describe() -> dict:
    import torch

    model, flags = cpu_info()
    return {"cpu": model, "cpu_flags": list(flags), "cpus": os.cpu_count(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None}
