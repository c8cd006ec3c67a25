"""After-fit tools on Laplace glmer fits against R (emmeans, lme4's confint and anova):
tests/r/make_glmm_after_fit.R wrote tests/data/extra/glmm_after_fit.json and data/pois_emm.csv."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pandas as pd
import pytest

import interlace
from interlace import datasets

EXTRA = pathlib.Path(__file__).parent / "data" / "extra"
REF = json.loads((EXTRA / "glmm_after_fit.json").read_text())
RTOL = 1e-4


@pytest.fixture(scope="module")
def fits():
    cb = datasets.load("cbpp")
    pois = pd.read_csv(EXTRA / "data" / "pois_emm.csv")
    pois["trt"] = pd.Categorical(pois["trt"])
    resp = "cbind(incidence, size - incidence)"
    return {
        "cbpp": (interlace.glmer(f"{resp} ~ period + (1 | herd)", cb, "binomial"),
                 interlace.glmer(f"{resp} ~ 1 + (1 | herd)", cb, "binomial"), "period"),
        "poisson": (interlace.glmer("y ~ trt + x + (1 | g)", pois, "poisson"),
                    interlace.glmer("y ~ x + (1 | g)", pois, "poisson"), "trt"),
    }


def _ref(name, key):
    return pd.DataFrame(REF[name]["emmeans"][key])


@pytest.mark.parametrize("name", ["cbpp", "poisson"])
def test_fits_are_lme4s(fits, name):
    m1 = fits[name][0]
    np.testing.assert_allclose(m1.fe_params, REF[name]["fixef"], rtol=1e-5)
    assert m1.llf == pytest.approx(REF[name]["loglik"], rel=1e-8)


@pytest.mark.parametrize("name", ["cbpp", "poisson"])
def test_emmeans_link_and_response_scale_match_emmeans(fits, name):
    m1, _, spec = fits[name]
    link = interlace.emmeans(m1, spec).table
    want = _ref(name, "link")
    assert list(link[spec].astype(str)) == list(want[spec])
    np.testing.assert_allclose(link["emmean"], want["emmean"], rtol=RTOL)
    np.testing.assert_allclose(link["SE"], want["SE"], rtol=RTOL)
    assert np.all(np.isinf(link["df"]))  # emmeans' asymptotic df for glmer
    np.testing.assert_allclose(link["lower"], want["asymp.LCL"], rtol=RTOL)
    resp = interlace.emmeans(m1, spec, type="response").table
    want = _ref(name, "response")
    col = "prob" if name == "cbpp" else "rate"
    np.testing.assert_allclose(resp[col], want[col], rtol=RTOL)
    np.testing.assert_allclose(resp["SE"], want["SE"], rtol=RTOL)  # delta method
    np.testing.assert_allclose(resp["lower"], want["asymp.LCL"], rtol=RTOL)
    np.testing.assert_allclose(resp["upper"], want["asymp.UCL"], rtol=RTOL)


@pytest.mark.parametrize("name", ["cbpp", "poisson"])
def test_contrasts_on_both_scales_match_emmeans(fits, name):
    m1, _, spec = fits[name]
    emm = interlace.emmeans(m1, spec)
    for got, key in ((interlace.contrast(emm), "pairs_link"),
                     (interlace.contrast(emm, adjust="none"), "pairs_link_none"),
                     (interlace.contrast(emm.regrid()), "pairs_regrid")):
        want = _ref(name, key)
        assert list(got["contrast"]) == list(want["contrast"])
        np.testing.assert_allclose(got["estimate"], want["estimate"], rtol=RTOL)
        np.testing.assert_allclose(got["SE"], want["SE"], rtol=RTOL)
        np.testing.assert_allclose(got["z_ratio"], want["z.ratio"], rtol=RTOL)
        np.testing.assert_allclose(got["p_value"], want["p.value"], rtol=1e-3, atol=1e-10)
    reg = emm.regrid().table  # emmeans' regrid: μ with a symmetric interval
    col = "prob" if name == "cbpp" else "rate"
    np.testing.assert_allclose(reg[col], _ref(name, "response")[col], rtol=RTOL)
    np.testing.assert_allclose(reg["lower"], reg[col] - 1.959963984540054 * reg["SE"], rtol=1e-12)
    got = interlace.contrast(interlace.emmeans(m1, spec, type="response"))
    want = _ref(name, "pairs_response")
    col = "odds_ratio" if name == "cbpp" else "ratio"
    assert list(got["contrast"]) == list(want["contrast"])  # "a / b"
    np.testing.assert_allclose(got[col], want[col.replace("_", ".")], rtol=RTOL)
    np.testing.assert_allclose(got["SE"], want["SE"], rtol=RTOL)
    np.testing.assert_allclose(got["p_value"], want["p.value"], rtol=1e-3, atol=1e-10)


@pytest.mark.parametrize("name", ["cbpp", "poisson"])
def test_anova_between_two_glmer_fits_is_lme4s(fits, name):
    m1, m0, _ = fits[name]
    got = interlace.anova(m0, m1)
    want = REF[name]["anova"]
    assert list(got["npar"]) == want["npar"]
    np.testing.assert_allclose(got["logLik"], want["logLik"], rtol=1e-8)
    np.testing.assert_allclose(got["AIC"], want["AIC"], rtol=1e-8)
    np.testing.assert_allclose(got["BIC"], want["BIC"], rtol=1e-8)
    assert got["Chisq"].iloc[1] == pytest.approx(want["Chisq"][1], rel=RTOL)
    assert got["Df"].iloc[1] == want["Df"][1]
    assert got["Pr(>Chisq)"].iloc[1] == pytest.approx(want["p"][1], rel=1e-3)


@pytest.mark.parametrize("name", ["cbpp", "poisson"])
def test_wald_confint_is_lme4s(fits, name):
    got = fits[name][0].confint(method="wald")
    want = REF[name]["wald"]
    assert np.isnan(got.iloc[0]).all()  # no Wald interval for the SD, as lme4
    np.testing.assert_allclose(got.iloc[1:, 0], want["lower"][1:], rtol=RTOL)
    np.testing.assert_allclose(got.iloc[1:, 1], want["upper"][1:], rtol=RTOL)


@pytest.mark.parametrize("name", ["cbpp", pytest.param("poisson", marks=pytest.mark.slow)])
def test_profile_confint_is_lme4s(fits, name):
    """lme4 interpolates its profile with splines: agreement to ~1e-4 (2e-4 allowed)."""
    got = fits[name][0].confint(method="profile")
    want = REF[name]["profile"]
    assert list(got.index)[0] == want["names"][0]
    np.testing.assert_allclose(got.iloc[:, 0], want["lower"], rtol=2e-4)
    np.testing.assert_allclose(got.iloc[:, 1], want["upper"], rtol=2e-4)


def test_parametric_bootstrap_of_a_glmm(fits):
    m1 = fits["cbpp"][0]
    b1 = interlace.bootstrap(m1, nsim=12, seed=3, progressbar=False)
    b2 = interlace.bootstrap(m1, nsim=12, seed=3, progressbar=False)
    pd.testing.assert_frame_equal(b1.draws, b2.draws)
    assert list(b1.draws.columns) == [*m1.fe_params.index, "sd_(Intercept)|herd"]
    assert b1.method == "parametric bootstrap" and len(b1.draws) + b1.n_failed == 12
    # refits scatter around the estimates: the period effects' means within 4 bootstrap SEs
    z = (b1.draws.mean() - b1.observed) / (b1.draws.std() / np.sqrt(len(b1.draws)))
    assert np.all(np.abs(z.iloc[:4]) < 4)
    ci = m1.confint(method="boot", nsim=10, seed=3)
    assert np.all(ci.iloc[:, 0] < ci.iloc[:, 1])


def test_glmm_regrid_and_response_refusals(fits):
    lmm = interlace.fit("Reaction ~ Days", datasets.load("sleepstudy"), groups="Subject")
    with pytest.raises(ValueError, match="no link"):
        interlace.emmeans(lmm, "Days", type="response")
    with pytest.raises(ValueError, match="type must be"):
        interlace.emmeans(fits["cbpp"][0], "period", type="prob")


def test_glmm_condvar_and_caterpillar_match_lme4(fits):
    m1 = fits["cbpp"][0]
    re_ = m1.ranef(condVar=True)["herd"]
    np.testing.assert_allclose(re_.iloc[:, 0], REF["cbpp"]["ranef"], rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(re_.attrs["condVar"][:, 0, 0], REF["cbpp"]["condvar"], rtol=1e-3)
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    from interlace import plots

    fig = plots.caterpillar(m1, "herd")
    assert "condVar" in fig.axes[0].get_xlabel()


@pytest.mark.slow
def test_profile_of_a_correlated_term_is_lme4s():
    """(1 + x | g) with the slope SD near 0: SDs, correlation and β profiled together. lme4's
    spline on that near-boundary profile puts the slope SD's upper end 8e-4 (relative) lower."""
    pois = pd.read_csv(EXTRA / "data" / "pois_emm.csv")
    pois["trt"] = pd.Categorical(pois["trt"])
    m = interlace.glmer("y ~ trt + x + (1 + x | g)", pois, "poisson")
    want = REF["poisson_slopes"]
    assert m.llf == pytest.approx(want["loglik"], rel=1e-8)
    got = m.confint(method="profile")
    assert list(got.index[:3]) == ["sd_(Intercept)|g", "cor_(Intercept).x|g", "sd_x|g"]
    np.testing.assert_allclose(got.iloc[:, 0], want["profile"]["lower"], rtol=2e-4, atol=1e-6)
    np.testing.assert_allclose(got.iloc[:, 1], want["profile"]["upper"], rtol=2e-3)


def test_gamma_condvar_is_scaled_by_the_dispersion_as_lme4():
    d = pd.read_csv(EXTRA / "data" / "gamma_log.csv")
    m = interlace.glmer("y ~ x + (1 | g)", d, family="Gamma", link="log")
    want = REF["gamma_condvar"]
    assert np.sqrt(m.scale) == pytest.approx(want["sigma"], rel=1e-5)
    got = m.ranef(condVar=True)["g"].attrs["condVar"][:, 0, 0]
    np.testing.assert_allclose(got, want["condvar"], rtol=1e-4)
