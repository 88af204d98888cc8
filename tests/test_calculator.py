"""Tests for the Toolformer calculator tool (toyrepro.toolformer.calculator)."""

from __future__ import annotations

import io
import math
import re
import time
import tokenize
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from toyrepro.toolformer import calculator
from toyrepro.toolformer.calculator import (
    CALL_ARROW,
    CALL_END,
    CALL_START,
    MAX_ABS,
    MAX_DEPTH,
    MAX_DIGITS,
    MAX_INPUT_CHARS,
    MAX_TOKENS,
    evaluate,
    format_call,
    parse_call,
)

KNOWN = [
    ("400 / 1400", "0.29"),  # the paper's example
    ("4821 * 37", "178377"),
    ("7 / 2", "3.5"),
    ("1 - 3", "-2"),
    ("-0.001", "0"),  # not "-0"
    ("2 + 3 * 4", "14"),  # precedence
    ("(2 + 3) * 4", "20"),
    ("10 - 4 - 3", "3"),  # left associative
    ("100 / 10 / 5", "2"),
    ("6 × 7", "42"),
    ("84 ÷ 4", "21"),
    ("-(3 + 4) * 2", "-14"),
    ("--5", "5"),
    ("3 - -2", "5"),
    ("1 / 3", "0.33"),
    ("2 / 3", "0.67"),
    ("-2 / 3", "-0.67"),
    ("0.125", "0.13"),  # half away from zero
    ("-0.125", "-0.13"),
    ("1.005 * 1", "1.01"),  # exact arithmetic, no binary float error
    ("0.1 + 0.2", "0.3"),
    ("2.50 * 2", "5"),
    ("  12  ", "12"),
    ("3.14159", "3.14"),
    ("1000000 * 1000000", "1000000000000"),
    ("((((1))))", "1"),
]


@pytest.mark.parametrize(("expr", "expected"), KNOWN)
def test_known_values(expr: str, expected: str) -> None:
    assert evaluate(expr) == expected


HOSTILE = [
    "",
    "   ",
    "\t",
    "1 / 0",
    "5 / (3 - 3)",
    "1 / 0.0",
    "__import__('os')",
    "__import__('os').system('echo pwned')",
    "2**10000",
    "2 ** 3",
    "1e400",
    "1e5",
    "nan",
    "inf",
    "-inf",
    "NaN + 1",
    "(1 + 2",
    "1 + 2)",
    ")(",
    "()",
    "1 +",
    "* 3",
    "3 4",
    "3(4)",
    "+5",
    "1..2",
    "1.",
    ".5",
    "1,000",
    "1_000",
    "0x10",
    "٣ + 4",  # Arabic-Indic digit
    "４+1",  # full-width digit
    "1 + ²",
    "1\u00a0+ 2",  # non-ASCII space
    "abc",
    "x + 1",
    "lambda: 1",
    "[1, 2]",
    "1 % 2",
    "7 // 2",
    "1 " * 200,
    "9" * (MAX_DIGITS + 1),
    "0." + "0" * MAX_DIGITS,
    "1" + "0" * 29 + " * 11",  # 1.1e30 > MAX_ABS
    "-" + "9" * 30 + " * 10",
    "(" * (MAX_DEPTH + 1) + "1" + ")" * (MAX_DEPTH + 1),
    "-" * (MAX_DEPTH + 1) + "1",
    "1" * (MAX_INPUT_CHARS + 1),
]


@pytest.mark.parametrize("expr", HOSTILE)
def test_hostile_inputs_give_none(expr: str) -> None:
    assert evaluate(expr) is None


@pytest.mark.parametrize("value", [None, 12, 3.5, b"1+1", ["1+1"], object()])
def test_non_str_input_gives_none(value: object) -> None:
    assert evaluate(value) is None  # type: ignore[arg-type]
    assert parse_call(value) is None  # type: ignore[arg-type]


