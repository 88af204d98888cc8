"""quantization diagnostic: are the facts Q8_0 flips on SmolLM2 the ones the model barely knew?

For `quantization_smollm2` at `scale=quick` (its three relations, seed S), reads every
subject's prompt exactly as the scorecard's recall does (`lre.evaluate.known_states`, same
per-relation seed) under float32 (the shipped Q4_1 dequantised) and under Q8_0, and keeps
the last position's logits. A subject's *margin* is the true first object token's logit minus
the best other token's (> 0: recalled). Prints, per relation, recall under both formats, the
subjects whose answer changed with their margins, the median |margin| over all subjects,
the median and largest change Q8_0 makes to a subject's margin, and how many subjects have a
|margin| below that largest change (per relation).
Not part of any scorecard. Usage: python experiments/quantization/dev/q8_recall_margins.py [SEED]
"""

import sys

import torch

from toyrepro.lre.evaluate import known_states
from toyrepro.lre.relations import load_relations
from toyrepro.lre.smollm2 import load_smollm2_cached
from toyrepro.quantization.formats import parse
from toyrepro.quantization.measure import relation_seed
from toyrepro.quantization.weights import quantized

SEED = int(sys.argv[1]) if len(sys.argv) > 1 else 0


@torch.no_grad()
def margins(lm, rel, n_train: int, seed: int) -> torch.Tensor:
    """(subjects,) true-token logit minus the best other logit, at the answer position."""
    st, _, _ = known_states(lm, rel, n_train, torch.Generator().manual_seed(seed))
    logits = lm.unembed(st.z.to(lm.device)).float().cpu()
    true = logits.gather(1, st.target[:, None]).squeeze(1)
    other = logits.scatter(1, st.target[:, None], float("-inf")).max(1).values
    return true - other


def main():
    from pathlib import Path

    from hydra import compose, initialize_config_dir

    from toyrepro.core.config import register

    register()
    with initialize_config_dir(str(Path(__file__).resolve().parents[3] / "configs"), version_base=None):
        cfg = compose("config", overrides=["experiment=quantization_smollm2", "scale=quick", f"seed={SEED}"])
    lre = cfg.lre
    lm = load_smollm2_cached(cfg.cache_dir)
    relations = load_relations(lm, list(lre.relations), lre.max_subjects)  # the preset's three
    seeds = {r.name: relation_seed(SEED, k) for k, r in enumerate(relations)}
    ref = {r.name: margins(lm, r, lre.n_train, seeds[r.name]) for r in relations}
    with quantized(lm.model, parse("q8_0"), cfg.quantization.quantize_embeddings):
        q8 = {r.name: margins(lm, r, lre.n_train, seeds[r.name]) for r in relations}
    total = sum(len(m) for m in ref.values())
    print(f"{total} subjects; recall f32 {sum(int((m > 0).sum()) for m in ref.values()) / total:.4f}, "
          f"Q8_0 {sum(int((m > 0).sum()) for m in q8.values()) / total:.4f}")
    for r in relations:
        a, b = ref[r.name], q8[r.name]
        flipped = ((a > 0) != (b > 0)).nonzero().flatten().tolist()
        print(f"{r.name}: {len(a)} subjects, recall {float((a > 0).float().mean()):.3f} -> {float((b > 0).float().mean()):.3f}; "
              f"median |margin| {float(a.abs().median()):.3f}; largest |change| {float((b - a).abs().max()):.3f}, "
              f"median |change| {float((b - a).abs().median()):.3f}")
        for i in flipped:
            print(f"   flipped: {r.samples[i][0]!r} -> {r.samples[i][1]!r}: margin {float(a[i]):+.4f} -> {float(b[i]):+.4f}")
        small = int((a.abs() < (b - a).abs().max()).sum())
        print(f"   subjects with |margin| below the largest Q8_0 change: {small}")


if __name__ == "__main__":
    main()
