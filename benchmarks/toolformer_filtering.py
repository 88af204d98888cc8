"""6. Toolformer filtering: candidate calls scored per second, batched vs one pass each.

Filtering needs, for every sampled call c at position i, L_i(ε), L_i(e(c, ε)) and
L_i(e(c, r)) (Schick et al. 2023 §2). Two implementations, timed side by side:

- **batched** — `toolformer.filtering.score_candidates`, what the experiment runs: the
  plain text is scored once per document, each (document, call, result) once for all the
  positions and duplicate samples that share it, texts cropped after the last position
  that matters, and `score_batch` right-padded sequences per forward pass;
- **one pass per candidate** — the direct reading of the paper: for each candidate, one
  forward pass over its three sequences, cropped at i + 5 (the weights are 0 beyond).

Both give the same L⁻ − L⁺ (checked) wherever the batched path computes it in full (it skips
L_i(e(c, ε)) for calls that L_i(ε) already rejects). Also reported: the same batched function called
with batch 1 (how much of the speed-up is batching alone, the rest being the shared
work). Candidates mimic annotation (`annotate.py`): at each word start of a document,
m = 10 sampled calls on the document's own operands with a random operation, so samples
repeat as M0's do. Model sizes and `score_batch` are the toolformer quick preset's
(random weights: speed does not depend on them). Target: >= 10x.
"""

from __future__ import annotations

import math
import random

import torch

from toyrepro.core.transformer import GPT, GPTConfig
from toyrepro.toolformer.annotate import Candidate
from toyrepro.toolformer.calculator import evaluate
from toyrepro.toolformer.corpus import CharTokenizer, random_docs, word_starts
from toyrepro.toolformer.filtering import (
    fits_context,
    loss_weights,
    prefix_text,
    score_candidates,
    text_token_losses,
    weighted_loss,
)

from harness import compare, experiment_config, record


def candidates(docs, m: int, seed: int = 0) -> list[Candidate]:
    rng = random.Random(seed)
    out = []
    for d, doc in enumerate(docs):
        for pos in word_starts(doc.text):
            for _ in range(m):
                expr = f"{doc.a} {rng.choice('+-*/')} {doc.b}"
                result = evaluate(expr)
                if result is not None:
                    out.append(Candidate(d, pos, expr, result, p_start=0.5))
    return out


def one_pass_per_candidate(model, tok, docs, cands, decrement: float) -> list[float]:
    """L⁻ − L⁺ of each candidate, one forward pass (its three sequences) per candidate."""
    w = loss_weights(decrement)
    gains = []
    for c in cands:
        x = docs[c.doc].text[: c.position + w.numel()]
        nll = text_token_losses(model, tok, ["", prefix_text(c.expr, None), prefix_text(c.expr, c.result)],
                                [x] * 3, batch=3, append_end=False)
        plain, no_result, with_result = (weighted_loss(v, c.position, w) for v in nll)
        gains.append(min(plain, no_result) - with_result)
    return gains


def run(tiny: bool = False) -> dict:
    cfg = experiment_config("toolformer", "smoke" if tiny else "quick")
    tc, m = cfg.toolformer, cfg.model
    tok = CharTokenizer()
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=m.block_size, n_layer=m.n_layer,
                          n_head=m.n_head, n_embd=m.n_embd)).eval()
    docs = random_docs(4 if tiny else 20, 0, tc.max_a_digits, tc.max_b_digits)
    w = loss_weights(tc.weight_decrement)
    cands = [c for c in candidates(docs, 2 if tiny else tc.m)  # the ones the experiment can score
             if fits_context(c, w.numel(), m.block_size)]
    batch = tc.score_batch

    def batched():
        return score_candidates(model, tok, docs, cands, tc.weight_decrement, batch)

    def batch_one():
        return score_candidates(model, tok, docs, cands, tc.weight_decrement, 1)

    def naive():
        return one_pass_per_candidate(model, tok, docs, cands, tc.weight_decrement)

    scored, slow = batched(), naive()
    # the batched path skips L(e(c, ε)) where L(ε) − L⁺ < 0 already (no τ_f >= 0 keeps the call;
    # stored as +inf): there its gain is an upper bound, still negative
    exact = [(s.gain, g) for s, g in zip(scored, slow) if math.isfinite(s.loss_no_result)]
    gap = max(abs(a - b) for a, b in exact)
    assert len(scored) == len(slow) and gap < 1e-4, f"batched and per-candidate scores differ by {gap}"
    assert all(g <= s.gain + 1e-4 and s.gain < 0 for s, g in zip(scored, slow) if not math.isfinite(s.loss_no_result))
    reps = 1 if tiny else 3
    with torch.no_grad():
        t_batched, t_naive = compare(batched, naive, reps=reps, warmup=0)
        t_batched2, t_one = compare(batched, batch_one, reps=reps, warmup=0)
    n = len(cands)
    unique = len({(c.doc, c.expr, c.result) for c in cands})
    return record("toolformer_filtering",
                  {"candidates": n, "unique_doc_call_result": unique, "documents": len(docs),
                   "score_batch": batch, "threads": torch.get_num_threads(),
                   "model": f"{m.n_layer} layers x {m.n_embd}, block {m.block_size}",
                   "batched_candidates_per_s": n / t_batched, "per_candidate_candidates_per_s": n / t_naive,
                   "batched_batch1_candidates_per_s": n / t_one, "max_gain_difference": gap},
                  {"batched vs one pass per candidate": {"value": t_naive / t_batched, "target": 10.0},
                   "batching alone (same function, batch 1)": {"value": t_one / t_batched2, "target": 1.0}})


if __name__ == "__main__":
    print(run())
