"""Benchmark interlace.clmm against R's ordinal::clmm on the same data, in the same run.

    python benchmarks/clmm.py [--no-r] [--only NAME ...] [--repeat K] [--no-write]

Designs: ordinal's wine with (1 | judge) and with crossed (1 | judge) + (1 | bottle), soup with
the nested (1 | RESP) + (1 | RESP:DAY), the probit crossed case of the tests, and a simulated
crossed design of 20,000 rows (500 subjects × 100 items, seeded). interlace: the full
``interlace.clmm`` call from a DataFrame, the median of ``--repeat`` runs after one warm-up call.
R: ``clmm`` with its default control on the same CSV, the median of as many runs after an
untimed one, in one Rscript process per design (fits over 2 s: one run on either side). Times
are CPU seconds (user + system) of each process; both fit on one BLAS thread. The estimates are
compared with ordinal::clmm at tight tolerances (nlminb rel.tol 1e-14, inner gradTol 1e-8), fitted
in the same R process (untimed): the largest relative difference of (thresholds, β), of the
random-effect SDs above 1e-4 (a boundary SD counts as equal when both are below 1e-4) and the
log-likelihood difference. The table is printed and written to benchmarks/results-clmm.md.
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

CLMM_DATA = ROOT / "tests" / "data" / "clmm"


def _simulate(seed: int, n: int, n_subj: int, n_item: int) -> pd.DataFrame:
    """Five ordered categories from a logistic latent scale with crossed subject and item effects;
    subjects and items drawn unevenly (unbalanced cells)."""
    rng = np.random.default_rng(seed)
    ps = rng.dirichlet(np.full(n_subj, 5.0))
    subj = rng.choice(n_subj, n, p=ps)
    item = rng.integers(0, n_item, n)
    x = rng.normal(size=n)
    cond = rng.choice(["a", "b"], n)
    eta = 0.5 * x + 0.4 * (cond == "b") + rng.normal(0, 0.8, n_subj)[subj] + rng.normal(0, 0.5, n_item)[item]
    y = np.digitize(eta + rng.logistic(size=n), [-1.5, -0.3, 0.6, 1.8]) + 1
    return pd.DataFrame({"y": y, "x": x, "cond": cond, "subj": [f"s{s:03d}" for s in subj],
                         "item": [f"i{i:03d}" for i in item]})


def _csv(name: str):
    return lambda: pd.read_csv(CLMM_DATA / name)


def designs() -> dict[str, tuple]:
    """name → (loader, formula, link, response, description of the random terms)."""
    return {
        "wine": (_csv("wine.csv"), "rating ~ temp + contact + (1 | judge)", "logit", "rating",
                 "9 judges"),
        "wine_crossed": (_csv("wine.csv"), "rating ~ temp + contact + (1 | judge) + (1 | bottle)",
                         "logit", "rating", "9 × 8 crossed"),
        "soup_nested": (_csv("soup.csv"), "SURENESS ~ PROD + (1 | RESP) + (1 | RESP:DAY)",
                        "logit", "SURENESS", "185 + 370 nested"),
        "sim_probit": (_csv("sim_probit.csv"), "y ~ x + grp + (1 | subj) + (1 | item)", "probit", "y",
                       "60 × 25 crossed, unbalanced"),
        "sim_20k_crossed": (lambda: _simulate(7, 20_000, 500, 100), "y ~ x + cond + (1 | subj) + (1 | item)",
                            "logit", "y", "500 × 100 crossed, unbalanced"),
    }


def _prepare(df: pd.DataFrame, response: str) -> pd.DataFrame:
    d = df.copy()
    d[response] = pd.Categorical(d[response], categories=sorted(d[response].unique()), ordered=True)
    for c in d.columns:
        if c != response and d[c].dtype != float:
            d[c] = d[c].astype(str)
    return d


R_FIT = r"""
suppressPackageStartupMessages({ library(ordinal); library(jsonlite) })
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1]); f <- as.formula(args[2]); k <- as.integer(args[3]); lk <- args[4]
resp <- all.vars(f)[1]
d[[resp]] <- factor(d[[resp]], ordered = TRUE)
for (v in setdiff(names(d), resp)) if (!is.double(d[[v]])) d[[v]] <- factor(d[[v]])
cpu <- function(t) t[["user.self"]] + t[["sys.self"]]
first <- cpu(system.time(m <- clmm(f, data = d, link = lk)))
secs <- if (first > 2) first else replicate(k, cpu(system.time(m <- clmm(f, data = d, link = lk))))
tight <- clmm.control(method = "nlminb", gradTol = 1e-8, maxIter = 200, rel.tol = 1e-14, x.tol = 1e-12,
                      eval.max = 10000, iter.max = 5000)
mt <- suppressWarnings(clmm(f, data = d, link = lk, control = tight))
sds <- lapply(VarCorr(mt), function(v) as.numeric(attr(v, "stddev")))
cat("RESULT", toJSON(list(seconds = median(secs), est = unname(c(mt$alpha, mt$beta)), sd = sds,
    loglik = as.numeric(logLik(mt)), loglik_default = as.numeric(logLik(m))), digits = NA,
    auto_unbox = TRUE), "\n")
