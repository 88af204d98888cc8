"""Sampling API calls (Schick et al. 2023, §2 "Sampling API Calls").

For a text x = x_1..x_n the paper computes, at every position i, the probability
p_i = p_M(<API> | P(x), x_{1:i-1}) that the model starts a call there, keeps the top-k
positions with p_i > τ_s, and at each kept position samples up to m calls from
M given [P(x), x_{1:i-1}, <API>], with "→" as the end of the sequence. The calls are then
executed (§2 "Executing API Calls").

Our choices (deviations named):
- "<API>" is the character "[", and there is one tool, so the prefix fed to the sampler is
  x_{1:i-1} + "[Calculator(" (the tool name is given, the arguments are sampled);
- there is no prompt P(x): M0 learned the syntax from the bootstrap corpus (bootstrap.py);
- with one token per character, positions are restricted to word starts (where a BPE token
  of the paper would begin); every document also starts with "\\n", the document separator;
- positions too late for "[Calculator(" + `max_call_tokens` to fit in the context are skipped;
- samples use temperature 1 (exact sampling) from a seeded generator; a sample that has
  not produced "→" within `max_call_tokens` tokens, or whose arguments the calculator
  rejects, is dropped.
Sampling is batched: all (document, position) pairs with the same prefix length share one
KV-cached forward pass per step, with their m samples as rows of the batch; a row that has
produced "→" (or "\\n") leaves the batch, so short calls do not pay for the longest one.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass

import torch

from toyrepro.core.generate import sample_next
from toyrepro.core.transformer import GPT
from toyrepro.toolformer.calculator import CALL_START, evaluate, parse_call
from toyrepro.toolformer.corpus import CharTokenizer, Doc, word_starts

log = logging.getLogger("toyrepro")


@dataclass
class Candidate:
    """One sampled, executed call for document `doc` at character `position`."""

    doc: int
    position: int
    expr: str
    result: str
    p_start: float  # p("[" | x_{1:i-1}) at the position
    count: int = 1  # how many of the m samples gave this expression


def pad_batch(seqs: list[list[int]], pad: int) -> torch.Tensor:
    out = torch.full((len(seqs), max(len(s) for s in seqs)), pad, dtype=torch.long)
    for r, s in enumerate(seqs):
        out[r, : len(s)] = torch.tensor(s, dtype=torch.long)
    return out


@torch.no_grad()
def start_probabilities(model: GPT, tok: CharTokenizer, docs: list[Doc], batch: int) -> list[dict[int, float]]:
    """p("[" | "\\n" + x_{1:i-1}) at every word start i of every document."""
    bracket, nl = tok.id("["), tok.id("\n")
    out: list[dict[int, float]] = []
    for s in range(0, len(docs), batch):
        chunk = docs[s : s + batch]
        ids = pad_batch([tok.encode("\n" + d.text) for d in chunk], nl)
        probs = torch.softmax(model(ids).logits.float(), dim=-1)[..., bracket]  # (B, T)
        for r, d in enumerate(chunk):  # logits at index i predict text character i
            out.append({i: float(probs[r, i]) for i in word_starts(d.text)})
    return out


def select_positions(p: dict[int, float], top_k: int, tau_s: float) -> list[int]:
    """The top-k positions with p_i > τ_s (paper: I = {i | p_i > τ_s}, at most k of them)."""
    keep = sorted((i for i, v in p.items() if v > tau_s), key=lambda i: -p[i])[:top_k]
    return sorted(keep)


@torch.no_grad()
def sample_calls(model: GPT, tok: CharTokenizer, docs: list[Doc], positions: list[list[int]],
                 m: int, max_tokens: int, batch_rows: int, generator: torch.Generator) -> list[list[str]]:
    """For every (doc, position) pair, the m sampled strings after "[Calculator(" up to "→"
    (None where a sample never reached "→"). Returns one list per pair, pairs in order."""
    arrow, nl = tok.id("→"), tok.id("\n")
    pairs = [(d, i) for d, pos in enumerate(positions) for i in pos]
    by_len: dict[int, list[int]] = defaultdict(list)
    prefixes = []
    for k, (d, i) in enumerate(pairs):
        prefixes.append(tok.encode("\n" + docs[d].text[:i] + CALL_START))
        by_len[len(prefixes[-1])].append(k)
    samples: list[list[str | None]] = [[] for _ in pairs]
    per_chunk = max(1, batch_rows // m)
    done_pairs = 0
    for length in sorted(by_len):
        group = by_len[length]
        for s in range(0, len(group), per_chunk):
            ks = group[s : s + per_chunk]
            ids = torch.tensor([prefixes[k] for k in ks], dtype=torch.long)
            res = model(ids, use_cache=True)
            past = [(k_.repeat_interleave(m, 0), v_.repeat_interleave(m, 0)) for k_, v_ in res.past_kv]
            logits = res.logits[:, -1].repeat_interleave(m, 0)
            rows = logits.size(0)
            out = torch.full((rows, max_tokens), nl, dtype=torch.long)
            active = torch.arange(rows)  # rows of `out` still sampling; finished rows leave the batch
            steps = min(max_tokens, model.cfg.block_size - length)
            for t in range(steps):
                nxt = sample_next(logits, 1.0, None, generator).squeeze(1)
                out[active, t] = nxt
                going = (nxt != arrow) & (nxt != nl)
                if not bool(going.any()) or t == steps - 1:
                    break
                if not bool(going.all()):
                    active, nxt = active[going], nxt[going]
                    past = [(k_[going], v_[going]) for k_, v_ in past]
                res = model(nxt[:, None], past_kv=past, use_cache=True)
                past, logits = res.past_kv, res.logits[:, -1]
            for r in range(rows):
                text = tok.decode(out[r])
                end = text.find("→")
                samples[ks[r // m]].append(text[: end + 1] if end >= 0 else None)
            done_pairs += len(ks)
        log.info("annotate: sampled calls for %d/%d positions", done_pairs, len(pairs))
    return samples


def annotate(model: GPT, tok: CharTokenizer, docs: list[Doc], top_k: int, tau_s: float, m: int,
             max_tokens: int, batch_rows: int, seed: int) -> tuple[list[Candidate], dict[str, int]]:
    """Sample and execute calls for every document; unique (doc, position, expression) candidates."""
    was_training = model.training
    model.eval()
    p = start_probabilities(model, tok, docs, batch=64)
    # a call must fit in the context: "\n" + x_{1:i-1} + "[Calculator(" + up to max_tokens
    last = model.cfg.block_size - 1 - len(CALL_START) - max_tokens
    positions = [select_positions({i: v for i, v in pi.items() if i <= last}, top_k, tau_s) for pi in p]
    g = torch.Generator().manual_seed(30_011 + seed)
    samples = sample_calls(model, tok, docs, positions, m, max_tokens, batch_rows, g)
    pairs = [(d, i) for d, pos in enumerate(positions) for i in pos]
    stats = {"positions": len(pairs), "sampled": 0, "reached_arrow": 0, "executed": 0}
    found: dict[tuple[int, int, str], Candidate] = {}
    for (d, i), strs in zip(pairs, samples):
        for s in strs:
            stats["sampled"] += 1
            if s is None:
                continue
            stats["reached_arrow"] += 1
            expr = parse_call(CALL_START + s)
            result = evaluate(expr) if expr is not None else None
            if result is None:
                continue
            stats["executed"] += 1
            key = (d, i, expr)
            if key in found:
                found[key].count += 1
            else:
                found[key] = Candidate(d, i, expr, result, p[d][i])
    model.train(was_training)
    stats["candidates"] = len(found)
    return list(found.values()), stats