def test_bounds_are_inclusive() -> None:
    assert evaluate("9" * MAX_DIGITS) == "9" * MAX_DIGITS
    assert evaluate("1" + "0" * 29 + " * 10") == str(MAX_ABS)  # exactly 1e30 is allowed
    assert evaluate("(" * MAX_DEPTH + "1" + ")" * MAX_DEPTH) == "1"
    assert evaluate("-" * MAX_DEPTH + "1") == "1"
    at_limit = "-" + "1+" * 31 + "1"  # 64 tokens
    assert evaluate(at_limit) == "30"
    assert evaluate("-" + at_limit) is None  # 65 tokens
    padded = "1" + " " * (MAX_INPUT_CHARS - 1)
    assert evaluate(padded) == "1"
    assert evaluate(padded + " ") is None
    assert MAX_TOKENS == 64


def test_intermediate_overflow_gives_none_even_if_final_is_small() -> None:
    big = "1" + "0" * 20
    assert evaluate(f"{big} * {big} / {big}") is None


def _best_of_3(expr: str) -> float:
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        evaluate(expr)
        times.append(time.perf_counter() - t0)
    return min(times)


@pytest.mark.parametrize(
    "expr",
    [
        "(" * 5000 + "1" + ")" * 5000,
        "(" * 10_000,
        "9" * 10_000,
        "1" + "0" * 9_999,
        "-" * 10_000 + "1",
        "1*" * 5000,
        "(" * 99 + "1" + ")" * 99,  # fits MAX_INPUT_CHARS, rejected by depth
        "9" * 200,  # fits MAX_INPUT_CHARS, rejected by digits
        "1*" * 99 + "1",  # fits MAX_INPUT_CHARS, rejected by token count
    ],
)
def test_huge_inputs_are_rejected_quickly(expr: str) -> None:
    assert evaluate(expr) is None
    assert _best_of_3(expr) < 0.01


def test_worst_case_accepted_input_is_fast() -> None:
    # 30-digit operands, many divisions: biggest Fractions the bounds allow.
    expr = "/".join(["999999999999999999999999999999"] + ["7"] * 31)
    assert len(expr) <= MAX_INPUT_CHARS
    assert evaluate(expr) is not None
    assert _best_of_3(expr) < 0.01


def test_module_uses_no_dynamic_evaluation() -> None:
    source = Path(calculator.__file__).read_text(encoding="utf-8")
    tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    # Bare names only: the attribute re.compile (a regex) is fine.
    names = {
        tok.string
        for prev, tok in zip([None, *tokens], tokens)
        if tok.type == tokenize.NAME and not (prev and prev.string == ".")
    }
    assert not names & {"eval", "exec", "compile", "__import__", "ast", "literal_eval"}
    assert "import ast" not in source and "from ast" not in source


def _check_result(result: str | None) -> None:
    if result is not None:
        assert isinstance(result, str)
        float(result)  # re-parses as a float
        assert re.fullmatch(r"-?[0-9]+(\.[0-9]{1,2})?", result)
        assert result != "-0"


# Plain st.text rarely goes past ~200 characters and rarely parses, so the slow
# fuzz mixes in arithmetic-alphabet text and long repeated snippets (to 10 kB).
_ARITH_CHARS = "0123456789.+-*/()×÷ "
_HOSTILE_TEXT = st.one_of(
    st.text(max_size=10_000),
    st.text(alphabet=_ARITH_CHARS, max_size=300),
    st.builds(
        lambda snippet, n: (snippet * n)[:10_000],
        st.text(
            alphabet=st.one_of(st.sampled_from(_ARITH_CHARS), st.characters()),
            min_size=1,
            max_size=20,
        ),
        st.integers(1, 10_000),
    ),
)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_fuzz_never_raises(text: str) -> None:
    _check_result(evaluate(text))


@pytest.mark.slow
def test_fuzz_never_raises_and_is_fast_slow() -> None:
    durations: list[float] = []

    @settings(max_examples=10_000, deadline=None)
    @given(_HOSTILE_TEXT)
    def run(text: str) -> None:
        # Best of 3 so that a preemption on a shared machine is not a failure.
        durations.append(_best_of_3(text))
        _check_result(evaluate(text))

    run()
    assert durations
    assert max(durations) < 0.01, f"slowest call took {max(durations) * 1e3:.2f} ms"


class _ZeroDivision(Exception):
    pass


