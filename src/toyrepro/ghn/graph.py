"""The computational graph a GHN reads (Knyazev et al. 2021, §3 and §4 "virtual edges").

One node per operation (input, linear, conv, batch/layer norm, ReLU, residual sum, max-pool,
global average pool); each node carries an operation-type index and, for nodes with
parameters, a shape (out, in, k_h, k_w) that the GHN embeds (the paper's shape encoder).
Edges follow the data flow, so they always go from a lower node index to a higher one and
node order is a topological order.

Virtual edges (GHN-2 §4, eq. 4): node u also sends a message to every node v whose
shortest-path distance s(u, v) along the data flow satisfies 1 < s <= s_max; the message
is scaled by 1/s and passes through its own MLP. `s_max = 1` gives GHN-1's graph.

Shapes are embedded by lookup (paper: a learned embedding per size). A network wider than
the decoder's largest tensors (the WIDE split) is read as its capped copy (`read_as`: linear
widths <= 64, conv channels <= 32): the GHN encodes and decodes the capped shapes, and each
layer's decoded tensor is then tiled to its true shape (§4 "decoder"). Where a width is a
multiple of its cap, the tiled net computes what the capped net computes (channels repeated).
Deviation, chosen after the seed-0 pilot: the first version encoded true widths and tiled the
decoder's whole maximum tensor, which mixes in slices no training layer of that kind used;
WIDE CNNs then scored 27-30 % against 80 % on ID.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field, replace

import torch

from toyrepro.ghn.space import N_PIXELS, ArchSpec, block_inputs, has_residual

# the decoder's largest tensors (ghn.py); a layer beyond them gets a tiled copy (§4 "decoder")
MAX_LINEAR, MAX_CONV, MAX_VEC = (64, 64), (32, 32, 3, 3), 64
OP_TYPES = ("input", "linear", "conv", "bn", "ln", "relu", "sum", "maxpool", "gap")
SIZES = (1, 3, 5, 8, 10, 16, 32, 64)  # shape-embedding vocabulary; index 0 means "no dimension"


def size_index(d: int) -> int:
    """Embedding index of one tensor dimension: 0 for none, else the nearest known size (log2)."""
    if d <= 0:
        return 0
    return 1 + min(range(len(SIZES)), key=lambda i: abs(math.log2(SIZES[i]) - math.log2(d)))


@dataclass(frozen=True)
class ParamNode:
    node: int  # the graph node whose embedding decodes into these parameters
    prefix: str  # module path in TargetNet ("blocks.0.layer", "classifier", ...)
    kind: str  # "linear" | "conv" | "norm"
    shape: tuple[int, ...]  # weight shape (out, in) / (out, in, 3, 3) / (C,)
    read: tuple[int, ...]  # the shape the GHN reads and decodes (widths capped: `read_as`)
    beta: float  # GHN-2 normalisation: 2 for a layer followed by ReLU, 1 otherwise


@dataclass
class Graph:
    spec: ArchSpec
    op: torch.Tensor  # (n,) operation-type index into OP_TYPES
    shape: torch.Tensor  # (n, 4) size indices of (out, in, k_h, k_w)
    edges: torch.Tensor  # (E, 2) [src, dst], data-flow edges and virtual edges
    dist: torch.Tensor  # (E,) shortest-path distance s of each edge (1 = real edge)
    level_fwd: torch.Tensor  # (n,) longest path from the input: forward propagation order
    level_bwd: torch.Tensor  # (n,) longest path to the output: backward propagation order
    params: list[ParamNode] = field(default_factory=list)

    @property
    def n(self) -> int:
        return self.op.numel()


class _Builder:
    def __init__(self):
        self.ops, self.shapes, self.edges, self.params = [], [], [], []

    def add(self, op: str, inputs: list[int], read: tuple[int, ...] = ()) -> int:
        v = len(self.ops)
        self.ops.append(OP_TYPES.index(op))
        self.shapes.append([size_index(d) for d in (list(read) + [0] * 4)[:4]])
        self.edges += [(u, v) for u in inputs]
        return v

    def param(self, op: str, inputs: list[int], prefix: str, kind: str, shape: tuple[int, ...],
              read: tuple[int, ...], beta: float) -> int:
        v = self.add(op, inputs, read)
        self.params.append(ParamNode(v, prefix, kind, shape, read, beta))
        return v


def read_as(spec: ArchSpec) -> ArchSpec:
    """`spec` with every width capped at the decoder's largest tensor (the shapes a GHN reads)."""
    cap = MAX_LINEAR[0] if spec.kind == "mlp" else MAX_CONV[0]
    return replace(spec, widths=tuple(min(w, cap) for w in spec.widths),
                   head=tuple(min(h, MAX_LINEAR[0]) for h in spec.head))


