"""Benchmark interlace.coxme against R's coxme::coxme on the same data, in the same run.

    python benchmarks/coxme.py [--no-r] [--only NAME ...] [--repeat K] [--no-write]

Designs: rats and lung (R's survival package), the eortc-like data of the tests (2,323 rows,
37 centres) with one term, two crossed terms, coxme's nested a/b, a correlated random slope and
two strata factors, and three simulated larger designs (seeded). interlace: the full
``interlace.coxme`` call from a DataFrame, the median of ``--repeat`` runs after one warm-up call
(imports and caches). R: ``coxme`` with its default control on the same CSV, the median of the
same number of runs after one untimed run, in one Rscript process per design. Times are CPU
seconds of the process (user + system; both fits run on one thread), which other load on the
machine disturbs far less than elapsed time. A fit whose first run takes over 2 s is timed once,
on either side. The table gives both times, their
ratio, the largest relative difference of the coefficients and of the variance parameters, and
coxme's integrated log-likelihood minus interlace's. It is printed, and written to
benchmarks/results.md between the coxme markers (a full run only).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import pandas as pd

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from run import machine, versions  # noqa: E402

START, END = "<!-- coxme-table:start -->", "<!-- coxme-table:end -->"
EXTRA = ROOT / "tests" / "data" / "extra" / "data"


def _simulate(seed: int, n: int, groups: dict[str, int], slope_sd: float = 0.0) -> pd.DataFrame:
    """Weibull times with Gaussian frailties per grouping factor (crossed), ~40 % censored."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"x1": rng.normal(size=n), "x2": rng.binomial(1, 0.5, n)})
    eta = 0.5 * df["x1"].to_numpy() - 0.3 * df["x2"].to_numpy()
    for name, m in groups.items():
        codes = rng.integers(0, m, n)
        df[name] = [f"{name}{c:05d}" for c in codes]
        eta = eta + rng.normal(0, 0.5, m)[codes]
        if slope_sd and name == next(iter(groups)):
            eta = eta + rng.normal(0, slope_sd, m)[codes] * df["x1"].to_numpy()
    t = (-np.log(rng.random(n)) / (0.01 * np.exp(eta))) ** (1 / 1.2)
    cens = rng.uniform(0, np.quantile(t, 0.9) * 1.5, n)
    df["time"] = np.round(np.minimum(t, cens), 1) + 0.1
    df["status"] = (t <= cens).astype(int)
    return df


def designs() -> dict[str, tuple]:
    """name → (loader, interlace formula, R formula, description)."""
    from interlace import datasets

    def eortc():
        return pd.read_csv(EXTRA / "eortc_like.csv")

    def eortc_ct():
        d = eortc()
        return d.assign(ct=d["centre"] + "." + d["trt"].astype(str))

    return {
        "rats": (lambda: datasets.load("rats"), "Surv(time, status) ~ rx + (1 | litter)", None,
                 "100 litters (sparse)"),
        "rats_strata": (lambda: datasets.load("rats"), "Surv(time, status) ~ rx + strata(sex) + (1 | litter)",
                        None, "100 litters, 2 strata"),
        "lung_strata": (lambda: pd.read_csv(EXTRA / "lung_coxme.csv"),
                        "Surv(time, status) ~ age + ph.ecog + strata(sex) + (1 | inst)", None,
                        "18 institutions, 2 strata"),
        "eortc": (eortc, "Surv(time, status) ~ trt + (1 | centre)", None, "37 centres"),
        "eortc_strata2": (eortc, "Surv(time, status) ~ trt + strata(stage, sex) + (1 | centre)", None,
                          "37 centres, 4 strata"),
        "eortc_two_terms": (eortc_ct, "Surv(time, status) ~ trt + (1 | centre) + (1 | centre:trt)",
                            "Surv(time, status) ~ trt + (1 | centre) + (1 | ct)", "37 + 74"),
        "eortc_nested": (eortc, "Surv(time, status) ~ trt + (1 | centre/trt)", None, "37 + 74 (sparse)"),
        "eortc_slope": (eortc, "Surv(time, status) ~ trt + (1 + trt | centre)", None, "37 × (1 + trt)"),
        "sim_20k_sparse": (lambda: _simulate(1, 20_000, {"g": 2_000}),
                           "Surv(time, status) ~ x1 + x2 + (1 | g)", None, "2,000 (sparse)"),
        "sim_10k_crossed": (lambda: _simulate(2, 10_000, {"g": 1_000, "h": 40}),
                            "Surv(time, status) ~ x1 + x2 + (1 | g) + (1 | h)", None, "1,000 (sparse) + 40"),
        "sim_10k_slope": (lambda: _simulate(3, 10_000, {"g": 100}, slope_sd=0.3),
                          "Surv(time, status) ~ x1 + x2 + (1 + x1 | g)", None, "100 × (1 + x1)"),
    }


