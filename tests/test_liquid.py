"""liquid: event encoding, elapsed times reaching the ncps cells, masking, parameter counts, a falling loss."""

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from toyrepro.core.checks import ConfigError, UserError
from toyrepro.liquid.config import DynamicsConfig, ModelsConfig
from toyrepro.liquid.events import (
    EventSequences,
    decode_events,
    digit_splits,
    encode_events,
    pad_events,
    time_unaware_ceiling,
    to_bits,
)
from toyrepro.liquid.models import MODELS, build_model, dense_parameters, effective_parameters
from toyrepro.liquid.oscillators import baseline_mse, dynamics_set, observe, oscillators
from toyrepro.liquid.training import sequence_loss

SMALL = ModelsConfig(cfc_hidden=8, ltc_units=6, lstm_hidden=8, ncp_units=8, ncp_motor=2)


def test_event_encoding_hand_example_and_round_trip_of_every_digit():
    values, elapsed = encode_events(np.array([0, 0, 1, 1, 1, 0]))
    assert values.tolist() == [0, 1, 0] and elapsed.tolist() == [2, 3, 1]
    bits = to_bits(load_digits().images, threshold=8)
    for b in bits:
        v, e = encode_events(b)
        assert np.array_equal(decode_events(v, e), b)
        assert e.sum() == 64 and (np.diff(v) != 0).all()  # the bits alternate: the gaps carry the image


def test_encoding_refuses_a_stream_that_is_not_bits():
    with pytest.raises(UserError) as e:
        encode_events(np.array([0, 2, 1]))
    assert str(e.value) == "encode_events needs a non-empty 1-D stream of 0/1 bits, got shape (3,)"


def test_too_few_images_for_a_stratified_split_is_refused_with_the_fix():
    with pytest.raises(UserError) as e:
        digit_splits(8, 0.125, 0.1, 0.1, seed=0, max_images=40)
    assert str(e.value) == ("digits: 40 images give 4 test and 4 validation images, fewer than the 10 classes; "
                            "raise liquid.digits.max_images or the test/val fractions")


def test_config_refuses_an_ncp_without_room_for_inter_and_command_neurons():
    with pytest.raises(ConfigError) as e:
        ModelsConfig(ncp_units=6, ncp_motor=4).validate("liquid.models")
    assert str(e.value) == ("liquid.models.ncp_units must be >= ncp_motor + 3 = 7 (AutoNCP needs inter and "
                            "command neurons) (got 6)")


def test_time_unaware_ceiling_is_the_majority_class_of_first_bit_and_length():
    def seqs(firsts, lengths, labels):
        n = len(labels)
        values = torch.zeros(n, 4, 1)
        values[:, 0, 0] = torch.tensor(firsts, dtype=torch.float32)
        return EventSequences(values, torch.ones(n, 4, 1), torch.tensor(lengths), torch.tensor(labels))

    train = seqs([0, 0, 0, 1], [2, 2, 3, 2], [5, 5, 7, 1])  # (0,2) -> 5, (0,3) -> 7, (1,2) -> 1
    test = seqs([0, 0, 1, 1], [2, 3, 2, 4], [5, 6, 1, 5])  # right, wrong, right, unseen -> majority 5: right
    assert time_unaware_ceiling(train, test) == 0.75


def test_observations_keep_step_zero_and_their_gaps_locate_them_on_the_grid():
    g = torch.Generator().manual_seed(0)
    traj = oscillators(32, 20, (0.2, 0.8), 0.3, g)
    obs = observe(traj, 0.5, g)
    for i in range(32):
        k = int(obs.lengths[i])
        steps = torch.cumsum(obs.elapsed[i, :k, 0], 0).long() - 1  # gaps -> grid indices
        assert steps[0] == 0 and steps[-1] < 20
        assert torch.equal(obs.values[i, :k, 0], traj[i, steps]) and torch.equal(obs.targets[i, :k, 0], traj[i, steps + 1])
    full = observe(traj, 1.0, g)
    assert (full.lengths == 20).all() and (full.elapsed == 1).all()
    assert baseline_mse(full)["persistence"] == pytest.approx(float(((traj[:, 1:] - traj[:, :-1]) ** 2).mean()), rel=1e-5)


