"""`quantization` and `quantization_smollm2`: 4-bit weights — how much of the loss, the facts and
the linear relations survive (issue 20).

    toyrepro experiment=quantization          # the `lre` toy fact GPT (float32, trained by the suite)
    toyrepro experiment=quantization_smollm2  # SmolLM2-135M-Instruct; its shipped GGUF is Q4_1 already

Method: take the trained model (the toy: `lre`'s cached model, same config; SmolLM2: its Q4_1
GGUF dequantised to float32, which is the reference "f32" here, and every further format is
applied to *those* values), and for each weight format (formats.py) replace every linear weight
by its quantise-dequantise round trip (weights.py), then measure held-out perplexity, fact
recall, and the LRE re-estimated on the quantised model (faithfulness, causality; measure.py).

Claims (issue 20; thresholds fixed in the issue before any run; `quick` and `full`):
- `q8_perplexity`: |ppl(Q8_0) / ppl(f32) - 1| < 0.005 (llama.cpp: Q8_0 is near-lossless);
- `q8_recall`: |recall(Q8_0) - recall(f32)| <= 0.01;
- `order_weight_error`, `order_perplexity`: at each RTN width <= bits_low (4, 3, 2), group-wise
  (g32 and g128) <= per-channel <= per-tensor; value = number of the 9 inequalities violated;
- `cliff`: per-tensor RTN, max over widths <= 3 of the perplexity increase over f32 divided by
  that of 4 bits >= 10.
Findings (Allen-Zhu & Li 2024, Physics of LMs 3.3; the lre link), measured, not scored per run;
the write-up scores them only if they hold on every seed (issue 20):
- `finding_recall_faster_than_ppl`: over formats of <= bits_low bits, the mean of (fraction of
  recall lost towards chance) - (fraction of log-perplexity lost towards the uniform model) > 0;
- `finding_faith_no_faster_than_recall`: over the LRE formats of <= bits_low bits, mean drop of
  mean faithfulness - mean drop of recall <= 0 (a relation whose LRE cannot be fitted counts 0).
"""

from __future__ import annotations

import logging
import math
import time

import torch

from toyrepro.core.checks import UserError
from toyrepro.core.run import RunContext
from toyrepro.core.scorecard import QF, Claim, Scorecard
from toyrepro.quantization import figures
from toyrepro.quantization.formats import RTN_GROUPINGS, parse
from toyrepro.quantization.measure import (
    FormatResult,
    measure_relations,
    padding_mask,
    perplexity,
    pooled_recall,
    text_windows,
    toy_heldout_rows,
)
from toyrepro.quantization.weights import quantized

log = logging.getLogger("toyrepro")
LLAMA_CPP = "llama.cpp perplexity table (Q8_0 ~ +0.0 %, Q4_0 +4.2 % on LLaMA-7B)"
GPTQ = "Frantar et al. 2022 (GPTQ) §5, Table 3 RTN baselines"
PHYSICS = "Allen-Zhu & Li 2024, Physics of LMs 3.3 (knowledge capacity vs bits)"


def claims(cfg=None) -> list[Claim]:
    return [
        Claim("q8_perplexity", "Q8_0 changes held-out perplexity by < 0.5 % (|ppl/ppl_f32 - 1|)", LLAMA_CPP, "<", 0.005, QF),
        Claim("q8_recall", "Q8_0 changes fact recall by <= 0.01 (absolute)", LLAMA_CPP, "<=", 0.01, QF),
        Claim("order_weight_error", "at <= 4 bits, weight error orders group-wise <= per-channel <= per-tensor "
              "(inequalities violated, of 9)", GPTQ, "<=", 0, QF),
        Claim("order_perplexity", "at <= 4 bits, perplexity orders group-wise <= per-channel <= per-tensor "
              "(inequalities violated, of 9)", GPTQ, "<=", 0, QF),
        Claim("cliff", "per-tensor RTN: max over <= 3 bits of the perplexity increase / the 4-bit increase",
              GPTQ, ">=", 10.0, QF),
        Claim("finding_recall_faster_than_ppl", "at <= 4 bits, recall lost (fraction to chance) - log-perplexity lost "
              "(fraction to uniform), mean over formats", PHYSICS, ">", 0.0, ()),
        Claim("finding_faith_no_faster_than_recall", "at <= 4 bits, drop of LRE faithfulness - drop of recall, "
              "mean over LRE formats", "issue 20 (lre link)", "<=", 0.0, ()),
    ]


