"""6. Toolformer filtering: candidate calls scored per second, batched vs one pass each.

`toolformer.filtering.score_candidates` computes L_i(ε), L_i(e(c, ε)) and L_i(e(c, r)) for
every candidate (Schick et al. 2023 §2). The batched path right-pads `score_batch`
sequences into one forward pass; the reference side is the same function with batch 1, i.e.
one forward pass per scored sequence. Model sizes and `score_batch` are those of the
toolformer quick preset (random weights: speed does not depend on them). Candidates are
what annotation produces: for each document, calls at its word starts with its own
operands and other operations. Target: >= 10x.
"""

from __future__ import annotations

import random

import torch

from toyrepro.core.gpt import GPT, GPTConfig
from toyrepro.toolformer.annotate import Candidate
from toyrepro.toolformer.calculator import evaluate
from toyrepro.toolformer.corpus import CharTokenizer, random_docs, word_starts
from toyrepro.toolformer.filtering import score_candidates

from harness import compare, experiment_config, record


def candidates(docs, per_doc: int, seed: int = 0) -> list[Candidate]:
    rng = random.Random(seed)
    out = []
    for d, doc in enumerate(docs):
        starts = word_starts(doc.text)
        for _ in range(per_doc):
            op = rng.choice("+-*/")
            expr = f"{doc.a} {op} {doc.b}"
            result = evaluate(expr)
            if result is not None:
                out.append(Candidate(d, rng.choice(starts), expr, result, p_start=0.5))
    return out


def run(tiny: bool = False) -> dict:
    cfg = experiment_config("toolformer", "smoke" if tiny else "quick")
    tc, m = cfg.toolformer, cfg.model
    tok = CharTokenizer()
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=m.block_size, n_layer=m.n_layer,
                          n_head=m.n_head, n_embd=m.n_embd)).eval()
    docs = random_docs(8 if tiny else 100, 0, tc.max_a_digits, tc.max_b_digits)
    cands = candidates(docs, 3 if tiny else 10)
    batch = tc.score_batch

    def batched():
        return score_candidates(model, tok, docs, cands, tc.weight_decrement, batch)

    def one_by_one():
        return score_candidates(model, tok, docs, cands, tc.weight_decrement, 1)

    a, b = batched(), one_by_one()
    gap = max(abs(x.gain - y.gain) for x, y in zip(a, b))
    assert len(a) == len(b) and gap < 1e-4, f"batched and one-by-one scores differ by {gap}"
    with torch.no_grad():
        t_batched, t_loop = compare(batched, one_by_one, reps=1 if tiny else 3, warmup=0 if tiny else 1)
    n = len(a)
    return record("toolformer_filtering",
                  {"candidates": n, "documents": len(docs), "score_batch": batch,
                   "model": f"{m.n_layer} layers x {m.n_embd}, block {m.block_size}",
                   "batched_candidates_per_s": n / t_batched, "one_by_one_candidates_per_s": n / t_loop,
                   "max_gain_difference": gap},
                  {"batched vs one pass per candidate": {"value": t_loop / t_batched, "target": 10.0}})


if __name__ == "__main__":
    print(run())