@pytest.mark.parametrize("kind", ["cfc", "ltc", "wired_cfc", "cfc_no_gaps"])
def test_elapsed_times_reach_the_cell_as_a_b_by_1_column_and_change_its_output(kind):
    torch.manual_seed(0)
    model = build_model(kind, 1, 1, SMALL)
    seen = []
    model.cell.register_forward_pre_hook(lambda m, args: seen.append(args[2].clone()))
    values, elapsed = torch.randn(5, 7, 1), torch.rand(5, 7, 1) + 0.5
    out = model(values, elapsed)
    assert [tuple(ts.shape) for ts in seen] == [(5, 1)] * 7  # never the (B,) of ncps issues #81-#83
    expected = torch.ones_like(elapsed) if kind == "cfc_no_gaps" else elapsed
    assert all(torch.equal(ts, expected[:, t]) for t, ts in enumerate(seen))
    changed = model(values, elapsed * 3)
    if kind == "cfc_no_gaps":
        assert torch.equal(out, changed)
    else:
        assert not torch.allclose(out, changed, atol=1e-4)


@pytest.mark.parametrize("kind", list(MODELS))
@pytest.mark.parametrize("task", ["classify", "regress"])
def test_masked_padding_does_not_change_the_loss(kind, task):
    torch.manual_seed(0)
    model = build_model(kind, 1, 10 if task == "classify" else 1, SMALL)
    B, T = 6, 9
    lengths = torch.tensor([9, 3, 5, 1, 7, 4])
    batch = {"values": torch.randn(B, T, 1), "elapsed": torch.rand(B, T, 1) + 0.5, "lengths": lengths,
             "labels": torch.randint(0, 10, (B,)), "targets": torch.randn(B, T, 1)}
    loss = sequence_loss(model, batch, task)
    pad = torch.arange(T)[None, :, None] >= lengths[:, None, None]
    noisy = dict(batch, values=torch.where(pad, torch.randn(B, T, 1) * 5, batch["values"]),
                 elapsed=torch.where(pad, torch.rand(B, T, 1) * 9 + 0.1, batch["elapsed"]),
                 targets=torch.where(pad, torch.randn(B, T, 1) * 5, batch["targets"]))
    assert torch.allclose(sequence_loss(model, noisy, task), loss, rtol=0, atol=1e-6)
    real = dict(batch, values=batch["values"].clone())
    real["values"][1, 0, 0] += 1.0  # a real observation: the loss must move
    assert not torch.allclose(sequence_loss(model, real, task), loss, rtol=0, atol=1e-6)


def test_padded_event_sequences_are_masked_and_never_have_zero_gaps():
    bits = np.array([[0] * 60 + [1] * 4, [1, 0] * 32])
    seqs = pad_events(bits, np.array([3, 4]), time_scale=0.5, max_len=64)
    assert seqs.lengths.tolist() == [2, 64]
    assert seqs.elapsed[0, :2, 0].tolist() == [30.0, 2.0] and (seqs.elapsed[0, 2:] == 1).all()


def test_wired_cfc_is_counted_by_its_masks_non_zeros():
    model = build_model("wired_cfc", 1, 1, ModelsConfig())
    by_hand = model.head.weight.numel() + model.head.bias.numel()
    for layer in model.cell._layers:
        nonzero = int(torch.count_nonzero(layer.sparsity_mask))
        by_hand += 2 * nonzero + 2 * layer.ff1.bias.numel()  # the masked ff1, ff2 and their biases
        by_hand += sum(p.numel() for p in (*layer.time_a.parameters(), *layer.time_b.parameters()))  # dense
    assert effective_parameters(model) == by_hand < dense_parameters(model)
    dense = build_model("lstm_aug", 1, 1, ModelsConfig())
    assert effective_parameters(dense) == dense_parameters(dense) == sum(p.numel() for p in dense.parameters())
    assert effective_parameters(model) <= dense_parameters(dense) / 8  # the claim's budget holds by design


def test_lstm_baseline_loss_falls():
    torch.manual_seed(0)
    cfg = DynamicsConfig(grid_steps=16)
    data = dynamics_set(64, 0.5, cfg, seed=1)
    model = build_model("lstm_aug", 1, 1, ModelsConfig(lstm_hidden=16))
    opt = torch.optim.Adam(model.parameters(), lr=2e-2)
    batch = {"values": data.values, "elapsed": data.elapsed, "targets": data.targets, "lengths": data.lengths}
    first = float(sequence_loss(model, batch, "regress").detach())
    for _ in range(40):
        loss = sequence_loss(model, batch, "regress")
        opt.zero_grad()
        loss.backward()
        opt.step()
    last = float(sequence_loss(model, batch, "regress").detach())
    assert last < 0.3 * first
    assert last < baseline_mse(data)["zero"]  # it learned more than "predict 0"
