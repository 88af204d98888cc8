"""Tests for the toolformer pipeline: corpus, weights, filter, annotation, tool decoding.

The filter and decoding tests use `RuleLM`, a fixed hand-written language model with the
`GPT` call interface, whose behaviour is known exactly: after "is " it predicts the
characters of the most recent call result "→ r]" in its context (a model that has
learned to trust the calculator), otherwise it is uniform. After "The answer is " it
starts a call with the question's numbers and, inside a call, guesses the result "999"
(wrong), so tests can tell the calculator's result from the model's.
"""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest
import torch

from toyrepro.core.checks import ConfigError
from toyrepro.core.transformer import GPTOutput
from toyrepro.toolformer.annotate import Candidate, annotate, select_positions
from toyrepro.toolformer.bootstrap import bootstrap_corpus, with_call
from toyrepro.toolformer.config import ToolformerConfig
from toyrepro.toolformer.corpus import (
    HELD_OUT_QUESTION,
    OPS,
    QUESTION,
    TEMPLATES,
    CharTokenizer,
    held_out_questions,
    is_text,
    make_doc,
    make_question,
    random_docs,
    text_docs,
    text_prompts,
    word_starts,
)
from toyrepro.toolformer.decoding import decode, entry_curve, extract_answer
from toyrepro.toolformer.filtering import (
    is_future_leak,
    is_useful,
    keep,
    loss_weights,
    score_candidates,
    weighted_loss,
)

TOK = CharTokenizer()


class RuleLM(torch.nn.Module):
    """A fixed LM (see module docstring); supports the KV-cache calling convention."""

    def __init__(self, peak: float = 12.0):
        super().__init__()
        self.cfg = SimpleNamespace(block_size=256)
        self.peak = peak

    def next_char(self, prefix: str) -> str | None:
        q = re.search(r"What is (\d+) \w+ (\d+)\? The answer is $", prefix)
        if q:
            return "["
        if prefix.endswith("The answer is ["):
            return "C"
        call = re.search(r"\[(Calculator\((\d+) \* (\d+)\) →)?([^\]]*)$", prefix)
        if call and "\n" not in call.group(0):
            nums = re.findall(r"What is (\d+) \w+ (\d+)", prefix)
            target = f"Calculator({nums[-1][0]} * {nums[-1][1]}) → 999]" if nums else "]"
            done = len(call.group(0)) - 1
            return target[done] if done < len(target) else None
        results = re.findall(r"→ (-?[\d.]+)\]", prefix)
        if re.search(r"is \[[^\]\n]*\]$", prefix):
            return " "
        m = re.search(r"is (?:\[[^\]\n]*\] )?([\d.]*)$", prefix)
        if results and m:
            r, typed = results[-1], m.group(1)
            if r.startswith(typed):
                return r[len(typed)] if len(typed) < len(r) else "."
        return None

    def forward(self, idx, past_kv=None, use_cache=False, **_):
        full = idx if past_kv is None else torch.cat([past_kv[0][0], idx], dim=1)
        B, T = full.shape
        logits = torch.zeros(B, T, TOK.vocab_size)
        for b in range(B):
            text = TOK.decode(full[b])
            for t in range(T - idx.size(1), T):
                ch = self.next_char(text[: t + 1])
                if ch is not None:
                    logits[b, t, TOK.id(ch)] = self.peak
        return GPTOutput(logits=logits[:, T - idx.size(1):], past_kv=[(full, full)] if use_cache else None)


# --- corpus and tokenizer --------------------------------------------------------------------
def test_tokenizer_roundtrip_single_token_digits_and_arrow():
    text = "What is 48213 times 377? [Calculator(48213 * 377) → 18176301] 18176301."
    ids = TOK.encode(text)
    assert TOK.decode(ids) == text and len(ids) == len(text)
    assert len(TOK.encode("→")) == 1 and all(len(TOK.encode(d)) == 1 for d in "0123456789")
    with pytest.raises(ValueError, match="not in the toolformer alphabet"):
        TOK.encode("café")


