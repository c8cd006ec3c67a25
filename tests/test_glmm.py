"""glmer: lme4 parity on cbpp, and self-contained checks of the Laplace/AGQ machinery."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from conftest import FIXTURES, load_data
from scipy import special, stats

import interlace


@pytest.fixture(scope="module")
def cbpp():
    if FIXTURES is None:
        pytest.skip("reference fixtures not found")
    case = json.loads((FIXTURES / "cases" / "cbpp_binomial_laplace.json").read_text())
    df = load_data(case)
    return case, interlace.glmer(
        "prop ~ period", df, "binomial", groups="herd", weights=df["size"].to_numpy(float)
    )


def test_cbpp_matches_lme4_at_tight_tolerances(cbpp):
    """lme4 1.1-31 with glmerControl(optimizer="bobyqa", optCtrl=list(rhoend=1e-10), tolPwrss=1e-12)."""
    _, r = cbpp
    assert -2 * r.llf == pytest.approx(184.052563743, rel=1e-9)
    np.testing.assert_allclose(r.theta, [0.642261458], rtol=1e-6)
    np.testing.assert_allclose(
        r.fe_params, [-1.398532026, -0.992332827, -1.128672076, -1.580313808], rtol=1e-6
    )
    np.testing.assert_allclose(r.fe_bse, [0.23247184, 0.30664208, 0.32663753, 0.42743610], rtol=2e-5)


def test_cbpp_against_the_shared_fixture(cbpp):
    """The shared fixture used lme4's default PIRLS tolerance (1e-7), whose deviance is 5.7e-4 too
    high: estimates agree to its tolerances, logLik to 4e-6 relative."""
    case, r = cbpp
    np.testing.assert_allclose(r.fe_params, list(case["fixef"].values()), rtol=1e-3)
    np.testing.assert_allclose(r.theta, case["theta"], rtol=5e-3)
    assert r.llf == pytest.approx(case["loglik"], rel=5e-6)
    assert r.llf >= case["loglik"]  # never worse than lme4's optimum
    assert r.aic == pytest.approx(-2 * r.llf + 2 * 5)
    assert "Laplace" in str(r.summary()) and "binomial" in str(r.summary())


def _sim_poisson(seed=1, m=40, per=12):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(m), per)
    x = rng.normal(size=g.size)
    off = np.log(rng.uniform(1, 3, g.size))
    eta = 0.5 + 0.4 * x + 0.6 * rng.normal(size=m)[g] + off
    return pd.DataFrame({"y": rng.poisson(np.exp(eta)), "x": x, "g": [f"g{i}" for i in g], "off": off})


def test_poisson_with_offset_recovers_parameters():
    df = _sim_poisson()
    r = interlace.glmer("y ~ x", df, "poisson", groups="g", offset="off")
    assert r.fe_params["x"] == pytest.approx(0.4, abs=3 * r.fe_bse["x"])
    assert r.fe_params["(Intercept)"] == pytest.approx(0.5, abs=3 * r.fe_bse["(Intercept)"])
    assert r.theta[0] == pytest.approx(0.6, abs=0.2)
    # predictions on the response scale are exp of the link scale
    np.testing.assert_allclose(r.predict(type="response"), np.exp(r.predict(type="link")))
    np.testing.assert_allclose(r.fittedvalues, r.predict())


def test_bernoulli_crossed_recovers_parameters():
    rng = np.random.default_rng(4)
    s = np.repeat(np.arange(60), 20)
    i = np.tile(np.arange(20), 60)
    x = rng.normal(size=s.size)
    eta = -0.3 + 0.8 * x + 0.7 * rng.normal(size=60)[s] + 0.5 * rng.normal(size=20)[i]
    df = pd.DataFrame(
        {
            "y": (rng.random(s.size) < special.expit(eta)).astype(float),
            "x": x,
            "s": [f"s{k}" for k in s],
            "i": [f"i{k}" for k in i],
        }
    )
    r = interlace.glmer("y ~ x", df, "binomial", groups=["s", "i"])
    assert r.fe_params["x"] == pytest.approx(0.8, abs=3 * r.fe_bse["x"])
    assert set(r.variance_components) == {"s", "i"}


def _glm_deviance(df):
    """A plain Poisson GLM by IRLS, for the θ → 0 limit."""
    X = np.column_stack([np.ones(len(df)), df["x"]])
    y, off = df["y"].to_numpy(float), df["off"].to_numpy()
    beta = np.zeros(2)
    for _ in range(50):
        mu = np.exp(X @ beta + off)
        z = X @ beta + (y - mu) / mu
        beta = np.linalg.solve(X.T @ (X * mu[:, None]), X.T @ (mu * z))
    mu = np.exp(X @ beta + off)
    return -2 * np.sum(stats.poisson.logpmf(y, mu))


def test_no_group_variance_gives_the_glm():
    rng = np.random.default_rng(2)
    df = _sim_poisson(seed=3)
    df["g"] = [f"h{k}" for k in rng.integers(0, 10, len(df))]  # a grouping unrelated to y
    df["y"] = rng.poisson(np.exp(0.3 + 0.5 * df["x"] + df["off"]))
    r = interlace.glmer("y ~ x", df, "poisson", groups="g", offset="off")
    if r.theta[0] < 1e-4:
        assert -2 * r.llf == pytest.approx(_glm_deviance(df), rel=1e-8)
    else:
        assert -2 * r.llf <= _glm_deviance(df) + 1e-8


def test_laplace_close_to_adaptive_quadrature():
    df = _sim_poisson(seed=5, m=30, per=15)
    lap = interlace.glmer("y ~ x", df, "poisson", groups="g", offset="off", nAGQ=1)
    agq = interlace.glmer("y ~ x", df, "poisson", groups="g", offset="off", nAGQ=25)
    assert agq.llf == pytest.approx(lap.llf, rel=1e-3)
    np.testing.assert_allclose(agq.fe_params, lap.fe_params, rtol=2e-2)
    assert "Quadrature" in str(agq.summary())
    zero = interlace.glmer("y ~ x", df, "poisson", groups="g", offset="off", nAGQ=0)
    np.testing.assert_allclose(zero.fe_params, lap.fe_params, rtol=5e-2)


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(formula="y ~ x", family="binomial"), ValueError, "must lie in \\[0, 1\\]"),
        (dict(formula="neg ~ x", family="poisson"), ValueError, "non-negative counts"),
        (dict(formula="frac ~ x", family="poisson"), ValueError, "non-negative counts"),
        (dict(formula="y ~ x", family="tweedie"), ValueError, "unknown family"),
        (dict(formula="neg ~ x", family="Gamma"), ValueError, "must be positive"),
        (dict(formula="y ~ x", family=3), TypeError, "family"),
        (dict(formula="y ~ x", family="poisson", link="logit2"), ValueError, "unknown link"),
        (dict(formula="b ~ x", family="binomial", link="log"), ValueError, "does not keep"),
        (dict(formula="y ~ x", family="poisson", nAGQ=-1), ValueError, "nAGQ"),
        (
            dict(formula="y ~ x", family="poisson", random=["(x | g)"], groups=None, nAGQ=5),
            ValueError,
            "single scalar",
        ),
        (dict(formula="y ~ zz", family="poisson"), KeyError, "zz"),
    ],
)
def test_glmer_bad_input(kwargs, exc, match):
    df = _sim_poisson(m=10, per=6)
    df["neg"] = -df["y"]
    df["frac"] = df["y"] + 0.5
    df["b"] = (df["y"] > 1).astype(float)
    kw = {"groups": "g", **kwargs}
    formula, family = kw.pop("formula"), kw.pop("family")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(exc, match=match):
            interlace.glmer(formula, df, family, **kw)


# ---- every glmer reference case (shared fixtures and tests/r/make_glmm_cases.R) ---------------
from conftest import EXTRA, load_cases  # noqa: E402

GLMER_CASES = [c for c in load_cases() + load_cases(EXTRA) if c["interlace"]["fn"] == "glmer"]


def _fit_case(case):
    df = load_data(case)
    kw = {k: v for k, v in case["interlace"].items() if k not in ("fn", "formula")}
    for k in ("weights", "offset"):
        if k in kw:
            kw[k] = df[kw[k]].to_numpy(dtype=float)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a converged fit: no convergence or Hessian warnings
        return interlace.glmer(case["interlace"]["formula"], df, **kw)


def _rel(got, want):
    want = list(want.values()) if isinstance(want, dict) else want
    got, want = np.atleast_1d(np.asarray(got, float)), np.atleast_1d(np.asarray(want, float))
    return float(np.max(np.abs(got - want) / np.abs(want)))


@pytest.mark.parametrize("case", [c for c in GLMER_CASES if "tight" in c], ids=lambda c: c["name"])
def test_gamma_and_negative_binomial_match_lme4(case):
    """Against glmer / glmer.nb with lme4's defaults at the issue's tolerances, and against the same
    fits with tight PIRLS and optimizer tolerances ("tight") much more closely."""
    r = _fit_case(case)
    assert _rel(r.fe_params, case["fixef"]) < 1e-3
    assert _rel(r.fe_bse, case["se"]) < 5e-3
    assert _rel(r.theta, case["theta"]) < 5e-3
    assert _rel([r.llf], [case["loglik"]]) < 1e-6
    t = case["tight"]
    assert _rel(r.fe_params, t["fixef"]) < 2e-5
    assert _rel(r.fe_bse, t["se"]) < 1e-4
    assert _rel(r.theta, t["theta"]) < 1e-4
    assert _rel([r.llf], [t["loglik"]]) < 1e-8
    assert r.llf >= t["loglik"] - 1e-6  # never a worse optimum than lme4's
    assert r.n_params == case["df"]
    assert r.aic == pytest.approx(-2 * r.llf + 2 * case["df"])
    assert r.bic == pytest.approx(-2 * r.llf + np.log(r.nobs) * case["df"])
    assert np.sqrt(r.scale) == pytest.approx(t["sigma"], rel=1e-5)
    if "nb_theta" in t:
        assert r.family.nb_theta == pytest.approx(t["nb_theta"], rel=1e-4)
        assert "Negative Binomial(1.898)" in str(r.summary())
    # variance components are Var(b) = θ² on the link scale, not scaled by the Gamma σ
    vc = list(r.variance_components.values())
    np.testing.assert_allclose(vc, np.asarray(r.theta) ** 2, rtol=1e-12)


def test_crossed_slopes_bernoulli_matches_tight_lme4():
    """acc ~ cond + (1 + cond | subj) + (1 | item), 50 × 40 crossed (tests/r/make_glmm_cases.R):
    against glmer with tight tolerances, whose optimum lme4's defaults do not reach (SEs 2 % low);
    nAGQ=0 and fast=True against glmer(nAGQ = 0) with tight tolerances."""
    case = next(c for c in GLMER_CASES if c["name"] == "crossed_slopes_bernoulli")
    r = _fit_case(case)
    assert _rel(r.fe_params, case["fixef"]) < 1e-6
    assert _rel(r.fe_bse, case["se"]) < 1e-4
    assert _rel(r.theta, case["theta"]) < 1e-5
    assert _rel([r.llf], [case["loglik"]]) < 1e-10
    assert r.llf >= case["loglik"] - 1e-8
    assert r.llf > case["lme4_default"]["loglik"] + 5e-4
    assert r.n_params == case["df"] and r.aic == pytest.approx(case["aic"], rel=1e-10)
    sd_int, sd_cond, corr, sd_item = case["varcorr"]
    vc = r.variance_components
    np.testing.assert_allclose(np.sqrt(np.diag(vc["subj"])), [sd_int, sd_cond], rtol=1e-5)
    assert vc["subj"].iloc[0, 1] / (sd_int * sd_cond) == pytest.approx(corr, rel=1e-5)
    assert np.sqrt(vc["item"]) == pytest.approx(sd_item, rel=1e-5)
    df = load_data(case)
    ref = case["nagq0"]
    for kw in ({"nAGQ": 0}, {"fast": True}):
        z = interlace.glmer("acc ~ cond", df, "binomial", random=case["interlace"]["random"], **kw)
        assert _rel(z.fe_params, ref["fixef"]) < 1e-6, kw
        assert _rel(z.fe_bse, ref["se"]) < 1e-5, kw
        assert _rel(z.theta, ref["theta"]) < 1e-5, kw
        assert _rel([z.llf], [ref["loglik"]]) < 1e-9, kw
    assert z.optimizer_info["fast"] is True
    with pytest.raises(TypeError, match="fast must be True or False"):
        interlace.glmer("acc ~ cond", df, "binomial", random=case["interlace"]["random"], fast="yes")


def test_gamma_and_negative_binomial_bad_input():
    df = pd.DataFrame({"y": [1.0, 2.0, 0.0, 3.0] * 5, "x": np.arange(20.0), "g": list("ab") * 10})
    with pytest.raises(ValueError, match="Gamma response 'y' must be positive"):
        interlace.glmer("y ~ x", df, "Gamma", groups="g")
    neg = df.assign(y=[1.0, -2.0, 0.0, 3.0] * 5)
    with pytest.raises(ValueError, match="negative_binomial response 'y' must be non-negative counts"):
        interlace.glmer("y ~ x", neg, "negative_binomial", groups="g")
    with pytest.raises(ValueError, match="nAGQ > 1 is not available for the Gamma"):
        interlace.glmer("y ~ x", df.assign(y=df.y + 1), "Gamma", groups="g", nAGQ=5)
    with pytest.raises(ValueError, match="unknown family 'tweedie'.*Gamma, negative_binomial"):
        interlace.glmer("y ~ x", df, "tweedie", groups="g")


def test_negative_binomial_theta_ml_recovers_the_dispersion():
    from interlace.backends.reml.negbin import theta_ml

    rng = np.random.default_rng(3)
    mu = np.exp(rng.normal(1.0, 0.5, 20000))
    y = rng.negative_binomial(2.5, 2.5 / (2.5 + mu))
    assert theta_ml(y.astype(float), mu, np.ones(y.size)) == pytest.approx(2.5, rel=0.05)


@pytest.mark.parametrize("name", ["gamma_log", "negbin_offset"])
def test_simulate_draws_from_the_fitted_family(name):
    case = next(c for c in GLMER_CASES if c["name"] == name)
    r = _fit_case(case)
    sims = r.simulate(400, seed=1, include_re=False)
    assert sims.shape == (r.nobs, 400)
    np.testing.assert_array_equal(sims, r.simulate(400, seed=1, include_re=False))
    mu = r.fittedvalues.to_numpy() if hasattr(r.fittedvalues, "to_numpy") else r.fittedvalues
    # conditional on the modes: E[y] = μ̂, and Var[y] = σ²μ̂² (Gamma) or μ̂ + μ̂²/θ (NB)
    z = (sims.mean(axis=1) - mu) / np.sqrt(r.family.variance(mu) * r.scale / 400)
    assert abs(z.mean()) < 0.2 and 0.8 < z.std() < 1.2
    ratio = sims.var(axis=1).mean() / (r.family.variance(mu) * r.scale).mean()
    assert ratio == pytest.approx(1.0, abs=0.1)
    fresh = r.simulate(200, seed=2)  # new b each time: more spread between simulations
    assert fresh.var(axis=1).mean() > sims.var(axis=1).mean()


def test_simulate_binomial_proportions(cbpp):
    _, r = cbpp
    sims = r.simulate(50, seed=3)
    trials = r.design.weights
    np.testing.assert_allclose(sims * trials[:, None], np.round(sims * trials[:, None]), atol=1e-9)
    assert sims.min() >= 0 and sims.max() <= 1


def test_separation_warns():
    rng = np.random.default_rng(1)
    g = np.repeat(np.arange(20), 10)
    x = rng.normal(size=200)
    df = pd.DataFrame({"y": (x > 0).astype(float), "x": x, "g": g.astype(str)})
    with pytest.warns(UserWarning, match=r"probabilities numerically 0 or 1 for \d+ observation.*separated"):
        interlace.glmer("y ~ x", df, "binomial", groups="g")


def test_r2_and_icc_of_binomial_glmms_match_performance(cbpp):
    """R's performance::r2_nakagawa / icc (tests/r/make_glmm_r2.R): the latent variance of the
    link (π²/3 logit, 1 probit) as σ²_ε; lme4 fits at its default tolerances, hence 2e-3."""
    want = json.loads((EXTRA / "glmm_r2.json").read_text())
    bern = pd.read_csv(EXTRA / "data" / "bern_r2.csv", dtype={"g": str})
    fits = {
        "cbpp_logit": cbpp[1],
        "bern_logit": interlace.glmer("y ~ x", bern, "binomial", groups="g"),
        "bern_probit": interlace.glmer("y ~ x", bern, "binomial", groups="g", link="probit"),
    }
    for name, r in fits.items():
        got = {**r.r2(), **r.icc()}
        for key, value in want[name].items():
            assert got[key] == pytest.approx(value, rel=2e-3), (name, key)
    counts = interlace.glmer("y ~ x", _sim_poisson(), "poisson", groups="g")
    with pytest.raises(ValueError, match="r2\\(\\)/icc\\(\\) for a poisson GLMM"):
        counts.r2()
    with pytest.raises(ValueError, match="not for GLMMs"):
        counts.influence()


def test_gradient_optimizer_on_an_inverse_link_reaches_lme4(monkeypatch):
    """Gamma(inverse) steps to negative means where the deviance is undefined: stage 2's Newton
    steps back from there; a fit that still ends there is refitted with BOBYQA, with a warning."""
    import dataclasses

    import interlace.backends.reml.glmer as glmm  # glmer's entry, which calls fit_given_family

    case = next(c for c in GLMER_CASES if c["name"] == "gamma_inverse_crossed")
    df = load_data(case)
    kw = {k: v for k, v in case["interlace"].items() if k not in ("fn", "formula")}
    r = interlace.glmer(case["interlace"]["formula"], df, **kw, optimizer="lbfgsb")
    assert r.llf == pytest.approx(case["tight"]["loglik"], rel=1e-8)
    real = glmm.fit_given_family
    calls = []

    def undefined_with_lbfgsb(design, family, nagq, optimizer, **k):
        calls.append(optimizer)
        fit = real(design, family, nagq, optimizer, **k)
        return dataclasses.replace(fit, deviance=np.inf) if optimizer == "lbfgsb" else fit

    monkeypatch.setattr(glmm, "fit_given_family", undefined_with_lbfgsb)
    with pytest.warns(UserWarning, match="optimizer='lbfgsb' ended where the Gamma\\(inverse\\) deviance"):
        r = interlace.glmer(case["interlace"]["formula"], df, **kw, optimizer="lbfgsb")
    assert calls == ["lbfgsb", "bobyqa"]
    assert r.llf == pytest.approx(case["tight"]["loglik"], rel=1e-8)


def test_negative_binomial_on_poisson_like_counts():
    """Little overdispersion: θ is large, the NB likelihood is at least the Poisson one, and only
    the final fit's convergence is reported (no warnings from the profile search)."""
    df = _sim_poisson(seed=8, m=20, per=10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nb = interlace.glmer("y ~ x", df, "negative_binomial", groups="g", offset="off")
    pois = interlace.glmer("y ~ x", df, "poisson", groups="g", offset="off")
    assert nb.family.nb_theta > 10
    assert nb.llf >= pois.llf - 1e-6
    np.testing.assert_allclose(nb.fe_params, pois.fe_params, atol=0.05)


def test_negative_binomial_on_underdispersed_counts_warns():
    rng = np.random.default_rng(5)
    g = np.repeat(np.arange(20), 10)
    df = pd.DataFrame({"y": rng.binomial(12, 0.3, g.size), "x": rng.normal(size=g.size), "g": g.astype(str)})
    with pytest.warns(UserWarning, match="no overdispersion beyond the random effects"):
        nb = interlace.glmer("y ~ x", df, "negative_binomial", groups="g")
    assert nb.family.nb_theta > 1e6
    pois = interlace.glmer("y ~ x", df, "poisson", groups="g")
    assert nb.llf == pytest.approx(pois.llf, abs=1e-3)
