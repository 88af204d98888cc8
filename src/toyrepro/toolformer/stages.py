"""The stages of the Toolformer pipeline (Schick et al. 2023, §2 and §4), one function each.

`experiment.run` calls them in order; each is what one paragraph of the paper's method
describes: the data (§4.1, our synthetic corpus), M0 (the bootstrap model standing in for
GPT-J), sampling and scoring API calls (§2 "Sampling", "Executing", "Filtering"),
fine-tuning three ways (§2 "Model Finetuning"; the GPT-J + CC baseline of §4.2; our
unfiltered ablation), and the Table 4 evaluation. M0 and the scored candidates are cached
stage artefacts keyed by what determines them, so a sweep over τ_f or the fine-tuning
reuses them.
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from toyrepro.core.data import RandomWindows
from toyrepro.core.run import RunContext
from toyrepro.core.stage import cached_stage
from toyrepro.core.transformer import GPT, GPTConfig
from toyrepro.toolformer.annotate import Candidate, annotate
from toyrepro.toolformer.bootstrap import bootstrap_corpus, with_call
from toyrepro.toolformer.corpus import (
    HELD_OUT_QUESTION,
    OPS,
    CharTokenizer,
    Doc,
    Question,
    held_out_questions,
    in_template,
    join,
    random_docs,
    text_docs,
    text_prompts,
    text_share_count,
)
from toyrepro.toolformer.decoding import decode, entry_curve
from toyrepro.toolformer.evaluation import (
    OP_NAMES,
    accuracy,
    accuracy_grid,
    call_rate,
    gain_histogram,
    perplexity,
)
from toyrepro.toolformer.filtering import Scored, is_future_leak, is_useful, keep, score_candidates

log = logging.getLogger("toyrepro")


@dataclass
class Corpora:
    """Documents for pretraining M0, for annotation (C) and for held-out perplexity, and the
    held-out questions (never seen in any document): the claim set, the same questions in a
    template no document uses, the heat-map grid, and non-arithmetic prompts."""

    claim_questions: list[Question]
    grid_questions: list[Question]
    pretrain: list[Doc]  # arithmetic and non-arithmetic documents, shuffled
    annotate: list[Doc]  # arithmetic documents, then the non-arithmetic ones
    held_out: list[Doc]  # arithmetic only (the perplexity of `ppl_not_hurt`, unchanged)
    key: dict  # what determines the documents (part of every cache key)
    template_questions: list[Question] = field(default_factory=list)  # claim set in HELD_OUT_QUESTION
    text_prompts: list[str] = field(default_factory=list)  # non-arithmetic, as many as claim questions


def make_corpora(seed: int, tc) -> Corpora:
    claim_qs, grid_qs = held_out_questions(seed, tc.claim_questions, tc.cell_questions, tc.max_a_digits,
                                           tc.max_b_digits)
    held = {q.key for q in claim_qs + grid_qs}
    pretrain, annotate, held_out = [random_docs(n, offset + seed, tc.max_a_digits, tc.max_b_digits, held)
                                    for n, offset in ((tc.pretrain_docs, 0), (tc.annotate_docs, 1_000),
                                                      (tc.ppl_docs, 2_000))]
    pretrain = pretrain + text_docs(text_share_count(tc.pretrain_docs, tc.text_share), 3_000 + seed)
    random.Random(50_021 + seed).shuffle(pretrain)
    annotate = annotate + text_docs(text_share_count(tc.annotate_docs, tc.text_share), 4_000 + seed)
    seen = {d.text for d in pretrain + annotate}
    key = {"max_a": tc.max_a_digits, "max_b": tc.max_b_digits, "exclude": len(held), "text_share": tc.text_share}
    return Corpora(claim_qs, grid_qs, pretrain, annotate, held_out, key=key,
                   template_questions=[in_template(q, HELD_OUT_QUESTION) for q in claim_qs],
                   text_prompts=text_prompts(len(claim_qs), 5_000 + seed, seen))


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


def train_m0(ctx: RunContext, tok: CharTokenizer, model_cfg: GPTConfig, data: Corpora) -> tuple[Path, dict]:
    """M0: the bootstrap model, trained on documents of which a share carry a random call (cached)."""
    cfg, tc = ctx.cfg, ctx.cfg.toolformer
    params = {"model": asdict(model_cfg), "optim": asdict(cfg.optim), "steps": cfg.trainer.max_steps,
              "pretrain_docs": tc.pretrain_docs, "bootstrap_share": tc.bootstrap_share,
              "bootstrap_own_op": tc.bootstrap_own_op, "seed": cfg.seed, "corpus": data.key}

    def build(tmp: Path) -> None:
        torch.manual_seed(cfg.seed)
        model = GPT(model_cfg)
        log.info("M0: %.2fM parameters, %d documents (%.0f%% with a random call)", model.num_params() / 1e6,
                 len(data.pretrain), 100 * tc.bootstrap_share)
        texts = bootstrap_corpus(data.pretrain, tc.bootstrap_share, cfg.seed, tc.bootstrap_own_op)
        train_lm(ctx, model, tok, texts, [d.text for d in data.held_out], "m0", cfg.trainer.max_steps)
        torch.save(model.state_dict(), tmp / "model.pt")

    return cached_stage(cfg.cache_dir, "toolformer-m0", params, build), params


def annotate_calls(ctx: RunContext, m0: GPT, tok: CharTokenizer, data: Corpora, m0_key: dict
                   ) -> tuple[list[Scored], dict]:
    """Sample candidate calls at likely positions, execute them, and score L⁻ and L⁺ (§2; cached)."""
    cfg, tc = ctx.cfg, ctx.cfg.toolformer
    params = {"m0": m0_key, "annotate_docs": tc.annotate_docs, "tau_s": tc.tau_s, "top_k": tc.top_k,
              "m": tc.m, "max_call_tokens": tc.max_call_tokens, "weight_decrement": tc.weight_decrement}
    # versions: 2 = L_i(ε) no longer counts the end token (filtering.score_candidates);
    # 3 = finished rows leave the sampling batch (other random draws)

    def build(tmp: Path) -> None:
        cands, stats = annotate(m0, tok, data.annotate, tc.top_k, tc.tau_s, tc.m, tc.max_call_tokens,
                                tc.sample_batch, cfg.seed)
        scored = score_candidates(m0, tok, data.annotate, cands, tc.weight_decrement, tc.score_batch)
        rows = [asdict(s.cand) | {"loss_plain": s.loss_plain, "loss_no_result": s.loss_no_result,
                                  "loss_result": s.loss_result} for s in scored]
        (tmp / "candidates.json").write_text(json.dumps({"stats": stats, "candidates": rows}))

    path = cached_stage(cfg.cache_dir, "toolformer-annotate", params, build, version=3)
    saved = json.loads((path / "candidates.json").read_text())
    scored = [Scored(Candidate(**{k: r[k] for k in ("doc", "position", "expr", "result", "p_start", "count")}),
                     r["loss_plain"], r["loss_no_result"], r["loss_result"]) for r in saved["candidates"]]
    return scored, saved["stats"]


@dataclass
class Filtered:
    kept: list[Scored]
    precision: float  # kept calls whose result appears in the next tokens
    raw_rate: float  # the same rate over every scored candidate
    leak_rate: float  # kept calls whose arguments appear only after the call
    leaks: int
    stats: dict


def filter_calls(ctx: RunContext, scored: list[Scored], docs: list[Doc], stats: dict) -> Filtered:
    """Keep the calls with L⁻ − L⁺ ≥ τ_f (§2 "Filtering API Calls"), and measure what was kept."""
    tc = ctx.cfg.toolformer
    kept = keep(scored, tc.tau_f)
    useful = [is_useful(docs[s.cand.doc].text, s.cand.position, s.cand.result, tc.useful_window) for s in scored]
    kept_useful = [is_useful(docs[s.cand.doc].text, s.cand.position, s.cand.result, tc.useful_window) for s in kept]
    leaks = [is_future_leak(docs[s.cand.doc].text, s.cand.position, s.cand.expr) for s in kept]
    out = Filtered(kept, sum(kept_useful) / max(1, len(kept)), sum(useful) / max(1, len(scored)),
                   sum(leaks) / max(1, len(kept)), sum(leaks),
                   stats | {"scored": len(scored), "kept": len(kept), "docs_with_calls": len({s.cand.doc for s in kept})})
    log.info("filter: %s; precision %.3f (raw candidates %.3f), future leaks %.3f", out.stats, out.precision,
             out.raw_rate, out.leak_rate)
    ctx.log_metrics("filter", {f"filter/{k}": float(v) for k, v in out.stats.items()}
                    | {"filter/precision": out.precision, "filter/raw_useful_rate": out.raw_rate,
                       "filter/future_leak_rate": out.leak_rate})
    ctx.save_figure(gain_histogram([s.gain for s in scored], useful, tc.tau_f), "filter_gain_histogram")
    return out


def augmented_texts(docs: list[Doc], calls: dict[int, list[Candidate]]) -> list[str]:
    """Each document with its calls inserted (right to left, so positions stay valid)."""
    out = []
    for d, doc in enumerate(docs):
        text = doc.text
        for c in sorted(calls.get(d, []), key=lambda c: -c.position):
            text = with_call(text, c.position, c.expr, c.result)
        out.append(text)
    return out


def finetune_datasets(seed: int, data: Corpora, scored: list[Scored], kept: list[Scored]) -> dict[str, list[str]]:
    """The three fine-tuning sets: C* (kept calls; M*), C without calls (GPT-J + CC), and C with one
    unfiltered call per document that has candidates (our ablation)."""
    docs = data.annotate
    rng = random.Random(40_009 + seed)
    by_doc: dict[int, list[Candidate]] = {}
    for s in scored:
        by_doc.setdefault(s.cand.doc, []).append(s.cand)
    return {
        "finetune_cc": [d.text for d in docs],
        "finetune_toolformer": augmented_texts(docs, {d: [s.cand for s in kept if s.cand.doc == d]
                                                      for d in {s.cand.doc for s in kept}}),
        "finetune_unfiltered": augmented_texts(docs, {d: [rng.choice(cs)] for d, cs in sorted(by_doc.items())}),
    }


# Table 4's rows, in order: (the fine-tune the model comes from, or None for M0; API on)
ROWS = {"M0": (None, False), "M0 (with API)": (None, True), "M0 + CC": ("finetune_cc", False),
        "M* (API disabled)": ("finetune_toolformer", False), "M* (Toolformer)": ("finetune_toolformer", True),
        "M* unfiltered": ("finetune_unfiltered", True)}
ROW_COST = 100  # one row's evaluation in fine-tuning steps (quick: ~5 s against ~70 s for 1200 steps)


def model_jobs(datasets: dict[str, list[str]]) -> list[tuple[str | None, list[str], list[str]]]:
    """One job per model: (fine-tune stage or None for M0, its texts, its Table 4 rows)."""
    return [(stage, datasets.get(stage, []), [r for r, (src, _) in ROWS.items() if src == stage])
            for stage in (None, *datasets)]


def job_cost(ctx: RunContext, job: tuple) -> float:
    stage, _, rows = job
    return (ctx.cfg.toolformer.finetune_steps if stage else 0) + ROW_COST * len(rows)


def finetune_and_evaluate(ctx: RunContext, tok: CharTokenizer, model_cfg: GPTConfig, m0_path: Path,
                          data: Corpora, stage: str | None, texts: list[str], rows: list[str]
                          ) -> dict[str, tuple[dict, list]]:
    """One model's part of the run (a job of `ctx.side_by_side`): M0 fine-tuned on `texts` in Lightning
    stage `stage` (§2 "Model Finetuning"; M0 itself when `stage` is None), then its Table 4 `rows`.
    Each fine-tune starts from the saved M0 and draws seeded windows, so the jobs do not depend on
    each other or on the order they run in."""
    model = load_model(model_cfg, m0_path)
    if stage is not None:
        model.train()
        log.info("%s: %d documents, e.g. %r", stage, len(texts), next((t for t in texts if "[" in t), texts[0]))
        train_lm(ctx, model, tok, texts, [d.text for d in data.held_out], stage, ctx.cfg.toolformer.finetune_steps,
                 lr=ctx.cfg.toolformer.finetune_lr)
        model.eval()
    return {row: evaluate_row(ctx, tok, data, row, model, ROWS[row][1]) for row in rows}


ENTRY_THRESHOLDS = [0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9]  # entry-rule sweep (decoding.py)


def evaluate_row(ctx: RunContext, tok: CharTokenizer, data: Corpora, name: str, model: GPT, api: bool
                 ) -> tuple[dict, list]:
    """One row of Table 4: the model (API on or off) on the held-out questions, by operation and
    digits, the same questions in the held-out template, non-arithmetic prompts, and held-out
    perplexity. With the API, also the entry-rule sweep: call rates for every threshold in
    `ENTRY_THRESHOLDS` from one decode with min_p = inf, which never enters a call but records each
    input's entry score (`decoding.entry_curve`). Returns (the row's results, its accuracy grid)."""
    tc = ctx.cfg.toolformer
    claim_qs, grid_qs, tmpl_qs = data.claim_questions, data.grid_questions, data.template_questions
    parts = {"claim": [q.prompt for q in claim_qs], "grid": [q.prompt for q in grid_qs],
             "template": [q.prompt for q in tmpl_qs], "text": list(data.text_prompts)}
    outs = decode(model, tok, [p for ps in parts.values() for p in ps], api, tc.decode_top_k, tc.max_new_tokens,
                  tc.eval_batch, tc.decode_min_p)
    o, s = {}, 0
    for part, ps in parts.items():
        o[part], s = outs[s : s + len(ps)], s + len(ps)
    ppl = perplexity(model, tok, [d.text for d in data.held_out], tc.score_batch)
    grid = accuracy_grid(grid_qs, o["grid"], tc.max_a_digits)
    result = {"api": api, "accuracy": accuracy(claim_qs, o["claim"]), "call_rate": call_rate(o["claim"]),
              "template_accuracy": accuracy(tmpl_qs, o["template"]),
              "template_call_rate": call_rate(o["template"]), "text_call_rate": call_rate(o["text"]),
              "grid_accuracy": accuracy(grid_qs, o["grid"]), "perplexity": ppl,
              **{f"grid_{OP_NAMES[op]}": float(np.nanmean(row)) for op, row in zip(OPS, grid)},
              "example": parts["claim"][0] + o["claim"][0].text.rstrip("\n"),
              "template_example": parts["template"][0] + o["template"][0].text.rstrip("\n"),
              "text_example": parts["text"][0] + o["text"][0].text.rstrip("\n")}
    if api:  # the same prompts with min_p = inf (no call entered): p_enter for every threshold at once
        probe = decode(model, tok, parts["claim"] + parts["text"], True, tc.decode_top_k,
                       tc.max_new_tokens, tc.eval_batch, min_p=float("inf"))
        n = len(parts["claim"])
        result["entry_sweep"] = {"thresholds": ENTRY_THRESHOLDS, "claim": entry_curve(probe[:n], ENTRY_THRESHOLDS),
                                 "text": entry_curve(probe[n:], ENTRY_THRESHOLDS)}
    log.info("evaluate %-18s %s", name, result)
    return result, grid


def finetune_and_evaluate_all(ctx: RunContext, tok: CharTokenizer, model_cfg: GPTConfig, m0_path: Path,
                              data: Corpora, scored: list[Scored], kept: list[Scored]
                              ) -> tuple[dict[str, dict], dict[str, list]]:
    """The three fine-tunes and Table 4 (its rows in `ROWS` order, and their accuracy grids). The four
    models' jobs are independent: with `workers` > 1 they run side by side (`core/parallel.py`)."""
    jobs = model_jobs(finetune_datasets(ctx.cfg.seed, data, scored, kept))
    done: dict[str, tuple[dict, list]] = {}
    for out in ctx.side_by_side(finetune_and_evaluate, [(tok, model_cfg, m0_path, data, *job) for job in jobs],
                                cost=[job_cost(ctx, job) for job in jobs]):
        done |= out
    results, grids = {r: done[r][0] for r in ROWS}, {r: done[r][1] for r in ROWS}
    for k, r in enumerate(results.values()):
        ctx.log_metrics("evaluate", {f"eval/{key}": float(v) for key, v in r.items()
                                     if isinstance(v, (int, float))}, step=k)
    return results, grids


