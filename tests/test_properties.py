"""Property-based checks on random designs (hypothesis): invariances every LMM fit must obey."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import interlace

SETTINGS = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def designs(draw):
    seed = draw(st.integers(0, 2**31 - 1))
    n_g = draw(st.integers(4, 12))
    per = draw(st.integers(3, 8))
    n_h = draw(st.integers(2, 6))
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_g), per)
    n = g.size
    h = rng.integers(0, n_h, n)
    x = rng.normal(size=n)
    sd_g = draw(st.sampled_from([0.0, 0.3, 1.0, 3.0]))
    y = 2.0 + 0.5 * x + sd_g * rng.normal(size=n_g)[g] + 0.5 * rng.normal(size=n_h)[h] + rng.normal(size=n)
    return pd.DataFrame({"y": y, "x": x, "g": [f"g{i}" for i in g], "h": [f"h{i}" for i in h]})


def _fit(df, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return interlace.fit("y ~ x", df, **kw)


@SETTINGS
@given(designs(), st.sampled_from(["REML", "ML"]))
def test_fits_are_finite_and_row_order_free(df, method):
    r = _fit(df, groups=["g", "h"], method=method)
    assert np.isfinite(r.llf) and np.all(np.isfinite(r.fe_params)) and np.all(r.fe_bse > 0)
    assert np.all(r.theta >= 0)
    perm = np.random.default_rng(0).permutation(len(df))
    r2 = _fit(df.iloc[perm].reset_index(drop=True), groups=["g", "h"], method=method)
    assert r2.llf == pytest.approx(r.llf, rel=1e-8, abs=1e-8)
    np.testing.assert_allclose(r2.fe_params, r.fe_params, rtol=1e-5, atol=1e-5 * r.fe_bse.max())


@SETTINGS
@given(designs(), st.floats(-1e3, 1e3))
def test_shifting_y_moves_only_the_intercept(df, shift):
    r = _fit(df, groups=["g", "h"])
    s = _fit(df.assign(y=df["y"] + shift), groups=["g", "h"])
    assert s.fe_params["(Intercept)"] == pytest.approx(
        r.fe_params["(Intercept)"] + shift, abs=1e-5 * (1 + abs(shift))
    )
    assert s.fe_params["x"] == pytest.approx(r.fe_params["x"], abs=1e-5)
    assert s.llf == pytest.approx(r.llf, rel=1e-7, abs=1e-6)


@SETTINGS
@given(designs(), st.sampled_from([1e-6, 1e-3, 10.0, 1e4, 1e9]))
def test_scaling_y_scales_estimates_and_keeps_t_values(df, c):
    r = _fit(df, groups="g", random=["(1 | h)"])
    s = _fit(df.assign(y=df["y"] * c), groups="g", random=["(1 | h)"])
    np.testing.assert_allclose(s.fe_params / c, r.fe_params, rtol=1e-4, atol=1e-6 * r.fe_bse.max())
    np.testing.assert_allclose(s.fe_tvalues, r.fe_tvalues, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(s.theta, r.theta, atol=2e-4)
    assert s.scale / c**2 == pytest.approx(r.scale, rel=1e-4)


def test_same_input_gives_bitwise_same_result():
    rng = np.random.default_rng(11)
    g = np.repeat(np.arange(15), 6)
    d = pd.DataFrame({"x": rng.normal(size=g.size), "g": g.astype(str)})
    d["y"] = d["x"] + rng.normal(size=15)[g] + rng.normal(size=g.size)
    a = _fit(d, random=["(x | g)"])
    b = _fit(d, random=["(x | g)"])
    assert a.llf == b.llf
    assert np.array_equal(a.theta, b.theta) and np.array_equal(a.fe_params, b.fe_params)
    assert np.array_equal(a.fe_df, b.fe_df)
