"""The `toolformer` experiment, top to bottom (Schick et al. 2023, arXiv 2302.04761).

    M0 (bootstrap corpus) -> annotate C (sample calls) -> filter (L⁻ − L⁺ ≥ τ_f)
      -> fine-tune M0 on C* = M*            (the paper's Toolformer)
      -> fine-tune M0 on C (no calls)        (the paper's "GPT-J + CC" baseline)
      -> fine-tune M0 on unfiltered calls    (ablation)
    -> evaluate on held-out questions with the API on / disabled, and held-out perplexity.

M0 and the scored candidates are stage artefacts cached by the hash of what determines
them (`core.stage.cached_stage`), so a sweep over τ_f or the fine-tuning reuses them; the
three fine-tunes run in every run (they are cheap and give each run its checkpoints).
Deviations from the paper are named in each module's docstring and in
experiments/toolformer/README.md.
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from toyrepro.core.data import RandomWindows
from toyrepro.core.gpt import GPT, GPTConfig
from toyrepro.core.run import RunContext
from toyrepro.core.scorecard import Claim
from toyrepro.core.stage import cached_stage
from toyrepro.toolformer.annotate import Candidate, annotate
from toyrepro.toolformer.bootstrap import bootstrap_corpus, with_call
from toyrepro.toolformer.corpus import (
    OPS,
    CharTokenizer,
    Doc,
    held_out_questions,
    join,
    random_docs,
)
from toyrepro.toolformer.decoding import decode
from toyrepro.toolformer.evaluation import (
    OP_NAMES,
    accuracy,
    accuracy_grid,
    call_rate,
    gain_histogram,
    grid_figure,
    grid_markdown,
    perplexity,
)
from toyrepro.toolformer.filtering import Scored, is_future_leak, is_useful, keep, score_candidates

log = logging.getLogger("toyrepro")
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
        Claim("filter_precision", "kept calls whose result appears in the next 5 tokens (raw rate in note)",
              f"{SRC} §2 filtering", ">=", 0.80, scales=q),
        Claim("filter_beats_unfiltered", "accuracy of M* minus accuracy of M* trained on unfiltered calls",
              f"{SRC} §2 (ablation of the filter)", ">=", 0.20, scales=q),
        Claim("ppl_not_hurt", "held-out perplexity of M* (API disabled) / M0+CC − 1",
              f"{SRC} §4.4, Table 8", "<=", 0.05, scales=q),
        Claim("future_leak", "kept calls whose arguments appear only after the call (rate)",
              f"{SRC} §2 (ours: leak check)", "<=", 0.05, scales=q),
    ]


def train_lm(ctx: RunContext, model: GPT, tok: CharTokenizer, texts: list[str], val_texts: list[str],
             stage: str, steps: int, lr: float | None = None) -> None:
    """The suite's causal-LM recipe (`ctx.train_lm`) on random windows of the texts."""
    cfg = ctx.cfg
    optim = cfg.optim if lr is None else replace(cfg.optim, lr=lr)
    bs, T = optim.batch_size, model.cfg.block_size
    train = torch.tensor(tok.encode(join(texts)), dtype=torch.uint8)
    val = torch.tensor(tok.encode(join(val_texts)), dtype=torch.uint8)
    ctx.train_lm(stage, model, RandomWindows(train, T, steps * bs, seed=cfg.seed),
                 RandomWindows(val, T, cfg.trainer.limit_val_batches * bs, seed=10_000 + cfg.seed),
                 steps=steps, optim=optim)


def load_model(model_cfg: GPTConfig, path: Path) -> GPT:
    model = GPT(model_cfg)
    model.load_state_dict(torch.load(path / "model.pt", map_location="cpu", weights_only=True))
    return model.eval()


def augmented_texts(docs: list[Doc], calls: dict[int, list[Candidate]]) -> list[str]:
    """Each document with its calls inserted (right to left, so positions stay valid)."""
    out = []
    for d, doc in enumerate(docs):
        text = doc.text
        for c in sorted(calls.get(d, []), key=lambda c: -c.position):
            text = with_call(text, c.position, c.expr, c.result)
        out.append(text)
    return out


