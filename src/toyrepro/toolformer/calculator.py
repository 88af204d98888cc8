"""The calculator tool of Toolformer (Schick et al. 2023, arXiv 2302.04761).

Paper, Sec. 4.1 and App. A: four basic arithmetic operations, results rounded
to two decimal places, calls written ``[Calculator(400 / 1400) → 0.29]``.
Evaluated exactly with ``fractions.Fraction`` by a small recursive-descent
parser (no eval/exec/compile/ast). Deviations and choices of ours:

* ``×`` and ``÷`` are accepted as ``*`` and ``/``; unary minus and
  parentheses are supported; numbers are ASCII decimals (``12``, ``3.5``),
  without exponents, so ``1e400``, ``nan``, ``inf`` and ``2**3`` are rejected.
* Rounding is half away from zero; trailing zeros and a trailing dot are
  stripped (``3.50`` -> ``3.5``, ``2.00`` -> ``2``), and ``-0`` becomes ``0``.
* Bounds, beyond which ``evaluate`` returns None: input longer than
  MAX_INPUT_CHARS, more than MAX_TOKENS tokens, nesting (parentheses and
  unary minus) deeper than MAX_DEPTH, a number with more than MAX_DIGITS
  digits, any intermediate or final |value| above MAX_ABS. Together they
  keep every call cheap; division by zero and malformed input give None too.
"""

from __future__ import annotations

import math
import operator
import re
from fractions import Fraction

MAX_INPUT_CHARS = 200
MAX_TOKENS = 64
MAX_DEPTH = 20
MAX_DIGITS = 30
MAX_ABS = 10**30

CALL_START = "[Calculator("
CALL_ARROW = " →"
CALL_END = "]"

# One token, after optional ASCII blanks: an ASCII decimal number or an operator.
_TOKEN = re.compile(r"[ \t]*(?:([0-9]+(?:\.[0-9]+)?)|([-+*/×÷()]))")
_ALIASES = {"×": "*", "÷": "/"}


class _Reject(Exception):
    """Raised internally for any input the calculator refuses."""


def _tokenize(text: str) -> list[Fraction | str]:
    tokens: list[Fraction | str] = []
    pos, end = 0, len(text.rstrip(" \t"))
    while pos < end:
        match = _TOKEN.match(text, pos, end)
        if match is None or len(tokens) >= MAX_TOKENS:
            raise _Reject
        number, op = match.groups()
        if number is not None:
            if len(number) - number.count(".") > MAX_DIGITS:
                raise _Reject
            tokens.append(Fraction(number))
        else:
            tokens.append(_ALIASES.get(op, op))
        pos = match.end()
    return tokens


_OPS = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv}


class _Parser:
    """expr := term (('+'|'-') term)*;  term := unary (('*'|'/') unary)*;
    unary := '-' unary | NUMBER | '(' expr ')'."""

    def __init__(self, tokens: list[Fraction | str]) -> None:
        self.tokens, self.pos, self.depth = tokens, 0, 0

    def _peek(self) -> Fraction | str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def _take(self) -> Fraction | str:
        token = self._peek()
        if token is None:
            raise _Reject
        self.pos += 1
        return token

    def parse(self) -> Fraction:
        value = self._expr()
        if self.pos != len(self.tokens):
            raise _Reject  # leftover tokens, e.g. "3 4" or "1)"
        return value

    def _chain(self, ops: tuple[str, str], operand) -> Fraction:
        value = operand()
        while self._peek() in ops:
            op, rhs = self._take(), operand()
            if op == "/" and rhs == 0:
                raise _Reject
            value = _OPS[op](value, rhs)
            if abs(value) > MAX_ABS:
                raise _Reject
        return value

    def _expr(self) -> Fraction:
        return self._chain(("+", "-"), self._term)

    def _term(self) -> Fraction:
        return self._chain(("*", "/"), self._unary)

    def _unary(self) -> Fraction:
        token = self._take()
        if isinstance(token, Fraction):
            return token
        if token not in ("-", "("):
            raise _Reject
        self.depth += 1  # unary minus and parentheses both nest
        if self.depth > MAX_DEPTH:
            raise _Reject
        value = -self._unary() if token == "-" else self._expr()
        if token == "(" and self._take() != ")":
            raise _Reject
        self.depth -= 1
        return value


def _format(value: Fraction) -> str:
    """Round to 2 decimals (half away from zero) and strip trailing zeros."""
    cents = math.floor(abs(value) * 100 + Fraction(1, 2))
    whole, frac = divmod(cents, 100)
    text = f"{whole}.{frac:02d}".rstrip("0").rstrip(".")
    return "-" + text if value < 0 and cents else text


def evaluate(expr: str) -> str | None:
    """Evaluate an arithmetic expression; the rounded result, or None."""
    if not isinstance(expr, str) or len(expr) > MAX_INPUT_CHARS:
        return None
    try:
        return _format(_Parser(_tokenize(expr)).parse())  # empty input: _Reject
    except _Reject:
        return None
    except Exception:  # guard: a calculator bug must never crash generation
        return None


def format_call(expr: str, result: str | None) -> str:
    """``[Calculator(expr) → result]``, or the prefix up to ``→`` if None."""
    prefix = f"{CALL_START}{expr}){CALL_ARROW}"
    return prefix if result is None else f"{prefix} {result}{CALL_END}"


def parse_call(text: str) -> str | None:
    """The expression of the last call prefix ``[Calculator(expr) →`` in text."""
    if not isinstance(text, str):
        return None
    start = text.rfind(CALL_START)
    if start < 0:
        return None
    start += len(CALL_START)
    end = text.find(")" + CALL_ARROW, start)
    return None if end < 0 else text[start:end]
