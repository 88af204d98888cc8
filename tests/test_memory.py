"""core/memory.py: the training-memory estimate logged at the start of every run."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest

from toyrepro.core.memory import gpt_training_bytes, memory_line
from toyrepro.core.run import RunContext
from toyrepro.core.transformer import GPT, GPTConfig


def test_state_is_16_bytes_per_parameter_of_the_real_model():
    m = GPTConfig(vocab_size=256, block_size=64, n_layer=2, n_embd=32, n_head=2)
    e = gpt_training_bytes(m, batch=8, precision="32-true")
    assert e["params"] == sum(p.numel() for p in GPT(m).parameters())
    assert e["state"] == 16 * e["params"]
    assert e["logits"] == 8 * 64 * 256 * 12  # float32: the logits, their copy and its gradient
    assert e["total"] == e["state"] + e["activations"] + e["logits"]
    assert gpt_training_bytes(m, 8, "bf16-mixed")["activations"] == e["activations"] / 2


def test_a_model_too_large_for_one_h200_is_said_not_to_fit():
    small = GPTConfig(vocab_size=256, block_size=128, n_layer=4, n_embd=128, n_head=4)
    huge = GPTConfig(vocab_size=50304, block_size=2048, n_layer=96, n_embd=12288, n_head=96)  # GPT-3 175B
    assert "fits one H200" in memory_line(small, 32, "bf16-mixed")
    assert "DOES NOT FIT one H200" in memory_line(huge, 1, "bf16-mixed")


@pytest.mark.parametrize(("name", "expected"), [("gpt", "memory: the model: GPT (0.0M parameters)"),
                                                ("ghn", "memory: the model: ghn's models are not the `model:` GPT"),
                                                ("lre_smollm2", "lre_smollm2's models are not the `model:` GPT")])
def test_the_start_of_run_line_describes_the_gpt_only_where_the_run_trains_it(name, expected, tmp_path, caplog):
    model = GPTConfig(vocab_size=256, block_size=16, n_layer=1, n_embd=16, n_head=1)
    cfg = SimpleNamespace(name=name, model=model, cache_dir=str(tmp_path), optim=SimpleNamespace(batch_size=4),
                          trainer=SimpleNamespace(step_cap=None, precision="32-true"))
    with caplog.at_level(logging.INFO, logger="toyrepro"):
        RunContext(cfg, {}, tmp_path)
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("memory:")]
    assert expected in line
