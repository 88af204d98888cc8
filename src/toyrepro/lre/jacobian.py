"""dz/dh for one prompt, batched with torch.func, and the patched forward it differentiates.

z = the last position's last hidden state (before the final norm), h = the hidden state
at `layer` of the subject's last token (Hernandez et al. 2023, §2). Only tokens from the
subject's last token on depend on h, so the prompt is split there: the prefix runs once
without gradients into a KV cache, and the function differentiated runs only the suffix
(2-5 tokens instead of a 60-token few-shot prompt; exact, checked against a full-prompt
loop in tests/test_lre.py). The same suffix runner applies causality edits in batches.

`jacobian` uses `torch.func.jacrev`, which vmaps one VJP per output row (in chunks of
`chunk` rows); `jacobian_loop` is the slow reference (one autograd.grad call per row, full
prompt). jacfwd is not used: forward-mode AD fails on CPU scaled-dot-product attention.

Deviation (SmolLM2 at scale=quick only, `lre.jacobian_dims > 0`): rows are computed for
`proj.T @ z` only, where `proj` (D, k) is an orthonormal basis of the relation's object
unembedding directions (`decoding_subspace`), and W = proj @ (proj.T J); the cost falls by
D / k (a full Jacobian of SmolLM2 costs 10-40 s on 2 busy CPU cores). What this keeps and what
it does not:
- when k is at least the number of distinct object tokens, the *order* of the objects' logits
  depends on z only through this subspace (the final RMSNorm divides every logit by the same
  rms(z)), so W h moves the objects' ranking exactly as the full Jacobian would; with a smaller
  k the basis is truncated to its top-k directions and even that is approximate;
- the decoded answer is the argmax over the whole vocabulary, and the logits of tokens that are
  not objects also read directions outside the subspace, which W h no longer moves: the
  projection can therefore also remove changes the full Jacobian would make to non-object
  tokens (a denoising the paper's LRE does not get);
- the basis is built from the objects of all the relation's subjects, test subjects included
  (the relation's range, not which subject maps to which); a basis from the 8 training objects
  alone could not express the test subjects' other objects at all.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from contextlib import ExitStack, contextmanager

import torch

from toyrepro.core.lm import GPTLM, LM, HFCausalLM, Patch


class AddPatch(Patch):
    """Adds `value` to hidden state `layer` at `position` instead of replacing it: the derivative of
    z in `value` at 0 is dz/dh_layer, and several layers can be shifted (and differentiated) at once."""

    def apply(self, h: torch.Tensor) -> torch.Tensor:
        B, T, D = h.shape
        mask = (torch.arange(T, device=h.device) == torch.as_tensor(self.position, device=h.device)).reshape(1, T, 1)
        return h + mask * self.value.to(h.dtype).expand(B, D).unsqueeze(1)


class SuffixRunner:
    """Runs `ids[:, pos:]` after a cached `ids[:, :pos]` with hidden state `layer` at `pos` set to given values.

    `ids` is one prompt (T,) or a group of prompts (G, T) that share `pos`. The prefix cache
    is built once and reused for every layer and every call.
    """

    def __init__(self, lm: LM, ids: list[int] | torch.Tensor, pos: int, context: tuple | None = None):
        self.lm, self.pos = lm, pos
        ids = torch.as_tensor(ids, device=lm.device)
        ids = ids.reshape(1, -1) if ids.dim() == 1 else ids
        self.G = ids.size(0)
        self.suffix = ids[:, pos:]
        self.cache = None
        if context is not None and 0 < context[0] <= pos:  # (c_len, cache of ids[:, :c_len], one row)
            c_len, c_cache = context
            self.cache = expand_cache(lm, c_cache, self.G)
            if pos > c_len:
                self.cache, _ = extend(lm, ids[:, c_len:pos], self.cache)
        elif pos > 0:
            self.cache, _ = extend(lm, ids[:, :pos])

    def __call__(self, values: torch.Tensor, layer: int) -> torch.Tensor:
        """values (D,) -> z (D,) for one prompt; (G, E, D) -> z (G, E, D): E edits of each prompt.
        z = last position, last hidden state, before the final norm."""
        single = values.dim() == 1
        v = values.reshape(self.G, -1, values.size(-1))
        E = v.size(1)
        patch = Patch(layer, 0, v.reshape(self.G * E, -1))
        suffix = self.suffix.repeat_interleave(E, 0)
        if isinstance(self.lm, GPTLM):
            past = None if self.cache is None else [(k.repeat_interleave(E, 0), vv.repeat_interleave(E, 0)) for k, vv in self.cache]
            fn = lambda i, h: patch.apply(h) if i == layer else h  # noqa: E731
            # The GPT computes logits on top; a few tokens of a toy vocabulary cost nothing.
            out = self.lm.model(suffix, past_kv=past, patch=fn, output_hidden_states=True)
            z = out.hidden_states[-1][:, -1]
        else:
            cache = None
            if self.cache is not None:
                cache = copy.deepcopy(self.cache)
                if E > 1:
                    cache.batch_repeat_interleave(E)
            store: list = [None] * (self.lm.n_layers + 1)
            base = getattr(self.lm.model, "model", None) or self.lm.model.transformer  # skip the LM head
            with self.lm._hooks(patch, store):
                base(input_ids=suffix, past_key_values=cache, use_cache=cache is not None)
            z = store[-1][:, -1]
        return z[0] if single else z.reshape(self.G, E, -1)


    def shifted(self, deltas: torch.Tensor, layers: list[int]) -> torch.Tensor:
        """z of the runner's prompts with deltas[m] added to hidden state layers[m] at the subject's
        last token: deltas (L, D) -> z (D,) for a one-prompt runner, (L, G, D) -> z (G, D) for G
        prompts. jacrev of this at deltas = 0 gives dz/dh at every layer in one pass."""
        patches = [AddPatch(layer, 0, deltas[m]) for m, layer in enumerate(layers)]
        if isinstance(self.lm, GPTLM):
            def fn(i, h):
                for p in patches:
                    h = p.apply(h) if p.layer == i else h
                return h

            z = self.lm.model(self.suffix, past_kv=self.cache, patch=fn, output_hidden_states=True).hidden_states[-1][:, -1]
        else:
            store: list = [None] * (self.lm.n_layers + 1)
            base = getattr(self.lm.model, "model", None) or self.lm.model.transformer
            with ExitStack() as stack:
                for p in patches:
                    stack.enter_context(self.lm._hooks(p, None))
                stack.enter_context(self.lm._hooks(None, store))
                base(input_ids=self.suffix, past_key_values=copy.deepcopy(self.cache), use_cache=self.cache is not None)
            z = store[-1][:, -1]
        return z[0] if deltas.dim() == 2 else z


@torch.no_grad()
def extend(lm: LM, ids: torch.Tensor, cache=None, hidden: bool = False):
    """Run `ids` (B, T) after `cache` (a KV cache of B rows, or None) without the LM head.
    Returns (the cache extended by ids, the n_layers + 1 hidden states (B, T, D) of ids or None).
    An HF cache is extended in place: pass a copy (`expand_cache`) to keep the original."""
    if isinstance(lm, GPTLM):
        out = lm.model(ids, past_kv=cache, use_cache=True, output_hidden_states=hidden)
        return out.past_kv, out.hidden_states
    if not isinstance(lm, HFCausalLM):
        raise TypeError(f"prefix caches support GPTLM and HFCausalLM, not {type(lm).__name__}")
    store = [None] * (lm.n_layers + 1) if hidden else None
    base = getattr(lm.model, "model", None) or lm.model.transformer  # the decoder without the LM head
    with lm._hooks(None, store):
        out = base(input_ids=ids, past_key_values=cache, use_cache=True)
    return out.past_key_values, (tuple(store) if hidden else None)


def expand_cache(lm: LM, cache, G: int):
    """A one-row KV cache repeated to G rows (a copy; the original is left as it is)."""
    if isinstance(lm, GPTLM):
        return [(k.expand(G, *k.shape[1:]), v.expand(G, *v.shape[1:])) for k, v in cache]
    cache = copy.deepcopy(cache)
    if G > 1:
        cache.batch_repeat_interleave(G)
    return cache


@contextmanager
def eager_attention(lm: LM):
    """HF models: matmul attention while differentiating (vmap has no batching rule for the CPU
    SDPA backward and loops, ~2x slower). Restored on exit. No-op for our GPT: its fused SDPA
    falls back to that loop too, yet measured faster than the math backend on the toy
    (8-prompt Jacobian 11-12 ms vs 13 ms; benchmarks/lre_jacobian.py)."""
    if not isinstance(lm, HFCausalLM):
        yield
        return
    old = lm.model.config._attn_implementation
    lm.model.set_attn_implementation("eager")
    try:
        yield
    finally:
        lm.model.set_attn_implementation(old)


def jacobian(fn: Callable[[torch.Tensor], torch.Tensor], h: torch.Tensor,
             proj: torch.Tensor | None = None, chunk: int = 0) -> torch.Tensor:
    """d fn / d h at h (D_out, D_in) with jacrev (rows vmapped in chunks). With `proj` (D_out, k),
    only proj.T @ fn is differentiated and proj @ (proj.T J) is returned (see module docstring)."""
    f = fn if proj is None else (lambda v: proj.T @ fn(v))
    with torch.no_grad():  # no graph through the weights (see `layer_jacobians`); jacrev differentiates anyway
        J = torch.func.jacrev(f, chunk_size=chunk or None)(h.detach())
    return J if proj is None else proj @ J


def layer_jacobians(runner: SuffixRunner, layers: list[int], proj: torch.Tensor | None = None,
                    chunk: int = 0) -> dict[int, torch.Tensor]:
    """{layer: dz/dh_layer (D, D)} for a one-prompt runner, every layer from one jacrev."""
    return {layer: J[0] for layer, J in group_jacobians(runner, layers, proj, chunk).items()}


def group_jacobians(runner: SuffixRunner, layers: list[int], proj: torch.Tensor | None = None,
                    chunk: int = 0) -> dict[int, torch.Tensor]:
    """{layer: (G, D, D)} Jacobians dz_g/dh_g of the runner's G prompts, every layer and every
    prompt from one jacrev.

    The prompts are rows of one batch, so z_g depends on prompt g's own shift only: the gradient
    of row r of sum_g z_g with respect to the (L, G, D) shifts is, at [m, g], row r of prompt g's
    Jacobian at layer layers[m]. One vmapped backward per row thus serves all G prompts (the zero
    cross-prompt terms are never formed); `chunk` counts rows, each a backward over G prompts.

    Memory: jacrev runs under `torch.no_grad()`, which torch.func's transforms see through (they
    still differentiate `f`) but which stops ordinary autograd from recording a second graph
    through the model's weights, whose `requires_grad` is on. Without it the Jacobian came out
    with a grad_fn that kept every row's vmapped backward (activations and weight-shaped
    intermediates) alive until J was freed: measured on SmolLM2 (full Jacobian, 576 rows,
    2 layers, CPU) 8.6-9.8 GB resident per prompt whatever the row chunk, and 28-30 s (mostly
    page faults) instead of 4.4 s; two prompts' graphs alive at once passed 15.9 GB.
    """
    zero = torch.zeros(len(layers), runner.G, runner.lm.d_model, device=runner.lm.device)

    def f(d):
        z = runner.shifted(d, layers).sum(0)
        return z if proj is None else proj.T @ z

    with torch.no_grad():
        J = torch.func.jacrev(f, chunk_size=chunk or None)(zero)  # (rows, L, G, D)
    return {layer: (J[:, m].transpose(0, 1) if proj is None else proj @ J[:, m].transpose(0, 1))
            for m, layer in enumerate(layers)}


def jacobian_loop(fn: Callable[[torch.Tensor], torch.Tensor], h: torch.Tensor) -> torch.Tensor:
    """Reference: one backward pass per output row (slow; for tests)."""
    v = h.detach().clone().requires_grad_(True)
    out = fn(v)
    rows = [torch.autograd.grad(out[i], v, retain_graph=True)[0] for i in range(out.numel())]
    return torch.stack(rows)


def decoding_subspace(lm: LM, tokens: list[int], k: int) -> torch.Tensor:
    """Orthonormal (D, <=k) basis of the directions g * e_o that the logits of `tokens` read
    from z (g = final norm weight, e_o = unembedding row); the top-k by singular value."""
    head = lm.lm_head.weight if isinstance(lm, HFCausalLM) else lm.model.lm_head.weight
    norm = lm.final_norm if isinstance(lm, HFCausalLM) else lm.model.ln_f
    g = norm.weight if getattr(norm, "weight", None) is not None else torch.ones(head.size(1))
    dirs = (head[sorted(set(tokens))] * g).detach().T  # (D, n)
    U, S, _ = torch.linalg.svd(dirs, full_matrices=False)
    return U[:, : min(k, int((S > S.max() * 1e-6).sum()))].contiguous()
