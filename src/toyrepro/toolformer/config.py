"""Config section `toolformer:` (configs/experiment/toolformer.yaml).

Paper: Schick et al. 2023, "Toolformer: Language Models Can Teach Themselves to Use
Tools", arXiv 2302.04761. Section / appendix numbers below refer to it. The model, the
optimiser and M0's number of steps (`trainer.max_steps`) come from the shared sections.
"""

from __future__ import annotations

from dataclasses import dataclass

from toyrepro.core.checks import check


@dataclass
class ToolformerConfig:
    # --- corpus (ours: synthetic arithmetic text, see corpus.py) ---------------------------
    max_a_digits: int = 6  # first operand has 1..max_a_digits digits (issue: 1–6-digit numbers)
    max_b_digits: int = 3  # second operand has 1..max_b_digits digits (keeps documents < block_size)
    pretrain_docs: int = 20_000  # documents M0 is trained on (our bootstrap corpus)
    bootstrap_share: float = 0.5  # share of M0's documents with one call at a random word start
    # (deviation: replaces the paper's few-shot prompt P(x), App. A.1, which needs ~775M params)
    bootstrap_own_op: float = 0.5  # probability a bootstrap call uses the document's own operation
    annotate_docs: int = 400  # the corpus C that is annotated and then fine-tuned on (§2)
    text_share: float = 0.2  # share of non-arithmetic documents (no numbers) added to M0's corpus and
    # to C, on top of pretrain_docs / annotate_docs (ours: where a calculator cannot help, corpus.py)
    # --- sampling API calls (§2 "Sampling API Calls"; calculator values from App. A.2) ----
    tau_s: float = 0.0  # sampling threshold: keep positions with p("[") > tau_s
    top_k: int = 20  # k: at most k positions per document, the most likely to start a call
    m: int = 10  # calls sampled per kept position (sampled until "→", temperature 1)
    max_call_tokens: int = 24  # a sample that has not reached "→" after this many tokens is dropped
    sample_batch: int = 1024  # rows sampled at once
    # --- filtering (§2 "Filtering API Calls", eq. for L_i, footnote 3) --------------------
    tau_f: float = 0.5  # keep a call iff min(L(eps), L(call, no result)) - L(call, result) >= tau_f
    weight_decrement: float = 0.2  # w~_t = max(0, 1 - weight_decrement * t), normalised (App. A.1)
    score_batch: int = 256  # sequences per forward pass when scoring candidates
    useful_window: int = 5  # a kept call is "useful" if its result starts within this many tokens
    # --- fine-tuning M* and the baselines (§2 "Model Finetuning", §4.1) -------------------
    finetune_steps: int = 300  # steps for M*, the CC baseline and the unfiltered ablation alike
    finetune_lr: float = 1e-3  # peak learning rate of the fine-tunes (warmup/cosine of `optim`)
    # --- evaluation (§4.2 "Math", decoding with "[" in the top-k, at most one call) --------
    decode_top_k: int = 10  # enter a call when "[" is among the top-k next tokens (paper: k=10) ...
    decode_min_p: float = 0.1  # ... and p("[") >= decode_min_p (ours; 0 = the paper's rule). Over ~85
    # characters "[" is in the top 10 almost everywhere (dev seed 7, paper's rule: M* enters on 0.56 of
    # plain-text prompts, M0 on 0.97). Chosen on dev seed 7 only, then frozen: M* separates arithmetic
    # from plain text for every t in [0.01, 0.9] (call rates 1.0 / 0.0); 0.1 is that band's log-middle,
    # ~8x the uniform 1/85, still below the argmax rule (a call at 10 % is taken). README, "Entry rule".
    max_new_tokens: int = 48  # answer tokens generated per question (call included)
    claim_questions: int = 200  # held-out 4–6-digit × 2–3-digit multiplication questions; the same
    # questions in the held-out template, and as many non-arithmetic prompts (corpus.py)
    cell_questions: int = 20  # held-out questions per (operation, digits of a) heat-map cell
    ppl_docs: int = 400  # held-out plain documents scored for perplexity (Table 8)
    eval_batch: int = 256  # questions decoded at once

    def validate(self, p: str = "toolformer") -> None:
        check(1 <= self.max_a_digits <= 9, f"{p}.max_a_digits", "in [1, 9]", self.max_a_digits)
        check(1 <= self.max_b_digits <= 6, f"{p}.max_b_digits", "in [1, 6]", self.max_b_digits)
        for k in ("pretrain_docs", "annotate_docs", "top_k", "m", "max_call_tokens", "sample_batch",
                  "score_batch", "useful_window", "finetune_steps", "decode_top_k", "max_new_tokens",
                  "claim_questions", "cell_questions", "ppl_docs", "eval_batch"):
            check(getattr(self, k) >= 1, f"{p}.{k}", ">= 1", getattr(self, k))
        check(0.0 <= self.bootstrap_own_op <= 1.0, f"{p}.bootstrap_own_op", "in [0, 1]", self.bootstrap_own_op)
        check(0.0 <= self.bootstrap_share <= 1.0, f"{p}.bootstrap_share", "in [0, 1]", self.bootstrap_share)
        check(0.0 <= self.text_share < 1.0, f"{p}.text_share", "in [0, 1)", self.text_share)
        check(0.0 <= self.decode_min_p <= 1.0, f"{p}.decode_min_p", "in [0, 1] (a probability)",
              self.decode_min_p)
        check(0.0 <= self.tau_s < 1.0, f"{p}.tau_s", "in [0, 1) (a probability)", self.tau_s)
        check(self.tau_f >= 0.0, f"{p}.tau_f", ">= 0", self.tau_f)
        check(0.0 < self.weight_decrement <= 1.0, f"{p}.weight_decrement", "in (0, 1]", self.weight_decrement)
        check(self.finetune_lr > 0, f"{p}.finetune_lr", "> 0", self.finetune_lr)
        from toyrepro.toolformer.corpus import ALPHABET  # the vocabulary: one token per character

        check(self.decode_top_k <= len(ALPHABET), f"{p}.decode_top_k",
              f"<= the vocabulary ({len(ALPHABET)} characters)", self.decode_top_k)
