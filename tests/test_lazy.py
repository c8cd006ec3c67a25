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
    assert r.fittedvalues is None
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


def test_sliced_cross_classification_equals_one_pass(monkeypatch):
    """Large cross-classifications are aggregated in slices of levels: same cross-products."""
    if "penicillin_crossed_reml" not in CASES:
        pytest.skip("reference fixtures not found")
    import interlace.data.lazy as lazy_mod

    case = CASES["penicillin_crossed_reml"]
    df = _plain(load_data(case))
    kw = {k: v for k, v in case["interlace"].items() if k not in ("fn", "formula")}
    one = interlace.fit(case["interlace"]["formula"], pl.from_pandas(df).lazy(), **kw)
    monkeypatch.setattr(lazy_mod, "PAIR_GROUPS_PER_PASS", 7)  # 144 plate × sample cells: 21 passes
    calls = []
    original = lazy_mod._group_sums
    monkeypatch.setattr(lazy_mod, "_group_sums", lambda *a: calls.append(a[1]) or original(*a))
    sliced = interlace.fit(case["interlace"]["formula"], pl.from_pandas(df).lazy(), **kw)
    assert sum(len(k) == 2 for k in calls) > 10  # the pair group-by really ran in slices
    assert sliced.llf == pytest.approx(one.llf, rel=1e-12)
    np.testing.assert_allclose(sliced.fe_params, one.fe_params, rtol=1e-10)


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
