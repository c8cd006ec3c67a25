"""After-fit verbs on fits from lazy frames and on fits by the iterative solver.

A lazy fit has the cross-products [Z X y]'W[Z X y] and no rows: what needs only them (profile
intervals, conditional variances, the caterpillar plot, ML refits, F tables, drop1, emmeans,
r2/icc) equals the eager fit of the same data; what needs rows (fitted values, residuals, their
plots, simulation, the bootstrap, influence) raises one ValueError naming the lazy frame and saying to
collect it. A fit by solver="iterative" has exact β̂ and Var(β̂) but no likelihood and no
Satterthwaite df: Wald intervals and emmeans (Wald z) work, the rest names that reason.
"""

from __future__ import annotations

import warnings

import matplotlib
import numpy as np
import pandas as pd
import polars as pl
import pytest

import interlace
from interlace import datasets, plots

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def sleep():
    return datasets.load("sleepstudy")


@pytest.fixture(scope="module")
def slopes(sleep):
    lazy = interlace.fit("Reaction ~ Days + (Days | Subject)", pl.from_pandas(sleep).lazy())
    eager = interlace.fit("Reaction ~ Days + (Days | Subject)", sleep)
    return lazy, eager


@pytest.mark.parametrize("formula", ["Reaction ~ Days + (Days | Subject)", "Reaction ~ Days + (1 | Subject)"])
def test_profile_confint_of_a_lazy_fit_equals_the_eager_one(sleep, formula):
    lazy = interlace.fit(formula, pl.from_pandas(sleep).lazy())
    eager = interlace.fit(formula, sleep)
    ci_l, ci_e = lazy.confint(), eager.confint()
    assert list(ci_l.index) == list(ci_e.index)
    np.testing.assert_allclose(ci_l.to_numpy(), ci_e.to_numpy(), rtol=1e-4, atol=1e-4)
    # the fixed effects' profile intervals are wider than nothing and contain the estimate
    assert np.all(ci_l.loc[lazy.fe_params.index, "lower"] < lazy.fe_params)


def test_condvar_and_caterpillar_of_a_lazy_fit(slopes):
    lazy, eager = slopes
    re_l, re_e = lazy.ranef(condVar=True), eager.ranef(condVar=True)
    cv_l, cv_e = re_l["Subject"].attrs["condVar"], re_e["Subject"].attrs["condVar"]
    assert cv_l.shape == cv_e.shape == (18, 2, 2)
    np.testing.assert_allclose(cv_l, cv_e, rtol=1e-4)
    fig = plots.caterpillar(lazy, "Subject")
    assert len(fig.axes) == 2


def test_weighted_lazy_fit_refits_by_ml_with_the_weights_term():
    """An ML refit of a weighted lazy REML fit (anova, profile) keeps −Σ log wᵢ in its logLik."""
    rng = np.random.default_rng(4)
    df = datasets.load("sleepstudy").assign(w=rng.uniform(0.5, 2.0, 180))
    kw = {"weights": "w"}
    small_l = interlace.fit("Reaction ~ 1 + (1 | Subject)", pl.from_pandas(df).lazy(), **kw)
    big_l = interlace.fit("Reaction ~ Days + (1 | Subject)", pl.from_pandas(df).lazy(), **kw)
    small_e = interlace.fit("Reaction ~ 1 + (1 | Subject)", df, **kw)
    big_e = interlace.fit("Reaction ~ Days + (1 | Subject)", df, **kw)
    assert big_l.llf == pytest.approx(big_e.llf, rel=1e-8)
    ml_l, ml_e = big_l.engine.refit(method="ML"), big_e.engine.refit(method="ML")
    assert ml_l.llf == pytest.approx(ml_e.llf, rel=1e-8)
    a_l, a_e = interlace.anova(small_l, big_l), interlace.anova(small_e, big_e)
    np.testing.assert_allclose(a_l.to_numpy(dtype=float), a_e.to_numpy(dtype=float), rtol=1e-6)


@pytest.mark.parametrize("verb", [
    lambda r: r.fittedvalues, lambda r: r.resid, lambda r: plots.qq(r),
    lambda r: plots.residuals_vs_fitted(r), lambda r: r.simulate(nsim=2, seed=1),
    lambda r: interlace.bootstrap(r, nsim=2, seed=1, progressbar=False),
    lambda r: r.confint("boot", nsim=2), lambda r: r.influence(),
], ids=["fittedvalues", "resid", "qq", "residuals_vs_fitted", "simulate", "bootstrap", "confint_boot",
        "influence"])
