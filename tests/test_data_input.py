"""Input frames: missing values, no mutation, pandas/polars/pyarrow equality, weights/offset."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

import interlace


@pytest.fixture(scope="module")
def df():
    rng = np.random.default_rng(7)
    g = np.repeat(np.arange(12), 8)
    x = rng.normal(size=g.size)
    y = 2 + 0.7 * x + rng.normal(size=12)[g] + 0.3 * rng.normal(size=12)[g] * x + rng.normal(size=g.size)
    return pd.DataFrame(
        {
            "y": y,
            "x": x,
            "g": [f"g{i:02d}" for i in g],
            "f": np.where(rng.random(g.size) < 0.5, "a", "b"),
            "w": rng.uniform(0.5, 2.0, g.size),
            "off": rng.normal(size=g.size),
            "unused": 1.0,
        }
    )


def test_missing_rows_are_dropped_and_counted(df):
    dirty = df.copy()
    dirty.loc[[3, 10], "y"] = np.nan
    dirty.loc[[20], "x"] = np.nan
    dirty.loc[[40], "g"] = None
    dirty.loc[[50, 51], "unused"] = np.nan  # not used by the model: keeps the rows
    r = interlace.fit("y ~ x", dirty, random=["(x | g)"])
    assert r.nobs == len(df) - 4 and r.n_dropped == 4
    clean = interlace.fit("y ~ x", dirty.dropna(subset=["y", "x", "g"]), random=["(x | g)"])
    np.testing.assert_allclose(r.fe_params, clean.fe_params, rtol=1e-10)
    assert r.llf == pytest.approx(clean.llf, rel=1e-12)
    assert "4 observation(s) deleted" in str(r.summary())


def test_missing_weights_drop_rows_in_step(df):
    w = df["w"].to_numpy().copy()
    w[5] = np.nan
    r = interlace.fit("y ~ x", df, groups="g", weights=w)
    keep = np.ones(len(df), dtype=bool)
    keep[5] = False
    s = interlace.fit("y ~ x", df[keep], groups="g", weights=df["w"].to_numpy()[keep])
    assert r.nobs == len(df) - 1 and r.llf == pytest.approx(s.llf, rel=1e-12)


def test_caller_frame_is_not_modified(df):
    before = copy.deepcopy(df)
    interlace.fit("y ~ x + f", df, random=["(x | g)"], weights="w", offset="off")
    pd.testing.assert_frame_equal(df, before)
    p = pl.from_pandas(df)
    p_before = p.clone()
    interlace.fit("y ~ x + f", p, random=["(x | g)"])
    assert p.equals(p_before)


def test_pandas_polars_pyarrow_give_the_same_fit(df):
    ref = interlace.fit("y ~ x + f", df, random=["(x | g)"])
    for frame in (pl.from_pandas(df), pa.Table.from_pandas(df)):
        r = interlace.fit("y ~ x + f", frame, random=["(x | g)"])
        np.testing.assert_allclose(r.fe_params, ref.fe_params, rtol=1e-8)
        np.testing.assert_allclose(r.fe_bse, ref.fe_bse, rtol=1e-8)
        np.testing.assert_allclose(r.theta, ref.theta, rtol=1e-8)
        assert r.llf == pytest.approx(ref.llf, rel=1e-10)


def test_weights_and_offset_as_arrays_or_columns(df):
    a = interlace.fit("y ~ x", df, groups="g", weights="w", offset="off")
    b = interlace.fit("y ~ x", df, groups="g", weights=df["w"].to_numpy(), offset=df["off"].to_numpy())
    c = interlace.fit("y ~ x", df, groups="g", weights=df["w"], offset=list(df["off"]))
    for r in (b, c):
        np.testing.assert_array_equal(r.fe_params, a.fe_params)
        assert r.llf == a.llf
    # an offset equal to a column times its coefficient recovers the fit without that column
    full = interlace.fit("y ~ x", df, groups="g", method="ML")
    fixed = interlace.fit(
        "y ~ 1", df, groups="g", method="ML", offset=full.fe_params["x"] * df["x"].to_numpy()
    )
    assert fixed.llf == pytest.approx(full.llf, rel=1e-7)


def test_weights_scale_residual_variance(df):
    # weights all equal to 4 give the same fit with σ² four times larger
    a = interlace.fit("y ~ x", df, groups="g")
    b = interlace.fit("y ~ x", df, groups="g", weights=np.full(len(df), 4.0))
    np.testing.assert_allclose(b.fe_params, a.fe_params, rtol=1e-7)
    assert b.scale == pytest.approx(4 * a.scale, rel=1e-6)