def test_docs_state_true_results_and_exclude_held_out_questions():
    claim, grid = held_out_questions(0, 50, 3, 6, 3)
    assert all(q.op == "*" and 4 <= q.a_digits <= 6 and 2 <= q.b_digits <= 3 for q in claim)
    assert claim[0].prompt.endswith("The answer is ") and claim[0].answer == str(claim[0].key[1] * claim[0].key[2])
    held = {q.key for q in claim + grid}
    docs = random_docs(3000, 0, 2, 1, held)  # small numbers: collisions would be common
    assert not held & {d.key for d in docs}
    assert make_doc("/", 400, 1400, 0).text == "400 divided by 1400 is 0.29."  # the paper's example


def test_bootstrap_inserts_wellformed_calls_at_word_starts():
    docs = random_docs(200, 1, 6, 3)
    texts = bootstrap_corpus(docs, 0.5, seed=0)
    with_calls = [t for t in texts if "[" in t]
    assert 60 < len(with_calls) < 140
    for t in with_calls:
        m = re.search(r"(^| )\[Calculator\((\d+) ([-+*/]) (\d+)\) → (-?[\d.]+)\] ", t)
        assert m, t
    assert with_call("2 times 3 is 6.", 13, "2 * 3", "6") == "2 times 3 is [Calculator(2 * 3) → 6] 6."
    own = bootstrap_corpus(docs, 1.0, seed=0, p_own_op=1.0)
    assert all(f" {d.op} " in re.search(r"\((.*)\)", t).group(1) for d, t in zip(docs, own))
    other = bootstrap_corpus(docs, 1.0, seed=0, p_own_op=0.0)
    assert not any(f"({d.a} {d.op} {d.b})" in t for d, t in zip(docs, other))


# --- filtering --------------------------------------------------------------------------------
def test_loss_weights_are_the_papers():
    w = loss_weights(0.2)
    assert torch.allclose(w, torch.tensor([1.0, 0.8, 0.6, 0.4, 0.2]) / 3.0)
    assert abs(float(w.sum()) - 1) < 1e-6
    nll = torch.tensor([0.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 100.0])
    assert weighted_loss(nll, 1, w) == pytest.approx(3.0)  # the 8th token is beyond the window
    assert weighted_loss(nll, 6, w) == pytest.approx(3.0 / 3 + 100.0 * 0.8 / 3)  # truncated at the end


def test_filter_keeps_a_helpful_call_and_drops_a_useless_one():
    doc = make_doc("*", 4821, 37, 0)  # "4821 times 37 is 178377."
    pos = doc.text.index("178377")
    good = Candidate(0, pos, "4821 * 37", "178377", 0.5)
    bad = Candidate(0, pos, "4821 + 37", "4858", 0.5)
    early = Candidate(0, 0, "4821 * 37", "178377", 0.5)  # helps nothing in the first 5 tokens
    scored = score_candidates(RuleLM(), TOK, [doc], [good, bad, early], decrement=0.2, batch=2)
    gains = {(s.cand.expr, s.cand.position): s.gain for s in scored}
    assert gains[("4821 * 37", pos)] > 3.0  # L⁻ ≈ log V, L⁺ ≈ 0
    assert gains[("4821 + 37", pos)] < 0.0  # the model trusts a wrong result: loss goes up
    assert abs(gains[("4821 * 37", 0)]) < 1e-3
    kept = keep(scored, tau_f=0.5)
    assert [(k.cand.expr, k.cand.position) for k in kept] == [("4821 * 37", pos)]
    assert is_useful(doc.text, pos, "178377", 5) and not is_useful(doc.text, 0, "178377", 5)
    assert not is_useful(doc.text, pos, "4858", 5)


