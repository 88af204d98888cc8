"""Synthetic arithmetic text, held-out questions, and the character tokenizer.

Stands in for the paper's CCNet subset (Schick et al. 2023, §4.1): every document is one
or two sentences stating the result of a + b, a − b, a × b or a ÷ b, in one of four templates

    "4821 times 37 is 178377."
    "We know that 4821 times 37 equals 178377."
    "What is 4821 times 37? The answer is 178377."
    "Note that 4821 times 37 is 178377. Again, 4821 times 37 is 178377."

with `a` of 1..max_a_digits digits and `b` of 1..max_b_digits digits (digit counts drawn
uniformly, then the number uniformly among those with that many digits). Results are the
calculator's (`calculator.evaluate`): ÷ is rounded to 2 decimals, as in the paper. The
held-out test split holds questions ("What is 48213 times 377? The answer is ") whose
(operation, a, b) never occurs in a training document.

Tokenizer (ours): one token per character over a fixed alphabet, so every digit is one
token and "→" (not ASCII) is one token; "\\n" separates documents.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch

from toyrepro.toolformer.calculator import evaluate

OPS = {"+": "plus", "-": "minus", "*": "times", "/": "divided by"}
TEMPLATES = (
    "{a} {op} {b} is {r}.",
    "We know that {a} {op} {b} equals {r}.",
    "What is {a} {op} {b}? The answer is {r}.",
    "Note that {a} {op} {b} is {r}. Again, {a} {op} {b} is {r}.",
)
QUESTION = "What is {a} {op} {b}? The answer is "  # the test prompt (template 2 without the answer)
ALPHABET = (
    "\n !\"'(),-./0123456789:;?[]*+=_"
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ→×÷"
)


class CharTokenizer:
    """One token per character of `ALPHABET` (digits and "→" are single tokens)."""

    def __init__(self, alphabet: str = ALPHABET):
        if len(set(alphabet)) != len(alphabet):
            raise ValueError("tokenizer alphabet has repeated characters")
        self.alphabet = alphabet
        self.index = {ch: i for i, ch in enumerate(alphabet)}
        self.vocab_size = len(alphabet)

    def encode(self, text: str) -> list[int]:
        try:
            return [self.index[ch] for ch in text]
        except KeyError as e:
            raise ValueError(f"character {e.args[0]!r} is not in the toolformer alphabet; "
                             f"add it to corpus.ALPHABET or remove it from the text") from None

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        return "".join(self.alphabet[int(i)] for i in ids)

    def id(self, ch: str) -> int:
        return self.encode(ch)[0]


@dataclass(frozen=True)
class Doc:
    """One sentence and the arithmetic fact it states."""

    text: str
    op: str  # one of OPS
    a: int
    b: int
    result: str  # the calculator's result string

    @property
    def expr(self) -> str:
        return f"{self.a} {self.op} {self.b}"

    @property
    def key(self) -> tuple[str, int, int]:
        return (self.op, self.a, self.b)


def number(rng: random.Random, digits: int) -> int:
    return rng.randint(10 ** (digits - 1) if digits > 1 else 1, 10**digits - 1)


def make_doc(op: str, a: int, b: int, template: int) -> Doc:
    result = evaluate(f"{a} {op} {b}")
    if result is None:
        raise ValueError(f"calculator refused {a} {op} {b}")
    return Doc(TEMPLATES[template].format(a=a, op=OPS[op], b=b, r=result), op, a, b, result)


def random_docs(n: int, seed: int, max_a: int, max_b: int, exclude: set | None = None) -> list[Doc]:
    """`n` documents, operation/template/digit counts uniform; keys in `exclude` are skipped."""
    rng = random.Random(seed)
    exclude = exclude or set()
    docs: list[Doc] = []
    while len(docs) < n:
        op = rng.choice(list(OPS))
        a, b = number(rng, rng.randint(1, max_a)), number(rng, rng.randint(1, max_b))
        if (op, a, b) in exclude:
            continue
        docs.append(make_doc(op, a, b, rng.randrange(len(TEMPLATES))))
    return docs


@dataclass(frozen=True)
class Question:
    prompt: str
    answer: str
    op: str
    a_digits: int
    b_digits: int
    key: tuple[str, int, int]


def make_question(op: str, a: int, b: int) -> Question:
    return Question(QUESTION.format(a=a, op=OPS[op], b=b), evaluate(f"{a} {op} {b}") or "",
                    op, len(str(a)), len(str(b)), (op, a, b))


def held_out_questions(seed: int, claim_n: int, cell_n: int, max_a: int, max_b: int) -> tuple[list, list]:
    """(claim set: × with a of 4–6 and b of 2–3 digits; grid: `cell_n` per (op, digits of a))."""
    rng = random.Random(10_007 + seed)
    claim = [make_question("*", number(rng, rng.randint(4, 6)), number(rng, rng.randint(2, 3)))
             for _ in range(claim_n)]
    grid = [make_question(op, number(rng, da), number(rng, rng.randint(1, max_b)))
            for op in OPS for da in range(1, max_a + 1) for _ in range(cell_n)]
    return claim, grid


def join(texts: Iterable[str]) -> str:
    """Documents as one stream, each ended by a newline."""
    return "".join(t + "\n" for t in texts)


def word_starts(text: str) -> list[int]:
    """Character positions that begin a word (0 and every position after a space)."""
    return [0] + [i + 1 for i, ch in enumerate(text[:-1]) if ch == " "]