R_FIT = r"""
suppressPackageStartupMessages({ library(survival); library(coxme) })
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1]); f <- as.formula(args[2]); k <- as.integer(args[3])
cpu <- function(t) t[["user.self"]] + t[["sys.self"]]
first <- cpu(system.time(m <- coxme(f, data = d)))  # also loads lazily loaded code
secs <- if (first > 2) first else replicate(k, cpu(system.time(m <- coxme(f, data = d))))
vc <- lapply(coxme::VarCorr(m), function(v) if (is.matrix(v)) c(diag(v), v[lower.tri(v)]) else unname(v))
cat("RESULT", jsonlite::toJSON(list(seconds = median(secs), coef = unname(fixef(m)), vc = vc,
    loglik = unname(m$loglik[2])), digits = NA, auto_unbox = TRUE), "\n")
"""


def r_available() -> bool:
    if shutil.which("Rscript") is None:
        return False
    out = subprocess.run(["Rscript", "-e", "library(coxme); library(jsonlite)"], capture_output=True,
                         check=False)
    return out.returncode == 0


def run_r(csv: str, formula: str, repeat: int, timeout: float) -> dict:
    script = pathlib.Path(csv).with_suffix(".R")
    script.write_text(R_FIT)
    try:
        out = subprocess.run(["Rscript", str(script), csv, formula, str(repeat)], capture_output=True,
                             text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout:.0f} s"}
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    return {"error": (out.stderr.strip().splitlines() or ["failed"])[-1]}


def run_interlace(df: pd.DataFrame, formula: str, repeat: int) -> dict:
    import interlace

    t0 = time.process_time()
    m = interlace.coxme(formula, df)  # warm-up: imports, formulaic caches
    secs = [time.process_time() - t0]
    for _ in range(repeat if secs[0] < 2 else 0):
        t0 = time.process_time()
        m = interlace.coxme(formula, df)
        secs.append(time.process_time() - t0)
    vc = {}
    for name, v in m.variance_components.items():
        if isinstance(v, float):
            vc[name] = [v]
        else:
            S = v.to_numpy()
            sd = np.sqrt(np.diag(S))
            vc[name] = list(np.diag(S)) + list((S / np.outer(sd, sd))[np.tril_indices(len(sd), -1)])
    secs = secs[1:] or secs
    return {"seconds": float(np.median(secs)), "coef": m.fe_params.tolist(), "vc": vc, "loglik": m.llf,
            "n": m.nobs, "events": m.n_events}


def _rel(a, b) -> float:
    a, b = np.atleast_1d(np.asarray(a, dtype=float)), np.atleast_1d(np.asarray(b, dtype=float))
    if a.shape != b.shape:
        return float("nan")
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-8)))


def table(rows: list[dict]) -> str:
    lines = ["| design | n | events | random effects | interlace CPU s | coxme CPU s | coxme / interlace "
             "| max rel. Δ coef | max rel. Δ variances | logLik coxme − interlace |", "|" + "---|" * 10]
    for r in rows:
        R = r.get("r", {})
        if "seconds" in R:
            rs, ratio = f"{R['seconds']:.3f}", f"{R['seconds'] / r['seconds']:.1f}×"
            # R names (coxme's VarCorr) → ours: a/b is a:b, the interaction column ct is centre:trt
            mine = [x for g in R["vc"] for x in r["vc"]["centre:trt" if g == "ct" else g.replace("/", ":")]]
            theirs = [x for v in R["vc"].values() for x in np.atleast_1d(v)]
            dc, dv = f"{_rel(r['coef'], R['coef']):.1e}", f"{_rel(mine, theirs):.1e}"
            dl = f"{R['loglik'] - r['loglik']:.1e}"
        else:
            rs, ratio, dc, dv, dl = R.get("error", "—"), "—", "—", "—", "—"
        lines.append(f"| {r['name']} | {r['n']:,} | {r['events']:,} | {r['levels']} | {r['seconds']:.3f} "
                     f"| {rs} | {ratio} | {dc} | {dv} | {dl} |")
    return "\n".join(lines)


