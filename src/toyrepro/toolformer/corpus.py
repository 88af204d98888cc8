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

Non-arithmetic text (ours, for the call rate where a calculator cannot help): generated
sentences without any digit or operation word, in templates that mirror the arithmetic
ones ("Anna lives in Lima.", "We know that Ben likes rice.", "What does Clara like? The
answer is soup.", "Note that the fox is red. Again, the fox is red.", "Dan works as a baker
in Oslo."); held-out prompts cut them before their last word ("What does Clara like? The
answer is "), the place where an arithmetic document states its result. A held-out
*question template* that no document uses, "Please compute 48213 times 377. The result
is ", tests whether M*'s calls generalise beyond the training templates.

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
HELD_OUT_QUESTION = "Please compute {a} {op} {b}. The result is "  # used by no document
# Non-arithmetic documents: no digits, no operation words (tests/test_toolformer.py checks both).
TEXT_TEMPLATES = (
    "{name} lives in {city}.",
    "We know that {name} likes {food}.",
    "What does {name} like? The answer is {food}.",
    "Note that the {animal} is {color}. Again, the {animal} is {color}.",
    "{name} works as a {job} in {city}.",
)
TEXT_WORDS = {
    "name": ("Anna", "Ben", "Clara", "Dan", "Eva", "Finn", "Grace", "Hugo", "Ida", "Jon", "Kira", "Leo",
             "Mia", "Nils", "Olga", "Paul", "Rosa", "Sam", "Tara", "Umar", "Vera", "Will", "Yara", "Zoe"),
    "city": ("Lima", "Oslo", "Paris", "Rome", "Cairo", "Delhi", "Quito", "Riga", "Seoul", "Tokyo", "Vienna",
             "Accra", "Bern", "Dakar", "Hanoi", "Kyiv", "Lagos", "Madrid", "Nairobi", "Perth"),
    "food": ("rice", "soup", "bread", "apples", "cheese", "beans", "fish", "pasta", "honey", "pears",
             "noodles", "olives", "tea", "figs", "corn", "plums"),
    "animal": ("fox", "cat", "dog", "owl", "hen", "bear", "wolf", "crow", "frog", "goat", "horse", "seal"),
    "color": ("red", "blue", "green", "brown", "black", "white", "grey", "gold", "pink", "orange"),
    "job": ("baker", "nurse", "pilot", "farmer", "teacher", "painter", "doctor", "driver", "singer", "tailor"),
}
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


def is_text(doc: Doc) -> bool:
    """A non-arithmetic document (no operation, no numbers)."""
    return doc.op == ""


def text_doc(rng: random.Random) -> Doc:
    """One non-arithmetic document (`TEXT_TEMPLATES`, words from `TEXT_WORDS`); op "" and a = b = 0."""
    words = {k: rng.choice(v) for k, v in TEXT_WORDS.items()}
    return Doc(rng.choice(TEXT_TEMPLATES).format(**words), "", 0, 0, "")


def text_docs(n: int, seed: int) -> list[Doc]:
    rng = random.Random(60_013 + seed)
    return [text_doc(rng) for _ in range(n)]


def text_share_count(n: int, share: float) -> int:
    """Non-arithmetic documents to add to `n` arithmetic ones so that they are `share` of all."""
    return round(n * share / (1.0 - share))


def text_prompts(n: int, seed: int, exclude: set[str]) -> list[str]:
    """`n` held-out non-arithmetic prompts: documents whose text is not in `exclude`, cut before
    their last word (the place of an arithmetic document's result)."""
    rng = random.Random(70_001 + seed)
    out: list[str] = []
    while len(out) < n:
        d = text_doc(rng)
        if d.text not in exclude:
            out.append(d.text[: d.text.rindex(" ") + 1])
    return out


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


def make_question(op: str, a: int, b: int, template: str = QUESTION) -> Question:
    return Question(template.format(a=a, op=OPS[op], b=b), evaluate(f"{a} {op} {b}") or "",
                    op, len(str(a)), len(str(b)), (op, a, b))


def in_template(q: Question, template: str) -> Question:
    """The same question (operation and operands) asked in another template."""
    op, a, b = q.key
    return make_question(op, a, b, template)


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
