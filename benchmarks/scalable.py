"""The iterative (O(nnz)) solver on large crossed designs: accuracy against the exact fit, the
10-million-row target from a Parquet file, and the coverage of its intervals for β.

python benchmarks/scalable.py accuracy   [--rows 300000 --levels 30000 5000]
python benchmarks/scalable.py target     [--rows 10000000 --levels 1000000 100000]
python benchmarks/scalable.py coverage   [--reps 200]
python benchmarks/scalable.py insteval   (lme4's InstEval, exported with Rscript)

Data: y = 1 + 0.5·x1 − 0.3·x2 + a + b + ε, a ~ N(0, 0.8²) over the first factor's levels,
b ~ N(0, 0.6²) over the second's, ε ~ N(0, 1), levels drawn uniformly per row (a sparse,
haphazard crossed pattern), seeded. Each fit runs in a fresh process; *peak RSS* is that
process's peak resident memory (data, aggregation and fit).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import resource
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np

FORMULA, GROUPS = "y ~ x1 + x2", ["a", "b"]
TRUTH = {"(Intercept)": 1.0, "x1": 0.5, "x2": -0.3, "sd_a": 0.8, "sd_b": 0.6, "sigma": 1.0}


def simulate(rows: int, ma: int, mb: int, seed: int, start: int = 0, chunk: int | None = None):
    """Rows [start, start + chunk) of the seeded design (effects drawn from the seed alone)."""
    rng = np.random.default_rng(seed)
    ea, eb = rng.normal(0, 0.8, ma), rng.normal(0, 0.6, mb)
    chunk = rows if chunk is None else chunk
    r = np.random.default_rng([seed, start])
    a, b = r.integers(0, ma, chunk), r.integers(0, mb, chunk)
    x1, x2 = r.normal(size=chunk), r.normal(size=chunk)
    y = 1 + 0.5 * x1 - 0.3 * x2 + ea[a] + eb[b] + r.normal(size=chunk)
    return {"y": y, "x1": x1, "x2": x2, "a": a.astype(np.int32), "b": b.astype(np.int32)}


def write_parquet(path: str, rows: int, ma: int, mb: int, seed: int = 1) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    writer = None
    for start in range(0, rows, 2_000_000):
        table = pa.table(simulate(rows, ma, mb, seed, start, min(2_000_000, rows - start)))
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
    writer.close()


def summarise(r, seconds: float) -> dict:
    vc = r.variance_components
    use = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "solver": r.optimizer_info["solver"], "seconds": seconds, "cpu_s": use.ru_utime + use.ru_stime,
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "beta": r.fe_params.to_dict(), "se": r.fe_bse.to_dict(),
        "var": {**{str(k): float(v) for k, v in vc.items()}, "residual": float(r.scale)},
        "mc_rel_se": r.optimizer_info.get("vc_mc_rel_se"), "iterations": r.optimizer_info.get("n_evals"),
        "cg": r.optimizer_info.get("cg_iterations"),
    }


def child(kind: str, path: str, solver: str) -> dict:
    import interlace

    warnings.simplefilter("ignore")
    if kind == "insteval":
        import pandas as pd

        df = pd.read_csv(path)
        for c in ("s", "d", "dept", "service"):
            df[c] = df[c].astype(str)
        t0 = time.perf_counter()
        r = interlace.fit("y ~ service", df, random=["(1 | s)", "(1 | d)", "(1 | dept:service)"],
                          solver=solver)
        return summarise(r, time.perf_counter() - t0)
    if kind == "eager":
        import pandas as pd

        df = pd.read_parquet(path)
        t0 = time.perf_counter()
        r = interlace.fit(FORMULA, df, groups=GROUPS, solver=solver)
    else:
        import polars as pl

        t0 = time.perf_counter()
        r = interlace.fit(FORMULA, pl.scan_parquet(path), groups=GROUPS, solver=solver)
    return summarise(r, time.perf_counter() - t0)


def run_child(*args: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def accuracy(rows: int, ma: int, mb: int, insteval: bool = False) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        if insteval:
            path = str(pathlib.Path(tmp) / "insteval.csv")
            export = "write.csv(lme4::InstEval, commandArgs(TRUE)[1], row.names=FALSE)"
            subprocess.run(["Rscript", "-e", export, path], check=True, capture_output=True)
            runs = [("DataFrame", run_child("insteval", path, "exact")),
                    ("DataFrame", run_child("insteval", path, "iterative"))]
            title = ("Accuracy, lme4's InstEval (73,421 rows), "
                     "`y ~ service + (1 | s) + (1 | d) + (1 | dept:service)`:")
        else:
            path = str(pathlib.Path(tmp) / "acc.parquet")
            write_parquet(path, rows, ma, mb)
            runs = [("DataFrame", run_child("eager", path, "exact")),
                    ("DataFrame", run_child("eager", path, "iterative")),
                    ("polars scan_parquet, solver='auto'", run_child("lazy", path, "auto"))]
            title = (f"Accuracy, {rows:,} rows, {ma:,} × {mb:,} crossed levels, "
                     f"`{FORMULA} + (1 | a) + (1 | b)`:")
    ex, it = runs[0][1], runs[1][1]
    lines = [title, "", "| fit | solver | seconds (CPU s) | peak RSS MB | iterations (CG steps) |",
             "|---|---|---|---|---|"]
    for name, r in runs:
        its = "" if r["iterations"] is None or r["solver"] == "exact" else f"{r['iterations']} ({r['cg']})"
        lines.append(f"| {name} | {r['solver']} | {r['seconds']:.1f} ({r.get('cpu_s', float('nan')):.1f}) "
                     f"| {r['peak_mb']:.0f} | {its} |")
    lines += ["", "| quantity | exact | iterative | difference |", "|---|---|---|---|"]
    for k in ex["beta"]:
        d = (it["beta"][k] - ex["beta"][k]) / ex["se"][k]
        lines.append(f"| β {k} | {ex['beta'][k]:.6f} | {it['beta'][k]:.6f} | {d:+.2e} exact SE |")
    for k in ex["se"]:
        d = it["se"][k] / ex["se"][k] - 1
        lines.append(f"| SE {k} | {ex['se'][k]:.6f} | {it['se'][k]:.6f} | {d:+.2e} relative |")
    for k in ex["var"]:
        d = it["var"][k] / ex["var"][k] - 1
        mc = (it["mc_rel_se"] or {}).get(k)
        extra = f" (Monte-Carlo SE {mc:.1e})" if mc else ""
        lines.append(f"| variance {k} | {ex['var'][k]:.5f} | {it['var'][k]:.5f} | {d:+.2e} relative{extra} |")
    return "\n".join(lines)


def target(rows: int, ma: int, mb: int) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        path = str(pathlib.Path(tmp) / "target.parquet")
        t0 = time.perf_counter()
        write_parquet(path, rows, ma, mb)
        size = pathlib.Path(path).stat().st_size / 2**20
        print(f"wrote {rows:,} rows ({size:.0f} MB) in {time.perf_counter() - t0:.0f} s", flush=True)
        r = run_child("lazy", path, "auto")
    est = ", ".join(f"{k} {v:.4f}" for k, v in r["beta"].items())
    se = ", ".join(f"{v:.5f}" for v in r["se"].values())
    sds = ", ".join(f"{k} {np.sqrt(v):.4f}" for k, v in r["var"].items())
    return "\n".join([
        f"Target, {rows:,} rows, {ma:,} × {mb:,} crossed levels, 2 covariates, `polars.scan_parquet` "
        f"({size:.0f} MB Parquet), `solver='auto'`:", "",
        "| solver | seconds (CPU s) | peak RSS MB | iterations (CG steps) | β | SE(β) "
        "| SDs (truth 0.8, 0.6, 1) |",
        "|---|---|---|---|---|---|---|",
        f"| {r['solver']} | {r['seconds']:.0f} ({r.get('cpu_s', float('nan')):.0f}) | {r['peak_mb']:.0f} "
        f"| {r['iterations']} ({r['cg']}) "
        f"| {est} | {se} | {sds} |",
    ])


def coverage(reps: int, rows: int, ma: int, mb: int) -> str:
    import pandas as pd

    import interlace

    warnings.simplefilter("ignore")
    hits = {k: 0 for k in ("(Intercept)", "x1", "x2")}
    t0 = time.perf_counter()
    for rep in range(reps):
        df = pd.DataFrame(simulate(rows, ma, mb, seed=1000 + rep))
        r = interlace.fit(FORMULA, df, groups=GROUPS, solver="iterative")
        ci = r.fe_conf_int(0.95)
        for k in hits:
            hits[k] += int(ci.iloc[:, 0][k] <= TRUTH[k] <= ci.iloc[:, 1][k])
    sec = time.perf_counter() - t0
    cells = ", ".join(f"{k} {v / reps:.3f}" for k, v in hits.items())
    return (f"Coverage of 95 % intervals for β (iterative solver, Wald z), {reps} seeded replicates of "
            f"{rows:,} rows, {ma:,} × {mb:,} levels (new effects each replicate): {cells} "
            f"(binomial SE ≈ {np.sqrt(0.95 * 0.05 / reps):.3f}); {sec:.0f} s in all.")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", nargs="?", choices=["accuracy", "target", "coverage", "insteval"])
    ap.add_argument("--rows", type=int)
    ap.add_argument("--levels", type=int, nargs=2)
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(*a.child)))
        return
    if a.mode == "accuracy":
        print(accuracy(a.rows or 300_000, *(a.levels or (30_000, 5_000))))
    elif a.mode == "insteval":
        print(accuracy(0, 0, 0, insteval=True))
    elif a.mode == "target":
        print(target(a.rows or 10_000_000, *(a.levels or (1_000_000, 100_000))))
    else:
        print(coverage(a.reps, a.rows or 20_000, *(a.levels or (2_000, 400))))


if __name__ == "__main__":
    main()
