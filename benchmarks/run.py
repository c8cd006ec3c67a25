"""Benchmark interlace against lme4 on large crossed designs.

    python benchmarks/run.py [--quick [--write]] [--no-r] [--only NAME ...]

Each design (see designs.py) is generated with a fixed seed and fitted by interlace in a fresh
subprocess (the full default fit: REML, Satterthwaite df), which reports wall time, deviance
evaluations and peak resident memory. When ``Rscript`` with lme4 is available the same data
(written to CSV in a temporary directory) are fitted in the same run with
``lmer(..., control = lmerControl(calc.derivs = FALSE))``; the table gives the time ratio and the
largest relative difference of the estimates (fixed effects, θ, σ). The table is printed and
written to benchmarks/results.md and into docs/performance.md (a full run; ``--quick`` and
``--only`` runs only print).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import re
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

from designs import Design, insteval_shaped, subject_item_slopes, three_crossed  # noqa: E402

DOC_START, DOC_END = "<!-- benchmark-table:start -->", "<!-- benchmark-table:end -->"


def design_list(quick: bool) -> dict[str, callable]:
    """Name → zero-argument constructor, in the order the table shows them."""
    cases = {
        "insteval": insteval_shaped,
        "slopes": subject_item_slopes,
    }
    if not quick:
        cases["crossed_1m"] = lambda: three_crossed(1_000_000, 10_000, 2_000, 100, name="crossed_1m")
    # scaling: levels grow with n (n/100 × n/500 × n/10,000), then n grows at fixed levels
    sizes = [10_000, 30_000, 100_000] if quick else [10_000, 30_000, 100_000, 300_000]
    for n in sizes:
        cases[f"scale_n{n // 1000}k"] = (
            lambda n=n: three_crossed(n, n // 100, n // 500, max(5, n // 10_000), name=f"scale_n{n // 1000}k")
        )
    fixed = [30_000, 100_000] if quick else [30_000, 100_000, 300_000, 1_000_000]
    for n in fixed:
        cases[f"fixed_n{n // 1000}k"] = (
            lambda n=n: three_crossed(n, 1_000, 200, 20, name=f"fixed_n{n // 1000}k")
        )
    return cases


# ---- the interlace side (a subprocess per design) --------------------------------------------
def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def worker(name: str, quick: bool, csv: str | None, real_csv: str | None) -> dict:
    """Generate (or read) one design, optionally write it for R, fit it and report."""
    import interlace
    from interlace.backends.reml import pls

    if name == "insteval_real":
        df = pd.read_csv(real_csv)
        for c in ("s", "d", "dept", "service"):
            df[c] = df[c].astype(str)
        design = Design(
            "insteval_real", df, "y ~ service", ["(1 | s)", "(1 | d)", "(1 | dept:service)"],
            "y ~ service + (1 | s) + (1 | d) + (1 | dept:service)", ["s", "d", "dept", "service"],
            "2,972 × 1,128 × 28", "lme4's InstEval data",
        )
    else:
        design = design_list(quick)[name]()
    df = design.data
    if csv:
        df.to_csv(csv, index=False)
    counter = {"factor": 0}
    original = pls.PLSProblem.factor

    def counting(self, theta):
        counter["factor"] += 1
        return original(self, theta)

    pls.PLSProblem.factor = counting
    rss_before = _rss_mb()
    t0 = time.perf_counter()
    r = interlace.fit(design.formula, df, random=design.random)
    seconds = time.perf_counter() - t0
    sd = [float(v) for v in np.atleast_1d(r.theta)]
    return {
        "name": name, "n": len(df), "levels": design.levels, "notes": design.notes,
        "seconds": seconds, "evals": int(r.optimizer_info["n_evals"]), "factorizations": counter["factor"],
        "peak_mb": _rss_mb(), "rss_before_mb": rss_before, "converged": bool(r.converged),
        "fixef": [float(v) for v in r.fe_params.to_numpy()], "theta": sd, "sigma": float(np.sqrt(r.scale)),
        "df": [float(v) for v in r.fe_df.to_numpy()], "reml_crit": -2.0 * float(r.llf),
        "r_formula": design.r_formula,
        "factors": design.factors,
    }


def run_interlace(name: str, quick: bool, csv: str | None, real_csv: str | None) -> dict:
    cmd = [sys.executable, str(pathlib.Path(__file__).resolve()), "--worker", name]
    if quick:
        cmd.append("--quick")
    if csv:
        cmd += ["--csv", csv]
    if real_csv:
        cmd += ["--real-csv", real_csv]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"worker {name} failed:\n{out.stdout}\n{out.stderr}")


# ---- the lme4 side ----------------------------------------------------------------------------
R_FIT = r"""
suppressMessages(library(lme4))
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1])
for (f in strsplit(args[3], ",")[[1]]) d[[f]] <- factor(d[[f]])
t <- system.time(m <- lmer(as.formula(args[2]), data = d, REML = TRUE,
                           control = lmerControl(calc.derivs = FALSE)))[["elapsed"]]
