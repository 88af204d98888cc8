"""Graph HyperNetworks: GHN-2, GHN-1 and the graph-blind MLP hypernetwork.

Knyazev et al. 2021, "Parameter Prediction for Unseen Deep Architectures", §4:

    h_v^0 = E_op[op(v)] + E_shape[shape(v)]                      (node embedding, §4)
    m_v   = sum_{u: s(u,v)=1} MLP(h_u) + sum_{u: 1<s(u,v)<=s_max} MLP_sp(h_u) / s(u,v)   (eq. 4)
    h_v   = GRU(h_v, m_v)          for v in topological order, then again in reverse  (eq. 3)
    w_v   = D(LN(h_v))  sliced / tiled to the layer's shape                            (decoder)
    w_v  <- w_v * sqrt(beta / fan_in), beta = 2 before ReLU                (parameter normalisation)

One GRU cell and one pair of message MLPs serve the forward and the backward pass (T = 1
round, as GHN-2). Nodes of one level of the DAG (over a whole meta-batch) update together,
which is exactly the sequential order since no edge joins two nodes of one level.

Variants (the paper's baselines):
- `ghn2`: virtual edges (s_max of the graph), parameter normalisation, LayerNorm before the
  decoder; trained with meta-batches of several architectures (train.py).
- `ghn1` (Zhang et al. 2019 as reimplemented in GHN-2 Table 3): the same gated GNN with only
  real edges (s_max = 1), no normalisation, no LayerNorm, meta-batch 1.
- `mlp` (ppuda `-H mlp`): no message passing at all; each node's embedding goes through an
  MLP, so two layers of the same type and shape get the same parameters wherever they sit.

Decoder (deviation): the paper decodes one 4-D tensor (ch_max x ch_max x k x k) with a small
conv decoder; ours is an MLP with one head per parameter kind — a 64x64 matrix for linear
layers, a 32x32x3x3 kernel for convolutions, two 64-vectors for biases and norm gains — each
sliced, or tiled when the layer is larger (the WIDE split), to the layer's shape. Norm gains
are 2*sigmoid(w) and biases tanh(w) under normalisation (our choice; the paper specifies the
fan-in rule for weights).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from toyrepro.ghn.graph import MAX_CONV, MAX_LINEAR, MAX_VEC, OP_TYPES, SIZES, GraphBatch, ParamNode

VARIANTS = ("ghn2", "ghn1", "mlp")


def tile_to(t: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Slice `t` to `shape`, repeating it along every dimension where `shape` is larger (§4)."""
    reps = [math.ceil(s / d) for s, d in zip(shape, t.shape)]
    if any(r > 1 for r in reps):
        t = t.repeat(*reps)
    return t[tuple(slice(0, s) for s in shape)]


def _mlp(d: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, d))


class Decoder(nn.Module):
    def __init__(self, hidden: int, decoder_hidden: int):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(hidden, decoder_hidden), nn.ReLU())
        self.linear = nn.Linear(decoder_hidden, math.prod(MAX_LINEAR))
        self.conv = nn.Linear(decoder_hidden, math.prod(MAX_CONV))
        self.vec = nn.Linear(decoder_hidden, 2 * MAX_VEC)
        # unit-variance outputs at init (LN'd input, He-initialised body): the normalisation
        # below then yields He-initialised layers (tests/test_ghn.py checks activations)
        nn.init.kaiming_normal_(self.body[0].weight, nonlinearity="relu")
        for head in (self.linear, self.conv, self.vec):
            nn.init.normal_(head.weight, std=1 / math.sqrt(decoder_hidden))
        for m in (self.body[0], self.linear, self.conv, self.vec):
            nn.init.zeros_(m.bias)


