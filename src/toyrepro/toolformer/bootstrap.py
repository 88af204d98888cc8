"""M0's training text: the corpus plus a small share of documents with calls at random places.

Deliberate deviation from the paper (Schick et al. 2023, §2 and App. A.1): the paper makes
its candidate calls by prompting GPT-J (6.7B) with a few-shot prompt P(x); Fig. 4 shows
the ability to use the calculator appears only at ~775M parameters. A toy model cannot
follow such a prompt, so M0 is taught the call *syntax* instead: `bootstrap_share` of its
documents get one well-formed, executed call `[Calculator(a op b) → r] ` at a uniformly
random word start, where a and b are the document's own two numbers and `op` is the
document's own operation with probability `p_own_op` (1/2), otherwise one of the other three.
M0 therefore knows how a call looks, that its arguments are copied from the text and that
its result is often (not always) the number the text states, but not *where* a call helps,
and it often picks the wrong operation: annotation and filtering must find both.
Non-arithmetic documents (corpus.TEXT_TEMPLATES) get their call on the same terms, with
random operands (1–3 and 1–2 digits) and a random operation, so M0 calls in plain text as
often as in arithmetic text and M* has to learn from the filter where a call does not help.
(With a uniformly random operation — our first try — M0 learned not to trust results at
all, and the filter kept almost nothing: see the README.)
"""

from __future__ import annotations

import random

from toyrepro.toolformer.calculator import evaluate, format_call
from toyrepro.toolformer.corpus import OPS, Doc, is_text, number, word_starts


def with_call(text: str, position: int, expr: str, result: str | None) -> str:
    """`text` with the call inserted before character `position` (a word start).

    The call is followed by a space, so the word at `position` keeps its form:
    "... is [Calculator(4821 * 37) → 178377] 178377." (paper, Fig. 1 / §2)."""
    return text[:position] + format_call(expr, result if result is not None else "") + " " + text[position:]


def bootstrap_text(doc: Doc, rng: random.Random, p_own_op: float = 0.5) -> str:
    """The document with one random call (see module docstring)."""
    if is_text(doc):
        expr = f"{number(rng, rng.randint(1, 3))} {rng.choice(list(OPS))} {number(rng, rng.randint(1, 2))}"
        return with_call(doc.text, rng.choice(word_starts(doc.text)), expr, evaluate(expr))
    op = doc.op if rng.random() < p_own_op else rng.choice([o for o in OPS if o != doc.op])
    expr = f"{doc.a} {op} {doc.b}"
    return with_call(doc.text, rng.choice(word_starts(doc.text)), expr, evaluate(expr))


def bootstrap_corpus(docs: list[Doc], share: float, seed: int, p_own_op: float = 0.5) -> list[str]:
    """Texts of `docs`, a `share` of them (chosen at random) with a random call."""
    rng = random.Random(20_011 + seed)
    return [bootstrap_text(d, rng, p_own_op) if rng.random() < share else d.text for d in docs]
