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

    def validate(self, p: str = "gpt") -> None:
        check(self.max_files >= 2, f"{p}.max_files", ">= 2", self.max_files)
        check(0 < self.val_fraction < 1, f"{p}.val_fraction", "in (0, 1)", self.val_fraction)
        check(self.max_val_chars >= 1, f"{p}.max_val_chars", ">= 1", self.max_val_chars)
        check(self.sample_chars >= 1, f"{p}.sample_chars", ">= 1", self.sample_chars)
        check(self.sample_temperature > 0, f"{p}.sample_temperature", "> 0", self.sample_temperature)
