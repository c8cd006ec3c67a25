"""LOO with residual correlation (AR1, compound symmetry, GLS) on PyMC posteriors: the
non-factorized pointwise terms and the group-level terms against dense multivariate normals."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from dense_reference import group_lambda
from scipy.stats import multivariate_normal

import interlace
from interlace import datasets

pytest.importorskip("pymc")

from interlace.backends.pymc.corr_loglik import (  # noqa: E402
    correlated_group_loglik,
    correlated_loglik,
    series_refusal,
)

S = 4  # posterior draws checked


def _design(formula, df, correlation, groups=None, random=None, weights=None):
    from interlace.data.build import lmm_model

    return lmm_model(formula, df, groups, random, "REML", "lbfgsb", weights, None, correlation,
                     "satterthwaite", None, False)[1]


def _frame(seed=2, levels=5):
    """Series of unequal length with unequal time gaps; a second factor h crossing g."""
    rng = np.random.default_rng(seed)
    times = [[1, 2, 4, 7, 8], [1, 3, 4], [2, 3, 5, 6, 9, 10], [1, 5], [1, 2, 3, 6]][:levels]
    g = np.concatenate([[i] * len(t) for i, t in enumerate(times)])
    t = np.concatenate(times)
    n = len(g)
    return pd.DataFrame({
        "y": rng.normal(size=n), "x": rng.normal(size=n), "g": g.astype(str), "t": t,
        "h": (np.arange(n) % 3).astype(str),
    })


def _R(d, rho):
    """The dense correlation matrix R(ρ) of the design's structure."""
    lay = d.corr_layout
    same = lay.codes[:, None] == lay.codes[None, :]
    if isinstance(d.correlation, interlace.AR1):
        t = d.frame[d.correlation.time].to_numpy(float)
        return np.where(same, rho ** np.abs(t[:, None] - t[None, :]), 0.0)
    return np.where(same, np.where(np.eye(d.n) > 0, 1.0, rho), 0.0)


def _draws(d, rng):
    n_max = int(d.corr_layout.sizes.max())  # CS needs ρ > −1/(n_max − 1); AR1 takes negative φ too
    rho_lo = -0.15 if isinstance(d.correlation, interlace.CompoundSymmetry) else -0.6
    assert rho_lo > -1 / (n_max - 1) or isinstance(d.correlation, interlace.AR1)
    beta = rng.normal(0, 1, (S, d.p))
    sigma = rng.uniform(0.6, 1.5, S)
    theta = rng.uniform(0.3, 1.5, (S, d.n_theta))
    rho = rng.uniform(rho_lo, 0.9, S)
    b = rng.normal(0, 1, (S, d.q))
    return beta, sigma, theta, rho, b


def _dense_pointwise(d, beta, sigma, rho, b):
    """log N(yᵢ | E(yᵢ | y₋ᵢ), Var(yᵢ | y₋ᵢ)) from the dense Σ = σ²W^(-½)RW^(-½), row by row."""
    w = np.ones(d.n) if d.weights is None else d.weights
    V = sigma**2 * _R(d, rho) / np.sqrt(np.outer(w, w))
    mu = d.X @ beta + d.offset + (d.Z.toarray() @ b if d.q else 0.0)
    out = np.empty(d.n)
    for i in range(d.n):
        o = np.arange(d.n) != i
        k = np.linalg.solve(V[np.ix_(o, o)], V[o, i])
        m = mu[i] + k @ (d.y[o] - mu[o])
        v = V[i, i] - k @ V[o, i]
        out[i] = -0.5 * (np.log(2 * np.pi * v) + (d.y[i] - m) ** 2 / v)
    return out


CASES = {
    "ar1-gaps": dict(correlation=interlace.AR1(time="t", group="g"), groups="g"),
    "ar1-weights": dict(correlation=interlace.AR1(time="t", group="g"), groups="g", weights=True),
    "cs": dict(correlation=interlace.CompoundSymmetry(group="g"), random=["(x | g)"]),
    "cs-weights-crossed": dict(correlation=interlace.CompoundSymmetry(group="g"),
                               random=["(1 | g)", "(1 | h)"], weights=True),
    "ar1-gls": dict(correlation=interlace.AR1(time="t", group="g")),
    "cs-gls": dict(correlation=interlace.CompoundSymmetry(group="g")),
}


