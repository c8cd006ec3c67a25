"""Fits from lazy frames (polars, DuckDB, Dask) equal the in-memory fits; only aggregates are collected."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import polars as pl
import pytest
from conftest import load_cases, load_data

import interlace
from interlace import datasets

CASES = {c["name"]: c for c in load_cases()}


def _plain(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    for c in out.columns:
        if isinstance(out[c].dtype, pd.CategoricalDtype):
            out[c] = out[c].astype(str)
    return out


def _lazy(df, engine: str):
    """``df`` as a lazy frame of ``engine``; skips only this engine when it is not installed."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if engine == "polars":
            return pl.from_pandas(df).lazy()
        if engine == "duckdb":
            return pytest.importorskip("duckdb").from_df(df)
        return pytest.importorskip("dask.dataframe").from_pandas(df, npartitions=3)


@pytest.mark.parametrize(
    "name",
    [
        "sleepstudy_slopes_reml",
        "sleepstudy_intercept_ml",
        "penicillin_crossed_reml",
        "pastes_nested_reml",
        "sleepstudy_weights_reml",
        "sleepstudy_uncorrelated_reml",
    ],
)
@pytest.mark.parametrize("engine", ["polars", "duckdb", "dask"])
def test_lazy_equals_eager_on_fixtures(name, engine):
    if name not in CASES:
        pytest.skip("reference fixtures not found")
    case = CASES[name]
    df = _plain(load_data(case))
    kw = {k: v for k, v in case["interlace"].items() if k not in ("fn", "formula")}
    eager = interlace.fit(case["interlace"]["formula"], df, **kw)
    lf = _lazy(df, engine)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = interlace.fit(case["interlace"]["formula"], lf, **kw)
    assert r.llf == pytest.approx(eager.llf, rel=1e-8)
    np.testing.assert_allclose(r.fe_params, eager.fe_params, rtol=1e-8)
    np.testing.assert_allclose(r.fe_bse, eager.fe_bse, rtol=1e-5)  # θ agrees to the optimizer tolerance
    np.testing.assert_allclose(r.theta, eager.theta, rtol=5e-5, atol=1e-6)
    np.testing.assert_allclose(r.fe_df, eager.fe_df, rtol=1e-5)
    assert r.nobs == eager.nobs
    with pytest.raises(ValueError, match="lazy frame"):
        r.fittedvalues  # noqa: B018 (the property raises)
    assert r.llf == pytest.approx(case["loglik"], rel=1e-6)


def test_lazy_with_categorical_fixed_effects_and_missing_rows():
    df = _plain(datasets.load("stroop"))
    df.loc[[3, 50], "rt"] = np.nan
    kw = dict(random=["(1 | subject)", "(1 | item)"])
    eager = interlace.fit("rt ~ condition", df, **kw)
    r = interlace.fit("rt ~ condition", pl.from_pandas(df).lazy(), **kw)
    assert r.n_dropped == 2 and r.nobs == eager.nobs
    np.testing.assert_allclose(r.fe_params, eager.fe_params, rtol=1e-8)
    assert list(r.fe_params.index) == list(eager.fe_params.index)
    with pytest.raises(ValueError, match="row-level"):
        r.predict(df.head())


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"correlation": interlace.AR1(time="Days", group="Subject")}, ValueError, "row-level"),
        ({"df_method": "kenward-roger"}, ValueError, "row-level"),
        ({"backend": "pymc", "marginalize": False}, ValueError, "row-level"),
        ({"formula": "Reaction ~ log(Days + 1)"}, ValueError, "plain column"),
        ({"formula": "Reaction ~ Nope"}, KeyError, "Nope"),
    ],
)
def test_lazy_refuses_what_needs_rows(kwargs, exc, match):
    df = _plain(datasets.load("sleepstudy"))
    formula = kwargs.pop("formula", "Reaction ~ Days")
    with pytest.raises(exc, match=match):
        interlace.fit(formula, pl.from_pandas(df).lazy(), groups="Subject", **kwargs)


def _counting_source(frames: list[pl.DataFrame]) -> tuple[pl.LazyFrame, list[int]]:
    """A polars lazy frame whose every scan is counted; scan i reads frames[min(i, last)]
    (so a list of several frames is a source that changes between reads)."""
    from polars.io.plugins import register_io_source

    reads: list[int] = []

    def source(with_columns, predicate, n_rows, batch_size):
        df = frames[min(len(reads), len(frames) - 1)]
        reads.append(1)
        if with_columns is not None:
            df = df.select(with_columns)
        if predicate is not None:
            df = df.filter(predicate)
        yield df if n_rows is None else df.head(n_rows)

    return register_io_source(source, schema=frames[0].schema), reads


def _crossed_frame(seed: int = 3, n: int = 2000) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"a": [f"a{i}" for i in rng.integers(0, 80, n)],
                       "b": [f"b{i}" for i in rng.integers(0, 30, n)], "x": rng.normal(size=n)})
    df["y"] = 1 + 0.3 * df["x"] + rng.normal(size=n)
    return df


def test_lazy_reads_the_source_twice():
    """A census and one group-by over all keys: two reads of the source, whatever the terms."""
    df = _crossed_frame()
    eager = interlace.fit("y ~ x", df, random=["(1 | a)", "(1 + x | b)"])
    lf, reads = _counting_source([pl.from_pandas(df)])
    r = interlace.fit("y ~ x", lf, random=["(1 | a)", "(1 + x | b)"])
    assert len(reads) == 2
    assert r.llf == pytest.approx(eager.llf, rel=1e-10)
    np.testing.assert_allclose(r.fe_params, eager.fe_params, rtol=1e-8)


