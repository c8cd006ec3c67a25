"""Benchmark interlace.glmer against lme4 (and glmmTMB) on crossed GLMMs.

    python benchmarks/glmer.py [--quick] [--no-r] [--only NAME ...] [--r-1m] [--repeat K]

Each model is fitted by interlace in a fresh subprocess (the default ``glmer``: Laplace, SEs
from the Hessian of the deviance), which reports wall and CPU time of the call, deviance
evaluations and peak resident memory. When ``Rscript`` with lme4 is available the same data are
fitted in the same run by ``glmer`` at lme4's defaults and by ``glmmTMB`` (timed), and by
``glmer`` with tight tolerances (``glmerControl(tolPwrss = 1e-12, optCtrl = list(rhoend =
1e-10))``, and nloptwrap with tight tolerances when that does not converge: the higher
log-likelihood is the reference) for the estimates. lme4 on the 1,000,000-row design takes long
and runs only with ``--r-1m``. The table gives time ratios and the largest relative difference
of the fixed effects, their SEs, θ and the log-likelihood against the tight reference; the
machine's load average is recorded, since the benchmark machine is shared. A full run writes
benchmarks/results-glmer.md and the table in docs/performance.md (``--quick`` skips the
1,000,000-row design and ``--only`` runs print only). ``--repeat K`` times K fits on each side
(interlace and lme4's default glmer) and reports the medians, for the small models whose single
fits take milliseconds.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import pandas as pd

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from designs import Design, crossed_bernoulli, crossed_slopes_bernoulli  # noqa: E402
from run import machine, r_available, versions  # noqa: E402

DOC_START, DOC_END = "<!-- glmer-benchmark-table:start -->", "<!-- glmer-benchmark-table:end -->"
DATA = HERE / "data"


def _verbagg() -> Design:
    df = pd.read_csv(DATA / "verbagg.csv", dtype={"id": str, "item": str})
    return Design(
        "verbagg", df, "r2 ~ Anger + Gender + btype + situ", ["(1 | id)", "(1 | item)"],
        "r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)",
        ["id", "item", "Gender", "btype", "situ"], "316 × 24", "lme4's VerbAgg", extra={"family": "binomial"},
    )


def _grouseticks() -> Design:
    factors = ["YEAR", "BROOD", "LOCATION", "INDEX"]
    df = pd.read_csv(DATA / "grouseticks.csv", dtype=dict.fromkeys(factors, str))
    return Design(
        "grouseticks", df, "TICKS ~ YEAR + cHEIGHT", ["(1 | BROOD)", "(1 | LOCATION)"],
        "TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | LOCATION)", ["YEAR", "BROOD", "LOCATION"], "118 × 63",
        "lme4's grouseticks", extra={"family": "poisson"},
    )


def _cbpp() -> Design:
    from interlace import datasets

    df = datasets.load("cbpp")
    df = df.assign(
        prop=df["incidence"] / df["size"], herd=df["herd"].astype(str), period=df["period"].astype(str)
    )
    return Design(
        "cbpp", df, "prop ~ period", ["(1 | herd)"], "prop ~ period + (1 | herd)", ["herd", "period"], "15",
        "lme4's cbpp (proportions, weights = size)", extra={"family": "binomial", "weights": "size"},
    )


def design_list(quick: bool) -> dict:
    cases = {
        "crossed_bern_20k": lambda: crossed_bernoulli(20_000, 1_000, 200, name="crossed_bern_20k"),
        "verbagg": _verbagg,
        "grouseticks": _grouseticks,
        "cbpp": _cbpp,
        "crossed_slopes_10k": crossed_slopes_bernoulli,
    }
    if not quick:
        cases["crossed_bern_1m"] = lambda: crossed_bernoulli(
            1_000_000, 10_000, 2_000, seed=13, name="crossed_bern_1m"
        )
    return cases


# ---- the interlace side (a subprocess per model) ----------------------------------------------
def worker(name: str, csv: str | None, repeat: int = 1) -> dict:
    import warnings

    import interlace

    design = design_list(False)[name]()
    df = design.data
    if csv:
        df.to_csv(csv, index=False)
    fam = design.extra["family"]
    weights = design.extra.get("weights")
    warm = _cbpp().data  # load and warm the code paths (R has lme4 loaded before timing, too)
    interlace.glmer("prop ~ period", warm, "binomial", groups="herd", weights="size")
    walls, cpus = [], []
    for _ in range(max(1, repeat)):
        t0, c0 = time.perf_counter(), time.process_time()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            r = interlace.glmer(design.formula, df, fam, random=design.random, weights=weights)
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    seconds, cpu = float(np.median(walls)), float(np.median(cpus))
    return {
        "name": name, "n": len(df), "levels": design.levels, "notes": design.notes, "family": fam,
        "seconds": seconds, "cpu": cpu, "evals": int(r.optimizer_info["n_evals"]),
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "converged": bool(r.converged),
        "fixef": [float(v) for v in r.fe_params.to_numpy()], "se": [float(v) for v in r.fe_bse.to_numpy()],
        "theta": [float(v) for v in np.atleast_1d(r.theta)], "loglik": float(r.llf),
        "warnings": [str(w.message)[:120] for w in caught],
        "r_formula": design.r_formula, "factors": design.factors, "weights": weights or "",
    }


def run_interlace(name: str, csv: str | None, repeat: int = 1) -> dict:
    cmd = [sys.executable, str(pathlib.Path(__file__).resolve()), "--worker", name, "--repeat", str(repeat)]
    if csv:
        cmd += ["--csv", csv]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"worker {name} failed:\n{out.stdout}\n{out.stderr}")


# ---- the R side -------------------------------------------------------------------------------
R_FIT = r"""
suppressMessages({library(lme4); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1])
for (f in strsplit(args[3], ",")[[1]]) d[[f]] <- factor(d[[f]])
form <- as.formula(args[2])
fam <- get(args[4])()
d$.w <- if (nzchar(args[5])) d[[args[5]]] else rep(1, nrow(d))
k <- if (length(args) >= 6) as.integer(args[6]) else 1L
summ <- function(m) list(fixef = unname(fixef(m)), se = unname(sqrt(diag(as.matrix(vcov(m))))),
                         theta = unname(getME(m, "theta")), loglik = as.numeric(logLik(m)),
                         evals = m@optinfo$feval, warnings = m@optinfo$conv$lme4$messages)