def _apply(op: str, a: Fraction, b: Fraction) -> tuple[Fraction, bool]:
    """Python's own arithmetic; returns (value, overflowed)."""
    if op == "/" and b == 0:
        raise _ZeroDivision
    value = {"+": a + b, "-": a - b, "*": a * b, "/": a / b if b else a}[op]
    return value, abs(value) > MAX_ABS


@st.composite
def _arith(draw, depth: int = 0, kind: str = "expr") -> tuple[str, Fraction, bool]:
    """A valid expression from the grammar, its exact value and whether any
    intermediate value exceeded MAX_ABS (evaluation order as written)."""
    sep = draw(st.sampled_from(["", " "]))
    if kind == "factor":
        negate = draw(st.integers(0, 4)) == 0  # at most one unary minus per factor
        sign = -1 if negate else 1
        if depth < 2 and draw(st.integers(0, 3)) == 0:
            text, value, over = draw(_arith(depth + 1, "expr"))
            return "-" * negate + f"({text})", sign * value, over
        n = draw(st.integers(0, 999_999))
        return "-" * negate + str(n), Fraction(sign * n), False
    sub, ops = ("term", "+-") if kind == "expr" else ("factor", "*/×÷")
    text, value, over = draw(_arith(depth, sub))
    for _ in range(draw(st.integers(0, 2 if depth == 0 else 1))):
        op = draw(st.sampled_from(ops))
        rtext, rvalue, rover = draw(_arith(depth, sub))
        value, step_over = _apply({"×": "*", "÷": "/"}.get(op, op), value, rvalue)
        over = over or rover or step_over
        text = f"{text}{sep}{op}{sep}{rtext}"
    return text, value, over


@st.composite
def _valid_expr(draw) -> tuple[str, Fraction, bool]:
    try:
        return draw(_arith())
    except _ZeroDivision:
        assume(False)
        raise  # unreachable


@settings(max_examples=300, deadline=None)
@given(_valid_expr())
def test_valid_expressions_match_python_arithmetic(case: tuple[str, Fraction, bool]) -> None:
    text, exact, overflowed = case
    n_tokens = len(re.findall(r"[0-9]+|\S", text))
    result = evaluate(text)
    if overflowed or n_tokens > MAX_TOKENS or len(text) > MAX_INPUT_CHARS:
        assert result is None
        return
    assert result is not None, text
    # Compared exactly as Fractions (floats lose the cents above ~1e14);
    # rounding to 2 decimals moves the value by at most 0.005 < 0.006.
    assert abs(Fraction(result) - exact) <= Fraction(6, 1000), (text, result, exact)
    # And exactly the documented rounding: half away from zero.
    cents = math.floor(abs(exact) * 100 + Fraction(1, 2))
    assert Fraction(result) == Fraction(cents if exact >= 0 else -cents, 100)


def test_format_call_matches_paper_syntax() -> None:
    assert format_call("400 / 1400", "0.29") == "[Calculator(400 / 1400) → 0.29]"
    assert format_call("400 / 1400", None) == "[Calculator(400 / 1400) →"
    assert format_call("1 + 1", "2").startswith(CALL_START)
    assert format_call("1 + 1", "2").endswith(CALL_END)
    assert format_call("1 + 1", None).endswith(")" + CALL_ARROW)


def test_parse_call() -> None:
    assert parse_call("Out of 1400 participants, [Calculator(12 * 3) →") == "12 * 3"
    assert parse_call("[Calculator((1 + 2) * 3) → 9] rest") == "(1 + 2) * 3"
    assert parse_call("[Calculator(1 + 1) → 2] then [Calculator(3 × 4) →") == "3 × 4"
    assert parse_call("no call here") is None
    assert parse_call("[Calculator(12 * 3") is None  # prefix not complete yet
    assert parse_call("[Calculator(12 * 3)") is None
    assert parse_call("") is None


@settings(max_examples=300, deadline=None)
@given(_valid_expr(), st.text(max_size=20).filter(lambda s: CALL_START not in s))
def test_format_parse_round_trip(case: tuple[str, Fraction, bool], before: str) -> None:
    expr = case[0]
    result = evaluate(expr)
    assert parse_call(before + format_call(expr, None)) == expr
    assert parse_call(before + format_call(expr, result)) == expr
    if result is not None:
        assert evaluate(parse_call(format_call(expr, result))) == result
