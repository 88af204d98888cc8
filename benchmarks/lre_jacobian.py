"""7. LRE Jacobians: batched torch.func (jacrev + vmap) vs a loop over output dimensions.

W = dz/dh (Hernandez et al. 2023 §2) at one prompt, the way `probing` computes it: the
prompt's prefix is cached, `SuffixRunner` runs the rest with h set at the subject's last
token, and z is the last position's final hidden state. Both sides differentiate the same
function: `probing.jacobian.jacobian` (jacrev, one vmapped VJP over all D rows) vs
`jacobian_loop` (one `autograd.grad` per row of z). On the toy GPT of the `lre` experiment
and on SmolLM2-135M-Instruct (D = 576, eager attention while differentiating, as the
experiment does). The toy's full D x D Jacobian; for SmolLM2, 64 rows (z projected on 64
orthonormal directions, as the experiment's `lre.jacobian_dims` projects it: all 576 rows
take ~2.5 min per loop on one busy core, and ~8 GB when vmapped at once). Target: >= 5x.
"""

from __future__ import annotations

from functools import partial

import torch

from toyrepro.core.gpt import GPT, GPTConfig
from toyrepro.core.lm import GPTLM, load_smollm2
from toyrepro.probing.jacobian import SuffixRunner, eager_attention, jacobian, jacobian_loop

from harness import compare, experiment_config, record

FEW_SHOT = "Tokyo is the capital of Japan. Paris is the capital of France. Rome is the capital of"


def side_by_side(lm, ids: list[int], pos: int, layer: int, reps: int, rows: int = 0) -> dict:
    """Time both sides on dz/dh; `rows` > 0: only `rows` directions of z (an orthonormal
    projection, as the experiment's `lre.jacobian_dims`), else all D rows."""
    ids_t = torch.tensor(ids, device=lm.device)
    with torch.no_grad():
        h = lm(ids_t[None], output_hidden_states=True).hidden_states[layer][0, pos]
    runner = partial(SuffixRunner(lm, ids_t, pos), layer=layer)
    proj = torch.linalg.qr(torch.randn(lm.d_model, rows, generator=torch.Generator().manual_seed(0)))[0] \
        if rows else None

    def batched():
        return jacobian(runner, h, proj).detach()

    def loop():
        fn = runner if proj is None else (lambda v: proj.T @ runner(v))
        J = jacobian_loop(fn, h).detach()
        return J if proj is None else proj @ J

    with eager_attention(lm):
        fast, slow = batched(), loop()
        gap = float((fast - slow).abs().max() / slow.abs().max())
        assert gap < 1e-4, f"batched and looped Jacobians differ (relative {gap:.2e})"
        t_fast, t_loop = compare(batched, loop, reps=reps, warmup=0)
    return {"d_model": lm.d_model, "rows": rows or lm.d_model, "prompt_tokens": len(ids),
            "suffix_tokens": len(ids) - pos, "layer": layer, "batched_s": t_fast, "loop_s": t_loop,
            "relative_difference": gap}


def run(tiny: bool = False) -> dict:
    cfg = experiment_config("lre", "smoke" if tiny else "quick")
    m = cfg.model
    torch.manual_seed(0)
    toy = GPTLM(GPT(GPTConfig(vocab_size=m.vocab_size, block_size=m.block_size, n_layer=m.n_layer,
                              n_head=m.n_head, n_embd=m.n_embd)))
    ids = torch.randint(0, m.vocab_size, (min(24, m.block_size),)).tolist()
    figures = {"toy": side_by_side(toy, ids, len(ids) - 3, m.n_layer // 2, reps=1 if tiny else 5)}
    ratios = {"toy GPT: batched vs loop": {"value": figures["toy"]["loop_s"] / figures["toy"]["batched_s"],
                                           "target": 5.0}}
    if not tiny:  # loading SmolLM2 takes ~20 s: the smoke run checks the toy side only
        lm = load_smollm2()
        ids = lm.encode(FEW_SHOT)
        subject_last = len(lm.encode(FEW_SHOT.rsplit(" is the", 1)[0])) - 1  # "Rome"
        figures["smollm2"] = side_by_side(lm, ids, subject_last, 6, reps=3, rows=64)
        ratios["SmolLM2-135M: batched vs loop"] = {
            "value": figures["smollm2"]["loop_s"] / figures["smollm2"]["batched_s"], "target": 5.0}
    return record("lre_jacobian", figures, ratios)


if __name__ == "__main__":
    print(run())
