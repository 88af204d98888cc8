"""Config section of the lre / lre_smollm2 experiment (placeholder until the experiment lands)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class LREConfig:
    def validate(self, p: str) -> None:
        pass
