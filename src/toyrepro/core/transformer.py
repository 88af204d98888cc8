"""A from-scratch GPT-2, in the spirit of "GPT in 60 lines of NumPy" (Jay Mody, 2023).

The architecture is GPT-2's (Radford et al. 2019, §2.3): learned token and position
embeddings, pre-LayerNorm residual blocks (LN -> causal self-attention -> residual,
LN -> MLP with tanh-GELU -> residual), a final LayerNorm, and an unembedding tied to the
token embedding. `tests/test_gpt.py` copies these weights into Hugging Face's
`GPT2LMHeadModel` and checks the logits agree to 1e-5: this *is* GPT-2.

Deviations from the NumPy original (none change the function computed):
- attention runs through `F.scaled_dot_product_attention` (fused / flash kernels);
- an optional KV cache (`past_kv`) for fast sampling, see `core/generate.py`: a list of (k, v)
  that grows by concatenation, or a `core.kv_cache.KVCache` written in place;
- the residual stream after every block can be returned (`output_hidden_states`) and
  rewritten (`patch`), which probing and editing (LRE, Hernandez et al. 2023) need.

Hidden-state indexing follows Hugging Face: index 0 is the embedding output (before
block 0), index i is the residual stream after block i. Unlike Hugging Face, the last
entry is *before* the final LayerNorm; `unembed(h)` applies LayerNorm + unembedding.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from toyrepro.core.kv_cache import KVCache, LayerCache

KV = tuple[torch.Tensor, torch.Tensor]
# patch(layer_index, hidden) -> hidden; layer_index as in the module docstring.
HiddenStateEdit = Callable[[int, torch.Tensor], torch.Tensor]


@dataclass
class GPTConfig:
    vocab_size: int = 256  # tokens; 256 = raw bytes
    block_size: int = 256  # longest context the position table covers
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128  # must be divisible by n_head
    dropout: float = 0.0  # GPT-2 used 0.1; toy runs are data-rich and short
    bias: bool = True  # GPT-2 has biases in every Linear and LayerNorm

    def validate(self, p: str = "model") -> None:
        """Range checks for the `model:` config section (one line naming key, rule, value)."""
        from toyrepro.core.checks import check

        for k in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            check(getattr(self, k) >= 1, f"{p}.{k}", ">= 1", getattr(self, k))
        check(self.n_embd % self.n_head == 0, f"{p}.n_embd", f"divisible by {p}.n_head={self.n_head}", self.n_embd)
        check(0.0 <= self.dropout < 1.0, f"{p}.dropout", "in [0, 1)", self.dropout)


@dataclass
class GPTOutput:
    logits: torch.Tensor  # (B, T, vocab)
    hidden_states: tuple[torch.Tensor, ...] | None = None  # n_layer + 1 tensors (B, T, C)
    past_kv: list[KV] | KVCache | None = None  # per layer (k, v), each (B, n_head, T_total, head_dim); or the KVCache passed in


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.n_head = cfg.n_head
        self.c_attn = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=cfg.bias)  # q, k, v at once
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.dropout = cfg.dropout
        self.resid_drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, past: KV | LayerCache | None = None,
                last_only: bool = False) -> tuple[torch.Tensor, KV]:
        """`last_only`: queries of the last position only (keys/values of all): output (B, 1, C)."""
        B, _, C = x.shape  # the number of queries is q.size(2) after `last_only`
        q, k, v = self.c_attn(x).split(C, dim=2)
        if last_only:
            q = q[:, -1:]
        # (B, T, C) -> (B, n_head, T, head_dim)
        q, k, v = (t.reshape(B, -1, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        if isinstance(past, LayerCache):
            k, v = past.extend(k, v)
        elif past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        y = self.attend(q, k, v, self.dropout if self.training else 0.0)
        y = y.transpose(1, 2).contiguous().view(B, q.size(2), C)
        return self.resid_drop(self.c_proj(y)), (k, v)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, p: float) -> torch.Tensor:
        """Causal attention of the queries (the last Tq of the S positions) over all S keys."""
        Tq, S = q.size(2), k.size(2)
        if Tq == 1:  # one query (the last position, or one new token): it sees everything, no mask
            return F.scaled_dot_product_attention(q, k, v, dropout_p=p)
        if Tq == S:
            return F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
        # several new tokens after a cache: causal mask offset by the cache length
        mask = torch.ones(Tq, S, dtype=torch.bool, device=q.device).tril(diagonal=S - Tq)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd, bias=cfg.bias)
        self.c_proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # GPT-2's GELU is the tanh approximation (Hendrycks & Gimpel 2016, eq. 2).
        return self.drop(self.c_proj(F.gelu(self.c_fc(x), approximate="tanh")))


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor, past: KV | LayerCache | None = None,
                last_only: bool = False) -> tuple[torch.Tensor, KV]:
        a, kv = self.attn(self.ln_1(x), past, last_only)
        x = (x[:, -1:] if last_only else x) + a
        return x + self.mlp(self.ln_2(x)), kv


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        if cfg.n_embd % cfg.n_head:
            raise ValueError(f"n_embd={cfg.n_embd} must be divisible by n_head={cfg.n_head}")
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.wpe = nn.Embedding(cfg.block_size, cfg.n_embd)
        self.drop = nn.Dropout(cfg.dropout)
        self.h = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # tied embeddings (GPT-2)
        self.apply(self._init_weights)
        # GPT-2 §2.3: residual projections scaled by 1/sqrt(number of residual layers).
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)

    def num_params(self, non_embedding: bool = True) -> int:
        n = sum(p.numel() for p in self.parameters())
        return n - self.wpe.weight.numel() if non_embedding else n

    def unembed(self, h: torch.Tensor) -> torch.Tensor:
        """Final LayerNorm + tied unembedding: residual stream -> logits."""
        return self.lm_head(self.ln_f(h))

    def forward(
        self,
        idx: torch.Tensor,
        *,
        past_kv: list[KV] | KVCache | None = None,
        use_cache: bool = False,
        output_hidden_states: bool = False,
        patch: HiddenStateEdit | None = None,
        last_only: bool = False,
    ) -> GPTOutput:
        """Logits (B, T, V); `hidden_states` = embeddings and each block's output (B, T, C).

        `last_only=True` (no cache, no patch): the last block computes the last position only
        (a reward model or a classifier reads nothing else), so the logits and the last hidden
        state are (B, 1, ...); the same values as a full forward's last position.

        `past_kv` a `KVCache` (with `use_cache=True`): the new positions are written into it and
        the output's `past_kv` is the same cache, now covering them."""
        if last_only and (past_kv is not None or patch is not None or use_cache):
            raise ValueError("last_only=True cannot be combined with past_kv, use_cache or patch")
        B, T = idx.shape
        static = isinstance(past_kv, KVCache)
        if static and not use_cache:
            raise ValueError("past_kv=KVCache(...) needs use_cache=True (the cache is written in place)")
        start = 0 if past_kv is None else past_kv.length if static else past_kv[0][0].size(2)
        if start + T > self.cfg.block_size:
            raise ValueError(
                f"sequence of {start + T} tokens exceeds block_size={self.cfg.block_size}; "
                "crop the input or raise model.block_size"
            )
        pos = torch.arange(start, start + T, device=idx.device)
        x = self.drop(self.wte(idx) + self.wpe(pos))
        if patch is not None:
            x = patch(0, x)
        hidden = [x] if output_hidden_states else None
        new_kv: list[KV] = []
        if last_only and not self.h:
            x = x[:, -1:]
        for i, block in enumerate(self.h):
            past = None if past_kv is None else past_kv.layer(i) if static else past_kv[i]
            x, kv = block(x, past, last_only and i == len(self.h) - 1)
            if patch is not None:
                x = patch(i + 1, x)
            if hidden is not None:
                hidden.append(x)
            new_kv.append(kv)
        if static:
            past_kv.advance(T)
        return GPTOutput(
            logits=self.unembed(x),
            hidden_states=tuple(hidden) if hidden is not None else None,
            past_kv=(past_kv if static else new_kv) if use_cache else None,
        )

    # -- Hugging Face interop ------------------------------------------------------------
    def to_hf(self):
        """The same network as `transformers.GPT2LMHeadModel` (used by tests and benchmarks).

        GPT-2's checkpoints store Linear weights as Conv1D, i.e. transposed: (in, out).
        """
        from transformers import GPT2Config, GPT2LMHeadModel

        c = self.cfg
        hf = GPT2LMHeadModel(
            GPT2Config(
                vocab_size=c.vocab_size, n_positions=c.block_size, n_embd=c.n_embd,
                n_layer=c.n_layer, n_head=c.n_head, activation_function="gelu_new",
                resid_pdrop=c.dropout, embd_pdrop=c.dropout, attn_pdrop=c.dropout,
                layer_norm_epsilon=1e-5, tie_word_embeddings=True, bos_token_id=None, eos_token_id=None,
            )
        )
        sd = {}
        for k, v in self.state_dict().items():
            if k == "lm_head.weight":
                continue
            is_conv1d = any(k.endswith(f"{m}.weight") for m in ("c_attn", "c_proj", "c_fc"))
            sd[f"transformer.{k}"] = v.t() if is_conv1d else v
        missing, unexpected = hf.load_state_dict(sd, strict=False)
        missing = [m for m in missing if not m.endswith(("attn.bias", "masked_bias", "lm_head.weight"))]
        if missing or unexpected:
            raise RuntimeError(f"GPT -> GPT2LMHeadModel: missing {missing}, unexpected {unexpected}")
        hf.tie_weights()
        return hf.to(self.wte.weight.device).eval()
