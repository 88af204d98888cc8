"""scaling diagnostic: can the law's form fit the grid at all, with nothing held out?

Reads the results.json of finished `toyrepro experiment=scaling` runs and, for each,
refits on *every* main-grid run (epochs = 1):

- Hoffmann et al. 2022's form L = E + A/N^alpha + B/D^beta with the experiment's own
  approach-3 fitter (`toyrepro.scaling.law.fit_law`, Huber delta 1e-3 on log L);
- Kaplan et al. 2020's eq. 1.5 form, which couples N and D,
  L = E + [(N_c/N)^(alpha_N/alpha_D) + D_c/D]^alpha_D, by least squares on log L
  (an irreducible E added, as in Henighan et al. 2020) — only to ask whether a form with an
  N x D interaction fits better; the scorecard uses Hoffmann's form alone.

For each run dir it prints both fits' worst and rms residual (predicted / measured - 1),
the run with the worst Hoffmann residual, how many runs lie within 2 %, and each size's
loss gain from its first to its last budget. Not part of any scorecard.
Usage: python experiments/scaling/dev/refit.py RUN_DIR [RUN_DIR ...]
"""

import itertools
import json
import sys

import numpy as np
from scipy.optimize import minimize

from toyrepro.scaling.law import fit_law


def kaplan_fit(N, D, L):
    """Least squares on log L of log(E + [(Nc/N)^(aN/aD) + Dc/D]^aD), from a small grid of starts."""
    lN, lD, lL = np.log(N), np.log(D), np.log(L)

    def predict(t):
        e, lnc, ldc, a_n, a_d = t
        return np.logaddexp(e, a_d * np.logaddexp((a_n / a_d) * (lnc - lN), ldc - lD))

    bounds = [(-5, 2), (-5, 40), (-5, 40), (1e-3, 5), (1e-3, 5)]
    starts = itertools.product([-1, 0, 0.3], [5, 10, 15], [10, 15, 20], [0.1, 0.3, 0.6], [0.1, 0.3, 0.6])
    best = min((minimize(lambda t: np.sum((predict(t) - lL) ** 2), s, method="L-BFGS-B", bounds=bounds)
                for s in starts), key=lambda o: o.fun)
    return best.x, np.exp(predict(best.x))


def main(run_dirs):
    for run_dir in run_dirs:
        runs = [r for r in json.load(open(f"{run_dir}/results.json"))["runs"] if r["epochs"] == 1]
        N, D, L = (np.array([r[k] for r in runs], float) for k in ("N", "D", "loss"))
        law = fit_law(N, D, L, starts=32)
        res = law.loss(N, D) / L - 1
        worst = runs[int(np.argmax(np.abs(res)))]
        print(f"{run_dir} (seed {runs[0]['seed']}, {len(runs)} runs)")
        print(f"  Hoffmann form: alpha {law.alpha:.3f} beta {law.beta:.3f} E {law.E:.3f}; worst {np.abs(res).max():.2%} "
              f"(L{worst['n_layer']} d{worst['n_embd']}, {worst['steps']} steps), rms {np.sqrt(np.mean(res ** 2)):.2%}, "
              f"{int(np.sum(np.abs(res) <= 0.02))} of {len(runs)} within 2 %")
        (e, _, _, a_n, a_d), pred = kaplan_fit(N, D, L)
        res_k = pred / L - 1
        print(f"  Kaplan eq. 1.5 form (+E): alpha_N {a_n:.3f} alpha_D {a_d:.3f} E {np.exp(e):.3f}; "
              f"worst {np.abs(res_k).max():.2%}, rms {np.sqrt(np.mean(res_k ** 2)):.2%}")
        for n in sorted({r["N"] for r in runs}):
            losses = [r["loss"] for r in sorted((r for r in runs if r["N"] == n), key=lambda r: r["D"])]
            print(f"  N={n}: loss {' '.join(f'{x:.3f}' for x in losses)}; gain first->last budget "
                  f"{losses[0] - losses[-1]:+.3f}, over the last step {losses[-2] - losses[-1]:+.3f}")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: python experiments/scaling/dev/refit.py RUN_DIR [RUN_DIR ...] (dirs of finished scaling runs)")
    main(sys.argv[1:])