def _case(name):
    kw = dict(CASES[name])
    df = _frame()
    if kw.pop("weights", False):
        kw["weights"] = np.random.default_rng(4).uniform(0.5, 2.0, len(df))
    return _design("y ~ x", df, **kw)


@pytest.mark.parametrize("name", list(CASES))
def test_pointwise_terms_are_the_dense_leave_one_out_densities(name):
    d = _case(name)
    beta, sigma, _, rho, b = _draws(d, np.random.default_rng(7))
    got = correlated_loglik(d, beta, sigma, rho, b)
    assert got.shape == (S, d.n) and np.all(np.isfinite(got))
    for s in range(S):
        want = _dense_pointwise(d, beta[s], sigma[s], rho[s], b[s])
        np.testing.assert_allclose(got[s], want, rtol=1e-10, atol=1e-12, err_msg=f"{name} draw {s}")


def _dense_group(d, group, beta, sigma, theta, rho, b):
    """log N(y_j | μ_j, σ²(W_j^(-½)R_jW_j^(-½) + Z_jΛΛ'Z_j')) per level j, scipy on dense matrices."""
    w = np.ones(d.n) if d.weights is None else d.weights
    Z = d.Z.toarray()
    cols, Lg = group_lambda(d, group, theta)
    mean = d.X @ beta + d.offset + Z[:, ~cols] @ b[~cols]
    V = sigma**2 * (_R(d, rho) / np.sqrt(np.outer(w, w)) + Z[:, cols] @ Lg @ Lg.T @ Z[:, cols].T)
    codes = next(t.codes for t in d.terms if t.group == group)
    return np.array([
        multivariate_normal(mean[codes == j], V[np.ix_(codes == j, codes == j)]).logpdf(d.y[codes == j])
        for j in range(codes.max() + 1)
    ])


@pytest.mark.parametrize("name", ["ar1-gaps", "ar1-weights", "cs", "cs-weights-crossed"])
def test_group_terms_are_dense_marginal_densities(name):
    d = _case(name)
    beta, sigma, theta, rho, b = _draws(d, np.random.default_rng(9))
    got = correlated_group_loglik(d, "g", beta, sigma, theta, rho, b)
    assert np.all(np.isfinite(got))
    for s in range(S):
        want = _dense_group(d, "g", beta[s], sigma[s], theta[s], rho[s], b[s])
        np.testing.assert_allclose(got[s], want, rtol=1e-10, err_msg=f"{name} draw {s}")
    if name != "cs-weights-crossed":  # one factor: the levels add up to the marginal likelihood
        from interlace.backends.pymc.correlated import CorrelatedLMM

        lmm = CorrelatedLMM(d)
        for s in range(S):
            assert got[s].sum() == pytest.approx(lmm.logp(theta[s], sigma[s], beta[s], rho[s]), rel=1e-10)


def test_series_crossing_the_levels_have_no_group_term():
    d = _case("cs-weights-crossed")  # CS series are the levels of g; h crosses them
    assert series_refusal(d, "g") is None
    why = series_refusal(d, "h")
    assert "cross the levels of 'h'" in why
    beta, sigma, theta, rho, b = _draws(d, np.random.default_rng(1))
    with pytest.raises(ValueError, match="cross the levels of 'h'"):
        correlated_group_loglik(d, "h", beta, sigma, theta, rho, b)


# ---- end to end on ovary --------------------------------------------------------------------------
FAST = dict(chains=2, draws=150, tune=150, random_seed=3, progressbar=False)


