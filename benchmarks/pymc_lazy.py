"""A posterior for 20 million rows: `fit(..., data=<polars LazyFrame>, backend="pymc")`.

python benchmarks/pymc_lazy.py [--rows 20000000] [--draws 500] [--out FILE]

Writes a seeded Parquet file in a child process (20,000 subjects, a numeric and a three-level
categorical predictor, a random intercept and slope per subject), then fits
`y ~ x + arm + (x | subject)` from `polars.scan_parquet` twice, each in a fresh Python process:
by REML and by PyMC (2 chains, --draws draws after as many tuning steps). The lazy path
aggregates the cross-products where the data live and both backends work from those alone.
Reported: wall time of the `interlace.fit` call, peak resident memory of that process, the
estimates and (PyMC) the minimum bulk ESS.
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

N_SUBJECTS = 20_000
FORMULA, RANDOM = "y ~ x + arm", ["(x | subject)"]


def write_data(path: pathlib.Path, rows: int, seed: int = 1) -> None:
    """Chunks of 2M rows appended to one Parquet file (never the whole table in memory)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    b0 = rng.normal(0, 1.0, N_SUBJECTS)
    b1 = 0.5 * (0.3 * b0 + np.sqrt(1 - 0.09) * rng.normal(0, 1.0, N_SUBJECTS))
    writer = None
    for start in range(0, rows, 2_000_000):
        m = min(2_000_000, rows - start)
        s = rng.integers(0, N_SUBJECTS, m)
        x = rng.normal(size=m)
        arm = rng.integers(0, 3, m)
        y = 1.0 + 0.5 * x + np.array([0.0, 0.2, -0.1])[arm] + b0[s] + b1[s] * x + rng.normal(size=m)
        cols = {"y": y, "x": x, "arm": np.array(["a", "b", "c"])[arm], "subject": s.astype(np.int32)}
        table = pa.table(cols)
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
    writer.close()


def fit_one(backend: str, path: str, draws: int) -> dict:
    """One lazy fit in this process: seconds, peak RSS, estimates."""
    import polars as pl

    import interlace

    warnings.simplefilter("ignore")
    kw = {} if backend == "reml" else dict(backend="pymc", chains=2, draws=draws, tune=draws, random_seed=1,
                                            progressbar=False)
    t0 = time.perf_counter()
    r = interlace.fit(FORMULA, pl.scan_parquet(path), random=RANDOM, **kw)
    sec = time.perf_counter() - t0
    vc = r.variance_components["subject"]
    out = {
        "backend": backend,
        "seconds": sec,
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "x": float(r.fe_params["x"]),
        "x_sd": float(r.fe_bse["x"]),
        "arm_b": float(r.fe_params["arm[T.b]"]),
        "sd_subject": float(np.sqrt(np.asarray(vc)[0, 0])),
        "nobs": int(r.nobs),
        "min_ess_bulk": float(r.optimizer_info.get("min_ess_bulk", np.nan)),
        "sampler": r.optimizer_info.get("sampler", "REML"),
    }
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=20_000_000)
    ap.add_argument("--draws", type=int, default=500)
    ap.add_argument("--out", default=None)
    ap.add_argument("--child", nargs=3, metavar=("BACKEND", "PATH", "DRAWS"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(fit_one(a.child[0], a.child[1], int(a.child[2]))))
        return
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / "big.parquet"
        t0 = time.perf_counter()
        here = str(pathlib.Path(__file__).parent)
        code = f"import sys; sys.path.insert(0, {here!r}); import pymc_lazy, pathlib; " \
               f"pymc_lazy.write_data(pathlib.Path({str(path)!r}), {a.rows})"
        subprocess.run([sys.executable, "-c", code], check=True)
        size = path.stat().st_size / 2**20
        took = time.perf_counter() - t0
        print(f"wrote {a.rows:,} rows ({size:.0f} MB Parquet) in {took:.1f} s", flush=True)
        for backend in ("reml", "pymc"):
            out = subprocess.run([sys.executable, __file__, "--child", backend, str(path), str(a.draws)],
                                 capture_output=True, text=True)
            if out.returncode:
                print(f"{backend} failed:\n{out.stderr[-2000:]}", flush=True)
                continue
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(results[-1], flush=True)
    lines = [
        "| backend | rows | seconds | peak RSS (MB) | x (SE / posterior SD) | arm[T.b] | SD subject "
        "| min bulk ESS |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        ess = "" if r["backend"] == "reml" else f"{r['min_ess_bulk']:.0f}"
        name = "REML" if r["backend"] == "reml" else f"PyMC ({r['sampler']}, 2 × {a.draws} draws)"
        lines.append(f"| {name} | {r['nobs']:,} | {r['seconds']:.1f} | {r['peak_mb']:.0f} | "
                     f"{r['x']:.5f} ({r['x_sd']:.5f}) | {r['arm_b']:.5f} | {r['sd_subject']:.4f} | {ess} |")
    text = "\n".join(lines)
    print(text)
    if a.out:
        pathlib.Path(a.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