cat(sprintf(paste0("RESULT {\"seconds\": %.6f, \"fixef\": [%s], \"theta\": [%s], \"sigma\": %.12g, ",
                   "\"evals\": %d, \"reml_crit\": %.12f}\n"),
    t, paste(sprintf("%.12g", fixef(m)), collapse = ","),
    paste(sprintf("%.12g", getME(m, "theta")), collapse = ","), sigma(m),
    as.integer(m@optinfo$feval), REMLcrit(m)))
"""

R_EXPORT = r"""
suppressMessages(library(lme4))
write.csv(InstEval, commandArgs(trailingOnly = TRUE)[1], row.names = FALSE)
"""


def r_available() -> bool:
    if shutil.which("Rscript") is None:
        return False
    out = subprocess.run(["Rscript", "-e", "library(lme4)"], capture_output=True, check=False)
    return out.returncode == 0


def run_lme4(csv: str, formula: str, factors: list[str], timeout: float) -> dict:
    script = pathlib.Path(csv).with_suffix(".R")
    script.write_text(R_FIT)
    try:
        out = subprocess.run(
            ["Rscript", str(script), csv, formula, ",".join(factors)], capture_output=True, text=True,
            timeout=timeout, check=False,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout:.0f} s"}
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    return {"error": (out.stderr.strip().splitlines() or ["failed"])[-1]}


def max_rel_diff(ours: dict, ref: dict) -> float:
    a = np.r_[ours["fixef"], ours["theta"], ours["sigma"]]
    b = np.r_[ref["fixef"], ref["theta"], ref["sigma"]]
    if a.shape != b.shape:
        return float("nan")
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-8)))


# ---- reporting ----------------------------------------------------------------------------------
def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(re.search(r"MemTotal:\s+(\d+)", pathlib.Path("/proc/meminfo").read_text()).group(1))
        mem = f", {kb / 2**20:.0f} GB RAM"
    except (OSError, AttributeError):
        pass
    return f"{cpu}, {os.cpu_count()} cores{mem}"


def versions(with_r: bool) -> str:
    import scipy

    import interlace

    parts = [f"Python {platform.python_version()}", f"numpy {np.__version__}", f"scipy {scipy.__version__}",
             f"interlace {getattr(interlace, '__version__', '?')}"]
    if with_r:
        out = subprocess.run(
            ["Rscript", "-e", "cat(R.version$major, R.version$minor, as.character(packageVersion('lme4')))"],
            capture_output=True, text=True, check=False,
        )
        major, minor, lme4 = (out.stdout.split() + ["?", "?", "?"])[:3]
        parts += [f"R {major}.{minor}", f"lme4 {lme4}"]
    return ", ".join(parts)


def table(rows: list[dict]) -> str:
    head = ("| design | n | levels | interlace s | evals (opt/total) | peak RSS MB | lme4 s | lme4 evals "
            "| lme4 / interlace | max rel. Δ estimate | REML crit. lme4 − interlace |")
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        lm = r.get("lme4", {})
        if "seconds" in lm:
            lme4_s, ratio = f"{lm['seconds']:.2f}", f"{lm['seconds'] / r['seconds']:.1f}×"
            ev, delta = str(lm.get("evals", "")), f"{r['delta']:.1e}"
            dcrit = f"{lm['reml_crit'] - r['reml_crit']:.1e}"
        else:
            lme4_s, ratio, ev, delta, dcrit = lm.get("error", "—"), "—", "—", "—", "—"
        lines.append(
            f"| {r['name']} | {r['n']:,} | {r['levels']} | {r['seconds']:.2f} "
            f"| {r['evals']}/{r['factorizations']} | {r['peak_mb']:.0f} | {lme4_s} | {ev} | {ratio} "
            f"| {delta} | {dcrit} |"
        )
    return "\n".join(lines)


def write_reports(rows: list[dict], args, with_r: bool) -> str:
    stamp = time.strftime("%Y-%m-%d")
    cmd = "python benchmarks/run.py" + (" --quick" if args.quick else "")
    body = table(rows)
    info = (
        f"Measured {stamp} with `{cmd}` on {machine()}; {versions(with_r)}.\n\n"
        "interlace: the full default `interlace.fit` (REML, Satterthwaite df) from a DataFrame, in a "
        "fresh process; *evals* = deviance-and-gradient evaluations of the optimizer / all "
        "factorizations including the Satterthwaite Hessian; *peak RSS* is that process's peak "
        "resident memory (Python, data and fit). lme4: `lmer(..., control = lmerControl(calc.derivs = "
        "FALSE))` on the same data in the same run (elapsed time of the `lmer` call); *lme4 evals* "
        "are its deviance evaluations. *max rel. Δ estimate*: largest relative difference over the "
        "fixed effects, θ and σ; the last column is lme4's REML criterion minus interlace's at "
        "their optima (≥ 0: interlace's optimum is at least as good)."
    )
    text = f"# Benchmark results\n\n{info}\n\n{body}\n"
    if not args.only and (not args.quick or args.write):
        (HERE / "results.md").write_text(text)
        doc = ROOT / "docs" / "performance.md"
        if doc.exists():
            page = doc.read_text()
            if DOC_START in page and DOC_END in page:
                before, rest = page.split(DOC_START, 1)
                after = rest.split(DOC_END, 1)[1]
                doc.write_text(f"{before}{DOC_START}\n{info}\n\n{body}\n{DOC_END}{after}")
    return body


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="smaller set (no 1M-row designs); prints only, unless --write")
    ap.add_argument("--write", action="store_true", help="with --quick: still write the reports")
    ap.add_argument("--no-r", action="store_true", help="do not run lme4 even if Rscript is available")
    ap.add_argument("--only", nargs="*", help="run only these designs (reports are not rewritten)")
    ap.add_argument("--r-timeout", type=float, default=1800.0, help="seconds allowed per lme4 fit")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--csv", help=argparse.SUPPRESS)
    ap.add_argument("--real-csv", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print("RESULT " + json.dumps(worker(args.worker, args.quick, args.csv, args.real_csv)), flush=True)
        return 0

    with_r = not args.no_r and r_available()
    names = list(design_list(args.quick))
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="interlace-bench-"))
    real_csv = None
    if with_r:
        real_csv = str(tmp / "insteval_real.csv")
        subprocess.run(["Rscript", "-e", R_EXPORT, real_csv], check=True, capture_output=True)
        names.insert(1, "insteval_real")
    if args.only:
        names = [n for n in names if n in args.only]
    rows = []
    try:
        for name in names:
            csv = str(tmp / f"{name}.csv") if with_r and name != "insteval_real" else None
            res = run_interlace(name, args.quick, csv, real_csv)
            if with_r:
                lme4 = run_lme4(csv or real_csv, res["r_formula"], res["factors"], args.r_timeout)
                res["lme4"] = lme4
                if "seconds" in lme4:
                    res["delta"] = max_rel_diff(res, lme4)
            rows.append(res)
            lm = res.get("lme4", {})
            print(
                f"{name:14s} n={res['n']:>9,}  interlace {res['seconds']:7.2f} s  evals {res['evals']:3d}"
                f"/{res['factorizations']:3d}  peak {res['peak_mb']:6.0f} MB"
                + (f"  lme4 {lm['seconds']:8.2f} s  ratio {lm['seconds'] / res['seconds']:5.1f}×"
                   f"  Δ {res['delta']:.1e}" if "seconds" in lm else f"  lme4 {lm.get('error', '—')}"),
                flush=True,
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print()
    print(write_reports(rows, args, with_r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
