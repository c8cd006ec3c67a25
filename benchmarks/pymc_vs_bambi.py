"""Min bulk ESS per second of wall time: interlace's PyMC backend against bambi, same model, same run.

    python benchmarks/pymc_vs_bambi.py [--case sleepstudy|crossed|all] [--chains 2] [--draws 1000]
                                       [--tune 1000] [--seed 1] [--bambi-python PATH] [--repeats 1]
                                       [--sampler nutpie] [--caches warm|empty] [--markdown]

Cases: sleepstudy ``Reaction ~ Days + (Days | Subject)`` (180 rows, 18 subjects), and
``crossed``, a subject × item design with correlated slopes on both factors,
``y ~ x + (1 + x | subj) + (1 + x | item)`` (30 subjects × 20 items, 600 rows, seeded; see
benchmarks/designs.py). Wall time runs from building the model to having the posterior (model
construction, compilation and sampling included; library imports excluded), in a fresh
interpreter per fit: "cold". ESS is the minimum bulk ESS over the parameters both fits have:
fixed effects, residual SD, random-effect SDs and the random effects themselves (interlace also
has the intercept–slope correlations, which bambi does not model; they are included in
interlace's minimum, never in bambi's).

Each side runs in a fresh interpreter (a subprocess per fit), so both pay the same first-fit
costs. What a fresh interpreter still finds on disk is set by ``--caches``: ``empty`` gives every
fit a new, empty numba cache (NUMBA_CACHE_DIR) and pytensor compile directory (PYTENSOR_FLAGS
compiledir) — the first fit on a new machine, every compilation paid; ``warm`` (the default)
first runs one unmeasured fit per side to fill the usual caches — what every later fit costs.

bambi is a benchmark-only dependency; its plotting dependency arviz-plots 0.8 fails to import
under matplotlib 3.11, so bambi may live in its own environment: pass that interpreter with
``--bambi-python`` (or ``BAMBI_PYTHON``; default: this one). Both use 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
SLEEP_CSV = HERE.parent / "interlace" / "datasets" / "sleepstudy.csv"
CASES = ("sleepstudy", "crossed")


def _case(name: str):
    """(data, interlace formula, random terms, bambi formula, groups, effects per group)."""
    import pandas as pd

    if name == "sleepstudy":
        df = pd.read_csv(SLEEP_CSV)
        df["Subject"] = df["Subject"].astype(str)
        return (df, "Reaction ~ Days", ["(Days | Subject)"], "Reaction ~ Days + (Days | Subject)",
                ["Subject"], ["Days"])
    sys.path.insert(0, str(HERE))
    from designs import subject_item_slopes

    d = subject_item_slopes(seed=2, n_subj=30, n_item=20)
    return d.data, d.formula, d.random, "y ~ x + (1 + x | subj) + (1 + x | item)", ["subj", "item"], ["x"]


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


def run_bambi(case: str, chains: int, draws: int, tune: int, seed: int) -> dict:
    """Fit the model with bambi (PyMC's NUTS, bambi's defaults); timing starts at bmb.Model."""
    import bambi as bmb

    df, _, _, bformula, groups, slopes = _case(case)
    t0 = time.perf_counter()
    model = bmb.Model(bformula, df)
    idata = model.fit(draws=draws, tune=tune, chains=chains, cores=2, random_seed=seed, progressbar=False)
    seconds = time.perf_counter() - t0
    fixed = ["Intercept", *slopes]
    names = fixed + ["sigma"]
    for g in groups:
        names += [f"1|{g}_sigma", f"1|{g}"]
        names += [f"{x}|{g}{suffix}" for x in slopes for suffix in ("_sigma", "")]
    ess, where = _min_ess(idata, names)
    post = idata.posterior
    means = {"(Intercept)": float(post["Intercept"].mean())}
    means.update({x: float(post[x].mean()) for x in slopes})
    for g in groups:
        means[f"sd_(Intercept)|{g}"] = float(post[f"1|{g}_sigma"].mean())
        means.update({f"sd_{x}|{g}": float(post[f"{x}|{g}_sigma"].mean()) for x in slopes})
    means["sigma"] = float(post["sigma"].mean())
    import bambi

    return {
        "seconds": seconds,
        "min_ess_bulk": ess,
        "worst": where,
        "means": means,
        "divergences": int(idata.sample_stats["diverging"].sum()),
        "version": bambi.__version__,
    }


def run_interlace(case: str, chains: int, draws: int, tune: int, seed: int, sampler: str,
                  marginalize) -> dict:
    import interlace

    df, formula, random, _, groups, _ = _case(case)
    t0 = time.perf_counter()
    r = interlace.fit(
        formula,
        data=df,
        random=random,
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
    names = ["beta", "sigma"] + [f"{p}_{g}" for g in groups for p in ("sd", "corr", "b")]
    ess, where = _min_ess(r.idata, names)
    vd = r.variance_draws.mean()
    means = {
        **{k: float(v) for k, v in r.fe_params.items()},
        **{k: float(vd[k]) for k in vd.index if "cor_" not in k},
    }
    return {
        "seconds": seconds,
        "sampling_seconds": r.optimizer_info["sampling_seconds"],
        "min_ess_bulk": ess,
        "worst": where,
        "means": means,
        "divergences": r.optimizer_info["divergences"],
        "sampler": r.optimizer_info["sampler_version"],
        "marginalized": r.optimizer_info["marginalized"],
        "max_rhat": r.optimizer_info["max_rhat"],
    }


def _in_subprocess(python: str, which: str, case: str, args: argparse.Namespace, seed: int) -> dict:
    """Run one side in a fresh interpreter, so both pay the same first-fit costs."""
    cmd = [
        python, str(Path(__file__).resolve()), "--only", which, "--case", case,
        "--chains", str(args.chains), "--draws", str(args.draws), "--tune", str(args.tune),
        "--seed", str(seed), "--sampler", args.sampler,
    ]
    if args.non_centered:
        cmd.append("--non-centered")
    env = dict(os.environ)
    if args.caches == "empty":  # a fresh machine: nothing compiled yet, on either side
        tmp = tempfile.mkdtemp(prefix="ess-bench-")
        env["NUMBA_CACHE_DIR"] = os.path.join(tmp, "numba")
        env["PYTENSOR_FLAGS"] = f"compiledir={os.path.join(tmp, 'pytensor')}"
    out = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if args.caches == "empty":
        shutil.rmtree(tmp, ignore_errors=True)
    if out.returncode != 0:
        raise RuntimeError(f"{which} run failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", choices=[*CASES, "all"], default="all")
    ap.add_argument("--chains", type=int, default=2)
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--tune", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--sampler", default="nutpie")
    ap.add_argument("--non-centered", action="store_true", help="interlace without marginalising b")
    ap.add_argument("--caches", choices=["warm", "empty"], default="warm",
                    help="compile caches each fresh interpreter finds (see the module doc)")
    ap.add_argument("--markdown", action="store_true", help="also print a markdown table of all runs")
    ap.add_argument("--bambi-python", default=os.environ.get("BAMBI_PYTHON", sys.executable))
    ap.add_argument("--only", choices=["interlace", "bambi"], help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    if args.only == "bambi":
        import bambi  # noqa: F401  (library imports stay outside the timed region)

        print(json.dumps(run_bambi(args.case, args.chains, args.draws, args.tune, args.seed)))
        return 0
    if args.only == "interlace":
        import importlib.util

        import arviz  # noqa: F401  (library imports stay outside the timed region)
        import pymc  # noqa: F401

        import interlace  # noqa: F401

        if importlib.util.find_spec("nutpie") is not None:
            import nutpie  # noqa: F401
        marg = False if args.non_centered else "auto"
        print(json.dumps(run_interlace(args.case, args.chains, args.draws, args.tune, args.seed, args.sampler,
                                       marg)))
        return 0

    import statistics

    cases = CASES if args.case == "all" else (args.case,)
    table = []
    for case in cases:
        if args.caches == "warm":  # fill both sides' compile caches; not measured
            _in_subprocess(sys.executable, "interlace", case, args, args.seed)
            _in_subprocess(args.bambi_python, "bambi", case, args, args.seed)
        ratios = []
        for rep in range(args.repeats):
            seed = args.seed + rep
            ours = _in_subprocess(sys.executable, "interlace", case, args, seed)
            theirs = _in_subprocess(args.bambi_python, "bambi", case, args, seed)
            r_ours = ours["min_ess_bulk"] / ours["seconds"]
            r_theirs = theirs["min_ess_bulk"] / theirs["seconds"]
            ratios.append(r_ours / r_theirs)
            table.append((case, seed, ours, theirs, r_ours, r_theirs))
            print(f"{case} run {rep + 1} (seed {seed}), {args.chains} chains x {args.draws} draws, "
                  f"{args.tune} tune, {args.caches} compile caches")
            print(
                f"  interlace ({ours['sampler']}, marginalized={ours['marginalized']}): "
                f"{ours['seconds']:.2f} s "
                f"(sampling {ours['sampling_seconds']:.2f} s), min bulk ESS {ours['min_ess_bulk']:.0f} "
                f"({ours['worst']}), {r_ours:.1f} ESS/s, divergences {ours['divergences']}, "
                f"max R-hat {ours['max_rhat']:.3f}"
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
            print(f"{case}: median ratio over {args.repeats} runs: {statistics.median(ratios):.2f}x")
    if args.markdown:
        print("\n| case | caches | seed | interlace s | min ESS | ESS/s | bambi s | min ESS | ESS/s "
              "| ratio |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for case, seed, o, t, ro, rt in table:
            print(f"| {case} | {args.caches} | {seed} | {o['seconds']:.1f} | {o['min_ess_bulk']:.0f} "
                  f"| {ro:.0f} | {t['seconds']:.1f} | {t['min_ess_bulk']:.0f} | {rt:.0f} | {ro / rt:.1f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
