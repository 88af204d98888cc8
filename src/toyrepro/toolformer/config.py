"""Config section of the toolformer experiment (placeholder until the experiment lands)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ToolformerConfig:
    def validate(self, p: str) -> None:
        pass
