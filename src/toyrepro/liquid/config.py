"""Config section `liquid:` of the liquid experiment (configs/experiment/liquid.yaml).

Three sub-sections: `digits` (task A, the CfC paper's event-based sequential MNIST on
scikit-learn's 8x8 digits), `dynamics` (task B, irregularly sampled damped oscillators in
the style of the CfC paper's Walker2d frame-dropping protocol) and `models` (the sizes of
the six sequence models, chosen so the dense ones have 5-10k parameters). The optimiser is
the top-level `optim:` section (AdamW + warmup-cosine, core/train.py) except its batch size:
each task has one `batch_size` for all its models, so "time per epoch" compares like with like.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from toyrepro.core.checks import check


@dataclass
class DigitsConfig:
    """Task A: event-based digits (CfC paper §4, "event-based sequential MNIST"; liquid/events.py)."""

    threshold: int = 8  # a pixel (0..16) is 1 when >= threshold (the paper thresholds MNIST at 128/255)
    time_scale: float = 0.125  # elapsed pixels are multiplied by this (1/8 = one image row is one time unit)
    test_fraction: float = 0.25  # images held out for the test accuracy (stratified by class)
    val_fraction: float = 0.1  # of the rest, held out for the validation curve (never for selection)
    max_images: int = 0  # use only the first n images of load_digits (0 = all 1797)
    batch_size: int = 32  # sequences per step, every model (overrides optim.batch_size)
    epochs: int = 40  # training epochs of every model but the LTC
    ltc_epochs: int = 8  # LTC epochs (its ODE solver costs ~15x a CfC step; see the write-up)

    def validate(self, p: str) -> None:
        check(1 <= self.threshold <= 16, f"{p}.threshold", "in [1, 16]", self.threshold)
        check(self.time_scale > 0, f"{p}.time_scale", "> 0", self.time_scale)
        check(0 < self.test_fraction < 1, f"{p}.test_fraction", "in (0, 1)", self.test_fraction)
        check(0 < self.val_fraction < 1, f"{p}.val_fraction", "in (0, 1)", self.val_fraction)
        check(self.max_images == 0 or self.max_images >= 40, f"{p}.max_images", ">= 40 (0 = all)", self.max_images)
        check(self.batch_size >= 1, f"{p}.batch_size", ">= 1", self.batch_size)
        check(self.epochs >= 1, f"{p}.epochs", ">= 1", self.epochs)
        check(self.ltc_epochs >= 1, f"{p}.ltc_epochs", ">= 1", self.ltc_epochs)


@dataclass
class DynamicsConfig:
    """Task B: damped oscillators observed at random grid steps (liquid/oscillators.py)."""

    grid_steps: int = 64  # grid points per sequence (observations are drawn from these)
    train_keep: float = 0.5  # p: each grid step is observed with probability p in training (Walker2d drop)
    eval_keep: list[float] = field(default_factory=lambda: [0.25, 0.5, 1.0])  # p of the test sets
    omega_min: float = 0.2  # natural angular frequency, radians per grid step (period 31 steps) ...
    omega_max: float = 0.8  # ... up to (period 8 steps)
    damping_max: float = 0.3  # damping ratio zeta drawn uniformly in [0, damping_max]
    train_sequences: int = 2048  # training sequences
    val_sequences: int = 256  # validation sequences (the curve only)
    test_sequences: int = 1024  # test sequences per sampling probability
    batch_size: int = 64  # sequences per step, every model (overrides optim.batch_size)
    epochs: int = 30  # training epochs of every model but the LTC
    ltc_epochs: int = 8  # LTC epochs (CfC and both LSTMs are also trained at p = 1.0: the regular control)

    def validate(self, p: str) -> None:
        check(self.grid_steps >= 8, f"{p}.grid_steps", ">= 8", self.grid_steps)
        check(0 < self.train_keep <= 1, f"{p}.train_keep", "in (0, 1]", self.train_keep)
        check(len(self.eval_keep) >= 1 and all(0 < k <= 1 for k in self.eval_keep), f"{p}.eval_keep",
              "a non-empty list of probabilities in (0, 1]", self.eval_keep)
        check(0 < self.omega_min <= self.omega_max, f"{p}.omega_min/omega_max", "0 < min <= max",
              (self.omega_min, self.omega_max))
        check(self.omega_max < 3.14159, f"{p}.omega_max", "< pi (above it the grid aliases)", self.omega_max)
        check(0 <= self.damping_max < 1, f"{p}.damping_max", "in [0, 1)", self.damping_max)
        check(self.train_sequences >= 8, f"{p}.train_sequences", ">= 8", self.train_sequences)
        check(self.val_sequences >= 1, f"{p}.val_sequences", ">= 1", self.val_sequences)
        check(self.test_sequences >= 1, f"{p}.test_sequences", ">= 1", self.test_sequences)
        check(self.batch_size >= 1, f"{p}.batch_size", ">= 1", self.batch_size)
        check(self.epochs >= 1, f"{p}.epochs", ">= 1", self.epochs)
        check(self.ltc_epochs >= 1, f"{p}.ltc_epochs", ">= 1", self.ltc_epochs)


@dataclass
class ModelsConfig:
    """Sizes of the six models (liquid/models.py); defaults give 5-10k parameters to the dense ones."""

    cfc_hidden: int = 44  # CfC state size (CfC paper eq. 10)
    cfc_backbone_layers: int = 0  # layers of the CfC's backbone MLP before its heads (0: heads read [x, h])
    cfc_backbone: int = 48  # units per backbone layer (unused when cfc_backbone_layers = 0)
    ltc_units: int = 32  # LTC neurons, fully connected (LTC paper eq. 1; 4 * units^2 synapse parameters)
    ltc_ode_unfolds: int = 6  # fused-Euler solver steps per observation (LTC paper Alg. 1; ncps default)
    lstm_hidden: int = 40  # LSTM state size, for both the time-unaware and the augmented LSTM
    ncp_units: int = 16  # neurons of the sparse wired CfC (AutoNCP: inter + command + motor)
    ncp_motor: int = 4  # its motor (output) neurons, read out by a linear layer
    ncp_sparsity: float = 0.5  # AutoNCP sparsity level (fraction of possible synapses dropped)
    ncp_wiring_seed: int = 22222  # AutoNCP's wiring seed (ncps default), fixed so every run has one wiring

    def validate(self, p: str) -> None:
        check(self.cfc_backbone_layers >= 0, f"{p}.cfc_backbone_layers", ">= 0", self.cfc_backbone_layers)
        for key in ("cfc_hidden", "cfc_backbone", "ltc_units", "ltc_ode_unfolds", "lstm_hidden", "ncp_motor"):
            check(getattr(self, key) >= 1, f"{p}.{key}", ">= 1", getattr(self, key))
        check(self.ncp_units >= self.ncp_motor + 3, f"{p}.ncp_units", f">= ncp_motor + 3 = {self.ncp_motor + 3} "
              "(AutoNCP needs inter and command neurons)", self.ncp_units)
        check(0.1 <= self.ncp_sparsity <= 0.9, f"{p}.ncp_sparsity", "in [0.1, 0.9]", self.ncp_sparsity)


@dataclass
class LiquidConfig:
    """The `liquid` experiment: LTC / CfC cells (ncps) vs LSTMs on irregularly timed sequences."""

    digits: DigitsConfig = field(default_factory=DigitsConfig)  # task A
    dynamics: DynamicsConfig = field(default_factory=DynamicsConfig)  # task B
    models: ModelsConfig = field(default_factory=ModelsConfig)  # model sizes
    eval_batch_size: int = 512  # sequences per forward pass when scoring
    score_speed: bool = True  # record the CfC-vs-LTC time claim (off at smoke: timings differ between identical runs)

    def validate(self, p: str = "liquid") -> None:
        self.digits.validate(f"{p}.digits")
        self.dynamics.validate(f"{p}.dynamics")
        self.models.validate(f"{p}.models")
        check(self.eval_batch_size >= 1, f"{p}.eval_batch_size", ">= 1", self.eval_batch_size)
