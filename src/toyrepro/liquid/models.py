"""The six sequence models, at matched size, built from the authors' `ncps` cells.

- `cfc`: CfC (Hasani et al. 2022, eq. 10, ncps `CfCCell`; by default without the optional
  backbone MLP, so its heads read [x, h] directly) given the elapsed time of each observation: x(t+dt) = f * (1 - s) + s * g with the time gate
  s = sigmoid(t_a * dt + t_b) (the closed form of the liquid time-constant ODE, §3).
- `cfc_no_gaps`: the same network with every elapsed time replaced by 1.
- `ltc`: LTC (Hasani et al. 2021, eq. 1 with the fused Euler solver of Alg. 1, ncps
  `LTCCell`, fully connected), whose ODE is integrated over the elapsed time.
- `lstm`: an LSTM on the values alone (time-unaware).
- `lstm_aug`: an LSTM given [value, elapsed time] (the papers' "augmented LSTM").
- `wired_cfc`: a CfC with a sparse Neural Circuit Policy wiring (ncps `AutoNCP` +
  `WiredCfCCell`; Lechner et al. 2020): inter, command and motor layers.

Each reads one vector per time step and a linear head reads the state (the motor neurons
for the wired CfC). The ncps cells are driven here one step at a time with the elapsed
time as a (B, 1) column: the batched `timespans` of ncps 1.0.1's sequence modules
(`ncps.torch.CfC`/`LTC`) is squeezed to (B,) and broadcast against the (B, units) state
wrongly (ncps issues #81-#83), so those modules are not used.

`effective_parameters` counts a wired cell's masked weight matrices by their masks'
non-zeros: ncps keeps the full dense matrix and multiplies it by a fixed mask, so `numel`
would count synapses that do not exist (and the mask itself, stored as a frozen parameter).

Deviations: the CfC has no backbone MLP by default (`models.cfc_backbone_layers = 0`; with
ncps's one lecun-tanh layer of 48 units it underfit event digits on a tuning split, seed 7,
at the same parameter count); otherwise ncps's defaults (6 ODE unfolds, LTC weight
constraints by clipping after each step); no mixed-memory variant; sizes in config.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from ncps.torch import CfCCell, LTCCell, WiredCfCCell
from ncps.wirings import AutoNCP, FullyConnected

MODELS = {  # kind -> label used in logs, figures and the write-up
    "cfc": "CfC + gaps",
    "cfc_no_gaps": "CfC, gaps = 1",
    "ltc": "LTC + gaps",
    "lstm": "LSTM (values only)",
    "lstm_aug": "LSTM + [value, dt]",
    "wired_cfc": "wired CfC (AutoNCP)",
}


class CellRNN(nn.Module):
    """Drives an ncps cell over a sequence, one step at a time, with (B, 1) elapsed times."""

    def __init__(self, cell: nn.Module, state_size: int, features: int, out_features: int,
                 reads_time: bool = True, read_output: bool = False):
        super().__init__()
        self.cell, self.state_size = cell, state_size
        self.reads_time = reads_time  # False: every elapsed time is replaced by 1
        self.read_output = read_output  # head reads the cell's output (motor neurons), not its state
        self.head = nn.Linear(features, out_features)

    def forward(self, values: torch.Tensor, elapsed: torch.Tensor) -> torch.Tensor:
        """values (B, T, F), elapsed (B, T, 1) -> predictions (B, T, out)."""
        ts = elapsed if self.reads_time else torch.ones_like(elapsed)
        h = values.new_zeros(values.size(0), self.state_size)
        read = []
        for t in range(values.size(1)):
            out, h = self.cell(values[:, t], h, ts[:, t])  # ts[:, t] is (B, 1), not (B,)
            read.append(out if self.read_output else h)
        return self.head(torch.stack(read, 1))

    def after_step(self) -> None:
        """LTC: keep conductances and capacitances non-negative (ncps's clipping constraint)."""
        if isinstance(self.cell, LTCCell):
            self.cell.apply_weight_constraints()


class LSTMModel(nn.Module):
    """torch's LSTM on the values, or on [values, elapsed] (the augmented LSTM)."""

    def __init__(self, in_features: int, hidden: int, out_features: int, reads_time: bool):
        super().__init__()
        self.reads_time = reads_time
        self.lstm = nn.LSTM(in_features + int(reads_time), hidden, batch_first=True)
        self.head = nn.Linear(hidden, out_features)

    def forward(self, values: torch.Tensor, elapsed: torch.Tensor) -> torch.Tensor:
        x = torch.cat([values, elapsed], -1) if self.reads_time else values
        return self.head(self.lstm(x)[0])

    def after_step(self) -> None:
        pass


def build_model(kind: str, in_features: int, out_features: int, mc) -> nn.Module:
    """One of MODELS (`mc`: ModelsConfig)."""
    if kind in ("cfc", "cfc_no_gaps"):
        cell = CfCCell(in_features, mc.cfc_hidden, backbone_units=mc.cfc_backbone,
                       backbone_layers=mc.cfc_backbone_layers)
        return CellRNN(cell, mc.cfc_hidden, mc.cfc_hidden, out_features, reads_time=kind == "cfc")
    if kind == "ltc":
        cell = LTCCell(FullyConnected(mc.ltc_units), in_features, output_mapping="none",
                       ode_unfolds=mc.ltc_ode_unfolds)
        return CellRNN(cell, mc.ltc_units, mc.ltc_units, out_features)
    if kind in ("lstm", "lstm_aug"):
        return LSTMModel(in_features, mc.lstm_hidden, out_features, reads_time=kind == "lstm_aug")
    if kind == "wired_cfc":
        wiring = AutoNCP(mc.ncp_units, mc.ncp_motor, sparsity_level=mc.ncp_sparsity, seed=mc.ncp_wiring_seed)
        cell = WiredCfCCell(in_features, wiring)
        return CellRNN(cell, mc.ncp_units, mc.ncp_motor, out_features, read_output=True)
    raise ValueError(f"unknown model kind {kind!r}; known: {', '.join(MODELS)}")


def _masks(model: nn.Module) -> dict[int, torch.Tensor]:
    """id(weight) -> its fixed sparsity mask, for every masked weight in the model."""
    masks: dict[int, torch.Tensor] = {}
    for m in model.modules():
        if isinstance(m, CfCCell) and m.sparsity_mask is not None:  # ff1, ff2 are masked (time_a/b are not)
            masks[id(m.ff1.weight)] = masks[id(m.ff2.weight)] = m.sparsity_mask
        if isinstance(m, LTCCell):
            for name in ("w", "sigma", "mu", "erev"):
                masks[id(m._params[name])] = m._params["sparsity_mask"]
            for name in ("sensory_w", "sensory_sigma", "sensory_mu", "sensory_erev"):
                masks[id(m._params[name])] = m._params["sensory_sparsity_mask"]
    return masks


def effective_parameters(model: nn.Module) -> int:
    """Trainable parameters, counting masked weight matrices by their masks' non-zeros."""
    masks = _masks(model)
    return sum(int(torch.count_nonzero(masks[id(p)])) if id(p) in masks else p.numel()
               for p in model.parameters() if p.requires_grad)


def dense_parameters(model: nn.Module) -> int:
    """Trainable parameters as `numel` counts them (masked synapses included)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