timed <- function(expr) {
  t <- system.time(m <- expr)
  list(m = m, seconds = t[["elapsed"]], cpu = t[["user.self"]] + t[["sys.self"]])
}
# warm-up fits, as interlace's worker warms up on cbpp before timing
invisible(glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), cbpp, binomial))
has_tmb <- requireNamespace("glmmTMB", quietly = TRUE)
if (has_tmb) invisible(glmmTMB::glmmTMB(cbind(incidence, size - incidence) ~ period + (1 | herd), cbpp,
                                        family = binomial))
res <- list()
part <- function(key, value) cat("PART ", toJSON(setNames(list(value), key), auto_unbox = TRUE, digits = NA,
                                                  null = "null"), "\n", sep = "")
reps <- lapply(seq_len(k), function(i) timed(glmer(form, d, family = fam, weights = .w)))
f <- reps[[1]]
f$seconds <- median(sapply(reps, function(x) x$seconds)); f$cpu <- median(sapply(reps, function(x) x$cpu))
res$lme4 <- c(summ(f$m), list(seconds = f$seconds, cpu = f$cpu))
part("lme4", res$lme4)
if (has_tmb) {
  g <- timed(glmmTMB::glmmTMB(form, d, family = fam, weights = .w))
  res$glmmTMB <- list(seconds = g$seconds, cpu = g$cpu, loglik = as.numeric(logLik(g$m)))
  part("glmmTMB", res$glmmTMB)
}
tight <- glmerControl(tolPwrss = 1e-12, optCtrl = list(rhoend = 1e-10))
t1 <- timed(glmer(form, d, family = fam, weights = .w, control = tight))
ref <- c(summ(t1$m), list(seconds = t1$seconds, optimizer = "bobyqa"))
if (length(ref$warnings)) {
  nl <- glmerControl(optimizer = "nloptwrap", tolPwrss = 1e-12,
                     optCtrl = list(xtol_abs = 1e-12, ftol_abs = 1e-14, xtol_rel = 1e-12, maxeval = 1e5))
  t2 <- timed(glmer(form, d, family = fam, weights = .w, control = nl))
  alt <- c(summ(t2$m), list(seconds = t2$seconds, optimizer = "nloptwrap"))
  if (alt$loglik > ref$loglik) ref <- alt
}
res$tight <- ref
cat("RESULT ", toJSON(res, auto_unbox = TRUE, digits = NA, null = "null"), "\n", sep = "")
"""


def run_r(csv: str, res: dict, timeout: float, repeat: int = 1) -> dict:
    script = pathlib.Path(csv).with_suffix(".R")
    script.write_text(R_FIT)
    factors = ",".join(res["factors"])
    cmd = ["Rscript", str(script), csv, res["r_formula"], factors, res["family"], res["weights"], str(repeat)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        stdout, err = out.stdout, (out.stderr.strip().splitlines() or ["failed"])[-1]
    except subprocess.TimeoutExpired as ex:  # keep what finished (lme4, glmmTMB) before the limit
        stdout = ex.stdout.decode() if isinstance(ex.stdout, bytes) else (ex.stdout or "")
        err = None
    parts: dict = {}
    for line in stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
        if line.startswith("PART "):
            parts.update(json.loads(line[5:]))
    if err is None:  # timed out: name the first fit that did not finish
        what = "the tight reference fit" if "lme4" in parts else "lme4 (default glmer)"
        err = f"{what} did not finish in {timeout:.0f} s"
    return {**parts, "error": err}


def rel_diff(ours, ref, floor: float = 1e-8) -> float:
    """max |a − b| / max(|b|, floor)."""
    a, b = np.atleast_1d(np.asarray(ours, float)), np.atleast_1d(np.asarray(ref, float))
    if a.shape != b.shape:
        return float("nan")
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), floor)))


# ---- reporting ----------------------------------------------------------------------------------
def table(rows: list[dict]) -> str:
    head = ("| model | family | n | levels | interlace s (CPU) | lme4 s (CPU) | glmmTMB s | lme4 / interlace "
            "(CPU) | max rel. Δ fixef | SE | θ | logLik | evals | peak RSS MB |")
    lines = [head, "|" + "---|" * 14]
    for r in rows:
        R = r.get("r", {})
        lm, tmb, ref = R.get("lme4", {}), R.get("glmmTMB", {}), R.get("tight")
        lme4_s = f"{lm['seconds']:.2f} ({lm['cpu']:.2f})" if "seconds" in lm else R.get("error", "—")
        mark = ""
        if ref is None and "fixef" in lm:  # no tight reference: against lme4's defaults, marked
            ref, mark = lm, "†"
        tmb_s = f"{tmb['seconds']:.2f}" if "seconds" in tmb else "—"
        ratio = "—"
        if "seconds" in lm:
            ratio = f"{lm['seconds'] / r['seconds']:.1f}× ({lm['cpu'] / r['cpu']:.1f}×)"
        if ref:
            floors = {"fixef": 1e-8, "se": 1e-8, "theta": 0.1, "loglik": 1e-8}
            deltas = [f"{rel_diff(r[k], ref[k], floors[k]):.1e}{mark}" for k in floors]
        else:
            deltas = ["—"] * 4
        lines.append(
            f"| {r['name']} | {r['family']} | {r['n']:,} | {r['levels']} "
            f"| {r['seconds']:.3f} ({r['cpu']:.3f}) | {lme4_s} "
            f"| {tmb_s} | {ratio} | {' | '.join(deltas)} | {r['evals']} | {r['peak_mb']:.0f} |"
        )
    return "\n".join(lines)


def write_reports(rows: list[dict], args, with_r: bool, load: tuple) -> str:
    stamp = time.strftime("%Y-%m-%d")
    cmd = "python benchmarks/glmer.py" + (" --quick" if args.quick else "") + (" --r-1m" if args.r_1m else "")
    cmd += f" --repeat {args.repeat}" if args.repeat > 1 else ""
    body = table(rows)
    info = (
        f"Measured {stamp} with `{cmd}` on {machine()}; {versions(with_r)}. Load average (1 min) "
        f"{load[0]:.1f} at the start and {load[1]:.1f} at the end: the 2 cores were shared with other "
        "jobs, so elapsed times are inflated by the load of the moment; CPU times (in parentheses: "
        "the process's for interlace, user + system of the call for R) are less affected.\n\n"
        "interlace: the default `interlace.glmer` (Laplace; L-BFGS-B with the analytic gradient, then "
        "BFGS and one one-sided Hessian; SEs from that Hessian of the deviance) from a DataFrame, in a "
        "fresh process after "
        "one warm-up fit of cbpp (R fits cbpp with lme4 and glmmTMB before timing, too); *evals* = "
        "deviance evaluations; *peak RSS* is that process's peak "
        "resident memory (Python, data and fit). lme4: `glmer` at its defaults, glmmTMB: `glmmTMB`, "
        "both on the same data in the same run (elapsed time of the call). *max rel. Δ*: largest "
        "relative difference of interlace's fixed effects, their SEs, θ (relative to max(|θ|, 0.1): "
        "a θ entry near 0, such as a small covariance factor, has no meaningful relative error) "
        "and the log-likelihood "
        "from `glmer` with `glmerControl(tolPwrss = 1e-12, optCtrl = list(rhoend = 1e-10))` "
        "(or nloptwrap with tight tolerances where bobyqa reports non-convergence and nloptwrap "
        "reaches a higher log-likelihood); † marks a difference from lme4's default fit where the "
        "tight one did not finish in the time allowed."
    )
    text = f"# glmer benchmark results\n\n{info}\n\n{body}\n"
    if not args.only:
        (HERE / "results-glmer.md").write_text(text)
        doc = ROOT / "docs" / "performance.md"
        page = doc.read_text() if doc.exists() else ""
        if DOC_START in page and DOC_END in page:
            before, rest = page.split(DOC_START, 1)
            after = rest.split(DOC_END, 1)[1]
            doc.write_text(f"{before}{DOC_START}\n{info}\n\n{body}\n{DOC_END}{after}")
    return body


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="skip the 1,000,000-row design")
    ap.add_argument("--no-r", action="store_true", help="do not run R even if Rscript is available")
    ap.add_argument("--r-1m", action="store_true", help="run lme4 on the 1,000,000-row design too (slow)")
    ap.add_argument("--only", nargs="*", help="run only these models (reports are not rewritten)")
    ap.add_argument("--r-timeout", type=float, default=7200.0, help="seconds allowed per R script")
    ap.add_argument("--repeat", type=int, default=1, help="timed fits per model and side (medians reported)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--csv", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print("RESULT " + json.dumps(worker(args.worker, args.csv, args.repeat)), flush=True)
        return 0
    with_r = not args.no_r and r_available()
    if with_r and not (DATA / "verbagg.csv").exists():
        subprocess.run(["Rscript", str(HERE / "export_glmer_data.R"), str(DATA)], check=True)
    names = list(design_list(args.quick))
    if args.only:
        names = [n for n in names if n in args.only]
    load0 = os.getloadavg()[0]
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="interlace-glmer-"))
    rows = []
    try:
        for name in names:
            use_r = with_r and (name != "crossed_bern_1m" or args.r_1m)
            csv = str(tmp / f"{name}.csv") if use_r else None
            res = run_interlace(name, csv, args.repeat)
            if use_r:
                res["r"] = run_r(csv, res, args.r_timeout, args.repeat)
            rows.append(res)
            lm = res.get("r", {}).get("lme4", {})
            ratio = ""
            if lm:
                ratio = f"  lme4 {lm['seconds']:7.2f} s  ratio {lm['seconds'] / res['seconds']:5.1f}×"
            print(
                f"{name:20s} n={res['n']:>9,}  interlace {res['seconds']:7.3f} s (cpu {res['cpu']:.3f})"
                f"  evals {res['evals']:3d}  peak {res['peak_mb']:6.0f} MB"
                + ratio,
                flush=True,
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print()
    print(write_reports(rows, args, with_r, (load0, os.getloadavg()[0])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
