"""Config section `gpt:` of the `gpt` experiment (configs/experiment/gpt.yaml)."""

from __future__ import annotations

from dataclasses import dataclass

from toyrepro.core.checks import check


@dataclass
class GPTTaskConfig:
    """The `gpt` experiment: a byte-level GPT on the Python standard library's source."""

    max_files: int = 400  # stdlib .py files used (sorted by path, pure-ASCII only)
    val_fraction: float = 0.1  # whole files held out for validation
    max_val_chars: int = 200_000  # held-out characters scored for bits/char
    sample_chars: int = 200  # characters sampled for the "decodes to text" claim
    sample_temperature: float = 0.8
    sample_top_k: int = 0  # sample from the k most likely bytes only; 0 = the whole vocabulary

    def validate(self, p: str = "gpt") -> None:
        check(self.max_files >= 2, f"{p}.max_files", ">= 2", self.max_files)
        check(0 < self.val_fraction < 1, f"{p}.val_fraction", "in (0, 1)", self.val_fraction)
        check(self.max_val_chars >= 1, f"{p}.max_val_chars", ">= 1", self.max_val_chars)
        check(self.sample_chars >= 1, f"{p}.sample_chars", ">= 1", self.sample_chars)
        check(self.sample_temperature > 0, f"{p}.sample_temperature", "> 0", self.sample_temperature)
        check(self.sample_top_k >= 0, f"{p}.sample_top_k", ">= 0 (0 = no top-k)", self.sample_top_k)

    def validate_against(self, cfg, p: str = "gpt") -> None:
        """Checks that need the rest of the config: top-k cannot exceed the vocabulary."""
        check(self.sample_top_k <= cfg.model.vocab_size, f"{p}.sample_top_k",
              f"<= model.vocab_size ({cfg.model.vocab_size}); lower it, or 0 for no top-k", self.sample_top_k)
