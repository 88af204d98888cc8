"""The toy setting: a synthetic knowledge base and a small GPT trained until it recalls it.

Knowledge base (seeded): `n_subjects` subjects of `subject_tokens` (2) tokens. Four relations
of different cardinality (issue 5):

    country    ~ uniform over n_countries values
    continent  = a fixed function of country (n_continents values)
    polarity   ~ uniform over 2 values
    id         ~ uniform over n_ids values (random: meant as the paper's company -> CEO case,
                 §5, recalled but not decoded linearly; it is the least linear relation
                 on every seed, but decoded well above chance, README "Results")

Each relation is stated with two templates of two tokens each. A training sequence is either
`facts_per_sequence` facts of one relation and one template, "s1 s1' t t' o1 SEP s2 ...", the
same few-shot format the LRE prompts use, or (`profile_fraction`) a "profile": subjects each
followed by their four objects in a random order (`FactSequences`).

Why the toy needs care (measured, see experiments/lre/README.md, "Toy design"): the paper's
LRE decodes the *enriched* state of the subject's last token (§2), which real LMs build because
text keeps needing an entity's attributes after its name. A toy GPT with 4 heads and subjects of
unique random tokens instead looked each fact up at the prompt's last position from the raw
subject tokens; even patching another subject's whole state into the subject's last token
moved <= 0.27 of answers. The choices that make the last position read the subject's last
token: profiles (its next token is any of the subject's objects, so it must hold them all),
subject tokens from a small shared pool (`subject_pool`: only the ordered pair names a
subject), relation words that name the relation only as a *pair* of template tokens, 0..`filler_max`
filler tokens between subject and relation words in training queries, and 2 layers of 1 attention
head (configs/experiment/lre.yaml). Even then, on 2 of 5 seeds the model learned the direct lookup:
block 1's head at the last position gathered the raw subject tokens and an MLP looked the fact up
there; an MLP is shared by all positions, so that costs no more than looking it up at the subject.
`toy_gpt` has two structural options against it (deviations from GPT-2):

* `local_window` (2, adopted): the blocks before the last attend only to their own and the
  previous position, so the subject's last token can still join the two subject tokens (and the
  last position the two relation words), but no position gathers a subject it does not end before
  the last block; the last position can only get the subject by reading a state in the last
  block, so the facts must be in the subject's last-token state (enrichment, Hernandez et al. §2);
* `attn_only_last_block` (off): the last block has no MLP, so the last position can only read, by
  attention, what earlier blocks computed. Alone it does not stop the lookup (block 1 does it);
  with `local_window` it also forces enrichment, but the readout is then linear by construction
  (every relation, the random `id` too, decodes with faithfulness ~1), which the LRE should test.

Vocabulary (model.vocab_size ids): 0 = SEP, 1..8 = template tokens, from 20 each relation's
object tokens, then subject tokens.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from toyrepro.core.checks import UserError
from toyrepro.core.lm import GPTLM
from toyrepro.core.stage import cached_stage
from toyrepro.core.transformer import GPT, CausalSelfAttention, GPTConfig
from toyrepro.lre.relations import Relation

log = logging.getLogger("toyrepro")
SEP, TEMPLATE0, OBJ0 = 0, 1, 20
FILLERS = (17, 18, 19)  # tokens that can stand between a subject and its relation words ("Obama, who ..., was born in")
RELATIONS = ("country", "continent", "polarity", "id")


@dataclass
class KnowledgeBase:
    subjects: list[tuple[int, ...]]
    objects: dict[str, list[int]]  # relation -> object token per subject
    templates: dict[str, list[list[int]]]  # relation -> templates (token lists)
    cardinality: dict[str, int]


def make_kb(n_subjects: int, n_countries: int, n_continents: int, n_ids: int, seed: int,
            subject_tokens: int = 2, vocab_size: int = 512, subject_pool: int = 0) -> KnowledgeBase:
    g = torch.Generator().manual_seed(seed)
    card = {"country": n_countries, "continent": n_continents, "polarity": 2, "id": n_ids}
    base, offsets = OBJ0, {}
    for r in RELATIONS:
        offsets[r], base = base, base + card[r]
    # Subject tokens: every id after the objects, or (subject_pool > 0) the first `subject_pool` of
    # them, shared by every position of every subject (a subject is an ordered tuple of distinct
    # tokens, so each token occurs in many subjects and (a, b) and (b, a) can both be subjects).
    pool = subject_pool or vocab_size - base
    if base + pool > vocab_size:
        raise ValueError(f"lre.subject_pool={pool} needs model.vocab_size >= {base + pool}, got {vocab_size}")
    codes = [c for c in torch.randperm(pool ** subject_tokens, generator=g).tolist()
             if not subject_pool or len({(c // pool ** k) % pool for k in range(subject_tokens)}) == subject_tokens]
    if len(codes) < n_subjects:
        raise ValueError(f"{n_subjects} subjects of {subject_tokens} token(s) need more than the {len(codes)} codes of "
                         f"{pool} tokens; raise model.vocab_size / lre.subject_pool or lower lre.n_subjects")
    subjects = [tuple(base + (c // pool ** k) % pool for k in reversed(range(subject_tokens))) for c in codes[:n_subjects]]
    country = torch.randint(0, n_countries, (n_subjects,), generator=g)
    # continent(country): every continent gets at least one country, the rest at random
    cmap = torch.cat([torch.arange(n_continents), torch.randint(0, n_continents, (n_countries - n_continents,), generator=g)])
    cmap = cmap[torch.randperm(n_countries, generator=g)]
    values = {
        "country": country,
        "continent": cmap[country],
        "polarity": torch.randint(0, 2, (n_subjects,), generator=g),
        "id": torch.randint(0, n_ids, (n_subjects,), generator=g),
    }
    objects = {r: [offsets[r] + int(v) for v in values[r]] for r in RELATIONS}
    # Two templates per relation, each a pair of tokens; every single token is shared by two
    # relations, so only the pair names the relation (the last position has to read the token
    # before it, as "capital" needs "The ... of" in text).
    n = len(RELATIONS)
    templates = {r: [[TEMPLATE0 + (i + t) % n, TEMPLATE0 + n + (i + (n - 1) * t) % n] for t in range(2)]
                 for i, r in enumerate(RELATIONS)}
    return KnowledgeBase(subjects, objects, templates, card)


class ToyPrompts:
    """Few-shot token prompts for one relation and template (same interface as TextPrompts)."""

    def __init__(self, template: list[int]):
        self.template = list(template)

    def object_token(self, obj: int) -> int:
        return int(obj)

    def prompt(self, subject: tuple[int, ...], demos: list) -> tuple[list[int], int]:
        ids = [t for s, o in demos for t in (*s, *self.template, o, SEP)]
        ids += list(subject)
        pos = len(ids) - 1
        return ids + self.template, pos


def toy_relations(kb: KnowledgeBase) -> list[Relation]:
    """One Relation per KB relation, prompted with its first template."""
    return [Relation(r, list(zip(kb.subjects, kb.objects[r])), ToyPrompts(kb.templates[r][0])) for r in RELATIONS]


class FactSequences(torch.utils.data.Dataset):
    """Sample i, fixed by (seed, i): with probability `profile_fraction` a "profile" sequence
    (subjects, each followed by its four objects in a random order, "s s' o_a o_b o_c o_d SEP",
    padded to the same length), otherwise up to `k` facts of one relation and template, each
    with 0..`filler_max` filler tokens between the subject and the relation words (padded).

    At a profile's subject-last token the next token is any of the subject's four objects, so
    that token must hold all of them: profiles make the model look facts up *at the subject*
    ("enrichment", §2), relation-agnostically, as real text does around an entity's name.
    """

    def __init__(self, kb: KnowledgeBase, k: int, num_samples: int, seed: int, profile_fraction: float = 0.0,
                 filler_max: int = 0):
        self.kb, self.k, self.num_samples, self.seed = kb, k, num_samples, seed
        self.profile_fraction, self.filler_max = profile_fraction, filler_max
        self.length = k * (len(kb.subjects[0]) + 4)

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, i: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + i)
        if float(torch.rand((), generator=g)) < self.profile_fraction:
            ids: list[int] = []
            for j in torch.randperm(len(self.kb.subjects), generator=g).tolist():
                order = torch.randperm(len(RELATIONS), generator=g).tolist()
                fact = [*self.kb.subjects[j], *(self.kb.objects[RELATIONS[r]][j] for r in order), SEP]
                if len(ids) + len(fact) > self.length:
                    break
                ids += fact
            return torch.tensor(ids + [SEP] * (self.length - len(ids)), dtype=torch.long)
        r = RELATIONS[int(torch.randint(0, len(RELATIONS), (1,), generator=g))]
        tmpl = self.kb.templates[r][int(torch.randint(0, 2, (1,), generator=g))]
        ids = []
        for j in torch.randperm(len(self.kb.subjects), generator=g)[: self.k].tolist():
            u = int(torch.randint(0, self.filler_max + 1, (1,), generator=g))
            fill = [FILLERS[int(x)] for x in torch.randint(0, len(FILLERS), (u,), generator=g)]
            fact = [*self.kb.subjects[j], *fill, *tmpl, self.kb.objects[r][j], SEP]
            if len(ids) + len(fact) > self.length:
                break
            ids += fact
        return torch.tensor(ids + [SEP] * (self.length - len(ids)), dtype=torch.long)


class NoMLP(nn.Module):
    """Stands in for a block's MLP: adds nothing to the residual stream (and has no parameters)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)


