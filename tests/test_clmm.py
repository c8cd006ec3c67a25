"""clmm against ordinal::clmm, and self-contained checks."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import FIXTURES, load_data
from scipy import special
from scipy.optimize import minimize

import interlace
from interlace import datasets


@pytest.fixture(scope="module")
def wine():
    if FIXTURES is None:
        pytest.skip("reference fixtures not found")
    case = json.loads((FIXTURES / "cases" / "wine_clmm_logit.json").read_text())
    df = load_data(case)
    return case, df, interlace.clmm("rating ~ temp + contact", df, groups="judge")


def test_matches_ordinal_clmm(wine):
    case, _, r = wine
    np.testing.assert_allclose(r.fe_params, list(case["beta"].values()), rtol=1e-4)
    np.testing.assert_allclose(r.thresholds, list(case["thresholds"].values()), rtol=1e-4)
    assert np.sqrt(r.variance_components["judge"]) == pytest.approx(case["sd"], rel=1e-4)
    assert r.llf == pytest.approx(case["loglik"], rel=1e-6)
    assert r.aic == pytest.approx(case["aic"], rel=1e-6)
    se = case["se"]
    np.testing.assert_allclose(r.threshold_bse, [se[k] for k in r.thresholds.index], rtol=2e-3)
    np.testing.assert_allclose(r.fe_bse, [se["tempwarm"], se["contactyes"]], rtol=2e-3)
    assert list(r.thresholds.index) == ["1|2", "2|3", "3|4", "4|5"]


def test_predictions(wine):
    _, df, r = wine
    probs = r.predict(df.head(5))
    assert probs.shape == (5, 5)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    cls = r.predict(df.head(5), type="class")
    assert list(cls) == [probs.columns[i] for i in probs.to_numpy().argmax(axis=1)]
    # warm wine with contact is rated higher on average
    new = pd.DataFrame({"temp": ["cold", "warm"], "contact": ["no", "yes"]})
    p = r.predict(new, include_re=False).to_numpy()
    assert (p[1] * np.arange(1, 6)).sum() > (p[0] * np.arange(1, 6)).sum()
    assert "Threshold" in r.summary()


def test_no_judge_variation_gives_the_plain_cumulative_logit():
    rng = np.random.default_rng(3)
    n, groups = 400, 20
    x = rng.normal(size=n)
    latent = 0.8 * x + rng.logistic(size=n)
    y = np.digitize(latent, [-1.0, 0.0, 1.2])
    df = pd.DataFrame(
        {
            "y": pd.Categorical(y, categories=[0, 1, 2, 3], ordered=True),
            "x": x,
            "g": [f"g{i}" for i in rng.integers(0, groups, n)],
        }
    )
    r = interlace.clmm("y ~ x", df, groups="g")

    def nll(v):
        a = np.cumsum(np.r_[v[0], np.exp(v[1:3])])
        cuts = np.r_[-np.inf, a, np.inf]
        p = special.expit(cuts[y + 1] - v[3] * x) - special.expit(cuts[y] - v[3] * x)
        return -np.sum(np.log(p))

    res = minimize(nll, [-1, 0, 0, 0], method="BFGS", options={"gtol": 1e-9})
    # a random intercept can only raise the likelihood; with no true variation it stays close
    assert r.llf >= -res.fun - 1e-6
    assert r.llf - (-res.fun) < 1.0
    assert r.fe_params["x"] == pytest.approx(res.x[3], abs=0.05)


@pytest.mark.parametrize(
    "formula, kwargs, exc, match",
    [
        ("b ~ x", {}, ValueError, "at least 3"),
        ("y ~ x", {"link": "cauchit"}, ValueError, "link"),
        ("y ~ zz", {}, KeyError, "zz"),
        ("y ~ x", {"groups": None, "random": ["(x | g)"]}, ValueError, "random intercepts only"),
    ],
)
def test_bad_input(formula, kwargs, exc, match):
    rng = np.random.default_rng(0)
    df = pd.DataFrame(
        {
            "y": rng.integers(0, 4, 60),
            "b": rng.integers(0, 2, 60),
            "x": rng.normal(size=60),
            "g": np.repeat(["a", "b", "c"], 20),
        }
    )
    kw = {"groups": "g", **kwargs}
    with pytest.raises(exc, match=match):
        interlace.clmm(formula, df, **kw)


SOUP_R = {
    # Rscript: m <- clmm(SURENESS ~ PROD + DAY + (1|RESP), data = ordinal::soup, link = lk)
    # cat(logLik(m), m$beta, m$alpha, attr(VarCorr(m)$RESP, "stddev"))   (ordinal 2022.11-16)
    "logit": (
        -2667.53,
        [1.214166, -0.3135263],
        [-1.645279, -0.6173682, -0.2770321, -0.01002731, 0.6995971],
        0.5670084,
    ),
    "probit": (
        -2671.205,
        [0.7080994, -0.1663699],
        [-0.9487364, -0.3680073, -0.1669459, -0.007267777, 0.4211013],
        0.3425029,
    ),
    # ordinal's clmm "cloglog" is the log-log model (see docs/clmm.md)
    "loglog": (
        -2687.952,
        [0.6388551, -0.1143942],
        [-0.5229616, -0.009677399, 0.1827498, 0.3418097, 0.8012743],
        0.3447364,
    ),
}


@pytest.mark.parametrize("link", list(SOUP_R))
def test_soup_matches_ordinal(link):
    import pathlib

    s = pd.read_csv(pathlib.Path(__file__).parent / "data" / "soup.csv")
    s["SURENESS"] = pd.Categorical(s["SURENESS"], categories=sorted(s["SURENESS"].unique()), ordered=True)
    s["PROD"] = pd.Categorical(s["PROD"], categories=["Ref", "Test"])
    s["DAY"] = pd.Categorical(s["DAY"].astype(str), categories=["1", "2"])
    ll, beta, alpha, sd = SOUP_R[link]
    with np.errstate(all="ignore"):
        m = interlace.clmm("SURENESS ~ PROD + DAY", s, groups="RESP", link=link)
    assert m.llf == pytest.approx(ll, abs=6e-3)  # R printed to 7 significant digits
    np.testing.assert_allclose(m.fe_params, beta, rtol=2e-4, atol=1e-5)
    np.testing.assert_allclose(m.thresholds, alpha, rtol=2e-4, atol=2e-5)
    assert np.sqrt(m.variance_components["RESP"]) == pytest.approx(sd, rel=2e-4)


def test_continuous_looking_response_is_refused():
    """wine's 'response' (49 distinct numbers) is not an ordinal rating: refused unless made a factor."""
    wine = datasets.load("wine")
    with pytest.raises(ValueError, match=r"'response' has 49 distinct numeric values and looks continuous.*"
                                         r"interlace.fit\(\)"):
        interlace.clmm("response ~ temp + (1 | judge)", wine)
    as_factor = wine.assign(response=pd.Categorical(wine["response"], ordered=True))
    assert len(interlace.clmm("response ~ temp + (1 | judge)", as_factor).thresholds) == 48
