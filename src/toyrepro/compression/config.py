"""Config section `compression:` of the `compression` experiment (configs/experiment/compression.yaml).

The model is the top-level `model:`/`optim:`/`trainer:` of the run, trained on the `gpt`
experiment's corpus: with the same values (and `max_files`/`val_fraction` below) the run
loads the model a `gpt` run published to the stage cache instead of training it again.
"""

from __future__ import annotations

from dataclasses import dataclass

from toyrepro.core.checks import check


@dataclass
class CompressionConfig:
    """Arithmetic coding with the GPT's next-byte probabilities (Deletang et al. 2023, §3)."""

    max_files: int = 400  # stdlib .py files in the corpus (as gpt.max_files: same value, same model)
    val_fraction: float = 0.1  # whole files held out (as gpt.val_fraction); only held-out text is coded
    chunk_bytes: int = 2048  # bytes per independently coded chunk (Deletang §3: 2048)
    text_chunks: int = 48  # held-out text chunks coded (the first ones of the held-out files)
    other_chunks: int = 4  # chunks of each modality the model never saw (image bytes, random digits)
    coding_batch: int = 16  # chunks the model reads side by side (encoder and decoder use the same batches)
    bytes_per_param: int = 4  # model size counted by the adjusted rate: 4 = the float32 weights decoded with

    def validate(self, p: str = "compression") -> None:
        check(self.max_files >= 2, f"{p}.max_files", ">= 2", self.max_files)
        check(0 < self.val_fraction < 1, f"{p}.val_fraction", "in (0, 1)", self.val_fraction)
        check(self.chunk_bytes >= 2, f"{p}.chunk_bytes", ">= 2", self.chunk_bytes)
        check(self.text_chunks >= 1, f"{p}.text_chunks", ">= 1", self.text_chunks)
        check(self.other_chunks >= 1, f"{p}.other_chunks", ">= 1", self.other_chunks)
        check(self.coding_batch >= 1, f"{p}.coding_batch", ">= 1", self.coding_batch)
        check(self.bytes_per_param >= 1, f"{p}.bytes_per_param", ">= 1", self.bytes_per_param)

    def validate_against(self, cfg, p: str = "compression") -> None:
        """Bytes are the tokens: the model must have a 256-symbol vocabulary and room for context."""
        check(cfg.model.vocab_size == 256, "model.vocab_size", "256 (one token per byte) for compression",
              cfg.model.vocab_size)
        check(cfg.model.block_size >= 4, "model.block_size", ">= 4 (contexts of block_size/2 bytes)",
              cfg.model.block_size)
