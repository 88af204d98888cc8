"""compression: the range coder round-trips, its length is the model's log-loss, configs refuse bad input."""

import dataclasses
import math
from types import SimpleNamespace

import constriction
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir

from toyrepro import cli  # noqa: F401  (registers the schema)
from toyrepro.compression import baselines
from toyrepro.compression.coder import BOS, _decodes, decode, encode, terminate, words
from toyrepro.compression.config import CompressionConfig
from toyrepro.compression.experiment import load_or_train
from toyrepro.core import config as schema
from toyrepro.core.checks import ConfigError
from toyrepro.core.stage import cached_stage
from toyrepro.core.transformer import GPT, GPTConfig
from toyrepro.gpt.experiment import model_params

from conftest import REPO

CFG = GPTConfig(vocab_size=256, block_size=16, n_layer=1, n_head=2, n_embd=16)


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny models, one thread


def random_model(seed: int, scale: float = 1.0) -> GPT:
    torch.manual_seed(seed)
    model = GPT(CFG)
    with torch.no_grad():  # sharpen the random model so bytes cost very different amounts
        model.wte.weight.mul_(scale)
    return model.eval()


def test_random_bytes_round_trip_under_a_random_model():
    rng = np.random.default_rng(0)
    chunks = rng.integers(0, 256, size=(5, 37), dtype=np.uint8)  # 37: segments of 8 do not divide it
    model = random_model(1, scale=40.0)
    coded = encode(model, chunks, batch_size=2)  # batches of 2, 2, 1
    assert np.array_equal(decode(model, coded.codes, 37, batch_size=2), chunks)
    # a different model cannot decode it: the round trip checks something
    wrong = decode(random_model(2, scale=40.0), coded.codes, 37, batch_size=2)
    assert not np.array_equal(wrong, chunks)


def test_code_length_is_the_log_loss():
    # a model with all-zero logits is uniform: every byte costs exactly 8 bits
    uniform = random_model(0)
    with torch.no_grad():
        uniform.wte.weight.zero_()
    chunks = np.frombuffer(b"def f(x):\n    return x\n" * 3, dtype=np.uint8)[None, :64].copy()
    coded = encode(uniform, chunks, batch_size=1)
    assert coded.ideal_bits[0] == pytest.approx(8 * 64, abs=1e-9)
    assert 8 * 64 <= coded.code_bits[0] <= 8 * 64 + 8 and coded.symbol_bits[0] == 8 * 64

    # a sharp random model: the coder's sum -log2 p is the teacher-forced log-loss of [BOS] + chunk
    model = random_model(3, scale=40.0)
    chunks = np.random.default_rng(1).integers(0, 256, size=(3, 8), dtype=np.uint8)  # one segment: full context
    coded = encode(model, chunks, batch_size=3)
    ids = torch.cat([torch.full((3, 1), BOS), torch.as_tensor(chunks, dtype=torch.long)], dim=1)
    with torch.no_grad():
        logp = F.log_softmax(model(ids[:, :-1]).logits.double(), -1).gather(-1, ids[:, 1:, None])[..., 0]
    expected = (-logp.sum(1) / math.log(2)).numpy()
    assert expected.min() > 20, "the example must cost many bits"
    np.testing.assert_allclose(coded.ideal_bits, expected, rtol=1e-5)
    assert np.all(np.abs(coded.code_bits - coded.ideal_bits) <= 9)


