"""Linear probes for the weights in the hidden states (Akyürek et al. 2022 §4, "probing").

Akyürek et al. fit, for each layer l, a linear map from the hidden state at the query
token to a quantity an algorithm would compute (the least-squares estimate w_hat, the
moment X^T y, ...), and report its R^2 on held-out prompts: a high R^2 in some layer says
the quantity is linearly encoded there. Here, for every layer l = 0 .. n_layer (0 = read-in
+ positions) and every k, the hidden state at token x_{k+1} (position 2k, after k examples)
is regressed onto

- w_hat_k, the minimum-norm least-squares estimate from the k examples (`baselines.py`);
- w, the task's true weights (equal to w_hat_k for k >= d on noiseless prompts; for k < d
  at most a fraction k/d of Var(w) is recoverable from the prompt at all).

Probe = ridge regression with a small penalty (sklearn `Ridge`), fit on half the prompts,
R^2 (averaged over the d coordinates, sklearn `r2_score`) on the other half. Deviation:
Akyürek et al. also train MLP probes and probe other intermediates; we keep the linear
probes for w_hat and w.

Reference points reported beside the probe (`raw_prompt_r2`): the same linear probe on the
raw prompt (the 2k + 1 token vectors, flattened). w_hat is a non-linear function of the
prompt, so a linear read of the input alone scores near 0: a high layer R^2 is computed by
the network, not copied from its input.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import Ridge
from sklearn.metrics import r2_score

from toyrepro.icl.baselines import least_squares_weights
from toyrepro.icl.model import ICLTransformer
from toyrepro.icl.tasks import Prompts, interleave


def probe_r2(features: np.ndarray, target: np.ndarray, alpha: float) -> float:
    """Held-out R^2 of a ridge probe fit on the first half of the rows, scored on the second."""
    half = len(features) // 2
    probe = Ridge(alpha=alpha).fit(features[:half], target[:half])
    return float(r2_score(target[half:], probe.predict(features[half:])))


@torch.no_grad()
def query_states(model: ICLTransformer, tokens: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Hidden states at every x token: (n_layer + 1, n, K, C), float32 on CPU."""
    model.eval()
    dev = model.read_in.weight.device
    chunks = [torch.stack(model(t.to(dev), output_hidden_states=True)[1])[:, :, 0::2].float().cpu()
              for t in tokens.split(batch_size)]
    return torch.cat(chunks, dim=1)


def probe_layers(model: ICLTransformer, prompts: Prompts, ks: list[int], alpha: float) -> dict[str, np.ndarray]:
    """R^2 of the probes for w_hat_k and w: arrays (len(ks), n_layer + 1), plus the raw-prompt reference."""
    tokens = interleave(prompts.xs, prompts.ys)
    states = query_states(model, tokens)
    n_layers = states.size(0)
    out = {"w_hat": np.zeros((len(ks), n_layers)), "w": np.zeros((len(ks), n_layers)),
           "raw_prompt_w_hat": np.zeros(len(ks))}
    w = prompts.w.numpy()
    for i, k in enumerate(ks):
        w_hat = least_squares_weights(prompts.xs[:, :k], prompts.ys[:, :k]).numpy()
        for layer in range(n_layers):
            feats = states[layer, :, k].numpy()
            out["w_hat"][i, layer] = probe_r2(feats, w_hat, alpha)
            out["w"][i, layer] = probe_r2(feats, w, alpha)
        raw = tokens[:, : 2 * k + 1].flatten(1).numpy()
        out["raw_prompt_w_hat"][i] = probe_r2(raw, w_hat, alpha)
    return out
