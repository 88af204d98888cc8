"""Setting (c): the suite's GPT retrained on its own samples (Shumailov et al. 2024, §4).

Data: sequences of one newline byte + `seq_len` bytes of the `gpt` experiment's stdlib corpus,
each starting right after a line break (so "\\n" is a natural beginning-of-sequence token).
Generation 0 trains on N real sequences; generation g trains on N sequences sampled from
generation g-1 with the KV cache at temperature 1, no top-k (`core.generate`: the model's own
distribution, as Shumailov sample with no truncation in their main setting), prompted by "\\n".
Every generation starts from the same initial weights (seeded), so the generations differ only
in their data; Lightning fits each one as its own stage (`<chain>_gen<g>`, checkpointed).

Measured per generation:
- perplexity on `eval_windows` real held-out windows (files never trained on), per window so
  the bootstrap can resample them;
- distinct n-grams: distinct byte n-grams / all n-grams in `eval_samples` sampled sequences;
- tail-token frequency: the share of sampled bytes that are tail bytes (the rarest bytes of the
  real data that together hold `tail_mass` of it).

Deviations from Shumailov §4: a byte-level GPT of ~0.1 M parameters trained from scratch each
generation (they fine-tune the pretrained OPT-125m on wikitext2), Python source instead of
wikitext2, sequences of 64 bytes.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from toyrepro.collapse.chain import chain_seed
from toyrepro.core.generate import generate
from toyrepro.core.run import RunContext
from toyrepro.core.transformer import GPT

BOS = 10  # "\n"


def line_windows(text: torch.Tensor, n: int, length: int, g: torch.Generator) -> torch.Tensor:
    """n windows of `length` + 1 bytes that start at a newline, at random (seeded) positions."""
    starts = torch.nonzero(text[: len(text) - length - 1] == BOS).squeeze(1)
    if len(starts) < n:
        raise ValueError(f"only {len(starts)} line starts for {n} windows; use more files or fewer sequences")
    pick = starts[torch.randperm(len(starts), generator=g)[:n]]
    return torch.stack([text[s : s + length + 1] for s in pick.tolist()]).long()


class Draws(torch.utils.data.Dataset):
    """`num` rows drawn with replacement from `rows`; row i depends on (seed, i) only (resumable)."""

    def __init__(self, rows: torch.Tensor, num: int, seed: int):
        self.rows = rows
        self.index = torch.randint(0, len(rows), (num,), generator=torch.Generator().manual_seed(seed))

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.rows[int(self.index[i])]


class LMSetting:
    def __init__(self, ctx: RunContext, train_text: torch.Tensor, val_text: torch.Tensor):
        self.ctx, self.cfg, self.lm = ctx, ctx.cfg, ctx.cfg.collapse.lm
        g = torch.Generator().manual_seed(ctx.cfg.seed)
        self.data0 = line_windows(train_text, self.lm.sequences, self.lm.seq_len, g)
        self.eval = line_windows(val_text, self.lm.eval_windows, self.lm.seq_len, g)
        freq = torch.bincount(self.data0[:, 1:].reshape(-1), minlength=256).double()
        order = torch.argsort(freq)  # rarest first
        rare = order[torch.cumsum(freq[order], 0) <= self.lm.tail_mass * freq.sum()]
        self.tail = torch.zeros(256, dtype=torch.bool)
        self.tail[rare] = True

    def fit(self, data: torch.Tensor, generation: int, chain: str) -> GPT:
        c = self.cfg
        torch.manual_seed(c.seed)  # the same initial weights in every generation
        model = GPT(c.model)
        steps, bs = c.trainer.max_steps, c.optim.batch_size
        stage = "gen0" if generation == 0 else f"{chain}_gen{generation}"
        self.ctx.train_lm(stage, model, Draws(data, steps * bs, c.seed * 7919 + generation),
                          self.eval[: bs * c.trainer.limit_val_batches])
        return model.eval()

    @torch.no_grad()
    def sample(self, model: GPT, n: int, generation: int, chain: str) -> torch.Tensor:
        g = torch.Generator().manual_seed(int(np.random.default_rng(chain_seed(self.cfg.seed, generation, chain))
                                              .integers(2**62)))
        out = []
        for b in range(0, n, self.lm.sample_batch):
            prompt = torch.full((min(self.lm.sample_batch, n - b), 1), BOS, dtype=torch.long)
            out.append(generate(model, prompt, self.lm.seq_len, temperature=1.0, generator=g))
        return torch.cat(out)

    def real(self, n: int, generation: int, chain: str) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.cfg.seed * 104_729 + generation)
        return self.data0[torch.randperm(len(self.data0), generator=g)[:n]]

    def join(self, synthetic: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        return torch.cat([synthetic, real])

    @torch.no_grad()
    def measure(self, model: GPT, generation: int, chain: str) -> dict[str, object]:
        x = self.eval
        logits = model(x[:, :-1]).logits.float()
        nll = F.cross_entropy(logits.transpose(1, 2), x[:, 1:], reduction="none").mean(dim=1)
        samples = self.sample(model, self.lm.eval_samples, generation, chain + "/eval")[:, 1:]
        return {"nll": nll.double().numpy(), "distinct": distinct_ngrams(samples, self.lm.ngram),
                "tail_freq": float(self.tail[samples].double().mean())}

    def real_stats(self) -> dict[str, float]:
        """The real data's own distinct n-grams and tail frequency (same number of sequences)."""
        rows = self.data0[: self.lm.eval_samples, 1:]
        return {"distinct": distinct_ngrams(rows, self.lm.ngram), "tail_freq": float(self.tail[rows].double().mean())}


def distinct_ngrams(rows: torch.Tensor, n: int) -> float:
    """Distinct byte n-grams over all n-grams of the rows (n-grams do not cross rows)."""
    grams = rows.unfold(1, n, 1).reshape(-1, n)
    return len(torch.unique(grams, dim=0)) / max(1, len(grams))
