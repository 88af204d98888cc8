"""ghn: the graph builder, the decoder's shapes, the parameter normalisation and one training step."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from toyrepro.core.checks import ConfigError
from toyrepro.ghn.config import GHNConfig
from toyrepro.ghn.evaluate import few_shot_split, first_match, with_new_classifier
from toyrepro.ghn.ghn import GHN, tile_to
from toyrepro.ghn.graph import (
    MAX_CONV,
    MAX_LINEAR,
    OP_TYPES,
    SIZES,
    batch_graphs,
    build_graph,
    size_index,
)
from toyrepro.ghn.space import SPLITS, ArchSpec, TargetNet, sample_archs
from toyrepro.ghn.train import GHNModule, load_digits_split, meta_batch_loader

torch.set_num_threads(1)

# two blocks of width 32 with batch norm; the second keeps the width, so it has a residual sum
HAND = ArchSpec("mlp", (32, 32), "bn", residual=True)
HAND_OPS = ["input", "linear", "bn", "relu", "linear", "bn", "relu", "sum", "linear"]
HAND_EDGES = {(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (5, 6), (6, 7), (3, 7), (7, 8)}


def test_graph_of_a_hand_drawn_architecture():
    g = build_graph(HAND, s_max=50)
    assert [OP_TYPES[i] for i in g.op.tolist()] == HAND_OPS
    dist = {tuple(e): int(s) for e, s in zip(g.edges.tolist(), g.dist.tolist())}
    assert {e for e, s in dist.items() if s == 1} == HAND_EDGES, "real edges follow the data flow"
    # virtual edges: every ancestor -> descendant pair, at its shortest-path distance
    assert len(dist) == 8 + 7 + 6 + 5 + 4 + 3 + 2 + 1
    assert dist[(3, 7)] == 1 and dist[(4, 7)] == 3, "the skip is shorter than the block"
    assert dist[(3, 8)] == 2 and dist[(0, 8)] == 5 and dist[(0, 6)] == 6
    assert (2, 1) not in dist and (8, 0) not in dist, "edges only go along the data flow"
    assert sorted(tuple(e) for e in build_graph(HAND, s_max=1).edges.tolist()) == sorted(HAND_EDGES)
    assert len(build_graph(HAND, s_max=2).edges) == sum(1 for s in dist.values() if s <= 2)
    assert g.level_fwd.tolist() == list(range(9))
    assert g.level_bwd.tolist() == [8, 7, 6, 5, 4, 3, 2, 1, 0], "longest path to the output"
    # shapes: (out, in, k_h, k_w) of the parametrised nodes, by size index
    assert g.shape[1].tolist() == [size_index(32), size_index(64), 0, 0], "a linear layer has no kernel dims"
    assert g.shape[8].tolist() == [size_index(10), size_index(32), 0, 0]
    assert g.shape[3].tolist() == [0, 0, 0, 0], "ReLU has no parameters"
    assert [(p.prefix, p.shape, p.beta) for p in g.params] == [
        ("blocks.0.layer", (32, 64), 2.0), ("blocks.0.norm", (32,), 1.0), ("blocks.1.layer", (32, 32), 2.0),
        ("blocks.1.norm", (32,), 1.0), ("classifier", (10, 32), 1.0)]


def test_unseen_sizes_map_to_the_nearest_known_size():
    assert size_index(64) == 1 + SIZES.index(64)
    assert size_index(128) == size_index(96) == size_index(64), "WIDE layers read as the widest known"
    assert size_index(0) == 0


def test_tiling_repeats_the_maximum_tensor():
    t = torch.arange(6.0).view(2, 3)
    assert tile_to(t, (1, 2)).tolist() == [[0, 1]]
    assert tile_to(t, (3, 5)).tolist() == [[0, 1, 2, 0, 1], [3, 4, 5, 3, 4], [0, 1, 2, 0, 1]]


@pytest.mark.parametrize("variant", ["ghn2", "ghn1", "mlp"])
def test_predicted_shapes_match_every_layer_of_every_split(variant):
    specs = [a for i, s in enumerate(("train", *SPLITS)) for a in sample_archs(s, 12, seed=i)]
    specs.append(ArchSpec("cnn", (64, 64), "ln", True, (True, False), (128,), 5))  # tiled in every dimension
    ghn = GHN(variant, hidden=16, decoder_hidden=16)
    x = torch.randn(4, 1, 8, 8)
    predicted = ghn(batch_graphs([build_graph(s, ghn.s_max) for s in specs]))
    assert len(predicted) == len(specs)
    for spec, params in zip(specs, predicted):
        net = TargetNet(spec)
        own = {k: v.shape for k, v in net.named_parameters()}
        assert {k: v.shape for k, v in params.items()} == own, str(spec)
        assert functional_call(net, params, (x,)).shape == (4, spec.n_classes)


def test_splits_are_what_they_say():
    ids = sample_archs("id", 20, seed=1)
    train = sample_archs("train", 200, seed=0, exclude=set(ids))
    assert not set(ids) & set(train), "ID architectures are held out of the training pool"
    widest = max(max(a.widths + a.head) for a in train)
    assert widest <= MAX_LINEAR[0] and max(max(a.widths) for a in train if a.kind == "cnn") <= MAX_CONV[0]
    wide = sample_archs("wide", 20, seed=2)
    assert all(min(a.widths) > (64 if a.kind == "mlp" else 32) for a in wide), "WIDE exceeds the decoder: tiling"
    assert min(len(a.widths) for a in sample_archs("deep", 20, seed=3) if a.kind == "mlp") > 4
    assert {a.norm for a in sample_archs("bn_free", 20, seed=4)} == {"none"}
    assert "none" not in {a.norm for a in train}, "every training architecture normalises (as DeepNets-1M)"


def _activation_variances(ghn: GHN, spec: ArchSpec, x: torch.Tensor) -> list[float]:
    """Second moment E[a^2] of each block's output a = ReLU(W h + b): what He init keeps at
    E[x^2] = 1 layer after layer (with beta = 2, the pre-activations sit at 2)."""
    params = ghn(batch_graphs([build_graph(spec, ghn.s_max)]))[0]
    h, out = x, []
    for i in range(len(spec.widths)):
        h = F.relu(F.linear(h, params[f"blocks.{i}.layer.weight"], params[f"blocks.{i}.layer.bias"]))
        out.append(float(h.pow(2).mean()))
    return out


def test_parameter_normalisation_keeps_activation_variance_near_one_at_init():
    torch.manual_seed(0)
    spec = ArchSpec("mlp", (64, 64, 64, 64), "none", residual=False)  # no norm layer to rescue it
    x = torch.randn(512, 64)
    with torch.no_grad():
        normalised = _activation_variances(GHN("ghn2"), spec, x)
        raw = _activation_variances(GHN("ghn1"), spec, x)  # GHN-1: no normalisation
    assert all(1 / 3 < v < 3 for v in normalised), normalised  # measured: 1.2, 1.5, 1.9, 2.7 (biases add)
    assert raw[-1] > 100 * normalised[-1], ("unnormalised predictions explode with depth", raw)


def test_one_ghn_step_lowers_the_meta_batch_loss():
    from toyrepro.core.config import OptimConfig

    torch.manual_seed(0)
    digits = load_digits_split(0, 0.1, 0.2)
    graphs = [build_graph(s) for s in sample_archs("train", 4, seed=0)]
    module = GHNModule(GHN("ghn2", hidden=16, decoder_hidden=32), graphs, digits, graphs[:1],
                       OptimConfig(lr=1e-3, warmup_steps=0, weight_decay=0.0), max_steps=10, stage="t")
    batch = next(iter(meta_batch_loader(module, len(graphs), 1, 256, 4, seed=0)))
    opt = module.configure_optimizers()["optimizer"]
    x, y = digits.x_train[batch["images"]], digits.y_train[batch["images"]]
    before = [p.detach().clone() for p in module.ghn.parameters()]
    loss0, _ = module._loss(graphs, module.nets, x, y)
    opt.zero_grad()
    loss0.backward()
    opt.step()
    with torch.no_grad():
        loss1, _ = module._loss(graphs, module.nets, x, y)
    assert float(loss1) < float(loss0) - 1e-3, (float(loss0), float(loss1))
    changed = [not torch.equal(a, b) for a, b in zip(before, module.ghn.parameters())]
    assert sum(changed) > len(changed) // 2, "the gradient reaches the graph network, not just the decoder"
    assert not torch.equal(before[0], next(module.ghn.parameters())), "the operation embedding moved"


def test_k_star_is_the_first_step_count_that_matches():
    assert first_match([20.0, 40.0, 70.0, 90.0], [1, 5, 10, 50], target=65.0) == (10.0, True)
    assert first_match([20.0, 40.0], [1, 5], target=65.0) == (5.0, False), "unmatched: a lower bound"


def test_few_shot_split_and_fresh_classifier():
    y = torch.arange(5).repeat(20)
    x = torch.arange(100.0).view(100, 1)
    xs, ys = few_shot_split(x, y, 3, seed=0)
    assert torch.bincount(ys).tolist() == [3] * 5 and torch.equal(y[xs.squeeze(1).long()], ys)
    spec = ArchSpec("mlp", (16,), "bn", False, n_classes=5)
    params = {k: torch.zeros_like(v) for k, v in TargetNet(spec).named_parameters()}
    new = with_new_classifier(params, spec, seed=1)
    assert float(new["classifier.weight"].abs().sum()) > 0 and float(new["blocks.0.layer.weight"].abs().sum()) == 0


@pytest.mark.parametrize("override, message", [
    ({"n_trained_archs": 40}, "ghn.n_trained_archs must be <= ghn.n_eval_archs (30) (got 40)"),
    ({"adam_steps": [5, 1]}, "ghn.adam_steps must be a non-empty increasing list of step counts >= 1 (got [5, 1])"),
    ({"s_max": 0}, "ghn.s_max must be >= 1 (got 0)"),
])
def test_bad_config_is_refused_with_one_line(override, message):
    cfg = GHNConfig(**override)
    with pytest.raises(ConfigError) as e:
        cfg.validate("ghn")
    assert str(e.value) == message


def test_unknown_split_and_variant_are_refused():
    with pytest.raises(ValueError, match="unknown split 'huge'"):
        sample_archs("huge", 1, 0)
    with pytest.raises(ValueError, match="unknown GHN variant 'ghn3'"):
        GHN("ghn3")
    assert math.isclose(GHNConfig().adam_lrs[0], 1e-3)
