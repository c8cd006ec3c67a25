"""Fit a large Parquet file without loading it: polars lazy and a local Dask cluster.

python benchmarks/lazy.py [--rows 20000000] [--out benchmarks/lazy_results.md]

Writes a synthetic Parquet file (subjects x items crossed, a numeric and a categorical
predictor) with a seed, then fits `y ~ x + arm + (1 | subject) + (1 | item)` from
`polars.scan_parquet` and from `dask.dataframe.read_parquet` on a LocalCluster with 2 workers,
printing wall time and the peak resident memory of this (the interlace) process.
"""

from __future__ import annotations

import argparse
import pathlib
import resource
import tempfile
import time
import warnings

import numpy as np
import polars as pl

import interlace


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_data(path: pathlib.Path, rows: int, seed: int = 1) -> None:
    rng = np.random.default_rng(seed)
    chunk = 2_000_000
    subj_eff = rng.normal(0, 1.0, 20_000)
    item_eff = rng.normal(0, 0.5, 2_000)
    parts = []
    for start in range(0, rows, chunk):
        m = min(chunk, rows - start)
        s = rng.integers(0, 20_000, m)
        i = rng.integers(0, 2_000, m)
        x = rng.normal(size=m)
        arm = rng.integers(0, 3, m)
        y = 1.0 + 0.5 * x + np.array([0.0, 0.2, -0.1])[arm] + subj_eff[s] + item_eff[i] + rng.normal(size=m)
        parts.append(pl.DataFrame({"y": y, "x": x, "arm": np.array(["a", "b", "c"])[arm],
                                   "subject": s.astype(np.int32), "item": i.astype(np.int32)}))
    pl.concat(parts).write_parquet(path)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=20_000_000)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / "big.parquet"
        t0 = time.perf_counter()
        write_data(path, a.rows)
        print(f"wrote {a.rows:,} rows in {time.perf_counter() - t0:.1f} s")
        base = peak_mb()
        t0 = time.perf_counter()
        r = interlace.fit("y ~ x + arm", pl.scan_parquet(path), groups=["subject", "item"])
        rows.append(("polars lazy", time.perf_counter() - t0, peak_mb(), r))
        try:
            import dask.dataframe as dd
            from dask.distributed import Client, LocalCluster

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cluster = LocalCluster(n_workers=2, threads_per_worker=1, memory_limit="6GB")
                with cluster, Client(cluster):
                    t0 = time.perf_counter()
                    r2 = interlace.fit("y ~ x + arm", dd.read_parquet(path), groups=["subject", "item"])
                    rows.append(("dask LocalCluster (2 workers)", time.perf_counter() - t0, peak_mb(), r2))
        except ImportError as ex:
            print(f"dask skipped: {ex}")
    lines = ["| engine | rows | seconds | peak RSS of this process (MB) | x | arm[T.b] |",
             "|---|---|---|---|---|---|"]
    for name, sec, mem, r in rows:
        lines.append(f"| {name} | {a.rows:,} | {sec:.1f} | {mem:.0f} | {r.fe_params['x']:.5f} | "
                     f"{r.fe_params['arm[T.b]']:.5f} |")
    text = "\n".join(lines)
    print(f"(peak RSS before the fits: {base:.0f} MB)")
    print(text)
    if a.out:
        pathlib.Path(a.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
