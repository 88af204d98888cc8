"""7. LRE Jacobians: batched torch.func (jacrev + vmap) vs a loop over output dimensions.

W = mean_i dz/dh (h_i) over a relation's n = 8 training prompts (Hernandez et al. 2023 §2,
eq. 3), the way `lre.evaluate.train_jacobians` computes it: each prompt's prefix is cached,
`SuffixRunner.shifted` runs the rest with a shift added to h at the subject's last token at every
swept layer, and z is the last position's final hidden state. Both sides differentiate that same
function at shift 0 for all swept layers and all n prompts:

- batched (what the experiment runs): one jacrev, one vmapped VJP per row of z; for the suite's
  GPT, prompts of equal length and subject position are rows of one batch and share one jacrev
  (`group_jacobians`: each row's VJP serves the whole group);
- loop: one `autograd.grad` per row of z per prompt (`jacobian_loop`, each giving that row for
  every layer).

Two workloads: the toy GPT of `lre` (its quick layers, all D rows; 8 random prompts of one length
with the subject at one position, as the toy's prompts are) and SmolLM2-135M (the `lre_smollm2`
quick layers and `jacobian_dims` projected rows, eager attention as the experiment uses, on the 8
training prompts the experiment picks for the country_capital relation, one prompt per jacrev as
`train_jacobians` runs an HF model: grouping them measured slower there). The one-prompt ratio (the benchmark's figure before prompts were batched) is
recorded in the figures, not scored. Target: >= 5x on each workload.
"""

from __future__ import annotations

import torch

from toyrepro.core.lm import GPTLM
from toyrepro.core.transformer import GPT, GPTConfig
from toyrepro.lre.evaluate import Runners, known_states, train_jacobians
from toyrepro.lre.jacobian import (
    SuffixRunner,
    decoding_subspace,
    eager_attention,
    group_jacobians,
    jacobian_loop,
    layer_jacobians,
)
from toyrepro.lre.relations import load_relations
from toyrepro.lre.smollm2 import load_smollm2

from harness import compare, experiment_config, record

FEW_SHOT = "Tokyo is the capital of Japan. Paris is the capital of France. Rome is the capital of"


def loop_jacobians(runner: SuffixRunner, layers: list[int], proj) -> torch.Tensor:
    """(layers, D, D) for a one-prompt runner, one autograd.grad per row of (projected) z."""
    zero = torch.zeros(len(layers), runner.lm.d_model, device=runner.lm.device)
    f = (lambda d: runner.shifted(d, layers)) if proj is None else (lambda d: proj.T @ runner.shifted(d, layers))
    J = jacobian_loop(f, zero).detach().transpose(0, 1)  # (layers, rows, D)
    return J if proj is None else proj @ J


def side_by_side(lm, runners: list[SuffixRunner], batched, layers: list[int], proj, reps: int) -> dict:
    """Time `batched()` -> (n, layers, D, D) against the row loop over `runners` (one per prompt)."""
    def loop():
        return torch.stack([loop_jacobians(r, layers, proj) for r in runners])

    with eager_attention(lm):
        fast, slow = batched(), loop()
        gap = float((fast - slow).abs().max() / slow.abs().max())
        assert gap < 1e-4, f"batched and looped Jacobians differ (relative {gap:.2e})"
        t_fast, t_loop = compare(batched, loop, reps=reps, warmup=0)
    return {"d_model": lm.d_model, "rows": lm.d_model if proj is None else proj.size(1), "layers": layers,
            "prompts": len(runners), "suffix_tokens": [int(r.suffix.size(1)) for r in runners],
            "batched_s": t_fast, "loop_s": t_loop, "relative_difference": gap}


def one_prompt(lm, runner: SuffixRunner, layers: list[int], proj, reps: int) -> dict:
    def batched():
        return torch.stack(list(layer_jacobians(runner, layers, proj).values()))[None]
    return side_by_side(lm, [runner], batched, layers, proj, reps)


def toy(tiny: bool) -> dict:
    cfg = experiment_config("lre", "smoke" if tiny else "quick")
    m, n, layers = cfg.model, cfg.lre.n_train, list(cfg.lre.layers)
    torch.manual_seed(0)
    lm = GPTLM(GPT(GPTConfig(vocab_size=m.vocab_size, block_size=m.block_size, n_layer=m.n_layer,
                             n_head=m.n_head, n_embd=m.n_embd)))
    T = min(24, m.block_size)
    ids = torch.randint(0, m.vocab_size, (n, T))
    pos = T - 3
    runners = [SuffixRunner(lm, ids[i], pos) for i in range(n)]
    group = SuffixRunner(lm, ids, pos)

    def batched():
        return torch.stack(list(group_jacobians(group, layers).values()), 1)

    reps = 1 if tiny else 21  # milliseconds each: many repetitions for a stable median
    return {"group": side_by_side(lm, runners, batched, layers, None, reps),
            "one_prompt": one_prompt(lm, runners[0], layers, None, reps)}


def smollm2() -> dict:
    lm = load_smollm2()
    real = experiment_config("lre_smollm2", "quick").lre
    layers = list(real.layers)
    rel = load_relations(lm, ["country_capital"], real.max_subjects)[0]
    st, train, _ = known_states(lm, rel, real.n_train, torch.Generator().manual_seed(0))
    proj = decoding_subspace(lm, st.target.tolist(), real.jacobian_dims)
    runners = Runners(lm, st)

    def batched():
        Js = train_jacobians(lm, st, runners, train, layers, proj, real.jacobian_chunk)
        return torch.stack([Js[layer] for layer in layers], 1)

    fig = side_by_side(lm, [runners.one(i) for i in train], batched, layers, proj, reps=3)
    ids = lm.encode(FEW_SHOT)
    subject_last = len(lm.encode(FEW_SHOT.rsplit(" is the", 1)[0])) - 1  # "Rome"
    return {"group": fig, "one_prompt": one_prompt(lm, SuffixRunner(lm, torch.tensor(ids), subject_last),
                                                   layers, proj, reps=3)}


def run(tiny: bool = False) -> dict:
    figures = {"toy": toy(tiny)}
    if not tiny:  # loading SmolLM2 takes ~20 s: the smoke run checks the toy side only
        figures["smollm2"] = smollm2()
    ratios = {}
    for key, label in (("toy", "toy GPT"), ("smollm2", "SmolLM2-135M")):
        if key in figures:
            for f in figures[key].values():
                f["ratio"] = f["loop_s"] / f["batched_s"]
            ratios[f"{label}, n training prompts: batched vs loop"] = {"value": figures[key]["group"]["ratio"],
                                                                      "target": 5.0}
    return record("lre_jacobian", figures, ratios)


if __name__ == "__main__":
    print(run())
