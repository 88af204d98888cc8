"""Weight quantisation: the gguf formats against llama.cpp's definitions, GPTQ's RTN on hand
examples, the outlier case, the model round trip, and a logit bound that shrinks with bits."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType, quants

from toyrepro.core.checks import ConfigError, UserError
from toyrepro.core.transformer import GPT, GPTConfig
from toyrepro.quantization.config import QuantConfig
from toyrepro.quantization.formats import ALL_FORMATS, gguf_roundtrip, parse, roundtrip, rtn
from toyrepro.quantization.measure import padding_mask
from toyrepro.quantization.weights import quantizable, quantized


def gguf_bytes(x: np.ndarray, name: str) -> np.ndarray:
    return quants.quantize(x.reshape(1, -1).astype(np.float32), GGMLQuantizationType[name.upper()])[0]


def f16(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float32).astype(np.float16)


# -- llama.cpp block formats: bytes and values of hand blocks ---------------------------------

def test_q8_0_block_is_fp16_scale_then_int8_codes():
    """ggml block_q8_0: d = max|x| / 127 as fp16, then 32 int8 q = round(x / d); x = d * q."""
    q = np.array([127, -127, 0, 1, -1, 64, -64, 3] * 4, dtype=np.int8)
    x = q.astype(np.float32) * 2.0 ** -4  # exactly on the grid, d = 1/16 exact in fp16
    b = gguf_bytes(x, "q8_0")
    assert b.size == 34
    assert b[:2].view(np.float16)[0] == np.float16(2.0 ** -4)
    np.testing.assert_array_equal(b[2:].view(np.int8), q)
    np.testing.assert_array_equal(gguf_roundtrip(torch.from_numpy(x)[None], "q8_0")[0].numpy(), x)


def test_q4_0_block_packs_two_codes_per_byte():
    """ggml block_q4_0: d = x_absmax / -8 (fp16); q = x / d + 8 in [0, 15]; byte j holds q_j in its
    low nibble and q_{j+16} in its high nibble; x = d * (q - 8)."""
    codes = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15] * 2)
    codes[0] = 16 - 16  # the value of largest magnitude is -4.0 = -8 * d -> d = 0.5
    x = (codes - 8).astype(np.float32) * 0.5
    b = gguf_bytes(x, "q4_0")
    assert b.size == 18 and b[:2].view(np.float16)[0] == np.float16(0.5)
    np.testing.assert_array_equal(b[2:], (codes[:16] | (codes[16:] << 4)).astype(np.uint8))
    np.testing.assert_array_equal(gguf_roundtrip(torch.from_numpy(x)[None], "q4_0")[0].numpy(), x)


@pytest.mark.parametrize("name, levels, d, m", [("q4_1", 16, 0.25, -1.0), ("q5_1", 32, 0.125, -2.0)])
def test_q4_1_and_q5_1_blocks_store_scale_and_minimum(name, levels, d, m):
    """block_q4_1 / q5_1: d = (max - min) / (levels - 1), m = min, both fp16; x = d * q + m."""
    codes = np.arange(32) % levels
    x = (d * codes + m).astype(np.float32)
    b = gguf_bytes(x, name)
    assert b[:2].view(np.float16)[0] == np.float16(d) and b[2:4].view(np.float16)[0] == np.float16(m)
    np.testing.assert_array_equal(gguf_roundtrip(torch.from_numpy(x)[None], name)[0].numpy(), x)


def test_q5_0_and_mxfp4_keep_values_on_their_grids():
    x5 = ((np.arange(32) % 32) - 16).astype(np.float32) * 0.125  # absmax -2.0 = -16 d, d = 1/8
    np.testing.assert_array_equal(gguf_roundtrip(torch.from_numpy(x5)[None], "q5_0")[0].numpy(), x5)
    e2m1 = np.array([0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.5, -1, -1.5, -2, -3, -4, -6, 6] * 2, dtype=np.float32)
    np.testing.assert_array_equal(gguf_roundtrip(torch.from_numpy(e2m1)[None], "mxfp4")[0].numpy(), e2m1)


def test_off_grid_blocks_match_the_reference_c_definitions():
    """quantize_row_q8_0_ref / q4_0_ref / q4_1_ref of ggml-quants.c, written out in float32 numpy:
    the code is computed with the float32 scale, the stored scale is its fp16 rounding."""
    x = np.random.default_rng(0).normal(size=(8, 32)).astype(np.float32)
    amax_signed = np.take_along_axis(x, np.abs(x).argmax(1)[:, None], 1)
    d8 = np.abs(x).max(1, keepdims=True) / np.float32(127)
    ref = {"q8_0": np.round(x / d8) * f16(d8).astype(np.float32)}  # roundf: halves away from zero (none here)
    d4 = amax_signed / np.float32(-8)
    ref["q4_0"] = (np.clip(np.trunc(x * (1 / d4) + np.float32(8.5)), 0, 15) - 8) * f16(d4).astype(np.float32)
    lo, hi = x.min(1, keepdims=True), x.max(1, keepdims=True)
    d1 = (hi - lo) / np.float32(15)
    ref["q4_1"] = (np.clip(np.trunc((x - lo) * (1 / d1) + np.float32(0.5)), 0, 15) * f16(d1).astype(np.float32)
                   + f16(lo).astype(np.float32))
    for name, want in ref.items():
        got = gguf_roundtrip(torch.from_numpy(x), name).numpy()
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6, err_msg=name)


def test_bits_per_weight_include_scales():
    shape = (64, 64)
    assert {n: parse(n).bits_per_weight(shape) for n in ("f32", "q8_0", "q5_0", "q5_1", "q4_1", "q4_0", "mxfp4")} == \
        {"f32": 32.0, "q8_0": 8.5, "q5_0": 5.5, "q5_1": 6.0, "q4_1": 5.0, "q4_0": 4.5, "mxfp4": 4.25}
    assert parse("rtn4_g32").bits_per_weight(shape) == 4 + 20 / 32  # fp16 scale + 4-bit zero per 32 weights
    assert parse("rtn4_channel").bits_per_weight(shape) == 4 + 20 / 64
    assert parse("rtn3_tensor").bits_per_weight(shape) == 3 + 19 / 4096
    assert parse("rtn4_g128").bits_per_weight((4, 576)) == 4 + 20 * 5 / 576  # 4 groups of 128 + one of 64 per row


# -- GPTQ's round-to-nearest ----------------------------------------------------------------

def test_rtn_hand_example_per_tensor_and_short_last_group():
    """2 bits over [-1, 2]: scale = 3 / 3 = 1, zero = 1; codes clamp(round(x) + 1, 0, 3)."""
    x = torch.tensor([[-1.0, -0.2, 0.3, 2.0]])
    torch.testing.assert_close(rtn(x, 2, "tensor"), torch.tensor([[-1.0, 0.0, 0.0, 2.0]]))
    # the range always holds 0 (GPTQ): [0.5, 1.0] at 1 bit is quantised over [0, 1] -> {0, 1}
    torch.testing.assert_close(rtn(torch.tensor([[0.4, 0.6, 1.0]]), 1, "tensor"), torch.tensor([[0.0, 1.0, 1.0]]))
    rows = torch.tensor([[0.0, 3.0, -3.0, 0.0, 5.0], [1.0, 1.0, 1.0, 1.0, 1.0]])
    g2 = rtn(rows, 2, "group", 2)  # groups [0:2], [2:4] and the short [4:5] per row: each has 2 values at most
    torch.testing.assert_close(g2, rows)  # every group's values are its min/max/0: exact
    assert not torch.equal(rtn(rows, 2, "tensor"), rows)


def test_per_group_beats_per_channel_beats_per_tensor_with_an_outlier():
    w = torch.randn(64, 128, generator=torch.Generator().manual_seed(0)) * 0.02
    w[3, 7] = 1.0  # one outlier (50 sigma), as in LLM.int8()'s outlier features
    err = {g: float((roundtrip(w, parse(f"rtn4_{g}")) - w).norm() / w.norm()) for g in ("tensor", "channel", "g32")}
    assert err["g32"] < err["channel"] < err["tensor"]
    assert err["tensor"] > 2 * err["channel"]  # the outlier stretches every row's grid only per tensor


# -- a model in a format --------------------------------------------------------------------

@pytest.fixture(scope="module")
def gpt():
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=64, block_size=32, n_layer=2, n_head=2, n_embd=64)).eval()  # GPT-2's init


def test_quantizable_weights_and_the_embedding_knob(gpt):
    off, on = quantizable(gpt, embeddings=False), quantizable(gpt, embeddings=True)
    assert set(off) == {f"h.{i}.{m}.weight" for i in range(2) for m in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")}
    assert set(on) - set(off) == {"wte.weight", "wpe.weight"}  # lm_head is tied to wte: quantised once, as wte


def test_logit_error_shrinks_with_bits_and_weights_are_restored(gpt):
    ids = torch.randint(0, 64, (4, 32), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = gpt(ids).logits
        before = {k: v.clone() for k, v in gpt.state_dict().items()}
        diff = {}
        for name in ("rtn8_channel", "rtn6_channel", "rtn4_channel", "rtn3_channel", "rtn2_channel", "q8_0", "q4_0"):
            with quantized(gpt, parse(name)) as report:
                diff[name] = float((gpt(ids).logits - ref).abs().max())
                assert report.rel_error > 0 and report.n_weights == sum(w.numel() for w in quantizable(gpt, False).values())
        for k, v in gpt.state_dict().items():
            assert torch.equal(v, before[k]), k
    widths = [diff[f"rtn{b}_channel"] for b in (8, 6, 4, 3, 2)]
    assert widths == sorted(widths), widths  # more bits, smaller logit error
    assert widths[0] * 8 < widths[2]  # 8 bits vs 4: the step is 16x smaller
    assert diff["q8_0"] * 8 < diff["q4_0"]
    assert diff["q8_0"] < 0.05 * float(ref.std())  # Q8_0: within 5 % of the logits' spread


def test_f32_is_the_identity(gpt):
    ids = torch.arange(32)[None]
    with torch.no_grad():
        ref = gpt(ids).logits
        with quantized(gpt, parse("f32")) as report:
            assert torch.equal(gpt(ids).logits, ref)
    assert report.rel_error == 0.0 and report.bits_per_weight == 32.0


# -- inputs ---------------------------------------------------------------------------------

def test_bad_formats_are_refused_with_one_line():
    with pytest.raises(UserError) as e:
        parse("q3_k")
    assert str(e.value) == ("unknown weight format 'q3_k'; use f32, one of q8_0, q5_1, q5_0, q4_1, q4_0, mxfp4, "
                            "or rtn<bits 2-8>_<tensor|channel|g<size>> (e.g. rtn4_g32)")
    with pytest.raises(UserError) as e:
        gguf_roundtrip(torch.zeros(4, 48), "q4_0")
    assert str(e.value) == ("format q4_0 needs rows whose length is a multiple of 32; a weight of shape (4, 48) has "
                            "rows of 48 (leave it out or use an rtn format)")
    with pytest.raises(ConfigError) as e:
        QuantConfig(formats=["q8_0", "f32"]).validate()
    assert str(e.value) == ("quantization.formats must be a list starting with f32 (the reference every change is "
                            "measured against) (got ['q8_0', 'f32'])")
    with pytest.raises(ConfigError, match=r"^quantization.formats: unknown weight format 'rtn9_g32'"):
        QuantConfig(formats=["f32", "rtn9_g32"]).validate()
    with pytest.raises(ConfigError, match=r"lre_formats must be a subset of quantization.formats"):
        QuantConfig(formats=["f32", "q8_0"], lre_formats=["f32", "q4_0"]).validate()
    QuantConfig().validate()
    assert len(ALL_FORMATS) == 27


def test_padding_mask_drops_trailing_separators_only():
    rows = torch.tensor([[5, 6, 0, 7, 8, 0, 0, 0]])
    assert padding_mask(rows).tolist() == [[True, True, True, True, True, False, False]]
