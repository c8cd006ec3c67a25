"""Likelihood-ratio tests (anova) and confidence intervals."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import FIXTURES
from scipy import stats

import interlace


def _case(name):
    if FIXTURES is None:
        pytest.skip("reference fixtures not found")
    return json.loads((FIXTURES / "cases" / f"{name}.json").read_text())


@pytest.fixture(scope="module")
def fits(sleepstudy):
    m0 = interlace.fit("Reaction ~ Days", sleepstudy, groups="Subject", method="ML")
    m1 = interlace.fit("Reaction ~ Days", sleepstudy, random=["(Days | Subject)"], method="ML")
    return m0, m1


def test_anova_matches_lme4_likelihoods(fits):
    m0, m1 = fits
    ll0, ll1 = _case("sleepstudy_intercept_ml")["loglik"], _case("sleepstudy_slopes_ml")["loglik"]
    tab = interlace.anova(m1, m0, names=["slopes", "intercept"])
    assert list(tab.index) == ["intercept", "slopes"]  # ordered by npar
    assert list(tab["npar"]) == [4, 6]
    chisq = 2 * (ll1 - ll0)
    assert tab.loc["slopes", "Chisq"] == pytest.approx(chisq, rel=1e-6)
    assert tab.loc["slopes", "Df"] == 2
    assert tab.loc["slopes", "Pr(>Chisq)"] == pytest.approx(stats.chi2.sf(chisq, 2), rel=1e-5)
    assert np.isnan(tab.loc["intercept", "Chisq"])
    assert tab.loc["slopes", "AIC"] == pytest.approx(_case("sleepstudy_slopes_ml")["aic"], rel=1e-6)


def test_anova_refits_reml_with_ml(sleepstudy, fits):
    m0, m1 = fits
    r1 = interlace.fit("Reaction ~ Days", sleepstudy, random=["(Days | Subject)"])
    with pytest.warns(UserWarning, match="refitting model"):
        tab = interlace.anova(m0=m0, r1=r1)  # rows named as the models were passed
    assert tab.loc["r1", "logLik"] == pytest.approx(m1.llf, rel=1e-9)
    with pytest.warns(UserWarning, match="refitting model"):
        by_formula = interlace.anova(m0, r1)
    assert "Reaction ~ Days + (Days | Subject)" in by_formula.index


def test_anova_refuses_different_data(sleepstudy, fits):
    m0, _ = fits
    other = interlace.fit("Reaction ~ Days", sleepstudy.iloc[:170], groups="Subject", method="ML")
    with pytest.raises(ValueError, match="same data"):
        interlace.anova(m0, other)
    with pytest.raises(ValueError, match="at least two"):
        interlace.anova(m0, names=["m0"])
    assert "Analysis of Variance Table" in interlace.anova(m0).heading  # one model: its F table


@pytest.fixture(scope="module")
def reml(sleepstudy):
    return interlace.fit("Reaction ~ Days", sleepstudy, random=["(Days | Subject)"])


def test_wald_intervals(reml):
    ci = reml.confint("wald")
    z = stats.norm.ppf(0.975)
    np.testing.assert_allclose(
        ci.loc["Days"].to_numpy(), reml.fe_params["Days"] + np.array([-z, z]) * reml.fe_bse["Days"]
    )
    assert ci.loc["sigma"].isna().all()


def test_profile_intervals_match_lme4(reml):
    """lme4's documented ``confint(fm1)`` for this model (profile, ML deviance)."""
    want = np.array(
        [
            [14.3815048, 37.7159946],
            [-0.4815007, 0.6849863],
            [3.8011641, 8.7533757],
            [22.8982669, 28.8579994],
            [237.6806955, 265.1295147],
            [7.3586533, 13.5759188],
        ]
    )
    np.testing.assert_allclose(reml.confint("profile").to_numpy(), want, rtol=2e-4)


def test_profile_intervals_sit_where_the_deviance_rises_by_the_chi2_cutoff(sleepstudy):
    ml = interlace.fit("Reaction ~ Days", sleepstudy, random=["(Days | Subject)"], method="ML")
    ci = ml.confint("profile")
    reml = ml
    e = ml.engine
    cutoff = stats.chi2.ppf(0.95, 1)
    psi = e.psi_hat()
    d0 = e.psi_deviance(psi)
    for j, name in enumerate(e.psi_names()):
        lo, hi = ci.loc[name]
        assert lo < psi[j] < hi
        for v in (lo, hi):
            assert e.profile_psi(j, v, psi)[0] - d0 == pytest.approx(cutoff, abs=2e-3)
    for j, name in enumerate(reml.fe_params.index):
        lo, hi = ci.loc[name]
        base = e.profile_beta(j, reml.fe_params.iloc[j])
        for v in (lo, hi):
            assert e.profile_beta(j, v) - base == pytest.approx(cutoff, abs=2e-3)
        # profile and Wald intervals agree roughly for a fixed effect of a balanced design
        wald = reml.confint("wald").loc[name]
        assert abs(hi - lo) == pytest.approx(abs(wald.iloc[1] - wald.iloc[0]), rel=0.1)


def test_profile_interval_reaches_zero_for_a_singular_fit():
    case = _case("dyestuff2_singular_reml")
    from conftest import load_data

    r = interlace.fit("Yield ~ 1", load_data(case), groups="Batch")
    ci = r.confint("profile")
    assert ci.loc["sd_(Intercept)|Batch"].iloc[0] == 0.0
    assert ci.loc["sd_(Intercept)|Batch"].iloc[1] > 0.5


def test_bootstrap_is_reproducible_and_covers_the_estimates(reml):
    a = reml.confint("boot", nsim=40, seed=7)
    b = reml.confint("boot", nsim=40, seed=7)
    np.testing.assert_array_equal(a.to_numpy(), b.to_numpy())
    est = np.r_[reml.engine.psi_hat(), reml.fe_params.to_numpy()]
    assert np.all(a.iloc[:, 0].to_numpy() < est) and np.all(est < a.iloc[:, 1].to_numpy())


def test_simulate_matches_the_fitted_moments(reml):
    ys = reml.engine.simulate(400, seed=1)
    assert ys.shape == (reml.nobs, 400)
    # the mean response at each Days value is Xβ on average over simulations
    X = reml.design.X
    np.testing.assert_allclose(ys.mean(axis=1)[:10], (X @ reml.fe_params.to_numpy())[:10], atol=6.0)
    assert np.var(ys - ys.mean(axis=1, keepdims=True)) == pytest.approx(
        reml.scale + np.mean(np.diag(X @ reml.variance_components["Subject"].to_numpy() @ X.T)), rel=0.1
    )


def test_confint_rejects_bad_arguments(reml):
    with pytest.raises(ValueError, match="method"):
        reml.confint("bayes")
    with pytest.raises(ValueError, match="level"):
        reml.confint("wald", level=1.5)
