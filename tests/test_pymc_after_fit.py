"""The after-fit toolkit on PyMC results: posterior draws instead of refits (issue 13, item 6)."""

from __future__ import annotations

import types
import warnings

import numpy as np
import pandas as pd
import pytest

import interlace
from interlace import datasets
from interlace.diagnostics import icc, r2

pytest.importorskip("pymc")
pytestmark = pytest.mark.slow  # PyMC sampling: outside the fast lane (pytest -m "not slow")

FAST = dict(draws=300, tune=300, chains=2, random_seed=5, progressbar=False)


@pytest.fixture(scope="module")
def stroop_fits():
    df = datasets.load("stroop")
    kw = dict(groups=["subject", "item"])
    reml = interlace.fit("rt ~ condition", df, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        bayes = interlace.fit("rt ~ condition", df, **kw, backend="pymc", **FAST)
    return reml, bayes


def test_simulate_is_the_posterior_predictive(stroop_fits):
    reml, bayes = stroop_fits
    sims = bayes.simulate(200, seed=1, include_re=False)
    assert sims.shape == (reml.nobs, 200)
    np.testing.assert_array_equal(sims, bayes.simulate(200, seed=1, include_re=False))
    # conditional on each draw's b: centred on the fitted values, spread about σ
    resid = sims - np.asarray(bayes.fittedvalues)[:, None]
    assert abs(resid.mean()) < 0.05 * np.sqrt(bayes.scale)
    assert resid.std() == pytest.approx(np.sqrt(bayes.scale), rel=0.1)
    fresh = bayes.simulate(200, seed=2)  # new b per simulation: subject and item spread added
    assert fresh.var(axis=1).mean() > sims.var(axis=1).mean()


def test_bootstrap_returns_posterior_draws(stroop_fits):
    reml, bayes = stroop_fits
    boot = interlace.bootstrap(bayes, nsim=250, seed=3)
    assert boot.method == "posterior" and "posterior draws" in repr(boot)
    assert len(boot.draws) == 250
    assert list(boot.draws.columns) == list(bayes.fe_params.index) + list(bayes.variance_draws.columns)
    np.testing.assert_allclose(boot.observed[bayes.fe_params.index], bayes.fe_params, rtol=1e-12)
    ci = boot.ci()
    assert np.all(ci.iloc[:, 0] < boot.observed) and np.all(boot.observed < ci.iloc[:, 1])
    # the REML estimates of the fixed effects sit inside the credible intervals
    fe = reml.fe_params.index
    assert np.all((ci.loc[fe].iloc[:, 0] < reml.fe_params) & (reml.fe_params < ci.loc[fe].iloc[:, 1]))
    all_draws = interlace.bootstrap(bayes, nsim=10**6, seed=3)
    assert len(all_draws.draws) == len(bayes.fe_draws)
    with pytest.raises(ValueError, match="statistic= needs refits"):
        interlace.bootstrap(bayes, nsim=10, statistic=lambda r: r.fe_params)


def test_emmeans_and_contrasts_from_the_posterior(stroop_fits):
    reml, bayes = stroop_fits
    e_reml, e_bayes = interlace.emmeans(reml, "condition"), interlace.emmeans(bayes, "condition")
    assert e_bayes.method == "posterior" and "credible" in repr(e_bayes)
    tb, tr = e_bayes.to_frame(), e_reml.to_frame()
    assert tb["df"].isna().all()
    # the same ℓ on every draw: the mean is ℓ'E[β], the SD close to the REML SE
    np.testing.assert_allclose(tb["emmean"], e_bayes.L @ bayes.fe_params.to_numpy(), rtol=1e-10)
    assert np.all(np.abs(tb["emmean"] - tr["emmean"]) < tr["SE"])
    np.testing.assert_allclose(tb["SE"], tr["SE"], rtol=0.35)
    c = interlace.contrast(e_bayes)
    assert {"estimate", "SE", "lower", "upper", "pd"} <= set(c.columns) and "p_value" not in c
    assert c.attrs["method"] == "posterior"
    assert ((c["pd"] >= 0.5) & (c["pd"] <= 1)).all()
    cr = interlace.contrast(e_reml)
    assert np.all(np.abs(c["estimate"] - cr["estimate"]) < cr["SE"])


def test_r2_and_icc_per_draw(stroop_fits):
    reml, bayes = stroop_fits
    got = bayes.r2()
    assert set(got) == {"marginal", "conditional", "marginal_lower", "marginal_upper",
                        "conditional_lower", "conditional_upper"}
    assert got["marginal_lower"] < got["marginal"] < got["marginal_upper"]
    ref = reml.r2()
    assert got["marginal_lower"] < ref["marginal"] < got["marginal_upper"]
    assert got["conditional_lower"] < ref["conditional"] < got["conditional_upper"]
    # per draw, the REML formula applied to that draw's parameters
    from interlace.results.bayes_after_fit import r2_draws
    from interlace.results.draws import posterior_arrays

    k = 17
    one = types.SimpleNamespace(
        design=bayes.design,
        fe_params=pd.Series(posterior_arrays(bayes.idata, "beta")[k]),
        theta=posterior_arrays(bayes.idata, "theta")[k],
        scale=float(posterior_arrays(bayes.idata, "sigma")[k]) ** 2,
    )
    one._re_scale = one.scale  # an LMM: Var(b) = σ²ΛΛ'
    v = r2_draws(bayes)
    total = v["fixed"][k] + v["random"][k] + v["residual"][k]
    assert v["fixed"][k] / total == pytest.approx(r2(one)["marginal"], rel=1e-10)
    adjusted = v["random"][k] / (v["random"][k] + v["residual"][k])
    assert adjusted == pytest.approx(icc(one)["adjusted"], rel=1e-10)
    i = bayes.icc()
    assert i["adjusted_lower"] < reml.icc()["adjusted"] < i["adjusted_upper"]


def test_influence_points_to_loo(stroop_fits):
    _, bayes = stroop_fits
    with pytest.raises(ValueError, match="az.loo"):
        bayes.influence()