class GHN(nn.Module):
    def __init__(self, variant: str = "ghn2", hidden: int = 32, decoder_hidden: int = 64, s_max: int = 50):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown GHN variant {variant!r}; known: {', '.join(VARIANTS)}")
        self.variant = variant
        self.s_max = 1 if variant == "ghn1" else s_max  # GHN-1 has no virtual edges
        self.normalize = variant != "ghn1"
        self.op_embed = nn.Embedding(len(OP_TYPES), hidden)
        self.shape_embed = nn.ModuleList(nn.Embedding(len(SIZES) + 1, hidden) for _ in range(4))
        if variant == "mlp":
            self.node_mlp = _mlp(hidden)
        else:
            self.msg, self.msg_sp = _mlp(hidden), _mlp(hidden)
            self.gru = nn.GRUCell(hidden, hidden)
        self.ln = nn.LayerNorm(hidden) if self.normalize else nn.Identity()
        self.decoder = Decoder(hidden, decoder_hidden)

    # --- the graph network ------------------------------------------------------------------
    def embed(self, batch: GraphBatch) -> torch.Tensor:
        h = self.op_embed(batch.op)
        for i, emb in enumerate(self.shape_embed):
            h = h + emb(batch.shape[:, i])
        return h

    def propagate(self, h: torch.Tensor, batch: GraphBatch) -> torch.Tensor:
        """One forward and one backward sweep of GRU updates over the DAG (eqs. 3-4)."""
        for schedule, sender_col in ((batch.schedule_fwd, 0), (batch.schedule_bwd, 1)):
            for level in schedule:
                keep = batch.dist[level.edges] <= self.s_max
                edges, receiver = level.edges[keep], level.receiver[keep]
                if edges.numel() == 0:
                    continue  # no incoming messages (the input, or the output going backwards)
                sender = batch.edges[edges, sender_col]
                s = batch.dist[edges].unsqueeze(1)
                msg = torch.where(s == 1, self.msg(h[sender]), self.msg_sp(h[sender]) / s)
                # messages summed in h's precision (float32): under bf16 autocast the MLPs give bf16
                m = h.new_zeros(level.nodes.numel(), h.size(1)).index_add(0, receiver, msg.to(h.dtype))
                h = h.index_copy(0, level.nodes, self.gru(m, h[level.nodes]))
        return h

    def node_states(self, batch: GraphBatch) -> torch.Tensor:
        h = self.embed(batch)
        h = self.node_mlp(h) if self.variant == "mlp" else self.propagate(h, batch)
        return self.ln(h)

    # --- the decoder ----------------------------------------------------------------------
    def forward(self, batch: GraphBatch) -> list[dict[str, torch.Tensor]]:
        """Predicted parameters of every architecture in `batch`, keyed as TargetNet's."""
        h = self.node_states(batch)
        owners = [(gi, p) for gi, g in enumerate(batch.graphs) for p in g.params]
        z = self.decoder.body(h[torch.tensor([batch.offsets[gi] + p.node for gi, p in owners])])
        out: list[dict[str, torch.Tensor]] = [{} for _ in batch.graphs]
        heads = {"linear": self.decoder.linear, "conv": self.decoder.conv}
        for kind in ("linear", "conv", "norm"):
            idx = [i for i, (_, p) in enumerate(owners) if p.kind == kind]
            if not idx:
                continue
            zk = z[torch.tensor(idx)]
            vec = self.decoder.vec(zk).view(-1, 2, MAX_VEC)
            mats = heads[kind](zk).view(-1, *(MAX_LINEAR if kind == "linear" else MAX_CONV)) \
                if kind != "norm" else None
            for j, i in enumerate(idx):
                gi, p = owners[i]
                out[gi] |= self._params(p, None if mats is None else mats[j], vec[j])
        return out

    def _params(self, p: ParamNode, mat: torch.Tensor | None, vec: torch.Tensor) -> dict[str, torch.Tensor]:
        n_out, r_out = p.shape[0], p.read[0]  # decode the shape read, then tile to the true one
        if p.kind == "norm":
            gain, bias = tile_to(vec[0, :r_out], (n_out,)), tile_to(vec[1, :r_out], (n_out,))
            if self.normalize:
                gain, bias = 2 * torch.sigmoid(gain), torch.tanh(bias)
            return {f"{p.prefix}.weight": gain, f"{p.prefix}.bias": bias}
        weight, bias = tile_to(tile_to(mat, p.read), p.shape), tile_to(vec[0, :r_out], (n_out,))
        if self.normalize:
            fan_in = math.prod(p.shape[1:])
            weight, bias = weight * math.sqrt(p.beta / fan_in), torch.tanh(bias)
        return {f"{p.prefix}.weight": weight, f"{p.prefix}.bias": bias}