def test_sliced_cross_classification_equals_one_pass(monkeypatch):
    """Many rows are aggregated in slices of the first factor's levels: same cross-products,
    one read per slice plus the census."""
    if "penicillin_crossed_reml" not in CASES:
        pytest.skip("reference fixtures not found")
    import interlace.data.lazy as lazy_mod

    case = CASES["penicillin_crossed_reml"]
    df = _plain(load_data(case))
    kw = {k: v for k, v in case["interlace"].items() if k not in ("fn", "formula")}
    one = interlace.fit(case["interlace"]["formula"], pl.from_pandas(df).lazy(), **kw)
    monkeypatch.setattr(lazy_mod, "PAIR_GROUPS_PER_PASS", 30)  # 144 rows: 5 slices
    lf, reads = _counting_source([pl.from_pandas(df)])
    sliced = interlace.fit(case["interlace"]["formula"], lf, **kw)
    assert len(reads) == 1 + 5
    assert sliced.llf == pytest.approx(one.llf, rel=1e-12)
    np.testing.assert_allclose(sliced.fe_params, one.fe_params, rtol=1e-10)


@pytest.mark.parametrize("change", ["replaced", "appended"])
@pytest.mark.parametrize("slices", [False, True])
def test_source_changing_between_passes_is_reported(monkeypatch, change, slices):
    import interlace.data.lazy as lazy_mod

    df = _crossed_frame()
    first = pl.from_pandas(df)
    if change == "replaced":  # same rows and levels, another response
        later = first.with_columns(pl.col("y") + 0.01)
    else:
        later = pl.concat([first, first.head(5)])
    if slices:
        monkeypatch.setattr(lazy_mod, "PAIR_GROUPS_PER_PASS", 500)
    lf, reads = _counting_source([first, later])
    with pytest.raises(ValueError, match="data changed between passes"):
        interlace.fit("y ~ x", lf, random=["(1 | a)", "(1 | b)"])
    # a source that changes only after the fit is fitted as it was read
    n_reads = 1 + (-(-len(df) // 500) if slices else 1)
    lf, reads = _counting_source([first] * n_reads + [later])
    r = interlace.fit("y ~ x", lf, random=["(1 | a)", "(1 | b)"])
    assert r.nobs == len(df) and len(reads) == n_reads


@pytest.mark.parametrize("random", [["(1|a)", "(1 + x|b)", "(1|c)"], ["(1 + x|a)", "(1|b)", "(x||c)"]])
def test_three_crossed_terms_with_slopes(random):
    """Blocks between the non-largest terms (stored once, lower triangle) are mirrored right."""
    rng = np.random.default_rng(1)
    n = 3000
    codes = {g: rng.integers(0, m, n) for g, m in (("a", 60), ("b", 25), ("c", 8))}
    df = pd.DataFrame({g: [f"{g}{i}" for i in c] for g, c in codes.items()})
    df["x"] = rng.normal(size=n)
    effects = rng.normal(size=60)[codes["a"]] + rng.normal(size=8)[codes["c"]]
    df["y"] = 1 + 0.5 * df["x"] + effects + rng.normal(size=n)
    eager = interlace.fit("y ~ x", df, random=random)
    lazy = interlace.fit("y ~ x", pl.from_pandas(df).lazy(), random=random)
    assert lazy.llf == pytest.approx(eager.llf, rel=1e-12)
    np.testing.assert_allclose(lazy.fe_params, eager.fe_params, rtol=1e-8)
    np.testing.assert_allclose(lazy.theta, eager.theta, rtol=1e-5, atol=1e-7)


def _mixed_frame(seed: int = 5, n: int = 2400) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    codes = {g: rng.integers(0, m, n) for g, m in (("a", 50), ("b", 12), ("c", 4))}
    df = pd.DataFrame({g: [f"{g}{i}" for i in c] for g, c in codes.items()})
    df["x"] = rng.normal(size=n)
    df["arm"] = rng.choice(["p", "q", "r"], n)
    df["site"] = rng.choice(["s1", "s2"], n)
    df["w"] = rng.choice([0.5, 1.0, 2.0], n)
    effects = rng.normal(size=50)[codes["a"]] + rng.normal(size=12)[codes["b"]] + rng.normal(size=48)[
        codes["b"] * 4 + codes["c"]] * 0.5
    df["y"] = 1 + 0.5 * df["x"] + 0.3 * (df["arm"] == "q") + effects + rng.normal(size=n)
    return df


@pytest.mark.parametrize("sliced", [False, True])
def test_categorical_fixed_factors_are_summed_out_of_the_pair_tables(monkeypatch, sliced):
    """Each slice's group-by over every key (here a, b, c, arm, site) is summed down to the tables
    the blocks need; with slices of a's levels the b × b:c table gets a part from every slice.
    Same fit as the eager one, with slopes, an interaction term and prior weights."""
    import interlace.data.lazy as lazy_mod

    df = _mixed_frame()
    kw = dict(random=["(1 + x | a)", "(1 | b)", "(1 | b:c)"], weights="w")
    eager = interlace.fit("y ~ x + arm + site", df, **kw)
    if sliced:
        monkeypatch.setattr(lazy_mod, "PAIR_GROUPS_PER_PASS", 700)  # 2,400 rows: 4 slices
    lf, reads = _counting_source([pl.from_pandas(df)])
    lazy = interlace.fit("y ~ x + arm + site", lf, **kw)
    assert len(reads) == (1 + 4 if sliced else 2)
    assert lazy.llf == pytest.approx(eager.llf, rel=1e-10)
    np.testing.assert_allclose(lazy.fe_params, eager.fe_params, rtol=1e-8)
    assert list(lazy.fe_params.index) == list(eager.fe_params.index)
    np.testing.assert_allclose(lazy.theta, eager.theta, rtol=1e-5, atol=1e-7)

