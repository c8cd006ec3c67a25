"""glmer(backend="pymc"): the same X, Z and family as the REML backend, sampled with NUTS."""

from __future__ import annotations

import json
import warnings

import arviz as az
import numpy as np
import pandas as pd
import pytest
from conftest import EXTRA, load_data

import interlace
from interlace import datasets

pytest.importorskip("pymc")
pytestmark = pytest.mark.slow  # PyMC sampling: outside the fast lane (pytest -m "not slow")

FAST = dict(draws=400, tune=400, chains=2, random_seed=11, progressbar=False)


def _case(name):
    case = json.loads((EXTRA / "cases" / f"{name}.json").read_text())
    case["_root"] = str(EXTRA)
    df = load_data(case)
    kw = {k: v for k, v in case["interlace"].items() if k not in ("fn", "formula")}
    if "offset" in kw:
        kw["offset"] = df[kw["offset"]].to_numpy(float)
    return case["interlace"]["formula"], df, kw


def _poisson_data(seed=2, m=25, per=12):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(m), per)
    x = rng.normal(size=g.size)
    y = rng.poisson(np.exp(0.3 + 0.5 * x + 0.5 * rng.normal(size=m)[g]))
    return pd.DataFrame({"y": y, "x": x, "g": [f"g{i:02d}" for i in g]})


def _close_to_reml(reml, bayes, k=3.0):
    """Posterior means within k posterior SDs of the ML estimates."""
    z = np.abs(bayes.fe_params - reml.fe_params) / bayes.fe_bse
    assert np.all(z < k), z
    assert np.allclose(bayes.fe_bse, reml.fe_bse, rtol=0.35)


def test_poisson_posterior_agrees_with_laplace_and_has_loo():
    df = _poisson_data()
    reml = interlace.glmer("y ~ x", df, "poisson", groups="g")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        bayes = interlace.glmer("y ~ x", df, "poisson", groups="g", backend="pymc", **FAST)
    assert bayes.backend == "pymc" and "backend=pymc" in repr(bayes)
    _close_to_reml(reml, bayes)
    assert bayes.optimizer_info["max_rhat"] < 1.05
    assert abs(np.sqrt(bayes.theta[0]) - np.sqrt(reml.theta[0])) < 0.3
    loo = az.loo(bayes.idata)
    assert np.isfinite(loo.elpd_loo) and bayes.idata.log_likelihood["y"].shape == (2, 400, len(df))
    # the stored pointwise log-likelihood is the Poisson log pmf at each draw's mean
    assert float(bayes.idata.log_likelihood["y"].sum(("chain", "draw")).max()) < 0
    lo, hi = bayes.fe_conf_int().to_numpy().T
    assert np.all(lo < bayes.fe_params.to_numpy()) and np.all(bayes.fe_params.to_numpy() < hi)
    text = str(bayes.summary())
    assert "Generalized linear mixed model (poisson, log link) fit by MCMC" in text
    assert "sd_(Intercept)|g" in text and "R-hat" in text and "Pr(>|z|)" not in text
    assert bayes.fe_draws.shape == (800, 2)


def test_binomial_proportions_with_trials():
    df = datasets.load("cbpp")
    df["prop"] = df["incidence"] / df["size"]
    reml = interlace.glmer("prop ~ period", df, "binomial", groups="herd", weights="size")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        bayes = interlace.glmer("prop ~ period", df, "binomial", groups="herd", weights="size",
                                backend="pymc", **FAST)
    _close_to_reml(reml, bayes)
    assert np.all((bayes.fittedvalues > 0) & (bayes.fittedvalues < 1))
    assert bayes.plugin_llf < reml.llf + 1e-9  # the Laplace likelihood is maximal at the ML estimates


