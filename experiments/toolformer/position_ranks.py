"""How selective position sampling could be: for the kept calls of one run, the rank of
their position's p("[") among the word starts of their document (README, "Position sampling").

    python experiments/toolformer/position_ranks.py <cache_dir>/stages/toolformer-annotate-*/candidates.json

A position is sampled iff it is among the top_k word starts by p("[") with p > tau_s; this
prints, for k = 1..10 and for a few tau_s, the share of all sampled positions and of the kept
calls' positions (tau_f = 0.5) that a rule with that k or tau_s would still have sampled.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict

TAU_F = 0.5


def main(path: str) -> None:
    rows = json.loads(open(path).read())["candidates"]
    p_at: dict[int, dict[int, float]] = defaultdict(dict)
    best: dict[tuple[int, int], float] = {}
    for r in rows:
        p_at[r["doc"]][r["position"]] = r["p_start"]
        gain = min(r["loss_plain"], r["loss_no_result"]) - r["loss_result"]
        key = (r["doc"], r["position"])
        best[key] = max(best.get(key, float("-inf")), gain)
    kept = [k for k, g in best.items() if g >= TAU_F]
    ranks = []
    for d, pos in kept:
        ps = p_at[d]
        ranks.append(1 + sum(v > ps[pos] for v in ps.values()))
    n_pos = [len(ps) for ps in p_at.values()]
    print(f"{len(kept)} kept positions in {len(p_at)} documents; word starts sampled per document: "
          f"mean {sum(n_pos) / len(n_pos):.1f}, max {max(n_pos)}")
    ps_all = [v for ps in p_at.values() for v in ps.values()]
    print(f"p('[') at sampled word starts: min {min(ps_all):.2e}, median {sorted(ps_all)[len(ps_all) // 2]:.3f}")
    for k in range(1, 11):
        print(f"k = {k:2d}: {sum(r <= k for r in ranks) / max(1, len(ranks)):.3f} of kept positions sampled")
    kept_p = [p_at[d][pos] for d, pos in kept]
    for tau in (0.01, 0.02, 0.05, 0.1):
        print(f"tau_s = {tau}: {sum(v > tau for v in ps_all) / len(ps_all):.3f} of positions, "
              f"{sum(v > tau for v in kept_p) / max(1, len(kept_p)):.3f} of kept positions sampled")


if __name__ == "__main__":
    main(sys.argv[1])