def test_row_level_verbs_on_a_lazy_fit_say_to_collect(slopes, verb):
    lazy, _ = slopes
    with pytest.raises(ValueError, match=r"fitted from a lazy frame.*[Cc]ollect the lazy frame"):
        verb(lazy)


def test_lazy_summary_still_prints_without_residuals(slopes):
    lazy, eager = slopes
    text = str(lazy.summary())
    assert "Scaled residuals" not in text and "Scaled residuals" in str(eager.summary())
    assert "Fixed effects" in text


# ---- solver="iterative" ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def wine_fits():
    wine = datasets.load("wine")
    it = interlace.fit("response ~ temp + contact", wine, groups="judge", solver="iterative")
    ex = interlace.fit("response ~ temp + contact", wine, groups="judge", solver="exact")
    return it, ex


def test_iterative_fit_has_wald_emmeans_and_wald_intervals(wine_fits):
    it, ex = wine_fits
    e_it, e_ex = interlace.emmeans(it, "temp"), interlace.emmeans(ex, "temp")
    t_it, t_ex = e_it.table, e_ex.table
    assert np.all(np.isinf(t_it["df"]))
    assert np.all(np.abs(t_it["emmean"] - t_ex["emmean"]) <= 0.02 * t_ex["SE"])
    np.testing.assert_allclose(t_it["SE"], t_ex["SE"], rtol=0.02)
    np.testing.assert_allclose(t_it["upper"] - t_it["emmean"], 1.959964 * t_it["SE"], rtol=1e-5)
    con = interlace.contrast(e_it)
    assert len(con) == 1 and np.isfinite(con.iloc[0]["p_value"] if "p_value" in con else con.iloc[0, -1])
    ci = it.confint("wald")
    beta = it.fe_params
    np.testing.assert_allclose(ci.loc[beta.index, "upper"] - beta, 1.959964 * it.fe_bse, rtol=1e-5)
    assert ci.drop(index=beta.index).isna().all().all()  # variance parameters: none, as lme4's Wald


@pytest.mark.parametrize("verb, reason", [
    (lambda r: interlace.anova(r), "Satterthwaite"),
    (lambda r: interlace.drop1(r), "Satterthwaite"),
    (lambda r: r.test([0, 1, 0]), "Satterthwaite"),
    (lambda r: interlace.anova(r, r), "no log-likelihood"),
    (lambda r: interlace.ranova(r), "no log-likelihood"),
    (lambda r: r.confint(), "no log-likelihood"),
    (lambda r: r.confint("boot"), "refits the model"),
    (lambda r: interlace.bootstrap(r, nsim=2, progressbar=False), "refits the model"),
    (lambda r: r.simulate(), "simulating responses"),
    (lambda r: r.ranef(condVar=True), "inverse"),
], ids=["anova", "drop1", "test", "lrt", "ranova", "profile", "confint_boot", "bootstrap", "simulate",
        "condVar"])
def test_iterative_fit_refusals_name_the_solver_and_the_reason(wine_fits, verb, reason):
    it, _ = wine_fits
    with pytest.raises(ValueError, match="solver='iterative'") as info:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            verb(it)
    msg = str(info.value)
    assert reason in msg and "solver='exact'" in msg and "interlace.fit" not in msg


def test_iterative_emmeans_frame_is_pandas(wine_fits):
    it, _ = wine_fits
    assert isinstance(interlace.emmeans(it, "contact").table, pd.DataFrame)


def _factor_data() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    n = 300
    d = pd.DataFrame({"g": rng.integers(0, 15, n).astype(str), "A": rng.choice(["a1", "a2", "a3"], n),
                      "B": rng.choice(["b1", "b2"], n), "x": rng.normal(size=n), "w": rng.uniform(0.5, 2, n)})
    d["y"] = (1 + 0.5 * (d.A == "a2") + 0.3 * (d.B == "b2") + 0.4 * d.x
              + rng.normal(size=15)[d.g.astype(int)] + rng.normal(size=n))
    return d


