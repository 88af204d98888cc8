"""What one weight format costs: held-out perplexity, fact recall, LRE faithfulness and causality.

Perplexity: exp(mean next-token cross-entropy) on a fixed held-out text —
* toy: rows of the toy's own corpus (`lre.toy.FactSequences`) drawn with a seed the model never
  trained or validated on (20_000 + seed); the trailing SEP padding is left out of the mean;
* SmolLM2: the first `ppl_tokens` tokens of the CPython 3.11 language-reference topics that ship
  with Python (`pydoc_data.topics`, keys in sorted order, joined by blank lines), in windows of
  `ppl_window` tokens. English technical prose with code; fixed by the interpreter's version.

Recall, faithfulness, causality: `lre.evaluate` unchanged, run on the quantised model with the
same per-relation seed as the float32 model, so each format sees the same demonstrations and the
same subject splits (Hernandez et al. 2023 §3-4; recall = the LM's greedy first object token is
right). The LRE is *re-estimated* on the quantised model (its own Jacobians), as the issue asks.
Formats outside `lre_formats` get recall only (one forward per prompt, no Jacobians).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from toyrepro.lre.evaluate import RelationResult, analyse_relation, known_states
from toyrepro.lre.relations import Relation


@dataclass
class FormatResult:
    """One format on one model."""

    name: str
    bits_per_weight: float
    weight_error: float  # relative Frobenius error over the quantised weights
    perplexity: float
    recall: float  # over all subjects of all relations
    relations: dict[str, RelationResult] = field(default_factory=dict)
    lre: bool = False  # faithfulness / causality measured (lre_formats)

    def faithfulness(self) -> float:
        """Mean over relations; a relation whose LRE could not be fitted (too few known facts) counts 0."""
        vals = [0.0 if math.isnan(r.faithfulness) else r.faithfulness for r in self.relations.values()]
        return sum(vals) / len(vals) if self.lre and vals else float("nan")

    def causality(self) -> float:
        vals = [0.0 if math.isnan(r.causality) else r.causality for r in self.relations.values()]
        return sum(vals) / len(vals) if self.lre and vals else float("nan")


def toy_heldout_rows(kb, lre, n_rows: int, seed: int) -> torch.Tensor:
    """(n_rows, T) rows of the toy corpus the model did not see (training used seed, validation 10_000 + seed)."""
    from toyrepro.lre.toy import FactSequences

    ds = FactSequences(kb, lre.facts_per_sequence, n_rows, seed=20_000 + seed,
                       profile_fraction=lre.profile_fraction, filler_max=lre.filler_max)
    return torch.stack([ds[i] for i in range(n_rows)])


def padding_mask(rows: torch.Tensor, pad: int = 0) -> torch.Tensor:
    """(B, T-1) True where the target rows[:, 1:] is a real token: SEP after SEP is padding."""
    y, prev = rows[:, 1:], rows[:, :-1]
    return ~((y == pad) & (prev == pad))


def fixed_text() -> str:
    import pydoc_data.topics

    topics = pydoc_data.topics.topics
    return "\n\n".join(topics[k] for k in sorted(topics))


def text_windows(lm, n_tokens: int, window: int) -> torch.Tensor:
    ids = lm.encode(fixed_text())[:n_tokens]
    n = len(ids) // window
    if n == 0:
        raise ValueError(f"the fixed text has {len(ids)} tokens, fewer than one window of {window}")
    return torch.tensor(ids[: n * window]).reshape(n, window)


@torch.no_grad()
def perplexity(lm, rows: torch.Tensor, mask: torch.Tensor | None = None, batch: int = 16) -> float:
    """exp of the mean next-token cross-entropy over rows (B, T), counting targets where `mask` is True."""
    total, count = 0.0, 0
    for s in range(0, len(rows), batch):
        x = rows[s : s + batch].to(lm.device)
        logits = lm(x[:, :-1]).logits.float()
        ce = F.cross_entropy(logits.reshape(-1, logits.size(-1)), x[:, 1:].reshape(-1), reduction="none")
        m = torch.ones_like(ce, dtype=torch.bool) if mask is None else mask[s : s + batch].reshape(-1).to(ce.device)
        total += float(ce[m].double().sum())
        count += int(m.sum())
    return math.exp(total / count)


def relation_seed(seed: int, k: int) -> int:
    """The per-relation seed `lre.experiment.run` uses, so float32 here reproduces lre's numbers."""
    return seed * 1000 + k


def measure_relations(lm, relations: list[Relation], lre_cfg, seed: int, with_lre: bool) -> dict[str, RelationResult]:
    out = {}
    for k, rel in enumerate(relations):
        if with_lre:
            out[rel.name] = analyse_relation(lm, rel, lre_cfg, seed=relation_seed(seed, k))
        else:
            g = torch.Generator().manual_seed(relation_seed(seed, k))
            _, _, known = known_states(lm, rel, lre_cfg.n_train, g)
            out[rel.name] = RelationResult(rel.name, len(rel.samples), float(known.float().mean()))
    return out


def pooled_recall(results: dict[str, RelationResult]) -> float:
    n = sum(r.n_subjects for r in results.values())
    return sum(r.recall * r.n_subjects for r in results.values()) / n
