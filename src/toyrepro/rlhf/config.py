"""Config section of the rlhf experiment (placeholder until the experiment lands)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class RLHFConfig:
    def validate(self, p: str) -> None:
        pass