@pytest.mark.parametrize("type", [1, 2, 3])
def test_f_tables_and_drop1_of_a_lazy_fit_equal_the_eager_ones(type):
    d = _factor_data()
    lazy = interlace.fit("y ~ A + B + x + (x | g)", pl.from_pandas(d).lazy())
    eager = interlace.fit("y ~ A + B + x + (x | g)", d)
    a_l, a_e = interlace.anova(lazy, type=type), interlace.anova(eager, type=type)
    assert list(a_l.index) == list(a_e.index) == ["A", "B", "x"]
    np.testing.assert_allclose(a_l.to_numpy(dtype=float), a_e.to_numpy(dtype=float), rtol=1e-5)
    d_l, d_e = interlace.drop1(lazy), interlace.drop1(eager)
    np.testing.assert_allclose(d_l.to_numpy(dtype=float), d_e.to_numpy(dtype=float), rtol=1e-5)


def test_weighted_lazy_f_tables():
    d = _factor_data()
    lazy = interlace.fit("y ~ A + B + x + (1 | g)", pl.from_pandas(d).lazy(), weights="w")
    eager = interlace.fit("y ~ A + B + x + (1 | g)", d, weights="w")
    np.testing.assert_allclose(interlace.anova(lazy).to_numpy(dtype=float),
                               interlace.anova(eager).to_numpy(dtype=float), rtol=1e-5)
    with pytest.raises(ValueError, match="unweighted X'X"):
        interlace.anova(lazy, type=1)


def test_emmeans_and_contrasts_of_a_lazy_fit_equal_the_eager_ones():
    d = _factor_data()
    lazy = interlace.fit("y ~ A + B + x + (x | g)", pl.from_pandas(d).lazy())
    eager = interlace.fit("y ~ A + B + x + (x | g)", d)
    for specs, by in (("A", None), ("B", "A"), (["A", "B"], None)):
        t_l, t_e = interlace.emmeans(lazy, specs, by=by).table, interlace.emmeans(eager, specs, by=by).table
        pd.testing.assert_frame_equal(t_l, t_e, rtol=1e-5)
    c_l = interlace.contrast(interlace.emmeans(lazy, "A"))
    pd.testing.assert_frame_equal(c_l, interlace.contrast(interlace.emmeans(eager, "A")), rtol=1e-5)
    with pytest.raises(ValueError, match="'x' is numeric"):
        interlace.emmeans(lazy, "x")
    weighted = interlace.fit("y ~ A + x + (1 | g)", pl.from_pandas(d).lazy(), weights="w")
    with pytest.raises(ValueError, match="numeric predictors at their means.*collect the lazy frame"):
        interlace.emmeans(weighted, "A")
    factors_only = interlace.fit("y ~ A + B + (1 | g)", pl.from_pandas(d).lazy(), weights="w")
    np.testing.assert_allclose(interlace.emmeans(factors_only, "A").table["emmean"],
                               interlace.emmeans(interlace.fit("y ~ A + B + (1 | g)", d, weights="w"),
                                                 "A").table["emmean"], rtol=1e-6)


def test_emmeans_of_an_iterative_fit_from_a_lazy_frame():
    d = _factor_data()
    lazy = interlace.fit("y ~ A + B + (1 | g)", pl.from_pandas(d).lazy(), solver="iterative")
    eager = interlace.fit("y ~ A + B + (1 | g)", d, solver="iterative")
    t_l, t_e = interlace.emmeans(lazy, "A").table, interlace.emmeans(eager, "A").table
    pd.testing.assert_frame_equal(t_l, t_e, rtol=1e-8)
    assert np.all(np.isinf(t_l["df"]))


@pytest.mark.parametrize("formula", ["Reaction ~ Days + (Days | Subject)", "Reaction ~ Days + (1 | Subject)"])
def test_r2_and_icc_of_a_lazy_fit_equal_the_eager_ones(sleep, formula):
    lazy = interlace.fit(formula, pl.from_pandas(sleep).lazy())
    eager = interlace.fit(formula, sleep)
    for key, value in eager.r2().items():
        assert lazy.r2()[key] == pytest.approx(value, rel=1e-5)
    for key, value in eager.icc().items():
        assert lazy.icc()[key] == pytest.approx(value, rel=1e-5)
    weighted = interlace.fit(formula, pl.from_pandas(sleep.assign(w=1.5)).lazy(), weights="w")
    with pytest.raises(ValueError, match="weighted fit.*Collect the lazy frame"):
        weighted.r2()
