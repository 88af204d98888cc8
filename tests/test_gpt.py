"""The from-scratch GPT is GPT-2, its KV cache is exact, and it learns."""

import pytest
import torch
import torch.nn.functional as F

from toyrepro.core.generate import generate, sample_next
from toyrepro.core.kv_cache import KVCache
from toyrepro.core.transformer import GPT, GPTConfig

CFG = GPTConfig(vocab_size=97, block_size=32, n_layer=3, n_head=4, n_embd=32)


@pytest.fixture
def model() -> GPT:
    torch.manual_seed(0)
    m = GPT(CFG).eval()
    with torch.no_grad():  # random LayerNorm params and biases, so the copy is really tested
        for name, p in m.named_parameters():
            if "ln" in name or name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    return m


def test_logits_match_huggingface_gpt2(model):
    hf = model.to_hf()
    x = torch.randint(0, CFG.vocab_size, (3, 20))
    ours, theirs = model(x).logits, hf(x).logits
    assert ours.shape == theirs.shape == (3, 20, CFG.vocab_size)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


def test_hidden_states_match_huggingface(model):
    hf = model.to_hf()
    x = torch.randint(0, CFG.vocab_size, (2, 10))
    ours = model(x, output_hidden_states=True).hidden_states
    theirs = hf(x, output_hidden_states=True).hidden_states
    assert len(ours) == len(theirs) == CFG.n_layer + 1
    for a, b in zip(ours[:-1], theirs[:-1]):  # HF applies ln_f to its last entry
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    torch.testing.assert_close(model.ln_f(ours[-1]), theirs[-1], atol=1e-5, rtol=0)


def test_patch_replaces_a_layer_and_only_affects_later_positions(model):
    x = torch.randint(0, CFG.vocab_size, (1, 12))
    clean = model(x, output_hidden_states=True)

    def patch(layer, h):
        if layer != 1:
            return h
        h = h.clone()
        h[:, 5] = 0.0
        return h

    patched = model(x, patch=patch, output_hidden_states=True)
    assert torch.equal(patched.hidden_states[1][:, 5], torch.zeros(1, CFG.n_embd))
    torch.testing.assert_close(patched.logits[:, :5], clean.logits[:, :5])
    assert not torch.allclose(patched.logits[:, 5:], clean.logits[:, 5:])


def test_kv_cache_matches_full_recompute(model):
    x = torch.randint(0, CFG.vocab_size, (2, 9))
    full = model(x).logits
    first = model(x[:, :4], use_cache=True)
    rest = model(x[:, 4:], past_kv=first.past_kv)  # several tokens after a cache
    torch.testing.assert_close(rest.logits, full[:, 4:], atol=1e-5, rtol=0)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    a = generate(model, x, 15, use_cache=True, generator=g1)
    b = generate(model, x, 15, use_cache=False, generator=g2)
    assert a.shape == (2, 24) and torch.equal(a, b)


@pytest.mark.parametrize("threads", [1, 2])
def test_preallocated_cache_is_bitwise_the_growing_one(model, threads):
    """The KVCache changes where keys/values live, not one bit of the logits or the samples."""
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        x = torch.randint(0, CFG.vocab_size, (64, 5))
        cache = KVCache(CFG.n_layer, 12)
        a, b = model(x, past_kv=cache, use_cache=True), model(x, use_cache=True)
        assert a.past_kv is cache and cache.length == 5 and torch.equal(a.logits, b.logits)
        nxt = torch.randint(0, CFG.vocab_size, (64, 3))  # several tokens after a cache
        a, b = model(nxt, past_kv=cache, use_cache=True), model(nxt, past_kv=b.past_kv, use_cache=True)
        assert cache.length == 8 and torch.equal(a.logits, b.logits)
        g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
        assert torch.equal(generate(model, x, 20, generator=g1), generate(model, x, 20, generator=g2, static_cache=False))
    finally:
        torch.set_num_threads(old)


def test_preallocated_cache_refuses_overflow_and_use_without_cache(model):
    x = torch.randint(0, CFG.vocab_size, (2, 4))
    cache = KVCache(CFG.n_layer, 6)
    model(x, past_kv=cache, use_cache=True)
    with pytest.raises(ValueError, match="KVCache holds 6 positions; 4 cached \\+ 4 new do not fit"):
        model(x, past_kv=cache, use_cache=True)
    with pytest.raises(ValueError, match="needs use_cache=True"):
        model(x, past_kv=KVCache(CFG.n_layer, 6))


def test_last_only_equals_the_full_forwards_last_position(model):
    idx = torch.randint(0, model.cfg.vocab_size, (3, 11))
    full = model(idx, output_hidden_states=True)
    last = model(idx, output_hidden_states=True, last_only=True)
    assert last.logits.shape == (3, 1, model.cfg.vocab_size)
    torch.testing.assert_close(last.logits[:, 0], full.logits[:, -1], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(last.hidden_states[-1][:, 0], full.hidden_states[-1][:, -1], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="last_only=True cannot be combined"):
        model(idx, last_only=True, use_cache=True)


def test_sampling_modes():
    logits = torch.tensor([[0.0, 5.0, 1.0, 4.0]])
    assert sample_next(logits, temperature=0).item() == 1
    g = torch.Generator().manual_seed(0)
    draws = {sample_next(logits, top_k=2, generator=g).item() for _ in range(200)}
    assert draws == {1, 3}
    g = torch.Generator().manual_seed(0)
    exact = torch.cat([sample_next(logits, generator=g) for _ in range(4000)]).flatten()
    freq = torch.bincount(exact, minlength=4).float() / 4000
    torch.testing.assert_close(freq, F.softmax(logits[0], -1), atol=0.03, rtol=0)
    with pytest.raises(ValueError, match="top_k"):
        sample_next(logits, top_k=9)


def test_too_long_input_is_refused(model):
    with pytest.raises(ValueError, match="block_size"):
        model(torch.zeros(1, CFG.block_size + 1, dtype=torch.long))
    with pytest.raises(ValueError, match="block_size"):
        generate(model, torch.zeros(1, 30, dtype=torch.long), 5)


def test_loss_falls_when_training():
    torch.manual_seed(0)
    m = GPT(GPTConfig(vocab_size=16, block_size=16, n_layer=2, n_head=2, n_embd=32))
    data = torch.arange(16).repeat(8, 1)  # a deterministic sequence to memorise
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        logits = m(data[:, :-1]).logits
        loss = F.cross_entropy(logits.reshape(-1, 16), data[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0]