def setup_toy(ctx: RunContext):
    """lre's toy KB and its trained GPT (lre's cached stage when lre ran with this config)."""
    from toyrepro.lre.toy import make_kb, toy_relations, train_toy_lm

    cfg, lre = ctx.cfg, ctx.cfg.lre
    kb = make_kb(lre.n_subjects, lre.n_countries, lre.n_continents, lre.n_ids, cfg.seed,
                 lre.subject_tokens, cfg.model.vocab_size, lre.subject_pool)
    lm = train_toy_lm(ctx, kb)
    rows = toy_heldout_rows(kb, lre, cfg.quantization.ppl_rows, cfg.seed)
    relations = toy_relations(kb)
    chance = {r.name: 1.0 / kb.cardinality[r.name] for r in relations}
    return lm, relations, rows, padding_mask(rows), chance


def setup_smollm2(ctx: RunContext):
    """SmolLM2-135M-Instruct (Q4_1 GGUF dequantised to float32), the lre relations, the fixed text."""
    from toyrepro.lre.relations import RelationFileError, load_relations
    from toyrepro.lre.smollm2 import load_smollm2_cached

    lre, q = ctx.cfg.lre, ctx.cfg.quantization
    lm = load_smollm2_cached(ctx.cfg.cache_dir)
    try:
        relations = load_relations(lm, lre.relations or None, lre.max_subjects)
    except (RelationFileError, ValueError) as e:
        raise UserError(str(e)) from e
    chance = {r.name: 1.0 / len({lm.encode(" " + o)[0] for _, o in r.samples}) for r in relations}
    return lm, relations, text_windows(lm, q.ppl_tokens, q.ppl_window), None, chance


def run(ctx: RunContext) -> None:
    cfg, q = ctx.cfg, ctx.cfg.quantization
    torch.manual_seed(cfg.seed)
    t0 = time.perf_counter()
    toy = cfg.lre.model_source == "toy"
    lm, relations, rows, mask, chance = (setup_toy if toy else setup_smollm2)(ctx)
    log.info("model ready in %.1fs (%s); %d formats", time.perf_counter() - t0, cfg.lre.model_source, len(q.formats))

    results: list[FormatResult] = []
    lre_formats = set(q.lre_formats or q.formats)
    for step, name in enumerate(q.formats):
        t = time.perf_counter()
        fmt = parse(name)
        with quantized(lm.model, fmt, q.quantize_embeddings) as report:
            ppl = perplexity(lm, rows, mask)
            rel = measure_relations(lm, relations, cfg.lre, cfg.seed, with_lre=name in lre_formats)
        res = FormatResult(name, report.bits_per_weight, report.rel_error, ppl, pooled_recall(rel), rel,
                           lre=name in lre_formats)
        results.append(res)
        ctx.log_metrics("quantize", {f"{name}/bits_per_weight": res.bits_per_weight, f"{name}/weight_error": res.weight_error,
                                     f"{name}/perplexity": ppl, f"{name}/recall": res.recall,
                                     f"{name}/faithfulness": res.faithfulness(), f"{name}/causality": res.causality()},
                        step=step)
        log.info("format %-13s %.3f bits/w  err %.4f  ppl %.4f  recall %.3f  faith %.3f  cause %.3f  (%.1fs)",
                 name, res.bits_per_weight, res.weight_error, ppl, res.recall, res.faithfulness(), res.causality(),
                 time.perf_counter() - t)

    pooled_chance = sum(chance[r.name] * len(r.samples) for r in relations) / sum(len(r.samples) for r in relations)
    record(ctx.card, results, q.bits_low, pooled_chance, lm.vocab_size)
    wall = time.perf_counter() - t0
    ctx.write_text("formats.md", figures.format_table(results) + "\n" + figures.relation_table(results)
                   + f"\nwall time: {wall:.0f}s\n")
    log.info("formats:\n%s", figures.format_table(results))
    ctx.log_metrics("quantize", {"wall_s": wall}, step=len(results))
    ctx.save_figure(figures.curves_figure(results), "metrics_vs_bits")
    ctx.save_figure(figures.error_figure(results), "weight_error_vs_bits")


def by_name(results: list[FormatResult]) -> dict[str, FormatResult]:
    return {r.name: r for r in results}


