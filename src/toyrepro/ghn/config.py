"""Config section `ghn:` of the `ghn` experiment (configs/experiment/ghn.yaml).

Paper: Knyazev, Drozdzal, Taylor & Romero-Soriano 2021, "Parameter Prediction for Unseen
Deep Architectures" (NeurIPS 2021, arXiv 2110.13100), GHN-2. Section numbers below refer
to it. Each hypernetwork is trained for `trainer.max_steps` steps with the top-level `optim:`
section (AdamW + warmup-cosine; `optim.batch_size` images per meta-batch); `ghn.*` holds the
architecture space, the GHN's sizes and the evaluation protocol.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from toyrepro.core.checks import check


@dataclass
class GHNConfig:
    # --- data: sklearn's load_digits, split by seed ---------------------------------------------
    val_fraction: float = 0.1  # share of the 1797 digits held out for choosing Adam's learning rate
    test_fraction: float = 0.2  # share held out for every reported accuracy
    # --- architectures (space.py; paper §3 DeepNets-1M) -----------------------------------------
    n_train_archs: int = 1000  # training architectures sampled once (paper: 10^6)
    n_eval_archs: int = 30  # architectures per evaluation split: ID, WIDE, DEEP, BN-FREE (paper: 500/100)
    # --- the hypernetwork (ghn.py; paper §4) ---------------------------------------------------
    hidden: int = 32  # node-embedding size d (paper: 32 on CIFAR-10)
    decoder_hidden: int = 64  # width of the decoder's hidden layer
    s_max: int = 50  # virtual edges join nodes at shortest-path distance <= s_max (paper: 50)
    meta_batch: int = 8  # architectures per image batch for GHN-2 and the MLP hypernet (paper: 8); GHN-1 uses 1
    val_archs: int = 8  # training-distribution architectures scored on the validation digits while training
    # --- baselines: Adam from random init, fully trained nets (evaluate.py) ----------------------
    adam_lrs: list[float] = field(default_factory=lambda: [1e-3, 3e-3, 1e-2])  # Adam learning rates tried; the best on validation is kept per step count
    adam_steps: list[int] = field(default_factory=lambda: [1, 2, 5, 10, 20, 50, 100, 200])  # step counts k at which Adam from random init is scored
    adam_batch: int = 64  # images per Adam step
    trained_steps: int = 400  # Adam steps of the "fully trained" ceiling (paper: SGD, 50 epochs)
    n_trained_archs: int = 10  # architectures per split trained to the ceiling (the first n of the split)
    # --- few-shot transfer (paper §5.2, at toy scale) --------------------------------------------
    transfer_steps_ratio: float = 0.5  # GHN-2 on digits 0-4 trains for ratio * trainer.max_steps steps (half: CPU time)
    shots: int = 10  # fine-tuning examples per class of digits 5-9
    finetune_steps: int = 50  # full-batch Adam steps of the fine-tune, from either init
    n_transfer_archs: int = 30  # ID architectures fine-tuned from each init (issue: >= 30)

    def validate(self, p: str = "ghn") -> None:
        check(0 < self.val_fraction < 0.5, f"{p}.val_fraction", "in (0, 0.5)", self.val_fraction)
        check(0 < self.test_fraction < 0.5, f"{p}.test_fraction", "in (0, 0.5)", self.test_fraction)
        for k in ("n_train_archs", "n_eval_archs", "hidden", "decoder_hidden", "s_max", "meta_batch", "val_archs",
                  "adam_batch", "trained_steps", "n_trained_archs", "shots", "finetune_steps", "n_transfer_archs"):
            check(getattr(self, k) >= 1, f"{p}.{k}", ">= 1", getattr(self, k))
        check(self.n_trained_archs <= self.n_eval_archs, f"{p}.n_trained_archs",
              f"<= {p}.n_eval_archs ({self.n_eval_archs})", self.n_trained_archs)
        check(self.n_transfer_archs <= self.n_eval_archs, f"{p}.n_transfer_archs",
              f"<= {p}.n_eval_archs ({self.n_eval_archs}); the transfer uses ID architectures", self.n_transfer_archs)
        check(self.shots <= 20, f"{p}.shots", "<= 20 (digits 5-9 have ~100 training examples per class)", self.shots)
        check(len(self.adam_lrs) >= 1 and all(lr > 0 for lr in self.adam_lrs), f"{p}.adam_lrs",
              "a non-empty list of positive learning rates", self.adam_lrs)
        check(len(self.adam_steps) >= 1 and list(self.adam_steps) == sorted(set(self.adam_steps))
              and self.adam_steps[0] >= 1, f"{p}.adam_steps", "a non-empty increasing list of step counts >= 1",
              self.adam_steps)
        check(self.transfer_steps_ratio > 0, f"{p}.transfer_steps_ratio", "> 0", self.transfer_steps_ratio)
