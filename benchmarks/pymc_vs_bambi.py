"""Min bulk ESS per second of wall time: interlace's PyMC backend against bambi, same model, same run.

    python benchmarks/pymc_vs_bambi.py [--chains 2] [--draws 1000] [--tune 1000] [--seed 1]
                                       [--bambi-python PATH] [--repeats 1]

The model is sleepstudy ``Reaction ~ Days + (Days | Subject)``. Wall time runs from building the
model to having the posterior (model construction, compilation and sampling included; library
imports excluded). ESS is the minimum bulk ESS over the parameters both fits have: fixed
effects, residual SD, random-effect SDs and the random effects themselves (interlace also has
the intercept–slope correlation, which bambi does not model; it is included in interlace's
minimum, never in bambi's).

Each side runs in a fresh interpreter (a subprocess per fit), so both pay the same first-fit
costs. bambi is a benchmark-only dependency; its plotting dependency arviz-plots 0.8 fails to
import under matplotlib 3.11, so bambi may live in its own environment: pass that interpreter
with ``--bambi-python`` (or ``BAMBI_PYTHON``; default: this one). Both use 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

SLEEP_CSV = Path(__file__).resolve().parent.parent / "interlace" / "datasets" / "sleepstudy.csv"


def _min_ess(idata, var_names: list[str]) -> tuple[float, str]:
    import arviz as az
    import numpy as np

    ess = az.ess(idata, var_names=var_names, method="bulk")
    worst, where = np.inf, ""
    for name in var_names:
        vals = np.asarray(ess[name]).ravel()
        if name.startswith("corr_"):  # the correlation matrix: off-diagonal entries only
            k = int(round(np.sqrt(vals.size)))
            vals = vals.reshape(k, k)[~np.eye(k, dtype=bool)]
        vals = vals[np.isfinite(vals)]
        if vals.size and vals.min() < worst:
            worst, where = float(vals.min()), name
    return worst, where


def run_bambi(chains: int, draws: int, tune: int, seed: int) -> dict:
    """Fit the model with bambi (PyMC's NUTS, bambi's defaults); timing starts at bmb.Model."""
    import bambi as bmb
    import pandas as pd

    df = pd.read_csv(SLEEP_CSV)
    df["Subject"] = df["Subject"].astype(str)
    t0 = time.perf_counter()
    model = bmb.Model("Reaction ~ Days + (Days | Subject)", df)
    idata = model.fit(draws=draws, tune=tune, chains=chains, cores=2, random_seed=seed, progressbar=False)
    seconds = time.perf_counter() - t0
    names = [
        "Intercept",
        "Days",
        "sigma",
        "1|Subject_sigma",
        "Days|Subject_sigma",
        "1|Subject",
        "Days|Subject",
    ]
    ess, where = _min_ess(idata, names)
    post = idata.posterior
    means = {
        "(Intercept)": float(post["Intercept"].mean()),
        "Days": float(post["Days"].mean()),
        "sd_(Intercept)|Subject": float(post["1|Subject_sigma"].mean()),
        "sd_Days|Subject": float(post["Days|Subject_sigma"].mean()),
        "sigma": float(post["sigma"].mean()),
    }
    div = int(idata.sample_stats["diverging"].sum())
    import bambi

    return {
        "seconds": seconds,
        "min_ess_bulk": ess,
        "worst": where,
        "means": means,
        "divergences": div,
        "version": bambi.__version__,
    }


def run_interlace(chains: int, draws: int, tune: int, seed: int, sampler: str, marginalize) -> dict:
    import interlace
    from interlace import datasets

    df = datasets.load("sleepstudy")
    t0 = time.perf_counter()
    r = interlace.fit(
        "Reaction ~ Days",
        data=df,
        random=["(Days | Subject)"],
        backend="pymc",
        chains=chains,
        draws=draws,
        tune=tune,
        cores=2,
        random_seed=seed,
        progressbar=False,
        sampler=sampler,
        marginalize=marginalize,
    )
    seconds = time.perf_counter() - t0
    names = ["beta", "sigma", "sd_Subject", "corr_Subject", "b_Subject"]
    ess, where = _min_ess(r.idata, names)
    vd = r.variance_draws.mean()
    means = {
        **{k: float(v) for k, v in r.fe_params.items()},
        **{k: float(vd[k]) for k in vd.index if "cor_" not in k},
    }
    return {
        "seconds": seconds,
        "min_ess_bulk": ess,
        "worst": where,
        "means": means,
        "divergences": r.optimizer_info["divergences"],
        "sampler": r.optimizer_info["sampler"],
        "marginalized": r.optimizer_info["marginalized"],
        "max_rhat": r.optimizer_info["max_rhat"],
    }


def _in_subprocess(python: str, which: str, args: argparse.Namespace, seed: int) -> dict:
    """Run one side in a fresh interpreter, so both pay the same first-fit costs."""
    cmd = [
        python,
        str(Path(__file__).resolve()),
        "--only",
        which,
        "--chains",
        str(args.chains),
        "--draws",
        str(args.draws),
        "--tune",
        str(args.tune),
        "--seed",
        str(seed),
        "--sampler",
        args.sampler,
    ]
    if args.non_centered:
        cmd.append("--non-centered")
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{which} run failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chains", type=int, default=2)
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--tune", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--sampler", default="auto")
    ap.add_argument("--non-centered", action="store_true", help="interlace without marginalising b")
    ap.add_argument("--bambi-python", default=os.environ.get("BAMBI_PYTHON", sys.executable))
    ap.add_argument("--only", choices=["interlace", "bambi"], help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    if args.only == "bambi":
        import bambi  # noqa: F401  (library imports stay outside the timed region)

        print(json.dumps(run_bambi(args.chains, args.draws, args.tune, args.seed)))
        return 0
    if args.only == "interlace":
        import importlib.util

        import arviz  # noqa: F401  (library imports stay outside the timed region)
        import pymc  # noqa: F401

        import interlace  # noqa: F401

        if importlib.util.find_spec("nutpie") is not None:
            import nutpie  # noqa: F401
        marg = False if args.non_centered else "auto"
        print(json.dumps(run_interlace(args.chains, args.draws, args.tune, args.seed, args.sampler, marg)))
        return 0

    rows = []
    for rep in range(args.repeats):
        seed = args.seed + rep
        ours = _in_subprocess(sys.executable, "interlace", args, seed)
        theirs = _in_subprocess(args.bambi_python, "bambi", args, seed)
        rows.append((ours, theirs))
        r_ours = ours["min_ess_bulk"] / ours["seconds"]
        r_theirs = theirs["min_ess_bulk"] / theirs["seconds"]
        print(f"run {rep + 1} (seed {seed}), {args.chains} chains x {args.draws} draws, {args.tune} tune")
        print(
            f"  interlace ({ours['sampler']}, marginalized={ours['marginalized']}): {ours['seconds']:.2f} s, "
            f"min bulk ESS {ours['min_ess_bulk']:.0f} ({ours['worst']}), {r_ours:.1f} ESS/s, "
            f"divergences {ours['divergences']}, max R-hat {ours['max_rhat']:.3f}"
        )
        print(
            f"  bambi {theirs['version']}: {theirs['seconds']:.2f} s, "
            f"min bulk ESS {theirs['min_ess_bulk']:.0f} "
            f"({theirs['worst']}), {r_theirs:.1f} ESS/s, divergences {theirs['divergences']}"
        )
        print(f"  ratio (interlace / bambi ESS per second): {r_ours / r_theirs:.2f}x")
        print("  posterior means    interlace      bambi")
        for k, v in ours["means"].items():
            print(f"    {k:<24} {v:10.3f} {theirs['means'].get(k, float('nan')):10.3f}")
    if args.repeats > 1:
        import statistics

        ratios = [(o["min_ess_bulk"] / o["seconds"]) / (t["min_ess_bulk"] / t["seconds"]) for o, t in rows]
        print(f"median ratio over {args.repeats} runs: {statistics.median(ratios):.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
