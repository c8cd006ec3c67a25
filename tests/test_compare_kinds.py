"""compare() and the forest plot for every model kind (issue 20, item 4): LMM, GLMM, clmm, coxme
(posteriors in tests/test_pymc_postfit.py), with each interval's kind named."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest

import interlace
from interlace import datasets
from interlace.inference.derivatives import hessian
from interlace.inference.satterthwaite import varpar_covariance

REF = json.loads((pathlib.Path(__file__).parent / "data" / "extra" / "glmm_after_fit.json").read_text())


@pytest.fixture(scope="module")
def fits():
    sleep = datasets.load("sleepstudy")
    return {
        "lmm": interlace.fit("Reaction ~ Days", sleep, random=["(Days | Subject)"]),
        "glmm": interlace.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)",
                                datasets.load("cbpp"), "binomial"),
        "clmm": interlace.clmm("rating ~ temp + contact", datasets.load("wine"), groups="judge"),
        "coxme": interlace.coxme("Surv(time, status) ~ rx + (1 | litter)", datasets.load("rats")),
    }


def test_lmm_variance_wald_is_the_delta_method_of_the_reml_hessian(fits):
    """Default Wald intervals for SDs/correlations/σ: SEs equal those from the Hessian of the REML
    criterion taken directly on the SD/correlation/σ scale (invariance of 2H⁻¹ at the optimum)."""
    r = fits["lmm"]
    table = interlace.compare(r)["reml"]
    e = r.engine
    names = e.psi_names()
    A = varpar_covariance(hessian(e.psi_deviance, e.psi_hat()))
    np.testing.assert_allclose(table.loc[names, "se"], np.sqrt(np.diag(A)), rtol=2e-3)
    np.testing.assert_allclose(table.loc[names, "estimate"], e.psi_hat(), rtol=1e-10)
    assert set(table.loc[names, "interval"]) == {"Wald"}
    assert set(table.loc[["(Intercept)", "Days"], "interval"]) == {"Wald t"}
    ci = r.fe_conf_int()
    np.testing.assert_allclose(table.loc[["(Intercept)", "Days"], "lower"], ci["lower"], rtol=1e-12)
    z = 1.959963984540054
    row = table.loc["sigma"]
    assert row["lower"] == pytest.approx(row["estimate"] - z * row["se"], rel=1e-10)


def test_glmm_rows_wald_and_profile(fits):
    g = fits["glmm"]
    wald = interlace.compare(g)["reml"]
    sd = "sd_(Intercept)|herd"
    assert wald.loc[sd, "interval"] == "Wald" and wald.loc["period[T.2]", "interval"] == "Wald z"
    # scalar term: ψ = θ, SE from 2H⁻¹ of the Laplace deviance in (θ, β)
    obj = g.engine._objective()
    x = np.r_[g.theta, g.fe_params.to_numpy()]
    A = varpar_covariance(hessian(lambda v: obj.laplace(v[:1], v[1:]), x))
    assert wald.loc[sd, "se"] == pytest.approx(np.sqrt(A[0, 0]), rel=1e-6)
    np.testing.assert_allclose(np.sqrt(np.diag(A))[1:], g.fe_bse, rtol=2e-3)  # lme4's Var(β̂) too
    prof = interlace.compare(g, intervals="profile")["reml"]
    assert prof.loc[sd, "interval"] == "profile"
    want = REF["cbpp"]["profile"]
    assert prof.loc[sd, "lower"] == pytest.approx(want["lower"][0], rel=2e-4)  # lme4's profile
    assert prof.loc[sd, "upper"] == pytest.approx(want["upper"][0], rel=2e-4)
    none = interlace.compare(g, intervals="none")["reml"]
    assert none.loc[sd, "interval"] == "none" and np.isnan(none.loc[sd, "lower"])


def test_clmm_and_coxme_compare(fits):
    c, x = fits["clmm"], fits["coxme"]
    table = interlace.compare(c, x, names=["clmm", "coxme"])
    assert table.loc["temp[T.warm]", ("clmm", "estimate")] == c.fe_params["temp[T.warm]"]
    assert table.loc["rx", ("coxme", "se")] == x.fe_bse["rx"]
    assert table.loc["1|2", ("clmm", "estimate")] == c.thresholds["1|2"]
    assert table.loc["1|2", ("clmm", "interval")] == "Wald z"
    sd = np.sqrt(c.variance_components["judge"])
    assert table.loc["sd_(Intercept)|judge", ("clmm", "estimate")] == pytest.approx(sd)
    assert table.loc["sd_(Intercept)|judge", ("clmm", "interval")] == "none"
    assert table.loc["sd_(Intercept)|litter", ("coxme", "estimate")] == pytest.approx(
        np.sqrt(x.variance_components["litter"]))
    assert np.isnan(table.loc["rx", ("clmm", "estimate")])  # not a parameter of that fit
    lo = x.fe_params["rx"] - 1.959963984540054 * x.fe_bse["rx"]
    assert table.loc["rx", ("coxme", "lower")] == pytest.approx(lo, rel=1e-10)


def test_forest_plot_legend_names_every_interval(fits):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    fig = interlace.plot_compare(fits["lmm"], fits["coxme"], fits["clmm"], level=0.9)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["Wald (90 %)", "Wald t (90 %)", "Wald z (90 %)", "estimate"]


def test_compare_bad_input(fits):
    with pytest.raises(ValueError, match="intervals must be one of"):
        interlace.compare(fits["lmm"], intervals="exact")
    with pytest.raises(TypeError, match="argument 2 is not a fitted model"):
        interlace.compare(fits["lmm"], {"a": 1})


def test_laplace_clmm_fits_are_labelled_by_their_backend():
    from interlace import datasets

    wine = datasets.load("wine")
    a = interlace.clmm("rating ~ temp", wine, groups="judge")
    b = interlace.clmm("rating ~ temp + contact", wine, groups="judge")
    assert a.backend == "reml"
    assert interlace.compare(a, b).columns.get_level_values(0).unique().tolist() == ["reml", "reml.1"]
