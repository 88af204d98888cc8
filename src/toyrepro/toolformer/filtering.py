"""Filtering API calls (Schick et al. 2023, §2 "Filtering API Calls", footnote 3, App. A.1).

For a call c_i at position i with result r_i, the weighted cross-entropy of the tokens
that follow, given a prefix z, is

    L_i(z) = − Σ_{j=i..n} w_{j−i} · log p_M(x_j | z, x_{1:j−1}),

with w̃_t = max(0, 1 − 0.2·t) and w_t = w̃_t / Σ_s w̃_s (App. A.1: only the next five
tokens count). The call is given as a *prefix* z of the whole text, not inserted at i
(footnote 3: M has not been fine-tuned on calls yet). With e(c, r) = "[Calculator(c) → r]",
e(c, ε) = "[Calculator(c) → ]" (the call without its result) and ε the empty prefix:

    L⁺ = L_i(e(c, r)),   L⁻ = min(L_i(ε), L_i(e(c, ε))),   keep c iff L⁻ − L⁺ ≥ τ_f.

Scoring is batched: the sequences "\\n" + x, e(c, r) + " " + x and e(c, ε) + " " + x are
scored `score_batch` at a time (right-padded), once per unique (document, expression);
L_i for every candidate position of that expression is read off the same per-token losses.
e(c, ε) is scored only for expressions with L_i(ε) − L⁺ ≥ 0 at some position: elsewhere
L⁻ − L⁺ ≤ L_i(ε) − L⁺ < 0 ≤ τ_f, so the call is dropped whatever L_i(e(c, ε)) is (exact;
about two thirds of the candidates, a third of the scoring time).
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from toyrepro.core.transformer import GPT
from toyrepro.toolformer.annotate import Candidate, pad_batch
from toyrepro.toolformer.calculator import format_call
from toyrepro.toolformer.corpus import CharTokenizer, Doc

log = logging.getLogger("toyrepro")


def loss_weights(decrement: float = 0.2) -> torch.Tensor:
    """w_t for t = 0, 1, ...: max(0, 1 − decrement·t), normalised to sum 1 (nonzero entries only)."""
    if not 0 < decrement <= 1:
        raise ValueError(f"weight decrement must be in (0, 1], got {decrement}")
    n = 0
    while 1 - decrement * n > 1e-9:
        n += 1
    w = torch.clamp(1 - decrement * torch.arange(n, dtype=torch.float64), min=0)
    return (w / w.sum()).float()


def prefix_text(expr: str | None, result: str | None) -> str:
    """The prefix z: "" (ε), e(c, ε) or e(c, r), followed by a space when non-empty."""
    if expr is None:
        return ""
    return format_call(expr, result if result is not None else "") + " "


@torch.no_grad()
def text_token_losses(model: GPT, tok: CharTokenizer, prefixes: list[str], texts: list[str], batch: int,
                      ban: int | None = None, append_end: bool = True) -> list[torch.Tensor]:
    """−log p(x_j | "\\n" + prefix, x_{1:j−1}) for every character j of each text (plus its "\\n"
    end when `append_end`).

    `ban`: a token id whose logit is set to −inf before the softmax (the API disabled)."""
    nl = tok.id("\n")
    end = "\n" if append_end else ""
    seqs = [tok.encode("\n" + z + x + end) for z, x in zip(prefixes, texts)]
    starts = [1 + len(z) for z in prefixes]  # index of x_1 in each sequence
    order = sorted(range(len(seqs)), key=lambda k: len(seqs[k]))
    out: list[torch.Tensor | None] = [None] * len(seqs)
    for s in range(0, len(order), batch):
        ks = order[s : s + batch]
        ids = pad_batch([seqs[k] for k in ks], nl)
        logits = model(ids[:, :-1]).logits.float()
        if ban is not None:
            logits[..., ban] = float("-inf")
        nll = F.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")  # (B, T-1)
        for r, k in enumerate(ks):  # nll[:, j] scores token j+1
            out[k] = nll[r, starts[k] - 1 : len(seqs[k]) - 1].clone()
    return out  # type: ignore[return-value]


def weighted_loss(nll: torch.Tensor, i: int, w: torch.Tensor) -> float:
    """L_i = Σ_t w_t · nll[i + t] (positions past the end count zero, as in the paper's sum)."""
    seg = nll[i : i + w.numel()]
    return float((seg * w[: seg.numel()]).sum())


@dataclass
class Scored:
    cand: Candidate
    loss_plain: float  # L_i(ε)
    loss_no_result: float  # L_i(e(c, ε)); +inf where not computed (L_i(ε) − L⁺ < 0 already)
    loss_result: float  # L_i(e(c, r)) = L⁺

    @property
    def gain(self) -> float:
        """L⁻ − L⁺."""
        return min(self.loss_plain, self.loss_no_result) - self.loss_result


def fits_context(c: Candidate, n_weights: int, block_size: int) -> bool:
    """Whether "\n" + e(c, r) + " " + x_{1:i+n_weights} (and its end) fits the model's context."""
    return 2 + len(prefix_text(c.expr, c.result)) + c.position + n_weights <= block_size


def score_candidates(model: GPT, tok: CharTokenizer, docs: list[Doc], cands: list[Candidate],
                     decrement: float, batch: int) -> list[Scored]:
    was_training = model.training
    model.eval()
    w = loss_weights(decrement)
    used = sorted({c.doc for c in cands})
    # append_end=False as for the prefixed texts below: all three losses sum over the same
    # tokens (a call within 5 characters of the end must not be credited for the "\n" end token)
    plain = dict(zip(used, text_token_losses(model, tok, [""] * len(used), [docs[d].text for d in used], batch,
                                             append_end=False)))
    n_all = len(cands)
    # only x_{1:i+len(w)} matters: crop each text there, and drop candidates whose prefixed
    # text still exceeds the context (reported as `too_long` by the caller)
    cands = [c for c in cands if fits_context(c, w.numel(), model.cfg.block_size)]
    need: dict[tuple[int, str, str], int] = {}
    for c in cands:
        k = (c.doc, c.expr, c.result)
        need[k] = max(need.get(k, 0), c.position + w.numel())
    keys = sorted(need)
    texts = {k: docs[k[0]].text[: need[k]] for k in keys}
    log.info("filter: scoring %d sequences with the result in batches of %d", len(keys) + len(used), batch)
    with_r = dict(zip(keys, text_token_losses(model, tok, [prefix_text(e, r) for _, e, r in keys],
                                              [texts[k] for k in keys], batch, append_end=False)))
    # L⁻ − L⁺ ≤ L(ε) − L⁺: where that is < 0 for every position of an expression, no τ_f ≥ 0
    # can keep it, so L(e(c, ε)) is not computed (exact for the decision; stored as +inf)
    # (L(ε), L⁺) of every candidate, computed once
    l_plain = [weighted_loss(plain[c.doc], c.position, w) for c in cands]
    l_result = [weighted_loss(with_r[(c.doc, c.expr, c.result)], c.position, w) for c in cands]
    upper: dict[tuple[int, str, str], float] = {}
    for c, lp, lr in zip(cands, l_plain, l_result):
        k = (c.doc, c.expr, c.result)
        upper[k] = max(upper.get(k, -math.inf), lp - lr)
    open_keys = [k for k in keys if upper[k] >= 0]
    log.info("filter: scoring %d sequences without the result (%d have L(ε) − L⁺ < 0 everywhere)",
             len(open_keys), len(keys) - len(open_keys))
    without_r = dict(zip(open_keys, text_token_losses(model, tok, [prefix_text(e, None) for _, e, _ in open_keys],
                                                      [texts[k] for k in open_keys], batch, append_end=False)))
    scored = []
    for c, lp, lr in zip(cands, l_plain, l_result):
        k = (c.doc, c.expr, c.result)
        no_result = weighted_loss(without_r[k], c.position, w) if k in without_r else math.inf
        scored.append(Scored(c, lp, no_result, lr))
    model.train(was_training)
    if len(scored) < n_all:
        log.info("filter: %d of %d candidates dropped (prefixed text longer than the context)",
                 n_all - len(scored), n_all)
    return scored


def keep(scored: list[Scored], tau_f: float) -> list[Scored]:
    """The paper's filter: L⁻ − L⁺ ≥ τ_f; of several kept calls at one position, the best."""
    best: dict[tuple[int, int], Scored] = {}
    for s in scored:
        if s.gain >= tau_f:
            k = (s.cand.doc, s.cand.position)
            if k not in best or s.gain > best[k].gain:
                best[k] = s
    return [best[k] for k in sorted(best)]


_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def is_useful(text: str, position: int, result: str, window: int) -> bool:
    """The result, as a whole number, starts within the next `window` tokens (characters)."""
    for m in _NUMBER.finditer(text, position):
        if m.start() >= position + window:
            return False
        if m.group() == result or m.group().lstrip("-") == result:
            return True
    return False


def is_future_leak(text: str, position: int, expr: str) -> bool:
    """Some argument of the call is not in the text before the call but appears after it."""
    before = set(_NUMBER.findall(text[:position]))
    after = set(_NUMBER.findall(text[position:]))
    args = [a.lstrip("-") for a in _NUMBER.findall(expr)]
    return any(a not in before and a in after for a in args)
