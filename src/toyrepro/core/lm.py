"""One interface over our from-scratch GPT and Hugging Face causal LMs.

The lre experiments (Linear Relational Embeddings, Hernandez et al. 2023) and the
toolformer experiments read and rewrite the residual stream, take Jacobians through the
upper layers, and sample; `LM` gives them the same calls whatever the model is.

Hidden-state convention (same as `core/transformer.py`): `hidden_states` has `n_layers + 1`
entries of shape (B, T, D). Index 0 is the residual stream entering block 0 (the
embedding output, position embeddings included), index i is the residual stream after
block i. *Every* entry, the last included, is taken before the final norm, so
`unembed(hidden_states[-1]) == logits`. (Hugging Face's own `output_hidden_states`
applies the final norm to its last entry; `HFCausalLM` does not use it and reads the
blocks with forward hooks instead.) A `Patch` replaces one of these hidden states at one
position, so every later block sees the new value.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn as nn

from toyrepro.core.generate import generate as _gpt_generate
from toyrepro.core.transformer import GPT


@dataclass
class Patch:
    """Replace hidden state `layer` at `position` (int, or (B,) per row) with `value` ((B, D) or (D,))."""

    layer: int
    position: int | torch.Tensor
    value: torch.Tensor

    def apply(self, h: torch.Tensor) -> torch.Tensor:
        """Return `h` (B, T, D) with the patched position replaced; out of place (torch.func-safe)."""
        B, T, D = h.shape
        pos = torch.as_tensor(self.position, device=h.device).reshape(-1, 1)  # (1 or B, 1)
        mask = (torch.arange(T, device=h.device) == pos).unsqueeze(-1)  # (1 or B, T, 1)
        value = self.value.to(h.dtype).expand(B, D).unsqueeze(1)  # (B, 1, D)
        return torch.where(mask, value, h)


@dataclass
class LMOutput:
    logits: torch.Tensor  # (B, T, vocab)
    hidden_states: tuple[torch.Tensor, ...] | None = None  # n_layers + 1 tensors (B, T, D)


class ByteTokenizer:
    """Bytes are tokens (0..255): the tokenizer of the byte-level GPT experiments."""

    vocab_size = 256

    def encode(self, text: str) -> list[int]:
        """UTF-8 bytes of `text`."""
        return list(text.encode("utf-8"))

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        """Inverse of `encode`; invalid UTF-8 becomes U+FFFD."""
        return bytes(int(i) for i in ids).decode("utf-8", errors="replace")


class LM(abc.ABC):
    """A causal LM whose residual stream can be read (`hidden_states`) and patched."""

    n_layers: int  # number of blocks
    d_model: int
    vocab_size: int
    device: torch.device
    tokenizer: object

    def encode(self, text: str) -> list[int]:
        """Token ids of `text` (the tokenizer's default special-token handling)."""
        return list(self.tokenizer.encode(text))

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        """Text of token ids."""
        return self.tokenizer.decode([int(i) for i in ids])

    @abc.abstractmethod
    def forward(
        self,
        ids: torch.Tensor,
        *,
        attention_mask: torch.Tensor | None = None,
        patch: Patch | None = None,
        output_hidden_states: bool = False,
    ) -> LMOutput:
        """Logits (B, T, V) for `ids` (B, T); hidden states (see module docstring) on request."""

    @abc.abstractmethod
    def unembed(self, h: torch.Tensor) -> torch.Tensor:
        """Final norm + LM head: residual stream (..., D) -> logits (..., V)."""

    @abc.abstractmethod
    def generate(
        self,
        ids: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 0.0,
        top_k: int | None = None,
    ) -> torch.Tensor:
        """`ids` (B, T) followed by up to `max_new_tokens` new tokens; greedy when temperature is 0."""

    @abc.abstractmethod
    def to(self, device: str | torch.device) -> LM:
        """Move the model to `device`; returns self."""

    def __call__(self, ids: torch.Tensor, **kwargs) -> LMOutput:
        return self.forward(ids, **kwargs)

    def _check(self, patch: Patch | None) -> None:
        if patch is not None and not 0 <= patch.layer <= self.n_layers:
            raise ValueError(f"patch.layer must be in [0, {self.n_layers}], got {patch.layer}")

    def run_from(
        self, ids: torch.Tensor, layer: int, position: int | torch.Tensor, value: torch.Tensor
    ) -> torch.Tensor:
        """Last hidden state (B, T, D), before the final norm, with hidden state `layer` at
        `position` set to `value`. Differentiable in `value`, e.g. for LRE's Jacobian:
        `torch.func.jacrev(lambda v: lm.run_from(ids, l, s, v)[0, -1])(h)`."""
        out = self.forward(ids, patch=Patch(layer, position, value), output_hidden_states=True)
        return out.hidden_states[-1]


class GPTLM(LM):
    """Our `GPT` (core/transformer.py) behind the `LM` interface."""

    def __init__(self, model: GPT, tokenizer: object | None = None):
        self.model = model.eval()
        self.tokenizer = tokenizer if tokenizer is not None else ByteTokenizer()
        self.n_layers, self.d_model = model.cfg.n_layer, model.cfg.n_embd
        self.vocab_size = model.cfg.vocab_size
        self.device = model.wte.weight.device

    def forward(self, ids, *, attention_mask=None, patch=None, output_hidden_states=False):
        """See `LM.forward`. Our GPT has no padding support: `attention_mask` must be all ones."""
        if attention_mask is not None and not bool(attention_mask.all()):
            raise ValueError("GPTLM does not support padding; pass unpadded rows of equal length")
        self._check(patch)
        fn = None if patch is None else (lambda i, h: patch.apply(h) if i == patch.layer else h)
        out = self.model(ids, patch=fn, output_hidden_states=output_hidden_states)
        return LMOutput(out.logits, out.hidden_states)

    def unembed(self, h):
        return self.model.unembed(h)

    def generate(self, ids, max_new_tokens, temperature=0.0, top_k=None):
        return _gpt_generate(self.model, ids, max_new_tokens, temperature=temperature, top_k=top_k)

    def to(self, device):
        self.model.to(device)
        self.device = self.model.wte.weight.device
        return self


class HFCausalLM(LM):
    """Any `transformers` causal LM (GPT-2, Llama, ...) behind the `LM` interface.

    Hidden states and patches go through hooks: a forward pre-hook on block 0 (hidden
    state 0, the embedding output — for GPT-2 that includes position embeddings, which the
    token-embedding module alone does not) and a forward hook on every block.
    """

    def __init__(self, model: nn.Module, tokenizer: object):
        self.model = model.eval()
        self.tokenizer = tokenizer
        base = getattr(model, "model", None) or getattr(model, "transformer", None)
        if base is None:
            raise TypeError(f"cannot find the decoder of {type(model).__name__}")
        self.layers = getattr(base, "layers", None) or getattr(base, "h", None)
        self.final_norm = getattr(base, "norm", None) or getattr(base, "ln_f", None)
        if self.layers is None or self.final_norm is None:
            raise TypeError(f"cannot find the blocks / final norm of {type(model).__name__}")
        self.lm_head = model.get_output_embeddings()
        self.n_layers, self.d_model = len(self.layers), model.get_input_embeddings().embedding_dim
        self.vocab_size = self.lm_head.out_features
        self.device = next(model.parameters()).device

    @contextmanager
    def _hooks(self, patch: Patch | None, store: list | None):
        """Install hooks that patch / record the residual stream; always removed on exit."""

        def pre0(module, args, kwargs):
            h = args[0] if args else kwargs["hidden_states"]
            if patch is not None and patch.layer == 0:
                h = patch.apply(h)
            if store is not None:
                store[0] = h
            if args:
                return (h, *args[1:]), kwargs
            return args, {**kwargs, "hidden_states": h}

        def post(i):  # hidden state i = output of block i - 1
            def hook(module, args, output):
                is_tuple = isinstance(output, tuple)
                h = output[0] if is_tuple else output
                if patch is not None and patch.layer == i:
                    h = patch.apply(h)
                if store is not None:
                    store[i] = h
                return (h, *output[1:]) if is_tuple else h

            return hook

        handles = [self.layers[0].register_forward_pre_hook(pre0, with_kwargs=True)]
        try:
            handles += [blk.register_forward_hook(post(i + 1)) for i, blk in enumerate(self.layers)]
            yield
        finally:
            for hd in handles:
                hd.remove()

    def forward(self, ids, *, attention_mask=None, patch=None, output_hidden_states=False):
        """See `LM.forward`. Padding follows the HF model (use left padding for generation)."""
        self._check(patch)
        store = [None] * (self.n_layers + 1) if output_hidden_states else None
        with self._hooks(patch, store):
            out = self.model(input_ids=ids, attention_mask=attention_mask, use_cache=False)
        return LMOutput(out.logits, tuple(store) if store is not None else None)

    def unembed(self, h):
        return self.lm_head(self.final_norm(h))

    @torch.no_grad()
    def generate(self, ids, max_new_tokens, temperature=0.0, top_k=None):
        """See `LM.generate`; stops early at the model's EOS token. top_k=None means no
        top-k (HF's default would be 50), so temperature 1 samples the model itself."""
        sample = temperature > 0
        kw = dict(temperature=temperature, top_k=top_k or 0, top_p=1.0) if sample else {}
        pad = getattr(self.tokenizer, "pad_token_id", None)
        pad = pad if pad is not None else getattr(self.tokenizer, "eos_token_id", None)
        return self.model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=max_new_tokens,
            do_sample=sample,
            pad_token_id=pad,
            **kw,
        )

    def to(self, device):
        self.model.to(device)
        self.device = next(self.model.parameters()).device
        return self
