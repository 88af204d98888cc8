"""LRE (Hernandez et al. 2023): the math, the batched Jacobian, the edit, the relation files."""

from __future__ import annotations

from functools import partial

import pytest
import torch

from toyrepro.core.checks import ConfigError
from toyrepro.core.lm import GPTLM, ByteTokenizer, HFCausalLM
from toyrepro.core.transformer import GPT, GPTConfig
from toyrepro.lre import affine
from toyrepro.lre.config import LREConfig
from toyrepro.lre.evaluate import read_states
from toyrepro.lre.jacobian import (
    SuffixRunner,
    decoding_subspace,
    group_jacobians,
    jacobian,
    jacobian_loop,
    layer_jacobians,
)
from toyrepro.lre.relations import (
    RELATIONS_DIR,
    RelationFileError,
    load_relation_file,
    load_relations,
)
from toyrepro.lre.toy import FILLERS, FactSequences, ToyPrompts, make_kb, toy_gpt, toy_relations


@pytest.fixture(scope="module")
def gpt():
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=64, block_size=32, n_layer=3, n_head=2, n_embd=16)).eval()


def test_exactly_linear_model_lre_recovers_W_and_is_faithful():
    """z = A h + c exactly: the mean Jacobian is A, the bias is c, and decoding agrees everywhere."""
    g = torch.Generator().manual_seed(0)
    D, V = 12, 30
    A, c = torch.randn(D, D, generator=g), torch.randn(D, generator=g)
    E = torch.randn(V, D, generator=g)  # an "unembedding"
    model = lambda h: A @ h + c  # noqa: E731
    h_train = torch.randn(8, D, generator=g)
    J = torch.stack([jacobian(model, h) for h in h_train])
    op = affine.estimate_lre(J, h_train, torch.stack([model(h) for h in h_train]))
    torch.testing.assert_close(op.W, A)
    torch.testing.assert_close(op.b, c, atol=1e-4, rtol=1e-4)
    h_test = torch.randn(200, D, generator=g)
    z_true = h_test @ A.T + c
    faithful = ((op(h_test) @ E.T).argmax(-1) == (z_true @ E.T).argmax(-1)).float().mean()
    assert faithful == 1.0
    # baselines that are not the map do worse on the same data
    trans = affine.translation(h_train, torch.stack([model(h) for h in h_train]))
    assert ((trans(h_test) @ E.T).argmax(-1) == (z_true @ E.T).argmax(-1)).float().mean() < 0.9


def test_lre_bias_averages_each_samples_own_intercept():
    """Eq. 4: b = mean_i(z_i - J_i h_i). For z = h^2 (D = 1) at h = 1, 3: J = 2, 6, intercepts
    -1, -9, so b = -5 (mean(z) - mean(J) mean(h) would give 5 - 4 * 2 = -3)."""
    h = torch.tensor([[1.0], [3.0]])
    op = affine.estimate_lre(torch.tensor([[[2.0]], [[6.0]]]), h, h**2)
    assert op.W.item() == 4.0 and op.b.item() == -5.0
    assert affine.estimate_lre(torch.tensor([[[2.0]], [[6.0]]]), h, h**2, bias="mean").b.item() == -3.0


def test_pinv_rank_and_edit_invert_a_linear_map():
    g = torch.Generator().manual_seed(1)
    W = torch.randn(10, 10, generator=g)
    P = affine.pinv_rank(W, 10)
    torch.testing.assert_close(P @ W, torch.eye(10), atol=1e-4, rtol=1e-4)
    z0, z1 = torch.randn(10, generator=g), torch.randn(10, generator=g)
    torch.testing.assert_close(W @ affine.edit_delta(P, z0, z1), z1 - z0, atol=1e-4, rtol=1e-4)
    assert torch.linalg.matrix_rank(affine.pinv_rank(W, 3)) == 3


