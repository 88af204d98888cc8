"""7. LRE Jacobians: batched torch.func (jacrev + vmap) vs a loop over output dimensions.

W = dz/dh (Hernandez et al. 2023 §2) at one prompt, the way `probing` computes it: the
prompt's prefix is cached, `SuffixRunner.shifted` runs the rest with a shift added to h at
the subject's last token at every swept layer, and z is the last position's final hidden
state. Both sides differentiate that same function at shift 0 for all swept layers:
`probing.jacobian.layer_jacobians` (one jacrev, one vmapped VJP per row of z; what the
experiment runs) vs `jacobian_loop` (one `autograd.grad` per row of z, each giving that row
for every layer). The toy GPT of `lre` (its quick layers, all D rows) and SmolLM2-135M
(the `lre_smollm2` quick layers and its `jacobian_dims` projected rows, eager attention as
the experiment uses). Target: >= 5x on each.
"""

from __future__ import annotations

import torch

from toyrepro.core.lm import GPTLM
from toyrepro.core.transformer import GPT, GPTConfig
from toyrepro.lre.jacobian import SuffixRunner, eager_attention, jacobian_loop, layer_jacobians
from toyrepro.lre.smollm2 import load_smollm2

from harness import compare, experiment_config, record

FEW_SHOT = "Tokyo is the capital of Japan. Paris is the capital of France. Rome is the capital of"


def side_by_side(lm, ids: list[int], pos: int, layers: list[int], rows: int, reps: int) -> dict:
    """Time both sides; `rows` > 0: z projected on `rows` orthonormal directions (as the
    experiment's `lre.jacobian_dims`), else all D rows."""
    runner = SuffixRunner(lm, torch.tensor(ids, device=lm.device), pos)
    proj = torch.linalg.qr(torch.randn(lm.d_model, rows, generator=torch.Generator().manual_seed(0)))[0] \
        if rows else None
    zero = torch.zeros(len(layers), lm.d_model, device=lm.device)

    def batched():
        return torch.stack([J.detach() for J in layer_jacobians(runner, layers, proj).values()])

    def loop():
        f = (lambda d: runner.shifted(d, layers)) if proj is None else (lambda d: proj.T @ runner.shifted(d, layers))
        J = jacobian_loop(f, zero).detach().transpose(0, 1)  # (layers, rows, D)
        return J if proj is None else proj @ J

    with eager_attention(lm):
        fast, slow = batched(), loop()
        gap = float((fast - slow).abs().max() / slow.abs().max())
        assert gap < 1e-4, f"batched and looped Jacobians differ (relative {gap:.2e})"
        t_fast, t_loop = compare(batched, loop, reps=reps, warmup=0)
    return {"d_model": lm.d_model, "rows": rows or lm.d_model, "layers": layers, "prompt_tokens": len(ids),
            "suffix_tokens": len(ids) - pos, "batched_s": t_fast, "loop_s": t_loop, "relative_difference": gap}


def run(tiny: bool = False) -> dict:
    cfg = experiment_config("lre", "smoke" if tiny else "quick")
    m = cfg.model
    torch.manual_seed(0)
    toy = GPTLM(GPT(GPTConfig(vocab_size=m.vocab_size, block_size=m.block_size, n_layer=m.n_layer,
                              n_head=m.n_head, n_embd=m.n_embd)))
    ids = torch.randint(0, m.vocab_size, (min(24, m.block_size),)).tolist()
    figures = {"toy": side_by_side(toy, ids, len(ids) - 3, list(cfg.lre.layers), 0, reps=1 if tiny else 5)}
    ratios = {"toy GPT: batched vs loop": {"value": figures["toy"]["loop_s"] / figures["toy"]["batched_s"],
                                           "target": 5.0}}
    if not tiny:  # loading SmolLM2 takes ~20 s: the smoke run checks the toy side only
        lm = load_smollm2()
        ids = lm.encode(FEW_SHOT)
        subject_last = len(lm.encode(FEW_SHOT.rsplit(" is the", 1)[0])) - 1  # "Rome"
        real = experiment_config("lre_smollm2", "quick").lre
        figures["smollm2"] = side_by_side(lm, ids, subject_last, list(real.layers), real.jacobian_dims, reps=3)
        ratios["SmolLM2-135M: batched vs loop"] = {
            "value": figures["smollm2"]["loop_s"] / figures["smollm2"]["batched_s"], "target": 5.0}
    return record("lre_jacobian", figures, ratios)


if __name__ == "__main__":
    print(run())