def write_section(body: str, with_r: bool, repeat: int) -> None:
    info = (
        f"## coxme (issue 19)\n\nMeasured {time.strftime('%Y-%m-%d')} with `python benchmarks/coxme.py` on "
        f"{machine()}; {versions(False)}"
        + (f", {_r_versions()}" if with_r else "") + ".\n\n"
        f"interlace: the full `interlace.coxme` call from a DataFrame (formula, design and fit), median of "
        f"{repeat} runs after a warm-up call. coxme: `coxme(formula, data)` with its default control on "
        "the same data, median of as many runs in one R session after an untimed one (fits over 2 s: "
        "one run on either side). Times are CPU seconds (user + system) of the fitting process; both "
        "sides compute on one thread. *max rel. Δ*: largest "
        "relative difference of the coefficients and of the variance parameters (variances, "
        "correlations); the last column is coxme's integrated log-likelihood minus interlace's. coxme's "
        "defaults stop early — its optimizer at reltol 1e-5, its inner Newton iterations at a relative "
        "change of 1e-8 in the penalized log-likelihood, with an approximate Hessian when a factor has "
        "50+ levels — so its numbers differ from the converged optimum (tests/test_coxme.py compares "
        "with coxme at tight tolerances); a positive last column there comes from coxme's unconverged "
        "random effects, not from a higher optimum."
    )
    path = HERE / "results.md"
    page = path.read_text() if path.exists() else "# Benchmark results\n"
    block = f"{START}\n{info}\n\n{body}\n{END}"
    if START in page and END in page:
        before, rest = page.split(START, 1)
        page = before + block + rest.split(END, 1)[1]
    else:
        page = page.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(page)


def _r_versions() -> str:
    out = subprocess.run(["Rscript", "-e", "cat(R.version$major, R.version$minor, "
                          "as.character(packageVersion('coxme')), as.character(packageVersion('survival')))"],
                         capture_output=True, text=True, check=False)
    major, minor, coxme, surv = (out.stdout.split() + ["?"] * 4)[:4]
    return f"R {major}.{minor}, coxme {coxme}, survival {surv}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-r", action="store_true", help="do not run coxme even if R has it")
    ap.add_argument("--only", nargs="*", help="run only these designs (results.md is not rewritten)")
    ap.add_argument("--repeat", type=int, default=5, help="timed runs per design and side")
    ap.add_argument("--no-write", action="store_true", help="print only")
    ap.add_argument("--r-timeout", type=float, default=3600.0)
    args = ap.parse_args(argv)
    with_r = not args.no_r and r_available()
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="interlace-coxme-"))
    rows = []
    try:
        for name, (load, formula, r_formula, levels) in designs().items():
            if args.only and name not in args.only:
                continue
            df = load()
            res = {"name": name, "levels": levels, **run_interlace(df, formula, args.repeat)}
            if with_r:
                csv = str(tmp / f"{name}.csv")
                df.to_csv(csv, index=False)
                res["r"] = run_r(csv, r_formula or formula, args.repeat, args.r_timeout)
            rows.append(res)
            R = res.get("r", {})
            print(f"{name:16s} n={res['n']:>7,}  interlace {res['seconds']:8.3f} s"
                  + (f"  coxme {R['seconds']:8.3f} s  ratio {R['seconds'] / res['seconds']:6.1f}×"
                     if "seconds" in R else f"  coxme {R.get('error', '—')}"), flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    body = table(rows)
    print()
    print(body)
    if not args.only and not args.no_write:
        write_section(body, with_r, args.repeat)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
