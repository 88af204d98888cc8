"""Decoding with the tool (Schick et al. 2023, §4.2 "Math" / §4 intro).

Greedy decoding, modified as in the paper: a call is started not only when "[" is the most
likely next token but whenever it is among the `top_k` (k = 10) most likely ones, and at
most one call is made per input. When the model emits "→" inside a call, the calculator
runs on the arguments and " <result>]" is fed to the model as forced tokens; decoding then
continues. With the API *disabled* the logit of "[" is set to −inf, so no call can start.

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


_CALL = re.compile(r"\[[^\]\n]*\]?")
_ANSWER = re.compile(r"\s*(-?\d+(?:\.\d+)?)")


def extract_answer(text: str) -> str | None:
    """The number the text states, once the call "[...]" is removed."""
    m = _ANSWER.match(_CALL.sub("", text.split("\n")[0], count=1))
    return m.group(1) if m else None


@torch.no_grad()
def decode_group(model: GPT, tok: CharTokenizer, prompts: list[str], use_api: bool, top_k: int,
                 max_new_tokens: int) -> list[Decoded]:
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
    for _ in range(steps):
        if not use_api:
            logits[:, bracket] = float("-inf")
        greedy = logits.argmax(-1)
        top = torch.topk(logits, min(top_k, logits.size(-1)), dim=-1).indices
        nxt = []
        for r in range(B):
            if done[r]:
                t = nl
            elif forced[r]:
                t = forced[r].pop(0)
            elif use_api and not called[r] and bool((top[r] == bracket).any()):
                t, called[r], in_call[r] = bracket, True, True
            else:
                t = int(greedy[r])
                if t == bracket:  # only reachable with the API on, after the one call
                    called[r] = True
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
    return [Decoded(t, c, extract_answer(t)) for t, c in zip(texts, called)]


def decode(model: GPT, tok: CharTokenizer, prompts: list[str], use_api: bool, top_k: int = 10,
           max_new_tokens: int = 60, batch: int = 256) -> list[Decoded]:
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
                                                 max_new_tokens)):
                out[k] = d
    model.train(was_training)
    return out  # type: ignore[return-value]
