"""Config section `collapse:` of the `collapse` experiment (configs/experiment/collapse.yaml).

The GPT setting's model, optimiser and steps per generation are the run's top-level
`model:`, `optim:` and `trainer.max_steps`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from toyrepro.core.checks import check


@dataclass
class GaussianChainConfig:
    """(a) Shumailov §3 / Theorem 3.1: a 1-D Gaussian refit (mean, MLE std) from its own samples."""

    samples: int = 100  # N: samples drawn per generation (and real samples behind generation 0)
    generations: int = 500  # G: refits after generation 0
    chains: int = 200  # independent chains (the bootstrap resamples them)

    def validate(self, p: str) -> None:
        check(self.samples >= 2, f"{p}.samples", ">= 2", self.samples)
        check(self.generations >= 2, f"{p}.generations", ">= 2", self.generations)
        check(self.chains >= 2, f"{p}.chains", ">= 2", self.chains)


@dataclass
class ZipfChainConfig:
    """(b) A categorical distribution refit by counts (Shumailov §3.1, discrete distributions)."""

    vocab: int = 1000  # V: categories; generation-0 truth is Zipf over ranks 1..V
    exponent: float = 1.1  # Zipf exponent s: p(k) ~ k^-s
    samples: int = 20_000  # N: samples per generation
    generations: int = 20  # G
    chains: int = 100  # independent chains
    tail_rank: int = 100  # tail = categories of rank > tail_rank (their mass is reported)

    def validate(self, p: str) -> None:
        check(self.vocab >= 2, f"{p}.vocab", ">= 2", self.vocab)
        check(self.exponent > 0, f"{p}.exponent", "> 0", self.exponent)
        check(self.samples >= 1, f"{p}.samples", ">= 1", self.samples)
        check(self.generations >= 2, f"{p}.generations", ">= 2", self.generations)
        check(self.chains >= 2, f"{p}.chains", ">= 2", self.chains)
        check(1 <= self.tail_rank < self.vocab, f"{p}.tail_rank", f"in [1, vocab={self.vocab})", self.tail_rank)


@dataclass
class LMChainConfig:
    """(c) The suite's GPT retrained from scratch on its own samples (Shumailov §4, OPT-125m on wikitext2)."""

    max_files: int = 400  # the gpt experiment's stdlib corpus: files used
    val_fraction: float = 0.1  # whole files held out (perplexity is measured on them)
    sequences: int = 2000  # N: training sequences per generation (real ones for generation 0)
    seq_len: int = 64  # bytes per sequence after the newline that starts it
    # G: retrainings after generation 0 (Shumailov: >= 5). 20 since 2026-12-07 (5 before): a refit of
    # this from-scratch toy pays a near-fixed loss, so 10 % real data can halve the pure chain's loss
    # only after ~15-20 generations (experiments/collapse/README.md, "Changes after the quick runs failed")
    generations: int = 20
    eval_windows: int = 256  # held-out real windows scored for perplexity (the bootstrap resamples them)
    eval_samples: int = 500  # sequences sampled per generation for distinct n-grams and tail frequency
    ngram: int = 4  # n of the distinct n-gram count
    tail_mass: float = 0.05  # tail bytes = the rarest bytes of the real data holding this much of its mass
    sample_batch: int = 500  # sequences sampled side by side (KV cache, temperature 1)

    def validate(self, p: str) -> None:
        check(self.max_files >= 2, f"{p}.max_files", ">= 2", self.max_files)
        check(0 < self.val_fraction < 1, f"{p}.val_fraction", "in (0, 1)", self.val_fraction)
        check(self.sequences >= 10, f"{p}.sequences", ">= 10", self.sequences)
        check(self.seq_len >= 2, f"{p}.seq_len", ">= 2", self.seq_len)
        check(self.generations >= 2, f"{p}.generations", ">= 2", self.generations)
        check(self.eval_windows >= 2, f"{p}.eval_windows", ">= 2", self.eval_windows)
        check(self.eval_samples >= 1, f"{p}.eval_samples", ">= 1", self.eval_samples)
        check(1 <= self.ngram <= self.seq_len, f"{p}.ngram", f"in [1, seq_len={self.seq_len}]", self.ngram)
        check(0 < self.tail_mass < 1, f"{p}.tail_mass", "in (0, 1)", self.tail_mass)
        check(self.sample_batch >= 1, f"{p}.sample_batch", ">= 1", self.sample_batch)


@dataclass
class CollapseConfig:
    """Model collapse: each generation is fit only to samples of the previous one (Shumailov et al.)."""

    real_fraction: float = 0.1  # the mixed chains: share of each generation's data from generation 0's real data
    bootstrap: int = 1000  # bootstrap resamples for the slope intervals
    confidence: float = 0.95  # two-sided level of the slope intervals
    gaussian: GaussianChainConfig = field(default_factory=GaussianChainConfig)  # setting (a)
    zipf: ZipfChainConfig = field(default_factory=ZipfChainConfig)  # setting (b)
    lm: LMChainConfig = field(default_factory=LMChainConfig)  # setting (c)

    def validate(self, p: str = "collapse") -> None:
        check(0 < self.real_fraction < 1, f"{p}.real_fraction", "in (0, 1)", self.real_fraction)
        check(self.bootstrap >= 10, f"{p}.bootstrap", ">= 10", self.bootstrap)
        check(0 < self.confidence < 1, f"{p}.confidence", "in (0, 1)", self.confidence)
        self.gaussian.validate(f"{p}.gaussian")
        self.zipf.validate(f"{p}.zipf")
        self.lm.validate(f"{p}.lm")

    def validate_against(self, cfg, p: str = "collapse") -> None:
        """The GPT reads bytes and must fit a newline plus `lm.seq_len` bytes."""
        check(cfg.model.vocab_size == 256, "model.vocab_size", "256 (bytes) for collapse", cfg.model.vocab_size)
        check(cfg.model.block_size >= self.lm.seq_len + 1, "model.block_size",
              f">= {p}.lm.seq_len + 1 = {self.lm.seq_len + 1}", cfg.model.block_size)


def capped_lm(cfg) -> LMChainConfig:
    """Setting (c)'s sizes under `trainer.step_cap` (core.train.cap_steps), for checking a preset
    fast: a capped fit reads at most step_cap * batch_size sequences, so a generation samples (and
    keeps as real data) no more than that, `eval_samples` is bounded the same way, and the chains
    run max(2, step_cap) generations (every generation runs the same code on the same shapes).
    seq_len, the model and the perplexity windows stay the preset's. No cap: `collapse.lm` itself."""
    lm, cap = cfg.collapse.lm, cfg.trainer.step_cap
    if cap is None:
        return lm
    from toyrepro.core.train import cap_steps

    reads = cap_steps(cfg.trainer, cfg.trainer.max_steps) * cfg.optim.batch_size
    sizes = dict(sequences=max(10, min(lm.sequences, reads)), eval_samples=min(lm.eval_samples, reads),
                 generations=min(lm.generations, max(2, cap)))
    # (a dict-like config, e.g. a scorecard's config read back, as well as the dataclass)
    return dataclasses.replace(lm, **sizes) if dataclasses.is_dataclass(lm) else LMChainConfig(**{**lm, **sizes})
