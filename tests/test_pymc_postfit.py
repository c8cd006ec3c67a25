"""Post-fit parity on PyMC results (issue 20, item 4): credible confint, caterpillar, r2 that
agrees with diagnostics.r2, and posterior prediction for new data with new groups both ways."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import interlace
from interlace import datasets, diagnostics

pytest.importorskip("pymc")
pytestmark = pytest.mark.slow  # PyMC sampling: outside the fast lane

FAST = dict(draws=100, tune=100, chains=2, cores=1, random_seed=7, progressbar=False)


@pytest.fixture(scope="module")
def lmm():
    df = datasets.load("sleepstudy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return interlace.fit("Reaction ~ Days", df, random=["(Days | Subject)"], backend="pymc", **FAST), df


@pytest.fixture(scope="module")
def glmm():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return interlace.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)",
                               datasets.load("cbpp"), "binomial", backend="pymc", **FAST)


@pytest.mark.parametrize("which", ["lmm", "glmm"])
def test_confint_is_the_credible_interval(which, request):
    r = request.getfixturevalue(which)
    r = r[0] if which == "lmm" else r
    ci = r.confint(level=0.9)
    draws = pd.concat([r.variance_draws, r.fe_draws], axis=1)
    np.testing.assert_allclose(ci.iloc[:, 0], np.quantile(draws, 0.05, axis=0))
    np.testing.assert_allclose(ci.iloc[:, 1], np.quantile(draws, 0.95, axis=0))
    assert list(ci.index) == list(draws.columns)
    from interlace.inference.confint import confint

    pd.testing.assert_frame_equal(confint(r, level=0.9), ci)
    with pytest.raises(ValueError, match="credible|posterior"):
        r.confint(method="profile")


@pytest.mark.parametrize("which", ["lmm", "glmm"])
def test_r2_method_and_function_agree(which, request):
    r = request.getfixturevalue(which)
    r = r[0] if which == "lmm" else r
    assert diagnostics.r2(r) == r.r2()
    assert diagnostics.icc(r) == r.icc()
    got = r.r2()
    assert got["marginal_lower"] < got["marginal"] < got["conditional"] < got["conditional_upper"]
    if which == "glmm":  # per draw with the logit's latent variance π²/3
        from interlace.results.bayes_after_fit import r2_draws

        v = r2_draws(r)
        marg = v["fixed"] / (v["fixed"] + v["random"] + np.pi**2 / 3)
        assert got["marginal"] == pytest.approx(marg.mean(), rel=1e-12)


@pytest.mark.parametrize("which", ["lmm", "glmm"])
def test_caterpillar_shows_posterior_intervals(which, request):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    from interlace import plots
    from interlace.results.bayes_after_fit import posterior_b

    r = request.getfixturevalue(which)
    r = r[0] if which == "lmm" else r
    group = "Subject" if which == "lmm" else "herd"
    fig = plots.caterpillar(r, group)
    assert "credible" in fig.axes[0].get_xlabel()
    lo, hi, _ = plots._intervals(r, group, 0.95)
    b = posterior_b(r.design, r.layout, r.idata)
    t = r.design.terms[0]
    first = b[:, t.z_start : t.z_start + t.q].reshape(len(b), t.m, t.k)[:, :, 0]
    np.testing.assert_allclose(lo[:, 0], np.quantile(first, 0.025, axis=0))
    np.testing.assert_allclose(r.random_effects[group].iloc[:, 0], first.mean(axis=0), rtol=1e-8, atol=1e-8)
    assert np.all(lo <= hi)


def test_posterior_predict_for_new_data_lmm(lmm):
    r, df = lmm
    seen = df["Subject"].iloc[0]
    new = pd.DataFrame({"Days": [0, 5, 5, 5], "Subject": [seen, seen, "new1", "new2"]})
    np.testing.assert_allclose(r.predict(), r.fittedvalues, rtol=1e-10)
    pop = r.predict(new, output="draws")
    beta = r.fe_draws.to_numpy()
    np.testing.assert_allclose(pop[:, 2], beta[:, 0] + 5 * beta[:, 1])  # new level: b = 0
    np.testing.assert_allclose(pop[:, 2], pop[:, 3])
    samp = r.predict(new, new_groups="sample", output="draws", seed=3)
    np.testing.assert_allclose(samp[:, :2], pop[:, :2])  # seen levels keep their own draws
    assert not np.allclose(samp[:, 2], samp[:, 3])  # two new groups, two draws of b
    np.testing.assert_array_equal(samp, r.predict(new, new_groups="sample", output="draws", seed=3))
    # averaging over new groups widens the prediction by about the between-subject spread
    assert samp[:, 2].std() > 2 * pop[:, 2].std()
    same = pd.DataFrame({"Days": [5, 5], "Subject": ["new1", "new1"]})
    s2 = r.predict(same, new_groups="sample", output="draws", seed=4)
    np.testing.assert_array_equal(s2[:, 0], s2[:, 1])  # rows of one new level share its effect
    summ = r.predict(new, kind="response", output="summary", seed=1)
    assert list(summ.columns) == ["mean", "sd", "lower", "upper"]
    assert np.all(summ["sd"] > pd.DataFrame(pop).std().to_numpy())  # σ added


def test_posterior_predict_for_new_data_glmm(glmm):
    new = pd.DataFrame({"period": ["1", "2"], "herd": ["1", "zz"]})
    mu = glmm.predict(new, output="draws")
    eta = glmm.predict(new, type="link", output="draws")
    np.testing.assert_allclose(mu, 1 / (1 + np.exp(-eta)))
    beta = glmm.fe_draws.to_numpy()
    np.testing.assert_allclose(eta[:, 1], beta[:, 0] + beta[:, 1])
    samp = glmm.predict(new, new_groups="sample", output="summary", seed=2)
    assert samp["sd"].iloc[1] > mu[:, 1].std()
    with pytest.raises(ValueError, match="newdata needs the columns"):  # cbind: no trials in new
        glmm.predict(new, kind="response", output="draws", seed=2)
    y = glmm.predict(new.assign(incidence=0, size=4), kind="response", output="draws", seed=2)
    assert set(np.unique(y)) <= {0.0, 0.25, 0.5, 0.75, 1.0}  # proportions of 4 trials


def test_posterior_predict_bad_input(lmm, glmm):
    r, df = lmm
    with pytest.raises(ValueError, match="new_groups"):
        r.predict(df.head(), new_groups="zero")
    with pytest.raises(ValueError, match="output"):
        r.predict(df.head(), output="table")
    with pytest.raises(ValueError, match="kind"):
        r.predict(df.head(), kind="link")
    with pytest.raises(ValueError, match="no link"):
        r.predict(df.head(), type="link")
    with pytest.raises(ValueError, match="no link scale"):
        glmm.predict(None, type="link", kind="response")


def test_compare_and_forest_plot_name_credible_intervals(lmm, glmm):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    r, df = lmm
    reml = interlace.fit("Reaction ~ Days", df, random=["(Days | Subject)"])
    table = interlace.compare(reml, r)
    assert set(table[("pymc", "interval")]) == {"credible"}
    assert table.loc["sd_Days|Subject", ("reml", "interval")] == "Wald"
    ci = r.confint()
    assert table.loc["sigma", ("pymc", "lower")] == pytest.approx(ci.loc["sigma"].iloc[0])
    fig = interlace.plot_compare(reml, r, glmm, names=["REML", "NUTS", "NUTS glmm"])
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert sorted(labels[:-1]) == ["Wald (95 %)", "Wald t (95 %)", "credible (95 %)"]
    assert labels[-1] == "estimate"


def test_emmeans_response_scale_on_a_posterior_glmm(glmm):
    emm = interlace.emmeans(glmm, "period", type="response")
    eta = glmm.fe_draws.to_numpy() @ emm.L.T
    np.testing.assert_allclose(emm.table["prob"], (1 / (1 + np.exp(-eta))).mean(axis=0), rtol=1e-12)
    odds = interlace.contrast(emm)
    np.testing.assert_allclose(odds["odds_ratio"].iloc[0], np.exp(eta[:, 0] - eta[:, 1]).mean(), rtol=1e-12)
    assert odds["contrast"].iloc[0] == "period1 / period2" and "pd" in odds.columns
    diff = interlace.contrast(emm.regrid())
    mu = 1 / (1 + np.exp(-eta))
    np.testing.assert_allclose(diff["estimate"].iloc[0], (mu[:, 0] - mu[:, 1]).mean(), rtol=1e-12)
