"""Config section `lre:` of the `lre` (toy GPT) and `lre_smollm2` (SmolLM2-135M) experiments.

Hernandez et al. 2023, "Linearity of Relation Decoding in Transformer Language Models"
(arXiv 2308.09124). Section numbers below refer to that paper.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from toyrepro.core.checks import check


@dataclass
class LREConfig:
    """Linear relational embeddings: LRE(h) = beta * W h + b, W = mean Jacobian (§2, eq. 3-4)."""

    model_source: str = "toy"  # toy = a GPT trained on a synthetic knowledge base; smollm2 = SmolLM2-135M-Instruct
    # -- LRE estimation (§3.1) -----------------------------------------------------------
    n_train: int = 8  # training samples per relation whose Jacobians are averaged (paper: n = 8)
    layers: list[int] = field(default_factory=lambda: [1, 2, 3])  # layers l swept for h (0 = embeddings)
    betas: list[float] = field(default_factory=lambda: [1.0, 1.5, 2.0, 2.5, 3.0])  # slope beta swept (paper: 2.25 on GPT-J)
    ranks: list[int] = field(default_factory=lambda: [2, 4, 8, 16, 32, 64])  # pseudo-inverse ranks swept for causality (§4.2)
    # Rows of the Jacobian computed: 0 = all d_model output dimensions (the paper). k > 0 = only the
    # projection of z on the k-or-fewer-dimensional span of the relation's object unembeddings
    # (deviation, for CPU time on SmolLM2: see jacobian.py).
    jacobian_dims: int = 0
    jacobian_chunk: int = 0  # output rows per vmap chunk in jacrev (0 = all at once)
    # b = mean_i(z_i - J_i h_i) ("per_sample": eq. 4 and the paper's code, what the claims use) or
    # mean(z) - W mean(h) ("mean": this suite's estimate before issue 14, kept for comparison)
    bias: str = "per_sample"
    val_fraction: float = 0.5  # held-out known subjects used to pick layer / beta / rank; the rest is the test set
    # -- the relations ----------------------------------------------------------------------
    relations: list[str] = field(default_factory=list)  # smollm2: relation file stems to use ([] = all shipped)
    max_subjects: int = 0  # smollm2: subjects per relation kept (0 = all in the file)
    # -- the toy knowledge base and its GPT (model_source=toy) ------------------------------
    n_subjects: int = 200  # random-token subjects ("a few hundred" in the issue)
    subject_tokens: int = 2  # tokens per subject (2: the subject's last token must gather the subject, as in text)
    # Subject tokens drawn from one shared pool of this many ids (0 = all free ids): every token then occurs
    # in many subjects, in either position, so only the pair identifies a subject (toy.py)
    subject_pool: int = 0
    filler_max: int = 0  # query training sequences put 0..filler_max filler tokens between subject and relation words
    profile_fraction: float = 0.5  # share of training sequences listing a subject's objects right after it (toy.py)
    # The toy GPT's last block has no MLP (attention only; deviation from GPT-2, toy.py): the last position can then
    # only *read* states by attention, not look facts up after its last read
    attn_only_last_block: bool = False
    # Blocks before the last attend only to the last `local_window` positions, their own included (0 = all
    # earlier positions, GPT-2); the last block always attends to everything (deviation from GPT-2, toy.py)
    local_window: int = 0
    n_countries: int = 20  # cardinality of `country`
    n_continents: int = 5  # cardinality of `continent` (a function of country)
    n_ids: int = 100  # cardinality of the random `id` relation (expected not to decode linearly)
    facts_per_sequence: int = 10  # facts of one relation and template per training sequence (few-shot format)

    def validate(self, p: str = "lre") -> None:
        check(self.model_source in ("toy", "smollm2"), f"{p}.model_source", "toy or smollm2", self.model_source)
        check(self.n_train >= 2, f"{p}.n_train", ">= 2", self.n_train)
        check(len(self.layers) >= 1 and all(x >= 0 for x in self.layers), f"{p}.layers",
              "a non-empty list of layers >= 0 (0 = embeddings)", self.layers)
        check(len(self.betas) >= 1 and all(b > 0 for b in self.betas), f"{p}.betas", "a non-empty list of values > 0", self.betas)
        check(len(self.ranks) >= 1 and all(r >= 1 for r in self.ranks), f"{p}.ranks", "a non-empty list of ranks >= 1", self.ranks)
        check(self.jacobian_dims >= 0, f"{p}.jacobian_dims", ">= 0 (0 = full Jacobian)", self.jacobian_dims)
        check(self.bias in ("per_sample", "mean"), f"{p}.bias", "per_sample or mean", self.bias)
        check(self.jacobian_chunk >= 0, f"{p}.jacobian_chunk", ">= 0 (0 = no chunking)", self.jacobian_chunk)
        check(0.0 < self.val_fraction < 1.0, f"{p}.val_fraction", "in (0, 1)", self.val_fraction)
        check(self.max_subjects >= 0, f"{p}.max_subjects", ">= 0", self.max_subjects)
        check(self.n_subjects >= 2 * self.n_train + 4, f"{p}.n_subjects", f">= 2 * n_train + 4 = {2 * self.n_train + 4}", self.n_subjects)
        check(2 <= self.n_continents <= self.n_countries, f"{p}.n_continents", f"in [2, n_countries={self.n_countries}]", self.n_continents)
        check(2 <= self.n_countries <= 40, f"{p}.n_countries", "in [2, 40]", self.n_countries)
        check(0 <= self.filler_max <= 8, f"{p}.filler_max", "in [0, 8]", self.filler_max)
        check(0.0 <= self.profile_fraction < 1.0, f"{p}.profile_fraction", "in [0, 1)", self.profile_fraction)
        check(isinstance(self.attn_only_last_block, bool), f"{p}.attn_only_last_block", "true or false",
              self.attn_only_last_block)
        check(isinstance(self.local_window, int) and not isinstance(self.local_window, bool) and self.local_window >= 0,
              f"{p}.local_window", "an integer >= 0 (0 = full causal attention in every block)", self.local_window)
        check(self.subject_tokens in (1, 2), f"{p}.subject_tokens", "1 or 2", self.subject_tokens)
        check(self.subject_pool == 0 or self.subject_pool >= self.subject_tokens + 1, f"{p}.subject_pool",
              f"0 (all free ids) or > subject_tokens={self.subject_tokens}", self.subject_pool)
        check(2 <= self.n_ids <= 100, f"{p}.n_ids", "in [2, 100]", self.n_ids)
        check(self.facts_per_sequence > self.n_train, f"{p}.facts_per_sequence",
              f"> n_train={self.n_train} (prompts hold n_train - 1 demonstrations + the query)", self.facts_per_sequence)
