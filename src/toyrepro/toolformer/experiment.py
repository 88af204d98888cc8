"""The `toolformer` experiment, top to bottom (Schick et al. 2023, arXiv 2302.04761).

    M0 (bootstrap corpus) -> annotate C (sample calls) -> filter (L⁻ − L⁺ ≥ τ_f)
      -> fine-tune M0 on C* = M*            (the paper's Toolformer)
      -> fine-tune M0 on C (no calls)        (the paper's "GPT-J + CC" baseline)
      -> fine-tune M0 on unfiltered calls    (ablation)
    -> evaluate on held-out questions with the API on / disabled (M0 too, both ways), the same
       questions in a template no document uses, non-arithmetic prompts (the call rate where
       a calculator cannot help), and held-out perplexity.

Each stage is one function of `toolformer/stages.py`. M0 and the scored candidates are
stage artefacts cached by the hash of what determines them (`core.stage.cached_stage`), so a
sweep over τ_f or the fine-tuning reuses them; the three fine-tunes run in every run (they
are cheap and give each run its checkpoints). Each model's fine-tune and Table 4 rows are one
job (`stages.finetune_and_evaluate`): the four jobs do not depend on each other, and the preset
runs them two at a time (`workers: 2`, one thread each; bitwise the numbers of `workers=1`).
Deviations from the paper are named in each module's docstring and in
experiments/toolformer/README.md.
"""

from __future__ import annotations

import json
from dataclasses import replace

from toyrepro.core.run import RunContext
from toyrepro.core.scorecard import Claim
from toyrepro.toolformer.corpus import CharTokenizer
from toyrepro.toolformer.evaluation import grid_figure, grid_markdown
from toyrepro.toolformer.stages import (
    annotate_calls,
    filter_calls,
    finetune_and_evaluate_all,
    load_model,
    make_corpora,
    table4,
    train_m0,
)

SRC = "Schick et al. 2023 (Toolformer)"


def claims(cfg=None) -> list[Claim]:
    q, f = ("quick", "full"), ("full",)
    return [
        Claim("tool_accuracy", "M* with the calculator: exact-answer accuracy on held-out 4–6-digit × "
              "2–3-digit multiplication", f"{SRC} §4.2, Table 4", ">=", 0.90, scales=q),
        Claim("tool_accuracy_full", "the same accuracy at scale=full", f"{SRC} §4.2, Table 4", ">=", 0.95, scales=f),
        Claim("baselines_fail", "max accuracy of M0, M0+CC and M* with the API disabled on those questions",
              f"{SRC} Table 4", "<=", 0.20, scales=q),
        Claim("call_rate", "share of those questions on which M* calls the calculator",
              f"{SRC} §4.2 (97.9 % of math examples)", ">=", 0.90, scales=q),
        Claim("text_call_rate", "share of held-out non-arithmetic prompts (no numbers; a calculator cannot "
              "help) on which M* with the API starts a call", f"{SRC} §2, §4.2 (the model decides when to call)",
              "<=", 0.10, scales=q),
        Claim("filter_precision", "kept calls whose result appears in the next 5 tokens (raw rate in note)",
              f"{SRC} §2 filtering", ">=", 0.80, scales=q),
        Claim("filter_beats_unfiltered", "accuracy of M* minus accuracy of M* trained on unfiltered calls",
              f"{SRC} §2 (ablation of the filter)", ">=", 0.20, scales=q),
        Claim("ppl_not_hurt", "held-out perplexity of M* (API disabled) / M0+CC − 1",
              f"{SRC} §4.4, Table 8", "<=", 0.05, scales=q),
        Claim("future_leak", "kept calls whose arguments appear only after the call (rate)",
              f"{SRC} §2 (ours: leak check)", "<=", 0.05, scales=q),
    ]


def run(ctx: RunContext) -> None:
    cfg, tc, card = ctx.cfg, ctx.cfg.toolformer, ctx.card
    tok = CharTokenizer()
    model_cfg = replace(cfg.model, vocab_size=tok.vocab_size)
    data = make_corpora(cfg.seed, tc)                               # documents and held-out questions
    m0_path, m0_key = train_m0(ctx, tok, model_cfg, data)           # M0, the bootstrap model (cached)
    m0 = load_model(model_cfg, m0_path)
    scored, stats = annotate_calls(ctx, m0, tok, data, m0_key)      # sample, execute, score calls (§2; cached)
    filt = filter_calls(ctx, scored, data.annotate, stats)          # keep L⁻ − L⁺ ≥ τ_f (§2)
    card.record("filter_precision", filt.precision,
                f"raw candidates {filt.raw_rate:.3f}; kept {len(filt.kept)} of {len(scored)} unique candidates")
    card.record("future_leak", filt.leak_rate, f"{filt.leaks} of {len(filt.kept)} kept calls")
    results, grids = finetune_and_evaluate_all(                     # M*, M0 + CC, unfiltered; Table 4's rows
        ctx, tok, model_cfg, m0_path, data, scored, filt.kept)

    n_q = f"{len(data.claim_questions)} questions"
    tool, tool_off = results["M* (Toolformer)"], results["M* (API disabled)"]
    tmpl = f"{n_q}; the same questions in a held-out template: {tool['template_accuracy']:.3f} " \
           f"(call rate {tool['template_call_rate']:.3f})"
    card.record("tool_accuracy", tool["accuracy"], tmpl)
    card.record("tool_accuracy_full", tool["accuracy"], tmpl)
    base = {n: results[n]["accuracy"] for n in ("M0", "M0 + CC", "M* (API disabled)")}
    card.record("baselines_fail", max(base.values()), ", ".join(f"{n} {v:.3f}" for n, v in base.items()))
    m0_api = results["M0 (with API)"]
    card.record("call_rate", tool["call_rate"], f"M0 with the API {m0_api['call_rate']:.3f}")
    card.record("text_call_rate", tool["text_call_rate"],
                f"{len(data.text_prompts)} prompts, entry p(\"[\") >= {tc.decode_min_p:g}; "
                f"M0 with the API {m0_api['text_call_rate']:.3f}")
    unf = results["M* unfiltered"]["accuracy"]
    card.record("filter_beats_unfiltered", tool["accuracy"] - unf, f"M* {tool['accuracy']:.3f}, unfiltered {unf:.3f}")
    ppl_cc = results["M0 + CC"]["perplexity"]
    card.record("ppl_not_hurt", tool_off["perplexity"] / ppl_cc - 1,
                f"M* {tool_off['perplexity']:.4f}, CC {ppl_cc:.4f} per character")

    ctx.save_figure(grid_figure(grids, tc.max_a_digits), "accuracy_by_operation_and_digits")
    ctx.write_text("accuracy_by_cell.md", grid_markdown(grids, tc.max_a_digits))
    ctx.write_text("table4.md", table4(results, filt.stats, filt.precision, filt.raw_rate, filt.leak_rate))
    ctx.write_text("results.json", json.dumps({"rows": results, "filter": filt.stats | {
        "precision": filt.precision, "raw_useful_rate": filt.raw_rate, "future_leak_rate": filt.leak_rate}}, indent=2))