def build_graph(spec: ArchSpec, s_max: int = 50) -> Graph:
    """The graph of `spec`'s TargetNet (space.py builds the same network, block by block)."""
    b, mlp, read = _Builder(), spec.kind == "mlp", read_as(spec)
    h = b.add("input", [], (N_PIXELS if mlp else 1,))
    for i, (w, w_in, r, r_in) in enumerate(zip(spec.widths, block_inputs(spec), read.widths, block_inputs(read))):
        op = "linear" if mlp else "conv"
        shape, read_shape = ((w, w_in), (r, r_in)) if mlp else ((w, w_in, 3, 3), (r, r_in, 3, 3))
        v = b.param(op, [h], f"blocks.{i}.layer", op, shape, read_shape, 2.0)
        if spec.norm != "none":
            v = b.param(spec.norm, [v], f"blocks.{i}.norm", "norm", (w,), (r,), 1.0)
        v = b.add("relu", [v])
        if has_residual(spec, i):
            v = b.add("sum", [v, h])
        if spec.pool and spec.pool[i]:
            v = b.add("maxpool", [v])
        h = v
    width, r_width = spec.widths[-1], read.widths[-1]
    if not mlp:
        h = b.add("gap", [h])
    for j, (w, r) in enumerate(zip(spec.head, read.head)):
        h = b.add("relu", [b.param("linear", [h], f"head.{j}", "linear", (w, width), (r, r_width), 2.0)])
        width, r_width = w, r
    n = spec.n_classes
    b.param("linear", [h], "classifier", "linear", (n, width), (n, r_width), 1.0)
    return _finish(spec, b, s_max)


def shortest_paths(n: int, edges: list[tuple[int, int]]) -> dict[tuple[int, int], int]:
    """Directed shortest-path distance (in edges) between every connected pair u -> v, by BFS."""
    succ = [[] for _ in range(n)]
    for u, v in edges:
        succ[u].append(v)
    out = {}
    for src in range(n):
        seen, queue = {src: 0}, deque([src])
        while queue:
            u = queue.popleft()
            for v in succ[u]:
                if v not in seen:
                    seen[v] = seen[u] + 1
                    queue.append(v)
        out |= {(src, v): d for v, d in seen.items() if v != src}
    return out


def _finish(spec: ArchSpec, b: _Builder, s_max: int) -> Graph:
    n = len(b.ops)
    pairs = sorted((uv, s) for uv, s in shortest_paths(n, b.edges).items() if s <= s_max)
    level_fwd, level_bwd = [0] * n, [0] * n
    for u, v in sorted(b.edges, key=lambda e: e[1]):  # edges go forward: one pass in dst order
        level_fwd[v] = max(level_fwd[v], level_fwd[u] + 1)
    for u, v in sorted(b.edges, key=lambda e: -e[0]):
        level_bwd[u] = max(level_bwd[u], level_bwd[v] + 1)
    return Graph(spec, torch.tensor(b.ops), torch.tensor(b.shapes),
                 torch.tensor([uv for uv, _ in pairs], dtype=torch.long).view(-1, 2),
                 torch.tensor([s for _, s in pairs], dtype=torch.long),
                 torch.tensor(level_fwd), torch.tensor(level_bwd), b.params)


@dataclass
class GraphBatch:
    """Several graphs as one disjoint graph (a meta-batch, §4), with per-level schedules."""

    graphs: list[Graph]
    op: torch.Tensor
    shape: torch.Tensor
    edges: torch.Tensor
    dist: torch.Tensor
    offsets: list[int]
    schedule_fwd: list[Level]  # forward pass: levels by distance from the input
    schedule_bwd: list[Level]  # backward pass: levels by distance to the output


@dataclass
class Level:
    nodes: torch.Tensor  # (k,) nodes updated together
    edges: torch.Tensor  # edge ids whose receiving end is one of `nodes`
    receiver: torch.Tensor  # for each of those edges, its receiver's position in `nodes`


def _schedule(level: torch.Tensor, edge_end: torch.Tensor) -> list[Level]:
    """Nodes grouped by level, each with the edges whose receiving end is at that level. Nodes
    of one level share no edge (every edge raises the level), so a level updates in parallel."""
    n_levels = int(level.max()) + 1
    node_order = torch.argsort(level, stable=True)
    edge_order = torch.argsort(level[edge_end], stable=True)
    nodes = node_order.split(torch.bincount(level, minlength=n_levels).tolist())
    edges = edge_order.split(torch.bincount(level[edge_end], minlength=n_levels).tolist())
    position = torch.empty_like(level)
    for ns in nodes:
        position[ns] = torch.arange(ns.numel())
    return [Level(ns, es, position[edge_end[es]]) for ns, es in zip(nodes, edges)]


def batch_graphs(graphs: list[Graph]) -> GraphBatch:
    offsets, total = [], 0
    for g in graphs:
        offsets.append(total)
        total += g.n
    edges = torch.cat([g.edges + o for g, o in zip(graphs, offsets)])
    level_fwd = torch.cat([g.level_fwd for g in graphs])
    level_bwd = torch.cat([g.level_bwd for g in graphs])
    return GraphBatch(graphs, torch.cat([g.op for g in graphs]), torch.cat([g.shape for g in graphs]), edges,
                      torch.cat([g.dist for g in graphs]), offsets,
                      _schedule(level_fwd, edges[:, 1]), _schedule(level_bwd, edges[:, 0]))
