"""Timings of the PyMC fits with a residual correlation structure on ovary (docs/pymc.md).

    python benchmarks/pymc_correlated.py [--seed 1] [--cores 1]

For GLS AR1, GLS compound symmetry and AR1 with (1 | Mare), 2 chains × (150 + 150) draws:
the fit's wall time, the sampling time, the min bulk ESS, and the number of log-density +
gradient evaluations with their mean time (the evaluations are counted in this process, so
only with --cores 1; with more cores the chains run in worker processes).
"""

from __future__ import annotations

import argparse
import time
import warnings

import interlace
from interlace import datasets
from interlace.backends.pymc import correlated

FITS = {
    "plain (1 | Mare)": dict(groups="Mare"),
    "GLS AR1": dict(correlation=interlace.AR1(time="visit", group="Mare")),
    "GLS CS": dict(correlation=interlace.CompoundSymmetry(group="Mare")),
    "AR1 + (1 | Mare)": dict(groups="Mare", correlation=interlace.AR1(time="visit", group="Mare")),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--cores", type=int, default=None)
    args = ap.parse_args()
    count = {"n": 0, "t": 0.0}
    perform = correlated.CorrelatedLogpOp.perform

    def counted(self, *a, **k):
        t = time.perf_counter()
        perform(self, *a, **k)
        count["t"] += time.perf_counter() - t
        count["n"] += 1

    correlated.CorrelatedLogpOp.perform = counted
    ovary = datasets.load("ovary")
    warnings.simplefilter("ignore")
    for name, kw in FITS.items():
        count.update(n=0, t=0.0)
        t0 = time.perf_counter()
        r = interlace.fit("follicles ~ sin2pi + cos2pi", ovary, backend="pymc", chains=2, draws=150, tune=150,
                          random_seed=args.seed, cores=args.cores, progressbar=False, **kw)
        info = r.optimizer_info
        evals = f"{count['n']} evaluations, {1e6 * count['t'] / count['n']:.0f} µs each" if count["n"] else ""
        wall = time.perf_counter() - t0
        print(f"{name:18s} fit {wall:5.1f} s  sampling {info['sampling_seconds']:5.1f} s  "
              f"min bulk ESS {info['min_ess_bulk']:4.0f}  {evals}", flush=True)


if __name__ == "__main__":
    main()
