"""coxme against R's coxme (rats), and self-contained checks."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import FIXTURES
from scipy.optimize import minimize

import interlace
from interlace.backends.reml.coxme import efron


@pytest.fixture(scope="module")
def rats():
    if FIXTURES is None:
        pytest.skip("reference fixtures not found")
    case = json.loads((FIXTURES / "cases" / "rats_coxme_frailty.json").read_text())
    df = pd.read_csv(FIXTURES / "data" / "rats.csv")
    return case, interlace.coxme("Surv(time, status) ~ rx", df, groups="litter")


def test_matches_r_coxme(rats):
    case, r = rats
    assert r.fe_params["rx"] == pytest.approx(case["coef"]["rx"], rel=1e-4)
    assert r.fe_bse["rx"] == pytest.approx(case["se"]["rx"], rel=1e-3)
    assert r.variance_components["litter"] == pytest.approx(case["variance"], rel=2e-3)
    assert r.llf == pytest.approx(case["loglik_integrated"], rel=1e-6)
    assert r.llf_null == pytest.approx(case["loglik_null"], rel=1e-12)
    assert "integrated" in r.summary()
    assert r.random_effects["litter"].shape == (100, 1)


def _simulate(seed, groups=30, per=6, frailty_sd=0.0):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(groups), per)
    x = rng.normal(size=g.size)
    rate = np.exp(0.7 * x + frailty_sd * rng.normal(size=groups)[g])
    t = rng.exponential(1 / rate)
    c = rng.exponential(2.0, g.size)
    return pd.DataFrame(
        {
            "time": np.round(np.minimum(t, c), 2),
            "status": (t <= c).astype(int),
            "x": x,
            "g": [f"g{i}" for i in g],
        }
    )


def test_no_frailty_gives_the_plain_cox_model():
    df = _simulate(1, frailty_sd=0.0)
    r = interlace.coxme("Surv(time, status) ~ x", df, groups="g")
    X = df[["x"]].to_numpy()
    res = minimize(lambda b: -efron(X, X @ b, df["time"].to_numpy(), df["status"].to_numpy())[0], [0.0])
    assert r.fe_params["x"] == pytest.approx(res.x[0], abs=0.05)
    # the integrated likelihood can only exceed the plain one by what a tiny variance buys
    assert r.llf >= -res.fun - 0.5


def test_recovers_a_large_frailty_variance():
    df = _simulate(2, groups=60, per=8, frailty_sd=1.0)
    r = interlace.coxme("Surv(time, status) ~ x", df, random=["(1 | g)"])
    assert r.fe_params["x"] == pytest.approx(0.7, abs=3 * r.fe_bse["x"])
    assert 0.4 < r.variance_components["g"] < 2.5


@pytest.mark.parametrize(
    "formula, data_change, exc, match",
    [
        ("time ~ x", None, ValueError, "Surv"),
        ("Surv(time, status) ~ x", {"time": -1.0}, ValueError, "negative"),
        ("Surv(time, status) ~ x", {"status": 2}, ValueError, "0 \\(censored\\) or 1"),
        ("Surv(time, nope) ~ x", None, KeyError, "nope"),
        ("Surv(time, status) ~ zz", None, KeyError, "zz"),
    ],
)
def test_bad_input(formula, data_change, exc, match):
    df = _simulate(3, groups=5, per=4)
    if data_change:
        for col, value in data_change.items():
            df.loc[0, col] = value
    with pytest.raises(exc, match=match):
        interlace.coxme(formula, df, groups="g")