def test_no_result_loss_is_skipped_only_where_it_cannot_change_the_decision():
    """L(e(c, ε)) is computed iff L(ε) − L⁺ ≥ 0; where computed it equals a direct scoring."""
    from toyrepro.toolformer.filtering import prefix_text, text_token_losses

    doc = make_doc("*", 4821, 37, 0)
    pos = doc.text.index("178377")
    good = Candidate(0, pos, "4821 * 37", "178377", 0.5)
    bad = Candidate(0, pos, "4821 + 37", "4858", 0.5)
    scored = {s.cand.expr: s for s in score_candidates(RuleLM(), TOK, [doc], [good, bad], 0.2, batch=2)}
    assert scored["4821 + 37"].loss_plain < scored["4821 + 37"].loss_result  # useless: skipped
    assert scored["4821 + 37"].loss_no_result == float("inf")
    assert scored["4821 + 37"].gain == pytest.approx(scored["4821 + 37"].loss_plain - scored["4821 + 37"].loss_result)
    (nll,) = text_token_losses(RuleLM(), TOK, [prefix_text("4821 * 37", None)], [doc.text], 2, append_end=False)
    assert scored["4821 * 37"].loss_no_result == pytest.approx(weighted_loss(nll, pos, loss_weights(0.2)))
    assert [k.cand.expr for k in keep(list(scored.values()), 0.0)] == ["4821 * 37"]


def test_future_leak_detects_arguments_from_after_the_call():
    text = "4821 times 37 is 178377."
    assert not is_future_leak(text, text.index("178377"), "4821 * 37")
    assert is_future_leak(text, text.index("37"), "4821 * 37")
    assert is_future_leak(text, 0, "4821 * 37")


# --- annotation -------------------------------------------------------------------------------
def test_select_positions_top_k_above_threshold():
    p = {0: 0.1, 5: 0.5, 9: 0.0, 12: 0.3, 20: 0.2}
    assert select_positions(p, 2, 0.0) == [5, 12]
    assert select_positions(p, 10, 0.0) == [0, 5, 12, 20]
    assert select_positions(p, 10, 0.25) == [5, 12]


def test_annotate_samples_and_executes_calls():
    doc = make_doc("*", 47, 3, 2)  # "What is 47 times 3? The answer is 141."
    cands, stats = annotate(RuleLM(), TOK, [doc], top_k=20, tau_s=0.0, m=3, max_tokens=24, batch_rows=64, seed=0)
    assert stats["positions"] == len(word_starts(doc.text)) and stats["sampled"] == 3 * stats["positions"]
    at_answer = [c for c in cands if c.position == doc.text.index("141")]
    assert at_answer and at_answer[0].expr == "47 * 3" and at_answer[0].result == "141"
    assert at_answer[0].count == 3


# --- tool decoding ----------------------------------------------------------------------------
def test_tool_decoding_inserts_the_calculators_result():
    qs = [make_question("*", 48213, 377), make_question("*", 12, 34), make_question("*", 99, 1)]
    outs = decode(RuleLM(), TOK, [q.prompt for q in qs], use_api=True, top_k=10, max_new_tokens=60, batch=2)
    for q, o in zip(qs, outs):
        assert o.called
        assert f"→ {q.answer}]" in o.text and "999" not in o.text  # the tool's result, not the guess
        assert o.answer == q.answer, o.text
    off = decode(RuleLM(), TOK, [qs[0].prompt], use_api=False, max_new_tokens=30)
    assert not off[0].called and "[" not in off[0].text


class TwoCallLM(RuleLM):
    """RuleLM that, once its first call's result is written, tries to start a second call."""

    def next_char(self, prefix: str) -> str | None:
        first = re.search(r"\] (\[.*)?$", prefix)
        if first and prefix.count("[") >= 1 and "→" in prefix:
            second = "[Calculator(2 * 3) →\n"
            typed = first.group(1) or ""
            return second[len(typed)] if len(typed) < len(second) else None
        return super().next_char(prefix)