def test_termination_keeps_the_fewest_bytes_that_still_decode():
    """`terminate` cuts constriction's sealing word to the fewest leading bytes that decode:
    on 2048-byte chunks under random distributions the mean overhead over sum -log2 p falls from
    about half a word (16 bits) to a few bits, every trimmed code decodes, and cutting a byte more
    off a code (without the rounding) no longer decodes."""
    rng = np.random.default_rng(0)
    sealed_over, over, shorter_fails = [], [], 0
    for _ in range(24):
        probs = np.exp(2.5 * rng.normal(size=(2048, 256)))
        probs /= probs.sum(1, keepdims=True)
        symbols = (probs.cumsum(1) > rng.random((2048, 1))).argmax(1)
        ideal = -np.log2(probs[np.arange(2048), symbols]).sum()
        enc = constriction.stream.queue.RangeEncoder()
        enc.encode(symbols.astype(np.int32), constriction.stream.model.Categorical(perfect=False), probs)
        sealed = enc.get_compressed()
        code = terminate(sealed, symbols, probs)
        assert len(code) <= 4 * len(sealed) and _decodes(words(code), symbols, probs)
        shorter_fails += not _decodes(words(code[:-1]), symbols, probs)
        sealed_over.append(32 * len(sealed) - ideal)
        over.append(8 * len(code) - ideal)
    assert np.mean(sealed_over) > 10 and np.mean(over) < 6 and np.max(over) < 16, (sealed_over, over)
    assert shorter_fails == 24

    # improbable symbols under sharp distributions (image bytes under a text model): some cut
    # candidates make constriction's decoder refuse the data outright; those count as not decoding
    rng, refused = np.random.default_rng(0), 0
    for _ in range(40):
        probs = np.exp(6 * rng.normal(size=(2048, 256)))
        probs /= probs.sum(1, keepdims=True)
        symbols = rng.integers(0, 256, 2048)
        enc = constriction.stream.queue.RangeEncoder()
        enc.encode(symbols.astype(np.int32), constriction.stream.model.Categorical(perfect=False), probs)
        sealed = enc.get_compressed()
        for j in (4, 3, 2, 1):  # terminate's candidates
            word = -(-int(sealed[-1]) // 256**j) * 256**j
            if word < 2**32:
                cut = np.append(sealed[:-1], np.uint32(word))
                try:
                    constriction.stream.queue.RangeDecoder(cut).decode(
                        constriction.stream.model.Categorical(perfect=False), probs)
                except AssertionError:
                    refused += 1
                    assert not _decodes(cut, symbols, probs)
        assert _decodes(words(terminate(sealed, symbols, probs)), symbols, probs)
    assert refused > 0, "the example must reach the decoder's refusal"


def test_bad_config_is_refused_with_one_line():
    with pytest.raises(ConfigError, match=r"^compression.chunk_bytes must be >= 2 \(got 1\)$"):
        CompressionConfig(chunk_bytes=1).validate()
    cfg = SimpleNamespace(model=dataclasses.replace(CFG, vocab_size=128))
    with pytest.raises(ConfigError, match=r"^model.vocab_size must be 256 \(one token per byte\) for compression "
                                          r"\(got 128\)$"):
        CompressionConfig().validate_against(cfg)
    with pytest.raises(ValueError, match="^100 bytes hold no whole chunk of 2048 bytes$"):
        baselines.chunked(np.zeros(100, dtype=np.uint8), 2048, 4)


def composed(*overrides: str):
    with initialize_config_dir(str(REPO / "configs"), version_base="1.3"):
        cfg = compose("config", overrides=list(overrides))
    cfg.run_dir = "/tmp/x"
    return schema.validate(cfg)


def test_the_gpt_experiments_model_is_found_and_reused(tmp_path):
    for scale in ("quick", "full"):  # the presets are written to match gpt's
        gpt = composed("experiment=gpt", f"scale={scale}", "seed=4")
        comp = composed("experiment=compression", f"scale={scale}", "seed=4")
        assert model_params(gpt, gpt.gpt.max_files, gpt.gpt.val_fraction) == model_params(
            comp, comp.compression.max_files, comp.compression.val_fraction)
    smoke = composed("experiment=compression", "scale=smoke", f"cache_dir={tmp_path}")
    key = model_params(smoke, smoke.compression.max_files, smoke.compression.val_fraction)
    published = GPT(smoke.model)
    cached_stage(tmp_path, "gpt_model", key, lambda tmp: torch.save(published.state_dict(), tmp / "model.pt"))
    loaded = load_or_train(SimpleNamespace(cfg=smoke), None, None)  # no corpus given: it must not train
    for a, b in zip(published.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)


def test_compressors_on_known_inputs():
    zeros = np.zeros((2, 2048), dtype=np.uint8)
    digits = baselines.chunked(baselines.random_digits(4 * 2048, seed=0), 2048, 4)
    r0, rd = baselines.rates(zeros), baselines.rates(digits)
    assert all(r["chunk"] < 0.5 for r in r0.values())  # a constant compresses to almost nothing
    # random digits carry log2(10) = 3.32 bits/byte: no compressor may go below, all should get near
    assert all(math.log2(10) < r["chunk"] < 4.5 for r in rd.values())
    assert set(np.unique(digits)) <= set(range(48, 58))