def test_batched_jacobian_equals_slow_loop(gpt):
    lm = GPTLM(gpt)
    ids = torch.randint(0, 64, (11,), generator=torch.Generator().manual_seed(2))
    pos, layer = 6, 1
    h = lm(ids[None], output_hidden_states=True).hidden_states[layer][0, pos]
    fast = jacobian(partial(SuffixRunner(lm, ids, pos), layer=layer), h)  # jacrev + vmap, prefix KV cache
    slow = jacobian_loop(lambda v: lm.run_from(ids[None], layer, pos, v)[0, -1], h)  # full prompt, row by row
    torch.testing.assert_close(fast, slow, atol=1e-5, rtol=1e-4)
    chunked = jacobian(partial(SuffixRunner(lm, ids, pos), layer=layer), h, chunk=5)
    torch.testing.assert_close(chunked, slow, atol=1e-5, rtol=1e-4)
    proj = decoding_subspace(lm, [3, 5, 9, 11], 3)
    assert proj.shape == (16, 3)
    torch.testing.assert_close(jacobian(partial(SuffixRunner(lm, ids, pos), layer=layer), h, proj), proj @ proj.T @ slow,
                               atol=1e-5, rtol=1e-4)


def test_suffix_runner_on_a_hugging_face_model(gpt):
    """The HF path (DynamicCache prefix, hooks) gives the same z and Jacobian as our GPT."""
    hf = HFCausalLM(gpt.to_hf(), ByteTokenizer())
    ours = GPTLM(gpt)
    ids = torch.randint(0, 64, (9,), generator=torch.Generator().manual_seed(3))
    h = ours(ids[None], output_hidden_states=True).hidden_states[2][0, 4]
    a, b = partial(SuffixRunner(hf, ids, 4), layer=2), partial(SuffixRunner(ours, ids, 4), layer=2)
    vals = torch.randn(1, 3, 16)
    torch.testing.assert_close(a(vals), b(vals), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(jacobian(a, h), jacobian(b, h), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("hf", [False, True])
def test_all_layer_jacobians_in_one_pass_equal_one_layer_at_a_time(gpt, hf):
    """Additive shifts at several layers, differentiated together, give each layer's dz/dh."""
    lm = HFCausalLM(gpt.to_hf(), ByteTokenizer()) if hf else GPTLM(gpt)
    ids = torch.randint(0, 64, (12,), generator=torch.Generator().manual_seed(5))
    pos, layers = 7, [0, 1, 3]
    hs = GPTLM(gpt)(ids[None], output_hidden_states=True).hidden_states
    runner = SuffixRunner(lm, ids, pos)
    together = layer_jacobians(runner, layers)
    proj = decoding_subspace(lm, [3, 5, 9, 11], 4)
    projected = layer_jacobians(runner, layers, proj, chunk=3)
    for layer in layers:
        one = jacobian(partial(runner, layer=layer), hs[layer][0, pos])
        torch.testing.assert_close(together[layer], one, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(projected[layer], proj @ proj.T @ one, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("hf", [False, True])
def test_group_jacobians_equal_each_prompts_own(gpt, hf):
    """G prompts in one jacrev (rows of one batch, the gradient of sum_g z_g) give each prompt's
    own dz/dh at every layer, with and without the projection and with a row chunk; prompts that
    differ before the subject must not leak into each other's Jacobians."""
    lm = HFCausalLM(gpt.to_hf(), ByteTokenizer()) if hf else GPTLM(gpt)
    ids = torch.randint(0, 64, (3, 11), generator=torch.Generator().manual_seed(9))
    pos, layers = 6, [0, 2]
    proj = decoding_subspace(lm, [3, 5, 9, 11], 4)
    group = SuffixRunner(lm, ids, pos)
    for p, chunk in [(None, 0), (proj, 2)]:
        together = group_jacobians(group, layers, p, chunk)
        for g in range(3):
            alone = layer_jacobians(SuffixRunner(lm, ids[g], pos), layers, p)
            for layer in layers:
                assert together[layer].shape == (3, 16, 16)
                torch.testing.assert_close(together[layer][g], alone[layer], atol=1e-5, rtol=1e-4)
        J = together[2]
        assert (J[0] - J[1]).abs().max() > 0.05 * J[0].abs().max()  # the prompts' Jacobians do differ


@pytest.mark.parametrize("hf", [False, True])
def test_jacobians_keep_no_graph_through_the_weights(gpt, hf):
    """The model's weights require grad (as a loaded model's do); the Jacobians must still come back
    with no autograd graph. One with a grad_fn keeps every row's vmapped backward alive until it is
    freed: on SmolLM2's full Jacobian that held 8.6-9.8 GB per prompt and passed 15.9 GB (issue 16)."""
    lm = HFCausalLM(gpt.to_hf(), ByteTokenizer()) if hf else GPTLM(gpt)
    assert all(p.requires_grad for p in lm.model.parameters())
    ids = torch.randint(0, 64, (10,), generator=torch.Generator().manual_seed(7))
    runner = SuffixRunner(lm, ids, 5)
    for J in [*layer_jacobians(runner, [0, 2]).values(), *layer_jacobians(runner, [1], chunk=4).values(),
              jacobian(partial(runner, layer=1), torch.zeros(16))]:
        assert J.grad_fn is None and not J.requires_grad
        assert J.abs().sum() > 0


@pytest.mark.parametrize("hf", [False, True])
def test_shared_prefix_cache_is_exact(gpt, hf):
    """read_states with one KV cache per shared demonstration prefix (right-padded tails) gives the
    plain forward's states and answers; SuffixRunner built on that cache equals one built from scratch."""
    lm = HFCausalLM(gpt.to_hf(), ByteTokenizer()) if hf else GPTLM(gpt)
    g = torch.Generator().manual_seed(4)
    demo = torch.randint(0, 64, (10,), generator=g).tolist()
    prompts = [(demo + torch.randint(0, 64, (n,), generator=g).tolist(), 10 + n - 3) for n in (4, 6, 5, 6)]
    prompts.append((torch.randint(0, 64, (12,), generator=g).tolist(), 7))  # another context
    st = read_states(lm, prompts, [0] * 5, keys=["a"] * 4 + ["b"])
    assert st.ctx[0] is st.ctx[1] and st.ctx[0][0] == 10 and st.ctx[4] is not st.ctx[0]
    for i, (ids, pos) in enumerate(prompts):
        out = lm(torch.tensor([ids]), output_hidden_states=True)
        ref_h = torch.stack(out.hidden_states, 1)[0, :, pos]
        torch.testing.assert_close(st.h[i], ref_h, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(st.z[i], out.hidden_states[-1][0, -1], atol=1e-4, rtol=1e-4)
        assert st.pred[i] == out.logits[0, -1].argmax()
        vals = torch.randn(1, 2, 16, generator=g)
        torch.testing.assert_close(SuffixRunner(lm, ids, pos, st.ctx[i])(vals, 1), SuffixRunner(lm, ids, pos)(vals, 1),
                                   atol=1e-4, rtol=1e-4)


def test_pinv_edit_moves_a_toy_models_answer():
    """Train a tiny GPT on "x t -> f(x)" (12 subjects, 3 objects); editing the subject state by
    dh = W^+ (LRE(h_j) - LRE(h_i)) makes it answer f(x_j) (Hernandez et al. §4.2; the target in
    the LRE's output space, the `cause_lre_target` variant of evaluate.py)."""
    torch.manual_seed(0)
    n, T = 12, 16  # subjects 0..11, template token 12, objects 13..15
    f = torch.tensor([13, 14, 15] * 4)[torch.randperm(n)]
    data = torch.stack([torch.arange(n), torch.full((n,), 12), f], 1)  # (n, 3)
    model = GPT(GPTConfig(vocab_size=T, block_size=4, n_layer=2, n_head=2, n_embd=32))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        loss = torch.nn.functional.cross_entropy(model(data[:, :2]).logits[:, -1], data[:, 2])
        opt.zero_grad()
        loss.backward()
        opt.step()
    lm = GPTLM(model.eval())
    out = lm(data[:, :2], output_hidden_states=True)
    assert (out.logits[:, -1].argmax(-1) == f).all(), "the tiny model did not learn its facts"
    layer = 0
    h, z = out.hidden_states[layer][:, 0].detach(), out.hidden_states[-1][:, -1].detach()
    runners = [partial(SuffixRunner(lm, data[i, :2], 0), layer=layer) for i in range(n)]
    op = affine.estimate_lre(torch.stack([jacobian(runners[i], h[i]) for i in range(n)]), h, z)
    P = affine.pinv_rank(op.W, 32)
    moved = tried = 0
    for i in range(n):
        for j in range(n):
            if f[j] != f[i]:
                with torch.no_grad():
                    new = lm.unembed(runners[i](h[i] + affine.edit_delta(P, op(h[i]), op(h[j])))).argmax(-1)
                moved, tried = moved + int(new == f[j]), tried + 1
    assert moved / tried >= 0.8, f"the edit reached the target in {moved}/{tried} cases"


def test_relation_file_errors_name_file_and_line(tmp_path):
    f = tmp_path / "bad.tsv"
    f.write_text("# comment\ntemplate\tThe capital of {} is\nFrance\tParis\nGermany Berlin\n")
    with pytest.raises(RelationFileError, match=r"bad\.tsv:4: expected two non-empty tab-separated"):
        load_relation_file(f)
    f.write_text("template\tno placeholder\nFrance\tParis\n")
    with pytest.raises(RelationFileError, match=r"bad\.tsv:1: the template must contain"):
        load_relation_file(f)
    f.write_text("template\t{} is in\nFrance\tEurope\nFrance\tAsia\n")
    with pytest.raises(RelationFileError, match=r"bad\.tsv:3: duplicate subject"):
        load_relation_file(f)


def test_shipped_relations_parse():
    files = sorted(RELATIONS_DIR.glob("*.tsv"))
    assert len(files) >= 6
    for f in files:
        template, facts = load_relation_file(f)
        assert len(facts) >= 30, f
        assert "{}" in template


def test_text_prompts_find_the_subjects_last_token():
    class Tok:  # whitespace "tokenizer": one token per word, the space kept with the word
        def encode(self, text):
            import re

            return [hash(w) % 1000 for w in re.findall(r"\s*\S+|\n", text)]

    from toyrepro.lre.relations import TextPrompts

    lm = type("LMStub", (), {"encode": lambda self, t: Tok().encode(t)})()
    fmt = TextPrompts(lm, "The capital of {} is")
    ids, pos = fmt.prompt("France", [("Japan", "Tokyo")])
    assert len(ids) == 11 and pos == 9  # The capital of Japan is Tokyo \nThe capital of France | is
    with pytest.raises(ValueError, match="unknown relation"):
        load_relations(lm, ["nope"])


def test_toy_knowledge_base_and_prompts():
    kb = make_kb(50, 10, 3, 20, seed=0, subject_tokens=2, vocab_size=256)
    assert len(set(kb.subjects)) == 50
    rels = {r.name: r for r in toy_relations(kb)}
    country = dict(zip(kb.subjects, kb.objects["country"]))
    continent = dict(zip(kb.subjects, kb.objects["continent"]))
    by_country = {}
    for s in kb.subjects:  # continent is a function of country
        assert by_country.setdefault(country[s], continent[s]) == continent[s]
    ids, pos = rels["id"].fmt.prompt(kb.subjects[0], rels["id"].samples[1:3])
    assert ids[pos - 1 : pos + 1] == list(kb.subjects[0]) and len(ids) == 2 * 6 + 4
    assert isinstance(rels["id"].fmt, ToyPrompts)


def test_toy_design_shared_pool_token_pairs_and_fillers():
    kb = make_kb(60, 6, 3, 10, seed=1, subject_tokens=2, vocab_size=256, subject_pool=12)
    tokens = {t for s in kb.subjects for t in s}
    assert len(set(kb.subjects)) == 60 and len(tokens) <= 12 and all(a != b for a, b in kb.subjects)
    pairs = [tuple(t) for ts in kb.templates.values() for t in ts]
    assert len(set(pairs)) == len(pairs)
    for k in (0, 1):  # every single template token is used by two relations: only the pair names one
        assert all(sum(p[k] == tok for p in pairs) == 2 for tok in {p[k] for p in pairs})
    seqs = FactSequences(kb, 6, 40, seed=0, profile_fraction=0.5, filler_max=3)
    gaps = set()
    for i in range(40):
        ids = seqs[i].tolist()
        assert len(ids) == seqs.length
        for j in range(len(ids) - 1):
            if tuple(ids[j : j + 2]) in pairs:  # relation words: the subject ends 1 + (fillers) before
                back = j - 1
                while ids[back] in FILLERS:
                    back -= 1
                assert tuple(ids[back - 1 : back + 1]) in kb.subjects
                gaps.add(j - 1 - back)
    assert gaps == {0, 1, 2, 3}


def test_toy_gpt_attention_only_last_block_and_local_window():
    """attn_only_last_block: the last block has no MLP (= GPT-2 with that MLP's output zeroed);
    local_window: before the last block a position sees only the last `window` tokens, the last block
    sees everything; KV caches, last_only, read_states and the Jacobian runner agree with a plain forward."""
    cfg = GPTConfig(vocab_size=64, block_size=32, n_layer=2, n_head=1, n_embd=16)
    torch.manual_seed(0)
    m = toy_gpt(cfg, attn_only_last_block=True).eval()
    names = [n for n, _ in m.named_parameters()]
    assert not any(n.startswith(("h.1.mlp", "h.1.ln_2")) for n in names) and any(n.startswith("h.0.mlp") for n in names)
    torch.manual_seed(0)
    ref = GPT(cfg).eval()  # same initial draws; zero the last MLP's output by hand
    with torch.no_grad():
        ref.h[1].mlp.c_proj.weight.zero_()
        ref.h[1].mlp.c_proj.bias.zero_()
    ids = torch.randint(0, 64, (3, 20), generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(m(ids).logits, ref(ids).logits)

    torch.manual_seed(0)
    loc = toy_gpt(cfg, attn_only_last_block=True, local_window=2).eval()
    torch.testing.assert_close(loc.state_dict(), m.state_dict())  # same parameters, only the masks differ
    out = loc(ids, output_hidden_states=True)
    for p, moved in ((9, True), (8, False)):  # token p changes the layer-1 state at 10 iff 10 - p < window = 2
        ids2 = ids.clone()
        ids2[:, p] = (ids2[:, p] + 1) % 64
        out2 = loc(ids2, output_hidden_states=True)
        assert bool((out2.hidden_states[1][:, 10] - out.hidden_states[1][:, 10]).abs().max() > 1e-6) == moved
        assert (out2.logits[:, -1] - out.logits[:, -1]).abs().max() > 1e-6  # the last block reads it at the end
    cached = loc(ids[:, :12], use_cache=True)
    torch.testing.assert_close(loc(ids[:, 12:], past_kv=cached.past_kv).logits, out.logits[:, 12:])
    torch.testing.assert_close(loc(ids, last_only=True).logits[:, 0], out.logits[:, -1])
    lm, seq, pos = GPTLM(loc), ids[0], 15
    st = read_states(lm, [(seq[:18].tolist(), pos), (seq.tolist(), pos)], [0, 0], keys=["a", "a"])
    torch.testing.assert_close(st.h[1], torch.stack(out.hidden_states, 1)[0, :, pos])
    h = out.hidden_states[1][0, pos]
    fast = jacobian(partial(SuffixRunner(lm, seq, pos), layer=1), h)
    slow = jacobian_loop(lambda v: lm.run_from(seq[None], 1, pos, v)[0, -1], h)
    torch.testing.assert_close(fast, slow, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="attn_only_last_block=true needs model.n_layer >= 2"):
        toy_gpt(GPTConfig(vocab_size=64, block_size=32, n_layer=1, n_head=1, n_embd=16), attn_only_last_block=True)


def test_config_ranges():
    LREConfig().validate("lre")
    with pytest.raises(ConfigError, match="lre.model_source must be toy or smollm2"):
        LREConfig(model_source="gptj").validate("lre")
    with pytest.raises(ConfigError, match="lre.betas"):
        LREConfig(betas=[0.0]).validate("lre")
    with pytest.raises(ConfigError, match="lre.local_window"):
        LREConfig(local_window=-1).validate("lre")
    with pytest.raises(ConfigError, match="lre.attn_only_last_block"):
        LREConfig(attn_only_last_block="yes").validate("lre")