def run(ctx: RunContext) -> None:
    cfg, tc, card = ctx.cfg, ctx.cfg.toolformer, ctx.card
    tok = CharTokenizer()
    model_cfg = replace(cfg.model, vocab_size=tok.vocab_size)
    claim_qs, grid_qs = held_out_questions(cfg.seed, tc.claim_questions, tc.cell_questions, tc.max_a_digits,
                                       tc.max_b_digits)
    held = {q.key for q in claim_qs + grid_qs}
    corpus = {"max_a": tc.max_a_digits, "max_b": tc.max_b_digits, "exclude": len(held)}
    pre_docs = random_docs(tc.pretrain_docs, cfg.seed, tc.max_a_digits, tc.max_b_digits, held)
    ann_docs = random_docs(tc.annotate_docs, 1_000 + cfg.seed, tc.max_a_digits, tc.max_b_digits, held)
    val_docs = random_docs(tc.ppl_docs, 2_000 + cfg.seed, tc.max_a_digits, tc.max_b_digits, held)
    val_texts = [d.text for d in val_docs]

    # --- stage 1: M0, the bootstrap model (cached) ----------------------------------------
    m0_params = {"model": asdict(model_cfg), "optim": asdict(cfg.optim), "steps": cfg.trainer.max_steps,
                 "pretrain_docs": tc.pretrain_docs, "bootstrap_share": tc.bootstrap_share, "bootstrap_own_op": tc.bootstrap_own_op, "seed": cfg.seed,
                 "corpus": corpus}

    def build_m0(tmp: Path) -> None:
        torch.manual_seed(cfg.seed)
        model = GPT(model_cfg)
        log.info("M0: %.2fM parameters, %d documents (%.0f%% with a random call)", model.num_params() / 1e6,
                 len(pre_docs), 100 * tc.bootstrap_share)
        texts = bootstrap_corpus(pre_docs, tc.bootstrap_share, cfg.seed, tc.bootstrap_own_op)
        train_lm(ctx, model, tok, texts, val_texts, "m0", cfg.trainer.max_steps)
        torch.save(model.state_dict(), tmp / "model.pt")

    m0_path = cached_stage(cfg.cache_dir, "toolformer-m0", m0_params, build_m0)
    m0 = load_model(model_cfg, m0_path)

    # --- stage 2: annotate C — sample, execute and score calls (cached) -------------------
    ann_params = {"m0": m0_params, "annotate_docs": tc.annotate_docs, "tau_s": tc.tau_s, "top_k": tc.top_k,
                  "m": tc.m, "max_call_tokens": tc.max_call_tokens, "weight_decrement": tc.weight_decrement}
    # versions: 2 = L_i(ε) no longer counts the end token (filtering.score_candidates);
    # 3 = finished rows leave the sampling batch (other random draws)

    def build_annotation(tmp: Path) -> None:
        cands, stats = annotate(m0, tok, ann_docs, tc.top_k, tc.tau_s, tc.m, tc.max_call_tokens,
                                tc.sample_batch, cfg.seed)
        scored = score_candidates(m0, tok, ann_docs, cands, tc.weight_decrement, tc.score_batch)
        rows = [asdict(s.cand) | {"loss_plain": s.loss_plain, "loss_no_result": s.loss_no_result,
                                  "loss_result": s.loss_result} for s in scored]
        (tmp / "candidates.json").write_text(json.dumps({"stats": stats, "candidates": rows}))

    ann_path = cached_stage(cfg.cache_dir, "toolformer-annotate", ann_params, build_annotation, version=3)
    saved = json.loads((ann_path / "candidates.json").read_text())
    scored = [Scored(Candidate(**{k: r[k] for k in ("doc", "position", "expr", "result", "p_start", "count")}),
                     r["loss_plain"], r["loss_no_result"], r["loss_result"]) for r in saved["candidates"]]

    # --- stage 3: filter ------------------------------------------------------------------
    kept = keep(scored, tc.tau_f)
    useful = [is_useful(ann_docs[s.cand.doc].text, s.cand.position, s.cand.result, tc.useful_window)
              for s in scored]
    kept_useful = [is_useful(ann_docs[s.cand.doc].text, s.cand.position, s.cand.result, tc.useful_window)
                   for s in kept]
    leaks = [is_future_leak(ann_docs[s.cand.doc].text, s.cand.position, s.cand.expr) for s in kept]
    precision = sum(kept_useful) / max(1, len(kept))
    raw_rate = sum(useful) / max(1, len(scored))
    leak_rate = sum(leaks) / max(1, len(kept))
    stats = saved["stats"] | {"scored": len(scored), "kept": len(kept), "docs_with_calls": len({s.cand.doc for s in kept})}
    log.info("filter: %s; precision %.3f (raw candidates %.3f), future leaks %.3f", stats, precision,
             raw_rate, leak_rate)
    ctx.log_metrics("filter", {f"filter/{k}": float(v) for k, v in stats.items()}
                    | {"filter/precision": precision, "filter/raw_useful_rate": raw_rate,
                       "filter/future_leak_rate": leak_rate})
    ctx.save_figure(gain_histogram([s.gain for s in scored], useful, tc.tau_f), "filter_gain_histogram")
    card.record("filter_precision", precision,
                f"raw candidates {raw_rate:.3f}; kept {len(kept)} of {len(scored)} unique candidates")
    card.record("future_leak", leak_rate, f"{sum(leaks)} of {len(kept)} kept calls")

    # --- stage 4: fine-tune M0 three ways ---------------------------------------------------
    rng = random.Random(40_009 + cfg.seed)
    by_doc: dict[int, list[Candidate]] = {}
    for s in scored:
        by_doc.setdefault(s.cand.doc, []).append(s.cand)
    datasets = {
        "finetune_cc": [d.text for d in ann_docs],
        "finetune_toolformer": augmented_texts(ann_docs, {d: [s.cand for s in kept if s.cand.doc == d]
                                                          for d in {s.cand.doc for s in kept}}),
        "finetune_unfiltered": augmented_texts(ann_docs, {d: [rng.choice(cs)] for d, cs in sorted(by_doc.items())}),
    }
    models: dict[str, GPT] = {}
    for stage, texts in datasets.items():
        model = load_model(model_cfg, m0_path).train()
        log.info("%s: %d documents, e.g. %r", stage, len(texts), next((t for t in texts if "[" in t), texts[0]))
        train_lm(ctx, model, tok, texts, val_texts, stage, tc.finetune_steps, lr=tc.finetune_lr)
        models[stage] = model.eval()

    # --- stage 5: evaluate (Table 4 rows) ---------------------------------------------------
    rows = {  # name: (model, API on)
        "M0": (m0, False), "M0 + CC": (models["finetune_cc"], False),
        "M* (API disabled)": (models["finetune_toolformer"], False),
        "M* (Toolformer)": (models["finetune_toolformer"], True),
        "M* unfiltered": (models["finetune_unfiltered"], True),
    }
    prompts_c, prompts_g = [q.prompt for q in claim_qs], [q.prompt for q in grid_qs]
    results, grids = {}, {}
    for name, (model, api) in rows.items():
        outs = decode(model, tok, prompts_c + prompts_g, api, tc.decode_top_k, tc.max_new_tokens, tc.eval_batch)
        out_c, out_g = outs[: len(prompts_c)], outs[len(prompts_c) :]
        ppl = perplexity(model, tok, val_texts, tc.score_batch)
        grids[name] = accuracy_grid(grid_qs, out_g, tc.max_a_digits)
        results[name] = {"accuracy": accuracy(claim_qs, out_c), "call_rate": call_rate(out_c),
                         "grid_accuracy": accuracy(grid_qs, out_g), "perplexity": ppl,
                         **{f"grid_{OP_NAMES[op]}": float(np.nanmean(row)) for op, row in zip(OPS, grids[name])},
                         "example": prompts_c[0] + out_c[0].text.rstrip("\n")}
        log.info("evaluate %-18s %s", name, results[name])
    for k, r in enumerate(results.values()):
        ctx.log_metrics("evaluate", {f"eval/{key}": v for key, v in r.items() if key != "example"}, step=k)

    tool, tool_off = results["M* (Toolformer)"], results["M* (API disabled)"]
    card.record("tool_accuracy", tool["accuracy"], f"{len(claim_qs)} questions")
    card.record("tool_accuracy_full", tool["accuracy"], f"{len(claim_qs)} questions")
    base = {n: results[n]["accuracy"] for n in ("M0", "M0 + CC", "M* (API disabled)")}
    card.record("baselines_fail", max(base.values()), ", ".join(f"{n} {v:.3f}" for n, v in base.items()))
    card.record("call_rate", tool["call_rate"])
    unf = results["M* unfiltered"]["accuracy"]
    card.record("filter_beats_unfiltered", tool["accuracy"] - unf, f"M* {tool['accuracy']:.3f}, unfiltered {unf:.3f}")
    ppl_cc = results["M0 + CC"]["perplexity"]
    card.record("ppl_not_hurt", tool_off["perplexity"] / ppl_cc - 1,
                f"M* {tool_off['perplexity']:.4f}, CC {ppl_cc:.4f} per character")

    ctx.save_figure(grid_figure(grids, tc.max_a_digits), "accuracy_by_operation_and_digits")
    ctx.write_text("accuracy_by_cell.md", grid_markdown(grids, tc.max_a_digits))
    ctx.write_text("table4.md", table4(results, stats, precision, raw_rate, leak_rate))
    ctx.write_text("results.json", json.dumps({"rows": results, "filter": stats | {
        "precision": precision, "raw_useful_rate": raw_rate, "future_leak_rate": leak_rate}}, indent=2))


def table4(results: dict, stats: dict, precision: float, raw: float, leak: float) -> str:
    ops = [OP_NAMES[op] for op in OPS]
    lines = ["| model | API | × 4–6 by 2–3 digits | call rate | " + " | ".join(f"{o} (grid)" for o in ops)
             + " | all (grid) | held-out ppl (API disabled) |", "|---|---|---|---|" + "---|" * len(ops) + "---|---|"]
    for name, r in results.items():
        api = "on" if name in ("M* (Toolformer)", "M* unfiltered") else "off"
        lines.append(f"| {name} | {api} | {r['accuracy']:.3f} | {r['call_rate']:.3f} | "
                     + " | ".join(f"{r[f'grid_{o}']:.3f}" for o in ops)
                     + f" | {r['grid_accuracy']:.3f} | {r['perplexity']:.4f} |")
    lines += ["", f"filter: {stats}; precision {precision:.3f} (raw {raw:.3f}); future leaks {leak:.3f}", ""]
    lines += [f"- {name}: `{r['example']}`" for name, r in results.items()]
    return "\n".join(lines) + "\n"