def _fit(*args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return interlace.fit(*args, backend="pymc", **FAST, **kw)


@pytest.fixture(scope="module")
def ovary_fits():
    ovary = datasets.load("ovary")
    ar1 = _fit("follicles ~ sin2pi + cos2pi", ovary, groups="Mare",
               correlation=interlace.AR1(time="visit", group="Mare"))
    plain = _fit("follicles ~ sin2pi + cos2pi", ovary, groups="Mare")
    return ovary, ar1, plain


@pytest.mark.slow
def test_ovary_ar1_loo_and_anova_against_the_plain_fit(ovary_fits):
    ovary, ar1, plain = ovary_fits
    ll = ar1.idata.log_likelihood
    assert ll["follicles"].shape == (2, 150, len(ovary))
    assert ll["marginal_Mare"].shape == (2, 150, ovary["Mare"].nunique())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        point, logo = ar1.loo(), ar1.loo(group="Mare")
        table = interlace.anova(ar1, plain, names=["ar1", "plain"])
        by_mare = interlace.loo_compare(ar1, plain, names=["ar1", "plain"], group="Mare")
    assert np.isfinite(point.elpd_loo) and np.isfinite(logo.elpd_loo)
    assert np.all(np.isfinite(table["elpd_loo"])) and np.all(np.isfinite(by_mare["elpd_loo"]))
    # the strong serial correlation (nlme: φ ≈ 0.54) predicts a held-out visit from its neighbours
    assert table.index[0] == "ar1"
    # one grouping factor, series within its levels: the group terms add up to log p(y | β, θ, σ, φ)
    d = ar1.design
    post = ar1.idata.posterior
    beta, sigma = post["beta"].values[0, :3], post["sigma"].values[0, :3]
    theta, phi = post["theta"].values[0, :3], post["phi"].values[0, :3]
    from interlace.backends.pymc.correlated import CorrelatedLMM

    lmm = CorrelatedLMM(d)
    for s in range(3):
        want = lmm.logp(theta[s], sigma[s], beta[s], phi[s])
        assert float(ll["marginal_Mare"].values[0, s].sum()) == pytest.approx(want, rel=1e-9)


@pytest.mark.slow
def test_series_crossing_a_grouping_factor_store_what_exists():
    ovary = datasets.load("ovary")  # (GLS: test_pymc_models.py::test_compound_symmetry_gls_...)
    df = ovary.assign(half=(ovary["visit"] % 2).astype(str))  # a factor crossing each mare's series
    crossed = _fit("follicles ~ sin2pi + cos2pi", df, random=["(1 | Mare)", "(1 | half)"],
                   correlation=interlace.AR1(time="visit", group="Mare"))
    assert set(crossed.idata.log_likelihood.data_vars) == {"follicles", "marginal_Mare"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        assert np.isfinite(crossed.loo().elpd_loo) and np.isfinite(crossed.loo(group="Mare").elpd_loo)
    with pytest.raises(ValueError, match="cross the levels of 'half'"):
        crossed.loo(group="half")
    with pytest.raises(ValueError, match="cross the levels of 'half'"):
        interlace.loo_compare(crossed, crossed, names=["a", "b"], group="half")


@pytest.mark.parametrize("groups", ["Mare", None])
@pytest.mark.parametrize("structure", ["AR1", "CS"])
def test_summary_of_a_correlated_posterior_reports_the_correlation(groups, structure):
    ovary = datasets.load("ovary")
    corr = (interlace.AR1(time="visit", group="Mare") if structure == "AR1"
            else interlace.CompoundSymmetry(group="Mare"))
    fit = interlace.fit("follicles ~ sin2pi + cos2pi", ovary, groups=groups, correlation=corr,
                        backend="pymc", chains=2, draws=60, tune=60, random_seed=1, progressbar=False)
    text = str(fit.summary())
    name = "phi" if structure == "AR1" else "rho"
    row = next(line for line in text.splitlines() if line.startswith(name + " "))
    rhat = float(fit.diagnostics.loc[name, "r_hat"])
    assert f"{rhat:.3f}" in row.split()  # its own R-hat, not "NA"
    assert any(line.startswith("sigma ") for line in text.splitlines())


def test_compare_lines_up_the_reml_and_posterior_correlation_parameter():
    ovary = datasets.load("ovary")
    corr = interlace.AR1(time="visit", group="Mare")
    reml = interlace.fit("follicles ~ sin2pi + cos2pi", ovary, groups="Mare", correlation=corr)
    bayes = interlace.fit("follicles ~ sin2pi + cos2pi", ovary, groups="Mare", correlation=corr,
                          backend="pymc", chains=2, draws=60, tune=60, random_seed=1, progressbar=False)
    table = interlace.compare(reml, bayes)
    assert table.index.tolist().count("phi") == 1
    assert table.loc["phi", ("reml", "estimate")] == pytest.approx(0.6074423, abs=1e-5)  # nlme::lme
    assert table.loc["phi", ("reml", "interval")] == "none"
    assert table.loc["phi", ("pymc", "estimate")] == pytest.approx(bayes.correlation_params["phi"])
    assert table.loc["phi", ("pymc", "interval")] == "credible"