class LocalSelfAttention(CausalSelfAttention):
    """Causal self-attention in which position i sees positions i - window + 1 .. i only (sliding-window
    attention); same parameters as `CausalSelfAttention`, and the same KV-cache / `last_only` interface."""

    def __init__(self, cfg: GPTConfig, window: int):
        super().__init__(cfg)
        self.window = window

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, p: float) -> torch.Tensor:
        Tq, S = q.size(2), k.size(2)
        qpos = torch.arange(S - Tq, S, device=q.device)[:, None]
        kpos = torch.arange(S, device=q.device)[None, :]
        mask = (kpos <= qpos) & (kpos > qpos - self.window)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)


def toy_gpt(mcfg: GPTConfig, attn_only_last_block: bool = False, local_window: int = 0) -> GPT:
    """The core GPT (core/transformer.py, unchanged), with two optional changes (deviations from GPT-2):

    * `attn_only_last_block`: the last block's MLP (and the LayerNorm that only feeds it) removed, so
      whatever the last position decodes it must read, linearly, by attention from states computed
      before the last block;
    * `local_window` > 0: every block but the last attends only to the last `local_window` positions
      (its own included), so a position far from the subject cannot gather the subject's tokens
      before the last block.

    Together they leave one route from a subject to the answer: look its facts up at the subject's
    last token (enrichment) and read them there by the last block's attention. The parameters are
    initialised exactly as in `GPT(mcfg)` (the same random draws)."""
    if attn_only_last_block and mcfg.n_layer < 2:
        raise ValueError(f"lre.attn_only_last_block=true needs model.n_layer >= 2 (a block with an MLP before the "
                         f"attention-only one), got n_layer={mcfg.n_layer}")
    if local_window and mcfg.n_layer < 2:
        raise ValueError(f"lre.local_window={local_window} needs model.n_layer >= 2 (it applies to the blocks "
                         f"before the last), got n_layer={mcfg.n_layer}")
    model = GPT(mcfg)
    if attn_only_last_block:
        model.h[-1].mlp, model.h[-1].ln_2 = NoMLP(), nn.Identity()
    if local_window:
        for block in model.h[:-1]:
            local = LocalSelfAttention(mcfg, local_window)
            local.load_state_dict(block.attn.state_dict())
            block.attn = local
    return model