@pytest.mark.parametrize("name, param", [("negbin_offset", "nb_theta"), ("gamma_log", "sigma")])
def test_negative_binomial_and_gamma_sample_their_family_parameter(name, param):
    formula, df, kw = _case(name)
    reml = interlace.glmer(formula, df, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        bayes = interlace.glmer(formula, df, **kw, backend="pymc", **FAST)
    _close_to_reml(reml, bayes, k=4.0)
    draws = bayes.idata.posterior[param].to_numpy().ravel()
    if param == "nb_theta":
        assert bayes.family.nb_theta == pytest.approx(draws.mean())
        assert np.quantile(draws, 0.005) < reml.family.nb_theta < np.quantile(draws, 0.995)
    else:
        assert bayes.scale == pytest.approx(np.mean(draws**2))
        assert np.sqrt(reml.scale) == pytest.approx(draws.mean(), rel=0.1)


def test_pymc_glmm_bad_input():
    df = _poisson_data()
    with pytest.raises(ValueError, match="nAGQ applies to backend='reml'"):
        interlace.glmer("y ~ x", df, "poisson", groups="g", backend="pymc", nAGQ=5, **FAST)
    with pytest.raises(KeyError, match="unknown key 'sigma'"):
        interlace.glmer("y ~ x", df, "poisson", groups="g", backend="pymc",
                        priors={"sigma": interlace.Prior("HalfNormal", sigma=1)}, **FAST)


def test_posterior_predictive_simulate_for_glmms():
    formula, df, kw = _case("negbin_offset")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        bayes = interlace.glmer(formula, df, **kw, backend="pymc", **FAST)
    sims = bayes.simulate(300, seed=4, include_re=False)
    assert sims.shape == (len(df), 300) and np.all(sims >= 0) and np.all(sims == np.round(sims))
    np.testing.assert_array_equal(sims, bayes.simulate(300, seed=4, include_re=False))
    # the observed total is a plausible draw of the posterior predictive total
    totals = sims.sum(axis=0)
    assert np.quantile(totals, 0.01) < df["y"].sum() < np.quantile(totals, 0.99)


def test_compare_and_posterior_bootstrap_for_glmms():
    formula, df, kw = _case("negbin_offset")
    reml = interlace.glmer(formula, df, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        bayes = interlace.glmer(formula, df, **kw, backend="pymc", **FAST)
    table = interlace.compare(reml, bayes)
    assert "sigma" not in table.index  # no dispersion: Var(b) is not scaled
    assert table.loc["sd_(Intercept)|g", ("reml", "estimate")] == pytest.approx(reml.theta[0], rel=1e-12)
    assert table.loc["nb_theta", ("reml", "estimate")] == pytest.approx(reml.family.nb_theta)
    post = bayes.variance_draws
    assert list(post.columns) == ["sd_(Intercept)|g", "nb_theta"]
    row = table.loc["nb_theta", "pymc"]
    assert row["lower"] < row["estimate"] < row["upper"]
    assert row["estimate"] == pytest.approx(post["nb_theta"].mean())
    boot = interlace.bootstrap(bayes, nsim=100, seed=2)
    assert boot.method == "posterior" and "nb_theta" in boot.draws.columns


def test_gamma_with_its_default_inverse_link_samples_on_the_link_scale():
    """The inverse link's scale is sd(y)/ȳ² (η ≈ 0.004 for sleepstudy), not one unit: the default
    priors and starting SDs follow it, so the posterior agrees with the Laplace fit (a unit-scale
    prior gave hundreds of divergences and an intercept 200× off)."""
    from interlace.backends.pymc.priors import resolve_priors

    sleep = datasets.load("sleepstudy")
    reml = interlace.glmer("Reaction ~ Days + (1 | Subject)", sleep, "Gamma")
    ps = resolve_priors(reml.design, None, family=reml.family)
    ybar, sd = sleep["Reaction"].mean(), sleep["Reaction"].std(ddof=0)
    assert ps.fixed["(Intercept)"].params["sigma"] == pytest.approx(2.5 * sd / ybar**2, rel=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        bayes = interlace.glmer("Reaction ~ Days + (1 | Subject)", sleep, "Gamma", backend="pymc",
                                chains=2, draws=500, tune=500, random_seed=1, progressbar=False)
    assert bayes.optimizer_info["divergences"] < 10
    z = np.abs(bayes.fe_params - reml.fe_params) / bayes.fe_bse
    assert np.all(z < 1.5), z