def test_at_most_one_call_when_the_model_tries_a_second():
    q = make_question("*", 12, 34)
    (out,) = decode(TwoCallLM(), TOK, [q.prompt], use_api=True, top_k=10, max_new_tokens=60)
    assert out.called and f"→ {q.answer}] " in out.text, out.text  # the first call ran
    assert out.text.count("[") == 1 and out.text.count("Calculator(") == 1, out.text  # no second call
    assert TwoCallLM().next_char(q.prompt + out.text.split("\n")[0]) == "[", "the model does try again"


class FixedLM(torch.nn.Module):
    """The same next-character distribution at every position: "x" 0.6, "[" `p_bracket`
    (0.2), the rest spread evenly; "[" is the second most likely character."""

    def __init__(self, p_bracket: float = 0.2, p_x: float = 0.6):
        super().__init__()
        self.cfg = SimpleNamespace(block_size=256)
        probs = torch.full((TOK.vocab_size,), (1.0 - p_bracket - p_x) / (TOK.vocab_size - 2))
        probs[TOK.id("[")], probs[TOK.id("x")] = p_bracket, p_x
        self.logits = probs.log()

    def forward(self, idx, past_kv=None, use_cache=False, **_):
        logits = self.logits.expand(idx.size(0), idx.size(1), -1).clone()
        return GPTOutput(logits=logits, past_kv=[(idx, idx)] if use_cache else None)


@pytest.mark.parametrize("min_p,top_k,enters", [(0.0, 10, True), (0.1, 10, True), (0.19, 2, True),
                                               (0.21, 10, False), (0.5, 10, False), (0.0, 1, False)])
def test_entry_rule_threshold_on_p_bracket(min_p, top_k, enters):
    (out,) = decode(FixedLM(), TOK, ["ab "], use_api=True, top_k=top_k, max_new_tokens=6, min_p=min_p)
    assert out.called is enters and out.text.startswith("[") is enters, out.text
    if not enters:
        assert out.text == "xxxxxx"


def test_argmax_bracket_enters_whatever_the_threshold():
    (out,) = decode(FixedLM(p_bracket=0.3, p_x=0.25), TOK, ["ab "], use_api=True, top_k=10, max_new_tokens=4,
                    min_p=0.9)
    assert out.called and out.text.startswith("[")


def test_entry_curve_from_an_argmax_only_decode():
    probe = decode(FixedLM(), TOK, ["ab ", "cd "], use_api=True, top_k=10, max_new_tokens=5, min_p=float("inf"))
    assert not any(o.called for o in probe)
    assert probe[0].p_enter == pytest.approx(0.2, abs=1e-5)
    assert entry_curve(probe, [0.0, 0.1, 0.19, 0.21, 0.5]) == [1.0, 1.0, 1.0, 0.0, 0.0]
    assert entry_curve(decode(FixedLM(), TOK, ["ab "], True, top_k=1, max_new_tokens=3, min_p=float("inf")),
                       [0.0]) == [0.0]  # "[" never in the top 1: no rule with k = 1 enters


# --- non-arithmetic text and the held-out template ------------------------------------------
ARITHMETIC_WORDS = re.compile(r"\d|plus|minus|times|divided|[-+*/=×÷]")


def test_non_arithmetic_documents_hold_no_arithmetic():
    docs = text_docs(3000, 0)
    assert all(is_text(d) for d in docs) and not any(is_text(d) for d in random_docs(50, 0, 6, 3))
    assert len({d.text for d in docs}) > 1000  # varied, not a handful of sentences
    for d in docs:
        assert not ARITHMETIC_WORDS.search(d.text), d.text
        TOK.encode(d.text)  # every character is in the alphabet
    assert all(ARITHMETIC_WORDS.search(d.text) for d in random_docs(200, 0, 6, 3))  # the check can fire
    seen = {d.text for d in docs}
    prompts = text_prompts(300, 1, seen)
    assert all(p.endswith(" ") and not ARITHMETIC_WORDS.search(p) for p in prompts)
    texts = bootstrap_corpus(docs[:400], 1.0, seed=0)
    assert all(re.search(r"\[Calculator\(\d+ [-+*/] \d+\) → -?[\d.]+\] ", t) for t in texts)  # M0 calls there too