def train_toy_lm(ctx, kb: KnowledgeBase) -> GPTLM:
    """Train (or reuse from the stage cache) the toy GPT on the knowledge base."""
    cfg, lre = ctx.cfg, ctx.cfg.lre
    k = lre.facts_per_sequence
    seq_len = k * (lre.subject_tokens + 4)
    if seq_len - 1 > cfg.model.block_size:
        raise UserError(f"lre.facts_per_sequence={k} needs model.block_size >= {seq_len - 1}; raise model.block_size or lower lre.facts_per_sequence")
    mcfg = cfg.model
    params = {"model": asdict(mcfg), "optim": vars(cfg.optim), "max_steps": cfg.trainer.max_steps, "seed": cfg.seed,
              "kb": {f: getattr(lre, f) for f in ("n_subjects", "n_countries", "n_continents", "n_ids", "facts_per_sequence",
                                                 "subject_tokens", "subject_pool", "profile_fraction", "filler_max")},
              "profile": "shuffled", "templates": "shared-token pairs"}
    # (absent when off: the key of the earlier design's cached model is unchanged)
    if lre.attn_only_last_block:
        params["attn_only_last_block"] = True
    if lre.local_window:
        params["local_window"] = lre.local_window

    def build(tmp: Path) -> None:
        torch.manual_seed(cfg.seed)
        model = toy_gpt(mcfg, lre.attn_only_last_block, lre.local_window)
        bs, steps = cfg.optim.batch_size, cfg.trainer.max_steps
        train = FactSequences(kb, k, steps * bs, seed=cfg.seed, profile_fraction=lre.profile_fraction,
                             filler_max=lre.filler_max)
        val = FactSequences(kb, k, cfg.trainer.limit_val_batches * bs, seed=10_000 + cfg.seed,
                            profile_fraction=lre.profile_fraction, filler_max=lre.filler_max)
        ctx.train_lm("train", model, train, val)
        torch.save(model.state_dict(), tmp / "model.pt")

    path = cached_stage(cfg.cache_dir, "lre-toy-gpt", params, build)
    model = toy_gpt(mcfg, lre.attn_only_last_block, lre.local_window)
    model.load_state_dict(torch.load(path / "model.pt", map_location="cpu", weights_only=True))
    return GPTLM(model.eval())
