"""Config section `quantization:` of the `quantization` (toy) and `quantization_smollm2` experiments.

The model, its relations and the LRE settings are the `lre:` section's (src/toyrepro/lre/config.py),
which configs/experiment/quantization*.yaml take from lre*.yaml: the toy model is then the very
model `lre` trained (one cached stage), and the LRE is estimated exactly as `lre` estimates it.
Formats (src/toyrepro/quantization/formats.py): llama.cpp block formats through `gguf.quants`,
and GPTQ's round-to-nearest baselines (Frantar et al. 2022, §5, Table 3).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from toyrepro.core.checks import ConfigError, check
from toyrepro.quantization.formats import ALL_FORMATS, parse


@dataclass
class QuantConfig:
    """Weight-only quantisation of a trained LM, dequantised to float32 for the forward pass."""

    # Formats measured, f32 (the reference) always first: f32, llama.cpp's q8_0 q5_1 q5_0 q4_1 q4_0 mxfp4
    # (gguf.quants), rtn<bits>_<tensor|channel|g32|g128> (GPTQ's RTN baselines, bits 2-8)
    formats: list[str] = field(default_factory=lambda: list(ALL_FORMATS))
    # Formats on which the LRE is re-estimated and faithfulness / causality measured ([] = every format);
    # the others get perplexity, recall and weight error only (on SmolLM2 an LRE format cost ~1.5-2 min more wall at quick)
    lre_formats: list[str] = field(default_factory=list)
    # Quantise the token (and position) embeddings too; the unembedding is tied to the token embedding in
    # both models, so it follows. Off = GPTQ's setting (only the blocks' linear layers)
    quantize_embeddings: bool = False
    ppl_rows: int = 64  # toy: held-out rows of the toy corpus for perplexity
    ppl_tokens: int = 2048  # smollm2: tokens of the fixed text (pydoc_data topics, see measure.py)
    ppl_window: int = 256  # smollm2: tokens per perplexity window (each window starts with no context)
    bits_low: int = 4  # "at <= bits_low bits": the RTN widths the ordering claims and findings look at

    def validate(self, p: str = "quantization") -> None:
        check(len(self.formats) >= 1 and self.formats[0] == "f32", f"{p}.formats",
              "a list starting with f32 (the reference every change is measured against)", self.formats)
        check(len(set(self.formats)) == len(self.formats), f"{p}.formats", "a list without repeats", self.formats)
        for name in self.formats + self.lre_formats:
            try:
                parse(name)
            except Exception as e:
                raise ConfigError(f"{p}.formats: {e}") from e
        missing = [f for f in self.lre_formats if f not in self.formats]
        check(not missing, f"{p}.lre_formats", f"a subset of {p}.formats (not in it: {missing})", self.lre_formats)
        check(not self.lre_formats or self.lre_formats[0] == "f32", f"{p}.lre_formats",
              "empty (= every format) or a list starting with f32", self.lre_formats)
        check(self.ppl_rows >= 1, f"{p}.ppl_rows", ">= 1", self.ppl_rows)
        check(self.ppl_window >= 2, f"{p}.ppl_window", ">= 2", self.ppl_window)
        check(self.ppl_tokens >= self.ppl_window, f"{p}.ppl_tokens", f">= ppl_window={self.ppl_window}", self.ppl_tokens)
        check(2 <= self.bits_low <= 8, f"{p}.bits_low", "in [2, 8]", self.bits_low)
