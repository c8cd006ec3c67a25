"""Fit a large Parquet file without loading it: polars lazy, DuckDB, a local Dask cluster, PySpark.

python benchmarks/lazy.py [--rows 20000000] [--engines polars dask duckdb spark] [--out FILE]

Writes a synthetic Parquet file in a child process (subjects x items crossed, a numeric and a
categorical predictor, seeded), then fits `y ~ x + arm + (1 | subject) + (1 | item)` once per
engine, each in a fresh Python process: `polars.scan_parquet`, `duckdb.read_parquet` and
`dask.dataframe.read_parquet` on a `LocalCluster` with 2 workers (Dask's threaded scheduler
in the fitting process when `distributed` is not installed), and `spark.read.parquet` in a
local Spark session (`local[2]`, its JVM started before the clock). Reported: wall time of the
`interlace.fit` call and the peak resident memory of that (the interlace) process; Dask's
workers and Spark's JVM are separate processes and not counted. An eager fit of the same rows is printed for
comparison when --eager is given (it needs the data in memory).
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

N_SUBJECTS, N_ITEMS = 20_000, 2_000
FORMULA, GROUPS = "y ~ x + arm", ["subject", "item"]


def write_data(path: pathlib.Path, rows: int, seed: int = 1) -> None:
    """Chunks of 2M rows appended to one Parquet file (never the whole table in memory)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    subj_eff = rng.normal(0, 1.0, N_SUBJECTS)
    item_eff = rng.normal(0, 0.5, N_ITEMS)
    writer = None
    for start in range(0, rows, 2_000_000):
        m = min(2_000_000, rows - start)
        s = rng.integers(0, N_SUBJECTS, m)
        i = rng.integers(0, N_ITEMS, m)
        x = rng.normal(size=m)
        arm = rng.integers(0, 3, m)
        y = 1.0 + 0.5 * x + np.array([0.0, 0.2, -0.1])[arm] + subj_eff[s] + item_eff[i] + rng.normal(size=m)
        table = pa.table(
            {
                "y": y,
                "x": x,
                "arm": np.array(["a", "b", "c"])[arm],
                "subject": s.astype(np.int32),
                "item": i.astype(np.int32),
            }
        )
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
    writer.close()


def fit_one(engine: str, path: str) -> dict:
    """One lazy (or eager) fit in this process: seconds, peak RSS, estimates."""
    import interlace

    warnings.simplefilter("ignore")
    t0 = time.perf_counter()
    if engine == "polars":
        import polars as pl

        r = interlace.fit(FORMULA, pl.scan_parquet(path), groups=GROUPS)
    elif engine == "duckdb":
        import duckdb

        con = duckdb.connect()
        con.execute("SET threads TO 2")
        con.execute("SET memory_limit = '1GB'")  # DuckDB runs inside this process
        r = interlace.fit(FORMULA, con.read_parquet(path), groups=GROUPS)
    elif engine == "dask":
        import dask.dataframe as dd

        try:
            from dask.distributed import Client, LocalCluster
        except ImportError:  # no `distributed`: Dask's threaded scheduler, inside this process
            r = interlace.fit(FORMULA, dd.read_parquet(path), groups=GROUPS)
        else:
            cluster = LocalCluster(n_workers=2, threads_per_worker=1, memory_limit="6GB")
            with cluster, Client(cluster):
                t0 = time.perf_counter()
                r = interlace.fit(FORMULA, dd.read_parquet(path), groups=GROUPS)
    elif engine == "spark":
        from pyspark.sql import SparkSession

        spark = (SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false")
                 .config("spark.driver.memory", "4g").config("spark.sql.shuffle.partitions", "8")
                 .getOrCreate())
        spark.sparkContext.setLogLevel("ERROR")
        t0 = time.perf_counter()
        r = interlace.fit(FORMULA, spark.read.parquet(path), groups=GROUPS)
    else:  # eager, for comparison
        import polars as pl

        r = interlace.fit(FORMULA, pl.read_parquet(path), groups=GROUPS)
    sec = time.perf_counter() - t0
    use = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "engine": engine,
        "seconds": sec,
        "cpu_s": use.ru_utime + use.ru_stime,
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "x": float(r.fe_params["x"]),
        "arm_b": float(r.fe_params["arm[T.b]"]),
        "sd_subject": float(np.sqrt(r.variance_components["subject"])),
        "llf": float(r.llf),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=20_000_000)
    ap.add_argument("--engines", nargs="*", default=["polars", "duckdb", "dask"])
    ap.add_argument("--eager", action="store_true")
    ap.add_argument("--out", default=None)
    ap.add_argument("--child", nargs=2, metavar=("ENGINE", "PATH"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(fit_one(*a.child)))
        return
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / "big.parquet"
        t0 = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-c",
                f"import sys; sys.path.insert(0, {str(pathlib.Path(__file__).parent)!r}); "
                f"import lazy; lazy.write_data(__import__('pathlib').Path({str(path)!r}), {a.rows})",
            ],
            check=True,
        )
        size = path.stat().st_size / 2**20
        print(
            f"wrote {a.rows:,} rows ({size:.0f} MB Parquet) in {time.perf_counter() - t0:.1f} s", flush=True
        )
        for engine in a.engines + (["eager"] if a.eager else []):
            out = subprocess.run(
                [sys.executable, __file__, "--child", engine, str(path)], capture_output=True, text=True
            )
            if out.returncode:
                print(f"{engine} failed:\n{out.stderr[-2000:]}", flush=True)
                continue
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(results[-1], flush=True)
    lines = [
        "| engine | rows | seconds | CPU s, fitting process | peak RSS, fitting process (MB) | x | arm[T.b] "
        "| SD subject | logLik |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['engine']} | {a.rows:,} | {r['seconds']:.1f} | {r['cpu_s']:.1f} | {r['peak_mb']:.0f} "
            f"| {r['x']:.5f} | {r['arm_b']:.5f} | {r['sd_subject']:.4f} | {r['llf']:.2f} |"
        )
    text = "\n".join(lines)
    print(text)
    if a.out:
        pathlib.Path(a.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