"""


def r_available() -> bool:
    if shutil.which("Rscript") is None:
        return False
    out = subprocess.run(["Rscript", "-e", "library(ordinal); library(jsonlite)"], capture_output=True,
                         check=False)
    return out.returncode == 0


def run_r(csv: str, formula: str, link: str, repeat: int, timeout: float) -> dict:
    script = pathlib.Path(csv).with_suffix(".R")
    script.write_text(R_FIT)
    try:
        out = subprocess.run(["Rscript", str(script), csv, formula, str(repeat), link], capture_output=True,
                             text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout:.0f} s"}
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    return {"error": (out.stderr.strip().splitlines() or ["failed"])[-1]}


def run_interlace(df: pd.DataFrame, formula: str, link: str, repeat: int) -> dict:
    import interlace

    t0 = time.process_time()
    m = interlace.clmm(formula, df, link=link)  # warm-up: imports, formulaic caches
    secs = [time.process_time() - t0]
    for _ in range(repeat if secs[0] < 2 else 0):
        t0 = time.process_time()
        m = interlace.clmm(formula, df, link=link)
        secs.append(time.process_time() - t0)
    secs = secs[1:] or secs
    return {"seconds": float(np.median(secs)), "est": np.r_[m.thresholds, m.fe_params].tolist(),
            "sd": {g: float(np.sqrt(v)) for g, v in m.variance_components.items()}, "loglik": m.llf,
            "n": m.nobs}


def _rel(a, b) -> float:
    a, b = np.atleast_1d(np.asarray(a, dtype=float)), np.atleast_1d(np.asarray(b, dtype=float))
    if a.shape != b.shape:
        return float("nan")
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-8))) if a.size else 0.0


def _rel_sd(mine: dict, theirs: dict) -> float:
    out = 0.0
    for g, v in theirs.items():
        ours, ref = mine[g], float(np.atleast_1d(v)[0])
        if ours < 1e-4 and ref < 1e-4:
            continue
        out = max(out, abs(ours - ref) / max(ref, 1e-8))
    return out


def table(rows: list[dict]) -> str:
    lines = ["| design | n | random effects | interlace CPU s | ordinal CPU s | ordinal / interlace "
             "| max rel. Δ (α, β) | max rel. Δ SDs | logLik ordinal − interlace |", "|" + "---|" * 9]
    for r in rows:
        R = r.get("r", {})
        if "seconds" in R:
            rs, ratio = f"{R['seconds']:.3f}", f"{R['seconds'] / r['seconds']:.1f}×"
            de, ds = f"{_rel(r['est'], R['est']):.1e}", f"{_rel_sd(r['sd'], R['sd']):.1e}"
            dl = f"{R['loglik'] - r['loglik']:.1e}"
        else:
            rs, ratio, de, ds, dl = R.get("error", "—"), "—", "—", "—", "—"
        lines.append(f"| {r['name']} | {r['n']:,} | {r['levels']} | {r['seconds']:.3f} | {rs} | {ratio} "
                     f"| {de} | {ds} | {dl} |")
    return "\n".join(lines)


def _r_versions() -> str:
    code = "cat(R.version$major, R.version$minor, as.character(packageVersion('ordinal')))"
    out = subprocess.run(["Rscript", "-e", code], capture_output=True, text=True, check=False)
    major, minor, ordinal = (out.stdout.split() + ["?"] * 3)[:3]
    return f"R {major}.{minor}, ordinal {ordinal}"


def write_results(body: str, with_r: bool, repeat: int) -> None:
    text = (
        f"# clmm benchmark (issue 19)\n\nMeasured {time.strftime('%Y-%m-%d')} with "
        f"`python benchmarks/clmm.py` on {machine()}; {versions(False)}"
        + (f", {_r_versions()}" if with_r else "") + ".\n\n"
        f"interlace: the full `interlace.clmm` call from a DataFrame (formula, design and fit), median of "
        f"{repeat} runs after a warm-up call. ordinal: `clmm(formula, data, link)` with its default control, "
        "median of as many runs in one R session after an untimed one (fits over 2 s: one run on either "
        "side). CPU seconds (user + system) of each process. The differences are against ordinal::clmm "
        "at tight tolerances (nlminb rel.tol 1e-14, inner gradTol 1e-8) fitted in the same R session; an "
        "SD that both put at the boundary (< 1e-4) counts as equal.\n\n" + body + "\n"
    )
    (HERE / "results-clmm.md").write_text(text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-r", action="store_true", help="do not run ordinal even if R has it")
    ap.add_argument("--only", nargs="*", help="run only these designs (results-clmm.md is not rewritten)")
    ap.add_argument("--repeat", type=int, default=5, help="timed runs per design and side")
    ap.add_argument("--no-write", action="store_true", help="print only")
    ap.add_argument("--r-timeout", type=float, default=3600.0)
    args = ap.parse_args(argv)
    with_r = not args.no_r and r_available()
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="interlace-clmm-"))
    rows = []
    try:
        for name, (load, formula, link, response, levels) in designs().items():
            if args.only and name not in args.only:
                continue
            raw = load()
            res = {"name": name, "levels": levels,
                   **run_interlace(_prepare(raw, response), formula, link, args.repeat)}
            if with_r:
                csv = str(tmp / f"{name}.csv")
                raw.to_csv(csv, index=False)
                res["r"] = run_r(csv, formula, link, args.repeat, args.r_timeout)
            rows.append(res)
            R = res.get("r", {})
            print(f"{name:16s} n={res['n']:>7,}  interlace {res['seconds']:8.3f} s"
                  + (f"  ordinal {R['seconds']:8.3f} s  ratio {R['seconds'] / res['seconds']:6.1f}×"
                     if "seconds" in R else f"  ordinal {R.get('error', '—')}"), flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    body = table(rows)
    print()
    print(body)
    if not args.only and not args.no_write:
        write_results(body, with_r, args.repeat)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