def table4(results: dict, stats: dict, precision: float, raw: float, leak: float) -> str:
    ops = [OP_NAMES[op] for op in OPS]
    lines = ["| model | API | × 4–6 by 2–3 digits | call rate | held-out template | its call rate "
             "| non-arithmetic call rate | " + " | ".join(f"{o} (grid)" for o in ops)
             + " | all (grid) | held-out ppl (API disabled) |",
             "|---|---|---|---|---|---|---|" + "---|" * len(ops) + "---|---|"]
    for name, r in results.items():
        lines.append(f"| {name} | {'on' if r['api'] else 'off'} | {r['accuracy']:.3f} | {r['call_rate']:.3f} | "
                     f"{r['template_accuracy']:.3f} | {r['template_call_rate']:.3f} | {r['text_call_rate']:.3f} | "
                     + " | ".join(f"{r[f'grid_{o}']:.3f}" for o in ops)
                     + f" | {r['grid_accuracy']:.3f} | {r['perplexity']:.4f} |")
    lines += ["", f"filter: {stats}; precision {precision:.3f} (raw {raw:.3f}); future leaks {leak:.3f}", ""]
    sweeps = {n: r["entry_sweep"] for n, r in results.items() if "entry_sweep" in r}
    if sweeps:
        ts = next(iter(sweeps.values()))["thresholds"]
        lines += ["Entry rule sweep: share of inputs that enter a call when the rule is p(\"[\") >= t (with \"[\" "
                  "in the top k; an argmax \"[\" always enters); claim questions / non-arithmetic prompts", "",
                  "| model | " + " | ".join(f"t = {t:g}" for t in ts) + " |", "|---|" + "---|" * len(ts)]
        lines += [f"| {n} | " + " | ".join(f"{c:.3f} / {x:.3f}" for c, x in zip(sw["claim"], sw["text"])) + " |"
                  for n, sw in sweeps.items()]
        lines.append("")
    for key in ("example", "template_example", "text_example"):
        lines += [f"- {name}: `{r[key]}`" for name, r in results.items()]
    return "\n".join(lines) + "\n"