def test_held_out_template_occurs_in_no_training_document():
    from toyrepro.toolformer.bootstrap import bootstrap_corpus as boot
    from toyrepro.toolformer.config import ToolformerConfig as TC
    from toyrepro.toolformer.stages import make_corpora

    tc = TC(pretrain_docs=3000, annotate_docs=400, claim_questions=50, cell_questions=2, ppl_docs=50)
    data = make_corpora(0, tc)
    fixed = [part.strip() for part in re.split(r"\{\w+\}", HELD_OUT_QUESTION) if part.strip(" .")]
    assert fixed == ["Please compute", ". The result is"]
    texts = [d.text for d in data.pretrain + data.annotate] + boot(data.pretrain, 0.5, 0)
    assert sum(is_text(d) for d in data.pretrain) == 750 and sum(is_text(d) for d in data.annotate) == 100
    for part in ("Please compute", "The result is", "compute", "result"):
        assert not any(part in t for t in texts), part
    assert all(part not in t for t in TEMPLATES + (QUESTION,) for part in fixed)
    assert [q.key for q in data.template_questions] == [q.key for q in data.claim_questions]
    assert data.template_questions[0].prompt == HELD_OUT_QUESTION.format(
        a=data.claim_questions[0].key[1], op=OPS["*"], b=data.claim_questions[0].key[2])
    assert len(data.text_prompts) == 50 and not set(data.text_prompts) & set(texts)


def test_answer_extraction():
    assert extract_answer(" [Calculator(1 / 3) → 0.33] 0.33.\n") == "0.33"
    assert extract_answer("-12.\n") == "-12"
    assert extract_answer("no number") is None


# --- config -------------------------------------------------------------------------------------
@pytest.mark.parametrize("key,value", [("tau_f", -1.0), ("top_k", 0), ("tau_s", 1.5), ("bootstrap_share", 2.0),
                                       ("weight_decrement", 0.0), ("decode_min_p", 1.5), ("decode_min_p", -0.1),
                                       ("text_share", 1.0)])
def test_config_rejects_out_of_range(key, value):
    cfg = ToolformerConfig(**{key: value})
    with pytest.raises(ConfigError, match=f"toolformer.{key}"):
        cfg.validate("toolformer")
    ToolformerConfig().validate("toolformer")


def test_the_three_losses_sum_over_the_same_tokens_near_the_end_of_a_text():
    """A call at the last word start: L_i(ε), L_i(e(c, ε)) and L_i(e(c, r)) all cover the same
    characters (a uniform model gives each character log V, so they must be equal)."""
    import math

    from toyrepro.core.transformer import GPT, GPTConfig
    from toyrepro.toolformer.annotate import Candidate
    from toyrepro.toolformer.corpus import CharTokenizer, make_doc
    from toyrepro.toolformer.filtering import score_candidates

    tok = CharTokenizer()
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=96, n_layer=1, n_head=2, n_embd=16))
    for p in model.parameters():
        torch.nn.init.zeros_(p)  # every logit 0: each character costs log V
    doc = make_doc("*", 2, 438, 0)
    last = doc.text.rindex(" ") + 1
    (s,) = score_candidates(model, tok, [doc], [Candidate(0, last, "2 * 438", "876", 0.5)], 0.2, 8)
    assert s.loss_plain == pytest.approx(s.loss_no_result) == pytest.approx(s.loss_result)
    assert s.loss_plain < math.log(tok.vocab_size)  # the weights past the text's end are not counted
