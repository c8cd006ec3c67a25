"""Every model on backend="pymc": residual correlation (AR1, compound symmetry, GLS), clmm, coxme,
prior weights and offsets, and lazy frames. Posterior means are checked against the R reference
fits of the shared fixtures (fixed effects within 0.5 posterior SD for LMMs, 1 SD otherwise);
the likelihoods against direct dense formulas."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from conftest import load_cases, load_data

import interlace
from interlace import datasets

pytest.importorskip("pymc")

FAST = dict(draws=250, tune=250, chains=2, random_seed=5, progressbar=False)
CASES = {c["name"]: c for c in load_cases()}


def _case(name):
    if name not in CASES:
        pytest.skip("reference fixtures not found")
    return CASES[name], load_data(CASES[name])


def _sample(fn, *args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return fn(*args, **FAST, **kw)


def _within(post_mean, post_sd, ref, k, what):
    z = np.abs(np.asarray(post_mean, float) - np.asarray(ref, float)) / np.asarray(post_sd, float)
    assert np.all(z < k), f"{what}: |posterior mean − reference| / posterior SD = {z}"


def _lmm_design(formula, df, correlation, **kw):
    from interlace.data.build import lmm_model

    return lmm_model(formula, df, kw.get("groups"), kw.get("random"), "REML", "lbfgsb", kw.get("weights"),
                     None, correlation, "satterthwaite", None, False)[1]


# ---- residual correlation: the likelihood --------------------------------------------------------
@pytest.mark.parametrize("dense_max", [600, 0])  # C(ρ) dense, and sparse
@pytest.mark.parametrize("structure", ["ar1", "cs"])
def test_correlated_marginal_likelihood_matches_dense_gaussian(structure, dense_max, monkeypatch):
    from interlace.backends.pymc import correlated
    from interlace.backends.pymc.correlated import CorrelatedLMM

    monkeypatch.setattr(correlated, "DENSE_MAX", dense_max)

    rng = np.random.default_rng(1)
    g = np.repeat(np.arange(6), 5)
    df = pd.DataFrame({"y": rng.normal(size=30), "x": rng.normal(size=30), "g": g.astype(str),
                       "t": np.tile([1, 2, 4, 5, 8], 6)})
    corr = interlace.AR1(time="t", group="g") if structure == "ar1" else interlace.CompoundSymmetry(group="g")
    d = _lmm_design("y ~ x", df, corr, groups="g")
    lmm = CorrelatedLMM(d)
    theta, sigma, beta, rho = np.array([0.7]), 1.3, np.array([0.2, -0.4]), 0.45

    def dense(rho):
        t = df["t"].to_numpy(float)
        same = g[:, None] == g[None, :]
        R = np.where(same, rho ** np.abs(t[:, None] - t[None, :]), 0.0) if structure == "ar1" else \
            np.where(same, np.where(np.eye(30) > 0, 1.0, rho), 0.0)
        Z = d.Z.toarray()
        V = sigma**2 * (R + theta[0] ** 2 * Z @ Z.T)
        r = d.y - d.X @ beta
        return -0.5 * (30 * np.log(2 * np.pi) + np.linalg.slogdet(V)[1] + r @ np.linalg.solve(V, r))

    parts, g_rho = lmm.logp_and_grad(theta, sigma, beta, rho)
    assert parts.logp == pytest.approx(dense(rho), rel=1e-10)
    assert g_rho == pytest.approx((dense(rho + 1e-6) - dense(rho - 1e-6)) / 2e-6, rel=1e-5)
    assert lmm.logp(theta, sigma, beta, 1.0) == -np.inf


def _gls_design(structure, weights):
    from interlace.data.build import lmm_model

    rng = np.random.default_rng(4)
    g = np.repeat(np.arange(7), 6)[:40]  # unequal series, time gaps 1-3
    df = pd.DataFrame({"y": rng.normal(size=40), "x": rng.normal(size=40), "z": rng.normal(size=40),
                       "g": g.astype(str), "t": np.tile([1, 2, 4, 5, 8, 9], 7)[:40],
                       "w": rng.uniform(0.5, 2.0, 40), "o": rng.normal(size=40)})
    corr = interlace.AR1(time="t", group="g") if structure == "ar1" else interlace.CompoundSymmetry(group="g")
    return lmm_model("y ~ x + z", df, None, None, "REML", "lbfgsb", "w" if weights else None, "o", corr,
                     "satterthwaite", None, False)[1]


@pytest.mark.parametrize("weights", [False, True])
@pytest.mark.parametrize("structure", ["ar1", "cs"])
def test_gls_density_from_fixed_products_equals_the_whitened_rows(structure, weights):
    """GLS (no terms): the (p + 1)-square recombination equals the row-whitened evaluator it
    replaced and a dense multivariate normal, and its analytic gradient (ρ included) the
    central differences of the value."""
    from interlace.backends.pymc.correlated import CorrelatedLMM
    from interlace.backends.pymc.marginal import MarginalLMM

    d = _gls_design(structure, weights)
    lmm = CorrelatedLMM(d)
    assert lmm.gls
    lay, w = d.corr_layout, (np.ones(d.n) if d.weights is None else d.weights)
    rng = np.random.default_rng(7)
    for _ in range(25):
        sigma, beta = rng.uniform(0.3, 3.0), rng.normal(size=3)
        rho = rng.uniform(lmm.lower + 0.02, 0.97)
        Linv, logdet = d.correlation.whitener(d.correlation.to_z(rho, lay), lay)
        old = MarginalLMM(d, whiten=Linv).logp(np.zeros(0), sigma, beta) - 0.5 * logdet
        R = np.linalg.inv((Linv.T @ Linv).toarray())
        V = sigma**2 * R / np.sqrt(w)[:, None] / np.sqrt(w)[None, :]
        r = d.y - d.offset - d.X @ beta
        dense = -0.5 * (d.n * np.log(2 * np.pi) + np.linalg.slogdet(V)[1] + r @ np.linalg.solve(V, r))
        parts, g_rho = lmm.logp_and_grad(np.zeros(0), sigma, beta, rho)
        assert parts.logp == pytest.approx(old, rel=1e-10)
        assert parts.logp == pytest.approx(dense, rel=1e-10)
        assert lmm.logp(np.zeros(0), sigma, beta, rho) == parts.logp

        def f(s, b, p):
            return lmm.logp(np.zeros(0), s, b, p)

        h = 1e-6
        num_rho = (f(sigma, beta, rho + h) - f(sigma, beta, rho - h)) / (2 * h)
        num_sigma = (f(sigma + h, beta, rho) - f(sigma - h, beta, rho)) / (2 * h)
        num_beta = [(f(sigma, beta + h * e, rho) - f(sigma, beta - h * e, rho)) / (2 * h) for e in np.eye(3)]
        assert g_rho == pytest.approx(num_rho, rel=1e-6, abs=1e-6)
        assert parts.g_sigma == pytest.approx(num_sigma, rel=1e-6, abs=1e-6)
        np.testing.assert_allclose(parts.g_beta, num_beta, rtol=1e-6, atol=1e-6)
    assert lmm.logp(np.zeros(0), 1.0, np.zeros(3), lmm.upper) == -np.inf


@pytest.mark.parametrize("weights", [False, True])
@pytest.mark.parametrize("structure", ["ar1", "cs"])
def test_dense_random_effects_density_equals_the_blocked_evaluator(structure, weights, monkeypatch):
    """Small q: the density on the dense C(ρ) equals the blocked evaluator at ρ (the path for
    large q) and a dense multivariate normal, with a vector term and a factor crossing the
    series; its gradient (∂/∂ρ analytic) equals central differences of the value."""
    from interlace.backends.pymc import correlated
    from interlace.backends.pymc.correlated import CorrelatedLMM

    rng = np.random.default_rng(11)
    n = 48
    g = np.repeat(np.arange(8), 6)
    df = pd.DataFrame({"y": rng.normal(size=n), "x": rng.normal(size=n), "g": g.astype(str),
                       "h": (np.arange(n) % 3).astype(str), "t": np.tile([1, 2, 4, 5, 8, 9], 8),
                       "w": rng.uniform(0.5, 2.0, n)})
    corr = interlace.AR1(time="t", group="g") if structure == "ar1" else interlace.CompoundSymmetry(group="g")
    d = _lmm_design("y ~ x", df, corr, random=["(1 + x | g)", "(1 | h)"], weights="w" if weights else None)
    fast = CorrelatedLMM(d)
    assert fast._dense is not None
    monkeypatch.setattr(correlated, "DENSE_Q", 0)
    blocked = CorrelatedLMM(d)
    assert blocked._dense is None
    lay, w = d.corr_layout, (np.ones(n) if d.weights is None else d.weights)
    Z = d.Z.toarray()
    for _ in range(12):
        theta = np.array([rng.uniform(0.3, 1.5), rng.normal(), rng.uniform(0.3, 1.5), rng.uniform(0.2, 1.0)])
        sigma, beta = rng.uniform(0.5, 2.0), rng.normal(size=2)
        rho = rng.uniform(fast.lower + 0.05, 0.95)
        Lam = sp.block_diag([sp.kron(sp.eye(t.m), t.T(theta)) for t in d.terms]).toarray()
        Linv, _ = d.correlation.whitener(d.correlation.to_z(rho, lay), lay)
        R = np.linalg.inv((Linv.T @ Linv).toarray())
        V = sigma**2 * (R / np.sqrt(np.outer(w, w)) + Z @ Lam @ Lam.T @ Z.T)
        r = d.y - d.offset - d.X @ beta
        dense = -0.5 * (n * np.log(2 * np.pi) + np.linalg.slogdet(V)[1] + r @ np.linalg.solve(V, r))
        parts, g_rho = fast.logp_and_grad(theta, sigma, beta, rho)
        ref, _ = blocked.logp_and_grad(theta, sigma, beta, rho)
        assert parts.logp == pytest.approx(ref.logp, rel=1e-10)
        assert parts.logp == pytest.approx(dense, rel=1e-10)
        assert fast.logp(theta, sigma, beta, rho) == pytest.approx(parts.logp, rel=1e-13)
        np.testing.assert_allclose(parts.g_theta, ref.g_theta, rtol=1e-7, atol=1e-8)
        np.testing.assert_allclose(parts.g_beta, ref.g_beta, rtol=1e-7, atol=1e-8)
        assert parts.g_sigma == pytest.approx(ref.g_sigma, rel=1e-8)
        h = 1e-6
        num = (fast.logp(theta, sigma, beta, rho + h) - fast.logp(theta, sigma, beta, rho - h)) / (2 * h)
        assert g_rho == pytest.approx(num, rel=1e-6, abs=1e-6)


@pytest.mark.slow
def test_ar1_posterior_agrees_with_nlme():
    case, df = _case("ovary_ar1_reml")
    c = case["interlace"]["correlation"]
    r = _sample(interlace.fit, case["interlace"]["formula"], df, groups="Mare", backend="pymc",
                correlation=interlace.AR1(time=c["time"], group=c["group"]))
    _within(r.fe_params, r.fe_bse, list(case["fixef"].values()), 0.5, "fixed effects")
    phi = r.variance_draws["phi"]
    _within(phi.mean(), phi.std(), case["phi"], 1.0, "phi")
    assert r.correlation_params["phi"] == pytest.approx(phi.mean())
    assert set(r.idata.log_likelihood.data_vars) == {"follicles", "marginal_Mare"}  # (corr_loglik)


@pytest.mark.slow
def test_compound_symmetry_gls_posterior_agrees_with_nlme():
    case, df = _case("orthodont_cs_gls_reml")
    r = _sample(interlace.fit, case["interlace"]["formula"], df, backend="pymc",
                correlation=interlace.CompoundSymmetry(group="Subject"))
    _within(r.fe_params, r.fe_bse, list(case["fixef"].values()), 0.5, "fixed effects")
    rho = r.variance_draws["rho"]
    _within(rho.mean(), rho.std(), case["rho"], 1.0, "rho")
    assert list(r.variance_draws.columns) == ["rho", "sigma"]
    assert list(r.idata.log_likelihood.data_vars) == ["distance"]  # no random terms: pointwise only
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        assert np.isfinite(r.loo().elpd_loo)


# ---- clmm -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def wine_pymc():
    case, df = _case("wine_clmm_logit")
    return case, _sample(interlace.clmm, case["interlace"]["formula"], df, groups="judge", backend="pymc")


@pytest.mark.slow
def test_clmm_posterior_agrees_with_ordinal(wine_pymc):
    case, r = wine_pymc
    _within(r.fe_params, r.fe_bse, list(case["beta"].values()), 1.0, "beta")
    sd = r.threshold_draws.std(axis=0, ddof=1)
    _within(r.thresholds, sd, list(case["thresholds"].values()), 1.0, "thresholds")
    assert list(r.thresholds.index) == list(case["thresholds"])
    s = r.variance_draws["sd_(Intercept)|judge"]
    _within(s.mean(), s.std(), case["sd"], 1.0, "judge SD")
    assert r.method.startswith("posterior (NUTS, ") and r.optimizer_info["sampler_version"] in r.method
    assert list(r.to_frame().columns) == ["term", "mean", "sd", "lower", "upper", "r_hat", "ess_bulk"]
    assert r.idata.log_likelihood["rating"].shape[-1] == r.nobs
    table = interlace.compare(r)
    assert ("pymc", "estimate") in table.columns and "tempwarm" in "".join(table.index).replace("[T.", "")


@pytest.mark.slow
def test_clmm_posterior_with_two_terms_is_reproducible_and_compares():
    wine = datasets.load("wine")
    random = ["(1 | judge)", "(1 | bottle)"]
    kw = dict(draws=100, tune=100, chains=2, random_seed=11, progressbar=False, backend="pymc")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        a = interlace.clmm("rating ~ temp + contact", wine, random=random, cores=1, **kw)
        b = interlace.clmm("rating ~ temp + contact", wine, random=random, cores=2, **kw)
    np.testing.assert_array_equal(a.fe_draws.to_numpy(), b.fe_draws.to_numpy())
    assert list(a.variance_draws.columns) == ["sd_(Intercept)|judge", "sd_(Intercept)|bottle"]
    assert list(a.fe_draws.columns[:4]) == ["1|2", "2|3", "3|4", "4|5"]
    r = interlace.clmm("rating ~ temp + contact", wine, random=random)
    table = interlace.compare(r, a)
    assert set(table[("pymc", "interval")]) == {"credible"}
    np.testing.assert_allclose(table[("pymc", "estimate")].loc["temp[T.warm]"], a.fe_params["temp[T.warm]"])


def test_clmm_pointwise_probabilities_sum_to_one():
    from interlace.backends.pymc.ordinal import _pointwise
    from interlace.model.families import get_link

    alpha = np.array([[-1.0, 0.5, 2.0]])
    for link in ("logit", "probit", "cloglog"):
        lk = get_link(link)
        p = [np.exp(_pointwise(np.array([j]), np.array([[0.3]]), alpha, lk))[0, 0] for j in range(4)]
        assert sum(p) == pytest.approx(1.0, abs=1e-12)


# ---- coxme ----------------------------------------------------------------------------------------
def test_partial_likelihood_matches_survival_null_loglik():
    from interlace.backends.pymc.cox import partial_loglik_numpy

    case, df = _case("rats_coxme_frailty")
    ll = partial_loglik_numpy(np.zeros(len(df)), df["time"], df["status"], ties="efron")
    assert ll == pytest.approx(case["loglik_null"], rel=1e-10)


@pytest.mark.parametrize("ties", ["breslow", "efron"])
def test_partial_likelihood_matches_a_direct_loop_with_strata(ties):
    from interlace.backends.pymc.cox import RiskSets

    rng = np.random.default_rng(3)
    n = 40
    t = rng.integers(1, 8, n).astype(float)
    status = rng.integers(0, 2, n)
    s = rng.integers(0, 2, n)
    eta = rng.normal(size=n)
    want = 0.0
    for st in (0, 1):
        for time_ in np.unique(t[(s == st) & (status == 1)]):
            ev = (s == st) & (t == time_) & (status == 1)
            risk = np.exp(eta[(s == st) & (t >= time_)]).sum()
            D, d = np.exp(eta[ev]).sum(), ev.sum()
            fr = np.arange(d) / d if ties == "efron" else np.zeros(d)
            want += eta[ev].sum() - np.log(risk - fr * D).sum()
    rs = RiskSets.build(t, status, s, ties)
    assert rs.loglik(eta) == pytest.approx(want, rel=1e-12)
    import pytensor.tensor as pt

    x = pt.dvector()
    assert float(rs.loglik(x).eval({x: eta})) == pytest.approx(want, rel=1e-12)


@pytest.mark.slow
def test_coxme_posterior_agrees_with_coxme():
    case, df = _case("rats_coxme_frailty")
    r = _sample(interlace.coxme, "Surv(time, status) ~ rx", df, groups="litter", backend="pymc")
    _within(r.fe_params, r.fe_bse, list(case["coef"].values()), 1.0, "coef")
    s = r.variance_draws["sd_(Intercept)|litter"]
    _within(s.mean(), s.std(), np.sqrt(case["variance"]), 1.0, "frailty SD")
    assert r.optimizer_info["ties"] == "efron"
    assert interlace.compare(r).shape[0] == 2


@pytest.mark.slow
def test_coxme_offset_and_strata_follow_the_laplace_fit():
    _, df = _case("rats_coxme_frailty")
    df = df.assign(off=0.3 * (df["rx"] == 1), sex=np.arange(len(df)) % 2)
    f = "Surv(time, status) ~ rx + offset(off) + strata(sex)"
    lap = interlace.coxme(f, df, groups="litter")
    r = _sample(interlace.coxme, f, df, groups="litter", backend="pymc", ties="breslow")
    _within(r.fe_params, r.fe_bse, lap.fe_params if hasattr(lap, "fe_params") else lap.beta, 1.0, "coef")


def test_clmm_and_coxme_refuse_what_has_no_meaning():
    _, df = _case("rats_coxme_frailty")
    with pytest.raises(ValueError, match="sparse"):
        interlace.coxme("Surv(time, status) ~ rx", df, groups="litter", backend="pymc", sparse=(10, 0.1))
    with pytest.raises(ValueError, match="backend='reml'"):
        interlace.coxme("Surv(time, status) ~ rx", df, groups="litter", draws=10)
    with pytest.raises(ValueError, match="backend"):
        interlace.coxme("Surv(time, status) ~ rx", df, groups="litter", backend="stan")


# ---- weights and offsets --------------------------------------------------------------------------
@pytest.mark.slow
def test_lmm_weights_posterior_agrees_with_lme4():
    case, df = _case("sleepstudy_weights_reml")
    r = _sample(interlace.fit, case["interlace"]["formula"], df, random=case["interlace"]["random"],
                weights=df["w"].to_numpy(float), backend="pymc")
    _within(r.fe_params, r.fe_bse, list(case["fixef"].values()), 0.5, "fixed effects")


@pytest.mark.slow
def test_poisson_prior_weights_follow_the_laplace_fit():
    rng = np.random.default_rng(4)
    g = np.repeat(np.arange(20), 10)
    x = rng.normal(size=g.size)
    df = pd.DataFrame({"y": rng.poisson(np.exp(0.4 + 0.5 * x + 0.4 * rng.normal(size=20)[g])), "x": x,
                       "g": g.astype(str), "w": rng.choice([0.5, 1.0, 2.0], g.size)})
    lap = interlace.glmer("y ~ x", df, "poisson", groups="g", weights="w")
    r = _sample(interlace.glmer, "y ~ x", df, "poisson", groups="g", weights="w", backend="pymc")
    _within(r.fe_params, r.fe_bse, lap.fe_params, 1.0, "fixed effects")
    unweighted = _sample(interlace.glmer, "y ~ x", df, "poisson", groups="g", backend="pymc")
    assert not np.allclose(unweighted.fe_params, r.fe_params, rtol=1e-3)  # the weights were used


# ---- lazy frames ----------------------------------------------------------------------------------
def _lazy_and_eager_designs():
    pl = pytest.importorskip("polars")
    from interlace.backends.reml.lazy_fit import crossproduct_design
    from interlace.data.lazy import lazy_crossproducts
    from interlace.model.formula import model_terms

    df = datasets.load("sleepstudy")
    random = ["(Days | Subject)"]
    eager = _lmm_design("Reaction ~ Days", df, None, random=random)
    _, terms = model_terms("Reaction ~ Days", None, random)
    cp = lazy_crossproducts(pl.from_pandas(df).lazy(), "Reaction ~ Days", terms)
    lazy = crossproduct_design(cp.ZtZ, cp.ZtXy, cp.XytXy, cp.terms, cp.X_names, cp.response, cp.n)
    return df, eager, lazy


def test_lazy_marginal_likelihood_priors_and_start_equal_the_eager_ones():
    from interlace.backends.pymc.marginal import GaussianPrior
    from interlace.backends.pymc.model import marginal_density, start_values
    from interlace.backends.pymc.priors import resolve_priors

    _, eager, lazy = _lazy_and_eager_designs()
    pe, pl_ = resolve_priors(eager, None), resolve_priors(lazy, None)
    for k in pe.fixed:
        assert pe.fixed[k].params["sigma"] == pytest.approx(pl_.fixed[k].params["sigma"], rel=1e-10)
    for k in pe.sd:
        assert pe.sd[k].params["sigma"] == pytest.approx(pl_.sd[k].params["sigma"], rel=1e-10)
    np.testing.assert_allclose(start_values(eager, pe).beta_raw, start_values(lazy, pl_).beta_raw, rtol=1e-10)
    me, ml = marginal_density(eager), marginal_density(lazy)
    prior = GaussianPrior.from_cov(np.zeros(2), np.diag([1e4, 1e2]))
    rng = np.random.default_rng(0)
    for _ in range(5):
        th = np.abs(rng.normal(size=3)) * [1, 0.1, 0.3]
        beta = np.array([251.0, 10.0])
        a, b = me.logp_and_grad(th, 25.0, beta), ml.logp_and_grad(th, 25.0, beta)
        assert a.logp == pytest.approx(b.logp, rel=1e-12)
        np.testing.assert_allclose(a.g_theta, b.g_theta, rtol=1e-8, atol=1e-9)
        np.testing.assert_allclose(a.g_beta, b.g_beta, rtol=1e-8, atol=1e-12)
        c, d = me.logp_integrated(th, 25.0, prior), ml.logp_integrated(th, 25.0, prior)
        assert c.logp == pytest.approx(d.logp, rel=1e-12)


# lazy == eager draw for draw, and two lazy fits: tests/test_pymc_canonical.py


def test_lazy_pymc_refuses_weights_and_the_noncentred_model():
    pl = pytest.importorskip("polars")
    df = datasets.load("sleepstudy").assign(w=1.0)
    lf = pl.from_pandas(df).lazy()
    with pytest.raises(ValueError, match="weights= with a lazy frame"):
        interlace.fit("Reaction ~ Days", lf, groups="Subject", weights="w", backend="pymc", progressbar=False)
    with pytest.raises(ValueError, match="row-level"):
        interlace.fit("Reaction ~ Days", lf, groups="Subject", backend="pymc", marginalize=False,
                      progressbar=False)


def test_gram_design_has_no_rows_to_index():
    from interlace.backends.pymc.model import OBS_DIM, layout_of

    _, _, lazy = _lazy_and_eager_designs()
    assert layout_of(lazy, marginal=True).coords[OBS_DIM] == []
    assert sp.issparse(lazy.gram[0])