def ordering_violations(res: dict[str, FormatResult], metric, widths: list[int]) -> tuple[int, int, list[str]]:
    """(violated, checked, descriptions) of g32 <= channel, g128 <= channel, channel <= tensor per width."""
    bad, n = [], 0
    for b in widths:
        get = {g: res.get(f"rtn{b}_{g}") for g in RTN_GROUPINGS}
        for lo, hi in (("g32", "channel"), ("g128", "channel"), ("channel", "tensor")):
            if get[lo] is None or get[hi] is None:
                continue
            n += 1
            if not metric(get[lo]) <= metric(get[hi]):
                bad.append(f"{b}-bit {lo} {metric(get[lo]):.4g} > {hi} {metric(get[hi]):.4g}")
    return len(bad), n, bad


def record(card: Scorecard, results: list[FormatResult], bits_low: int, chance: float, vocab: int) -> None:
    res = by_name(results)
    ref = res["f32"]
    contrast = res.get("rtn4_tensor") or res.get("q4_0")
    contrast_note = (f"; trivial baselines: f32 itself 0, {contrast.name} {contrast.perplexity / ref.perplexity - 1:+.4f}"
                     if contrast else "")
    if "q8_0" in res:
        q8 = res["q8_0"]
        card.record("q8_perplexity", abs(q8.perplexity / ref.perplexity - 1),
                    f"ppl {q8.perplexity:.4f} vs f32 {ref.perplexity:.4f}{contrast_note}")
        card.record("q8_recall", abs(q8.recall - ref.recall),
                    f"recall {q8.recall:.4f} vs f32 {ref.recall:.4f}"
                    + (f"; {contrast.name} {contrast.recall - ref.recall:+.4f}" if contrast else ""))
    widths = sorted({parse(r.name).bits for r in results if r.name.startswith("rtn") and parse(r.name).bits <= bits_low},
                    reverse=True)
    chance_note = "; chance: 4.5 of 9 for unrelated numbers"
    for cid, metric in (("order_weight_error", lambda r: r.weight_error), ("order_perplexity", lambda r: r.perplexity)):
        bad, n, desc = ordering_violations(res, metric, widths)
        if n:
            card.record(cid, bad, (f"{n} checked at {widths} bits; " + ("; ".join(desc) or "none violated")) + chance_note)
    tensor = {b: res[f"rtn{b}_tensor"] for b in (4, 3, 2) if f"rtn{b}_tensor" in res}
    if 4 in tensor and len(tensor) > 1:
        floor = 1e-6 * ref.perplexity  # (a zero 4-bit increase would divide by zero)
        d4 = max(tensor[4].perplexity - ref.perplexity, floor)
        ratios = {b: (t.perplexity - ref.perplexity) / d4 for b, t in tensor.items() if b < 4}
        card.record("cliff", max(ratios.values()),
                    f"ppl increase 4-bit {tensor[4].perplexity - ref.perplexity:+.4g}; ratio "
                    + ", ".join(f"{b}-bit {v:.3g}" for b, v in ratios.items())
                    + "; a straight line in bits gives 1.25 (3) / 1.5 (2), Δloss ∝ weight MSE ∝ 4^-b gives 4 / 16")

    low = [r for r in results if r.name != "f32" and parse(r.name).bits <= bits_low]
    log_uniform, log_ref = math.log(vocab), math.log(ref.perplexity)
    gaps = []
    for r in low:
        recall_lost = (ref.recall - r.recall) / max(ref.recall - chance, 1e-9)
        loss_lost = (math.log(r.perplexity) - log_ref) / (log_uniform - log_ref)
        gaps.append(recall_lost - loss_lost)
    if gaps:
        card.record("finding_recall_faster_than_ppl", sum(gaps) / len(gaps),
                    f"{len(gaps)} formats; formats where recall falls faster: {sum(g > 0 for g in gaps)}; "
                    f"chance recall {chance:.3f}, uniform ppl {vocab}")
    lre_low = [r for r in low if r.lre]
    if lre_low and ref.lre:
        diffs = [(ref.faithfulness() - r.faithfulness()) - (ref.recall - r.recall) for r in lre_low]
        card.record("finding_faith_no_faster_than_recall", sum(diffs) / len(diffs),
                    f"{len(diffs)} formats; faithfulness f32 {ref.faithfulness():.3f}; "
                    + ", ".join(f"{r.name} {d:+.3f}" for r, d in zip(lre_low, diffs)))
    for r in results:
        card.declare([Claim(f"fmt/{r.name}", f"{r.name}: perplexity / f32 - 1; informational", GPTQ, ">=", -1.0, ())])
        card.record(f"fmt/{r.name}", r.perplexity / ref.perplexity - 1,
                    f"{r.bits_per_weight:.3f} bits/w, weight err {r.weight_error:.4f}, recall {r.recall:.3f}, "
                    f"faith {r.faithfulness():.3f}, cause {r.causality():.3f}")
