"""ELPD-LOO on clmm and coxme posteriors: loo() and anova/loo_compare, or a clear refusal."""

import warnings

import numpy as np
import pytest

import interlace
from interlace import datasets

FAST = dict(backend="pymc", chains=2, draws=80, tune=80, random_seed=1, progressbar=False)


def _quiet(f, *a, **k):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return f(*a, **k)


def test_clmm_posteriors_have_loo_and_an_elpd_comparison():
    wine = datasets.load("wine")
    small = _quiet(interlace.clmm, "rating ~ temp", wine, groups="judge", **FAST)
    big = _quiet(interlace.clmm, "rating ~ temp + contact", wine, groups="judge", **FAST)
    loo = _quiet(big.loo)
    assert loo.n_data_points == len(wine) and np.isfinite(loo.elpd_loo)
    table = _quiet(interlace.anova, small, big, names=["temp", "temp+contact"])
    assert set(table.index) == {"temp", "temp+contact"}
    assert table.loc["temp+contact", "elpd_loo"] == pytest.approx(loo.elpd_loo)
    default = _quiet(interlace.loo_compare, small, big)  # labelled by the formulas
    assert "rating ~ temp + contact" in default.index
    with pytest.raises(ValueError, match="Gaussian LMMs only"):
        big.loo(group="judge")
    lmm = _quiet(interlace.fit, "response ~ temp", wine, groups="judge", **FAST)
    with pytest.raises(ValueError, match="same data"):
        _quiet(interlace.anova, big, lmm)


def test_coxme_posteriors_refuse_loo_by_name():
    rats = datasets.load("rats")
    cox = _quiet(interlace.coxme, "Surv(time, status) ~ rx", rats, groups="litter", **FAST)
    with pytest.raises(ValueError, match="coxme posterior stores no pointwise log-likelihood"):
        cox.loo()
    with pytest.raises(ValueError, match="coxme posterior stores no pointwise log-likelihood"):
        interlace.anova(cox, cox, names=["a", "b"])


@pytest.mark.parametrize("kind", ["clmm", "coxme"])
def test_confint_of_clmm_and_coxme_posteriors_lists_every_parameter(kind):
    if kind == "clmm":
        fit = _quiet(interlace.clmm, "rating ~ temp + contact", datasets.load("wine"), groups="judge", **FAST)
        want = ["sd_(Intercept)|judge", "1|2", "2|3", "3|4", "4|5", "temp[T.warm]", "contact[T.yes]"]
    else:
        rats = datasets.load("rats")
        fit = _quiet(interlace.coxme, "Surv(time, status) ~ rx", rats, groups="litter", **FAST)
        want = ["sd_(Intercept)|litter", "rx"]
    ci = fit.confint(0.9)
    assert list(ci.index) == want and list(ci.columns) == ["lower", "upper"]
    draws = fit.beta_draws.iloc[:, -1].to_numpy()
    assert ci.iloc[-1].tolist() == pytest.approx(list(np.quantile(draws, [0.05, 0.95])))
    assert ci.iloc[-1, 0] < fit.fe_params.iloc[-1] < ci.iloc[-1, 1]


def test_clmm_and_coxme_posteriors_have_no_tests_or_likelihood_and_say_why():
    fit = _quiet(interlace.coxme, "Surv(time, status) ~ rx", datasets.load("rats"), groups="litter", **FAST)
    for name in ("llf", "aic", "bic", "deviance"):
        with pytest.raises(AttributeError, match="compare posteriors by ELPD"):
            getattr(fit, name)
        assert not hasattr(fit, name)
    for name in ("fe_pvalues", "fe_tvalues", "fe_zvalues"):
        with pytest.raises(AttributeError, match=r"credible intervals"):
            getattr(fit, name)


def test_caterpillar_of_a_clmm_posterior_uses_its_draws_of_b():
    import matplotlib

    matplotlib.use("Agg")
    from interlace import plots

    fit = _quiet(interlace.clmm, "rating ~ temp", datasets.load("wine"), groups="judge", **FAST)
    ax = plots.caterpillar(fit, "judge")
    draws = fit.idata.posterior["b_judge"].to_numpy().reshape(-1, 9)
    lo, hi = plots._intervals(fit, "judge", 0.95)[:2]
    np.testing.assert_allclose(lo.ravel(), np.quantile(draws, 0.025, axis=0))
    np.testing.assert_allclose(hi.ravel(), np.quantile(draws, 0.975, axis=0))
    assert ax is not None
