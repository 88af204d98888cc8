"""The toy setting: a synthetic knowledge base and a small GPT trained until it recalls it.

Knowledge base (seeded): `n_subjects` subjects, each `subject_tokens` random tokens (default
one: with two, a 3-layer toy GPT looks facts up at the prompt's last position by attending
to both subject tokens, so the subject's last token never holds the facts and even the
oracle patch fails; real LMs "enrich" the subject's last token, §2). Four relations of
different cardinality (issue 5):

    country    ~ uniform over n_countries values
    continent  = a fixed function of country (n_continents values)
    polarity   ~ uniform over 2 values
    id         ~ uniform over n_ids values (random: expected to be recalled but not
                 decoded linearly, the paper's company -> CEO case, §5)

Each relation is stated with two templates of two tokens each. A training sequence is
`facts_per_sequence` facts of one relation and one template, "s1 s1' t t' o1 SEP s2 ...",
the same few-shot format the LRE prompts use. Vocabulary (model.vocab_size ids): 0 = SEP,
1..16 = template tokens, from 20 each relation's object tokens, then subject tokens.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from toyrepro.core.data import StepOffsetSampler
from toyrepro.core.gpt import GPT, GPTConfig
from toyrepro.core.lm import GPTLM
from toyrepro.core.stage import cached_stage
from toyrepro.core.train import LMModule, fit_stage
from toyrepro.probing.relations import Relation

log = logging.getLogger("toyrepro")
SEP, TEMPLATE0, OBJ0 = 0, 1, 20
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
    if subject_pool:  # position k of a subject draws from its own `subject_pool` tokens
        pool, stride = subject_pool, subject_pool
        if base + subject_tokens * pool > vocab_size:
            raise ValueError(f"lre.subject_pool={pool} x {subject_tokens} subject tokens need model.vocab_size >= "
                             f"{base + subject_tokens * pool}, got {vocab_size}")
    else:  # every id after the objects, at every position
        pool, stride = vocab_size - base, 0
    if pool ** subject_tokens < n_subjects:
        raise ValueError(f"{n_subjects} subjects of {subject_tokens} token(s) need more than {pool} ** {subject_tokens} "
                         f"codes; raise model.vocab_size / lre.subject_pool or lower lre.n_subjects")
    codes = torch.randperm(pool ** subject_tokens, generator=g)[:n_subjects].tolist()
    subjects = [tuple(base + (subject_tokens - 1 - k) * stride + (c // pool ** k) % pool
                      for k in reversed(range(subject_tokens))) for c in codes]
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
    templates = {r: [[TEMPLATE0 + 4 * i + 2 * t, TEMPLATE0 + 4 * i + 2 * t + 1] for t in range(2)]
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
    (each subject followed by its four objects, "s o_country o_continent o_polarity o_id SEP",
    padded to the same length), otherwise `k` facts of one relation and template.

    Profiles make the subject's last token predict its country, so the model looks facts up
    *at the subject* ("enrichment", §2) instead of only at the query position; without them
    the 3-layer toy GPT reads the subject tokens from the query position and does the lookup
    there, and neither LRE nor the oracle patch at the subject works (measured, see README).
    """

    def __init__(self, kb: KnowledgeBase, k: int, num_samples: int, seed: int, profile_fraction: float = 0.0):
        self.kb, self.k, self.num_samples, self.seed = kb, k, num_samples, seed
        self.profile_fraction = profile_fraction
        self.length = k * (len(kb.subjects[0]) + 4)

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, i: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + i)
        if float(torch.rand((), generator=g)) < self.profile_fraction:
            ids: list[int] = []
            for j in torch.randperm(len(self.kb.subjects), generator=g).tolist():
                fact = [*self.kb.subjects[j], *(self.kb.objects[r][j] for r in RELATIONS), SEP]
                if len(ids) + len(fact) > self.length:
                    break
                ids += fact
            return torch.tensor(ids + [SEP] * (self.length - len(ids)), dtype=torch.long)
        r = RELATIONS[int(torch.randint(0, len(RELATIONS), (1,), generator=g))]
        tmpl = self.kb.templates[r][int(torch.randint(0, 2, (1,), generator=g))]
        idx = torch.randperm(len(self.kb.subjects), generator=g)[: self.k]
        ids = [t for j in idx.tolist() for t in (*self.kb.subjects[j], *tmpl, self.kb.objects[r][j], SEP)]
        return torch.tensor(ids, dtype=torch.long)


def train_toy_lm(ctx, kb: KnowledgeBase) -> GPTLM:
    """Train (or reuse from the stage cache) the toy GPT on the knowledge base."""
    cfg, lre = ctx.cfg, ctx.cfg.lre
    k = lre.facts_per_sequence
    seq_len = k * (lre.subject_tokens + 4)
    if seq_len - 1 > cfg.model.block_size:
        raise ValueError(f"lre.facts_per_sequence={k} needs model.block_size >= {seq_len - 1}")
    mcfg = GPTConfig(**vars(cfg.model))
    params = {"model": asdict(mcfg), "optim": vars(cfg.optim), "max_steps": cfg.trainer.max_steps, "seed": cfg.seed,
              "kb": {f: getattr(lre, f) for f in ("n_subjects", "n_countries", "n_continents", "n_ids", "facts_per_sequence",
                                                 "subject_tokens", "profile_fraction")}}

    def build(tmp: Path) -> None:
        torch.manual_seed(cfg.seed)
        model = GPT(mcfg)
        bs, steps = cfg.optim.batch_size, cfg.trainer.max_steps
        train = FactSequences(kb, k, steps * bs, seed=cfg.seed, profile_fraction=lre.profile_fraction)
        val = FactSequences(kb, k, cfg.trainer.limit_val_batches * bs, seed=10_000 + cfg.seed,
                            profile_fraction=lre.profile_fraction)
        module = LMModule(model, cfg.optim, steps, stage="train")
        loader = torch.utils.data.DataLoader(
            train, batch_size=bs, sampler=StepOffsetSampler(len(train), bs, lambda: module.global_step))
        fit_stage(module, loader, torch.utils.data.DataLoader(val, batch_size=bs), cfg.trainer,
                  ctx.stage_dir("train"), ctx.loggers("train"), "train", cfg.resume)
        torch.save(model.state_dict(), tmp / "model.pt")

    path = cached_stage(cfg.cache_dir, "lre-toy-gpt", params, build)
    model = GPT(mcfg)
    model.load_state_dict(torch.load(path / "model.pt", map_location="cpu", weights_only=True))
    return GPTLM(model.eval())
