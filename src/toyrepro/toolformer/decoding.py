"""Decoding with the tool (Schick et al. 2023, §4.2 "Math" / §4 intro).

Greedy decoding, modified as in the paper: a call is started not only when "[" is the most
likely next token but whenever it is among the `top_k` (k = 10) most likely ones, and at
most one call is made per input. When the model emits "→" inside a call, the calculator
runs on the arguments and " <result>]" is fed to the model as forced tokens; decoding then
continues. With the API *disabled* the logit of "[" is set to −inf, so no call can start.

Entry rule (ours, `min_p`): over the paper's ~50k-token vocabulary "[ among the top 10" is
selective; over our ~85 characters it is nearly automatic, so a call also needs
p("[") ≥ `min_p` (config `toolformer.decode_min_p`, chosen on dev seeds, see the README);
`min_p` = 0 is the paper's rule. "[" as the most likely token always enters, as in the paper.
After the one call "[" is banned (logit −inf), so the text holds at most one call.

Each `Decoded` carries `p_enter`, the largest entry score seen before a call was entered
(p("[") at a step where "[" is in the top k, 1 where it is the argmax, −1 if never in the
top k). Decoding is greedy and identical for every `min_p` up to the step where a call is
entered, so a run with `min_p` = ∞ (no call is ever entered: an argmax "[" is emitted as
text after its score 1 is recorded) tells, for every threshold t at
once, whether that rule would enter a call: p_enter ≥ t (`entry_curve`).

Batched: prompts of the same token length are decoded together with a KV cache; forced
tokens (the call start, the result) are fed one per step, so every row advances one token
per step and the cache stays aligned. A row ends at "\\n" (the end of a document).
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass

import torch

from toyrepro.core.transformer import GPT
from toyrepro.toolformer.calculator import CALL_END, evaluate, parse_call
from toyrepro.toolformer.corpus import CharTokenizer


@dataclass
class Decoded:
    text: str  # the generated continuation (call included)
    called: bool  # a call was started
    answer: str | None  # the first number after the call (or of the text), None if none
    p_enter: float = -1.0  # the largest entry score before a call (module docstring)


_CALL = re.compile(r"\[[^\]\n]*\]?")
_ANSWER = re.compile(r"\s*(-?\d+(?:\.\d+)?)")


def extract_answer(text: str) -> str | None:
    """The number the text states, once the call "[...]" is removed."""
    m = _ANSWER.match(_CALL.sub("", text.split("\n")[0], count=1))
    return m.group(1) if m else None


@torch.no_grad()
def decode_group(model: GPT, tok: CharTokenizer, prompts: list[str], use_api: bool, top_k: int,
                 max_new_tokens: int, min_p: float = 0.0) -> list[Decoded]:
    """Decode prompts of equal token length (see module docstring)."""
    bracket, arrow, nl = tok.id("["), tok.id("→"), tok.id("\n")
    ids = torch.tensor([tok.encode(p) for p in prompts], dtype=torch.long)
    B = ids.size(0)
    steps = min(max_new_tokens, model.cfg.block_size - ids.size(1))
    res = model(ids, use_cache=True)
    past, logits = res.past_kv, res.logits[:, -1].float()
    out: list[list[int]] = [[] for _ in range(B)]
    forced: list[list[int]] = [[] for _ in range(B)]
    called, in_call, done = [False] * B, [False] * B, [False] * B
    p_enter = [-1.0] * B
    for _ in range(steps):
        if not use_api:
            logits[:, bracket] = float("-inf")
        else:  # at most one call: after it, "[" is never emitted again
            logits[torch.tensor(called, dtype=torch.bool), bracket] = float("-inf")
        greedy = logits.argmax(-1)
        top = torch.topk(logits, min(top_k, logits.size(-1)), dim=-1).indices
        in_top = (top == bracket).any(-1).tolist()
        p_br = torch.softmax(logits, dim=-1)[:, bracket].tolist()
        nxt = []
        for r in range(B):
            if done[r]:
                t = nl
            elif forced[r]:
                t = forced[r].pop(0)
            elif use_api and not called[r] and in_top[r]:
                score = 1.0 if int(greedy[r]) == bracket else p_br[r]
                p_enter[r] = max(p_enter[r], score)
                if score >= min_p:
                    t, called[r], in_call[r] = bracket, True, True
                else:
                    t = int(greedy[r])
            else:
                t = int(greedy[r])
            if not done[r]:
                out[r].append(t)
                if t == arrow and in_call[r] and not forced[r]:
                    expr = parse_call(tok.decode(out[r]))
                    result = evaluate(expr) if expr is not None else None
                    forced[r] = tok.encode(" " + (result or "") + CALL_END)
                    in_call[r] = False
                if t == nl:
                    done[r] = True
            nxt.append(t)
        if all(done):
            break
        res = model(torch.tensor(nxt)[:, None], past_kv=past, use_cache=True)
        past, logits = res.past_kv, res.logits[:, -1].float()
    texts = [tok.decode(o) for o in out]
    return [Decoded(t, c, extract_answer(t), pe) for t, c, pe in zip(texts, called, p_enter)]


def entry_curve(outs: list[Decoded], thresholds: list[float]) -> list[float]:
    """Share of inputs on which the rule "p("[") >= t" would enter a call, for each t; `outs`
    must come from a decode with min_p = inf (see the module docstring)."""
    return [sum(o.p_enter >= t for o in outs) / max(1, len(outs)) for t in thresholds]


def decode(model: GPT, tok: CharTokenizer, prompts: list[str], use_api: bool, top_k: int = 10,
           max_new_tokens: int = 60, batch: int = 256, min_p: float = 0.0) -> list[Decoded]:
    """Decode every prompt; results in the order of `prompts`."""
    was_training = model.training
    model.eval()
    groups: dict[int, list[int]] = defaultdict(list)
    for k, p in enumerate(prompts):
        groups[len(tok.encode(p))].append(k)
    out: list[Decoded | None] = [None] * len(prompts)
    for ks in groups.values():
        for s in range(0, len(ks), batch):
            chunk = ks[s : s + batch]
            for k, d in zip(chunk, decode_group(model, tok, [prompts[k] for k in chunk], use_api, top_k,
                                                 max_new_tokens, min_p)):
                out[k] = d
    model.train(was_training)
    return out  # type: ignore[return-value]
