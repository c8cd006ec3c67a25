"""The PyMC backend: marginal density and its gradient against dense algebra, exact conditional
draws, posterior agreement with REML on sleepstudy, compare(), priors and argument errors."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("pymc")
pytestmark = pytest.mark.slow  # PyMC sampling: outside the fast lane (pytest -m "not slow")

import interlace  # noqa: E402
from interlace import datasets  # noqa: E402
from interlace.backends.pymc.marginal import GaussianPrior, MarginalLMM  # noqa: E402
from interlace.backends.pymc.priors import Prior, resolve_priors  # noqa: E402
from interlace.backends.pymc.single import SingleTermLMM  # noqa: E402

SLEEP = "Reaction ~ Days"
SLOPES = ["(Days | Subject)"]


@pytest.fixture(scope="module")
def sleep() -> pd.DataFrame:
    return datasets.load("sleepstudy")


@pytest.fixture(scope="module")
def reml(sleep):
    return interlace.fit(SLEEP, data=sleep, random=SLOPES)


@pytest.fixture(scope="module")
def bayes(sleep):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return interlace.fit(
            SLEEP,
            data=sleep,
            random=SLOPES,
            backend="pymc",
            chains=2,
            draws=600,
            tune=600,
            random_seed=11,
            progressbar=False,
        )


# ---- the marginal density ---------------------------------------------------------------------
def _dense(d, theta, sigma):
    Lam = np.zeros((d.q, d.q))
    for t in d.terms:
        T = t.T(theta)
        for lv in range(t.m):
            s = t.z_start + lv * t.k
            Lam[s : s + t.k, s : s + t.k] = T
    Z = d.Z.toarray()
    w = np.ones(d.n) if d.weights is None else d.weights
    V = sigma**2 * (np.diag(1 / w) + Z @ Lam @ Lam.T @ Z.T)
    return Lam, Z, w, V


def _mvn_logpdf(y, mean, V):
    L = np.linalg.cholesky(V)
    r = np.linalg.solve(L, y - mean)
    return -0.5 * (len(y) * np.log(2 * np.pi) + 2 * np.sum(np.log(np.diag(L))) + r @ r)


def _num_grad(f, x0):
    g = np.zeros_like(x0)
    for i in range(x0.size):
        h = 1e-6 * max(1.0, abs(x0[i]))
        e = np.zeros_like(x0)
        e[i] = h
        g[i] = (f(x0 + e) - f(x0 - e)) / (2 * h)
    return g


def _cases():
    sleep = datasets.load("sleepstudy")
    w = np.random.default_rng(1).uniform(0.5, 2.0, len(sleep))
    pen = datasets.load("penicillin")
    pastes = datasets.load("pastes")
    return {
        "slopes": interlace.fit(SLEEP, data=sleep, random=SLOPES),
        "weighted-intercept": interlace.fit(SLEEP, data=sleep, random=["(1 | Subject)"], weights=w),
        "uncorrelated": interlace.fit(SLEEP, data=sleep, random=["(Days || Subject)"]),
        "crossed": interlace.fit("diameter ~ 1", data=pen, random=["(1 | plate)", "(1 | sample)"]),
        "nested": interlace.fit("strength ~ 1", data=pastes, random=["(1 | batch/cask)"]),
    }


CASES = _cases()


@pytest.mark.parametrize("name", list(CASES))
def test_marginal_logp_and_gradient_match_dense_algebra(name):
    r = CASES[name]
    d = r.design
    rng = np.random.default_rng(0)
    theta = np.maximum(r.theta + 0.1 * rng.standard_normal(d.n_theta), d.theta_lower() + 0.05)
    sigma = 1.1 * np.sqrt(r.scale)
    beta = r.fe_params.to_numpy() + rng.standard_normal(d.p)
    _, _, _, V = _dense(d, theta, sigma)
    ref = _mvn_logpdf(d.y, d.X @ beta + d.offset, V)
    S0 = np.diag(rng.uniform(5.0, 50.0, d.p) ** 2)
    m0 = 10.0 * rng.standard_normal(d.p)
    prior = GaussianPrior.from_cov(m0, S0)
    ref_int = _mvn_logpdf(d.y, d.X @ m0 + d.offset, V + d.X @ S0 @ d.X.T)
    evaluators: list = [MarginalLMM(d)]
    if SingleTermLMM.applies(d):  # the compiled kernels and the numpy level-wise path
        plain = SingleTermLMM(d)
        plain.use_kernels = False
        evaluators += [SingleTermLMM(d), plain]
    nt = d.n_theta
    for ev in evaluators:
        parts = ev.logp_and_grad(theta, sigma, beta)
        assert parts.logp == pytest.approx(ref, abs=1e-8)
        x0 = np.concatenate([theta, [sigma], beta])
        num = _num_grad(lambda x, ev=ev: ev.logp(x[:nt], x[nt], x[nt + 1 :]), x0)
        got = np.concatenate([parts.g_theta, [parts.g_sigma], parts.g_beta])
        np.testing.assert_allclose(got, num, rtol=1e-5, atol=1e-5 * np.max(np.abs(num)))
        integ = ev.logp_integrated(theta, sigma, prior)
        assert integ.logp == pytest.approx(ref_int, abs=1e-8)
        x1 = np.concatenate([theta, [sigma]])
        num = _num_grad(lambda x, ev=ev: ev.logp_integrated(x[:nt], x[nt], prior, gradient=False).logp, x1)
        got = np.concatenate([integ.g_theta, [integ.g_sigma]])
        np.testing.assert_allclose(got, num, rtol=1e-5, atol=1e-5 * np.max(np.abs(num)))


@pytest.mark.parametrize("name", ["slopes", "uncorrelated", "crossed"])
def test_conditional_draws_have_the_exact_moments(name):
    r = CASES[name]
    d = r.design
    ev = SingleTermLMM(d) if SingleTermLMM.applies(d) else MarginalLMM(d)
    theta, sigma, beta = r.theta, np.sqrt(r.scale), r.fe_params.to_numpy()
    Lam, Z, w, V = _dense(d, theta, sigma)
    A = Lam.T @ Z.T @ (w[:, None] * Z) @ Lam + np.eye(d.q)
    mean_b = Lam @ np.linalg.solve(A, Lam.T @ Z.T @ (w * (d.y - d.offset - d.X @ beta)))
    cov_b = sigma**2 * Lam @ np.linalg.solve(A, Lam.T)
    np.testing.assert_allclose(ev.conditional_mean_b(theta, beta), mean_b, atol=1e-9 * np.abs(mean_b).max())
    rng = np.random.default_rng(5)
    draws = np.array([ev.draw_b(theta, sigma, beta, rng) for _ in range(3000)])
    sd = np.sqrt(np.diag(cov_b))
    assert np.max(np.abs(draws.mean(0) - mean_b) / sd) < 0.1  # 3000 draws: MC error sd/55
    np.testing.assert_allclose(draws.std(0), sd, rtol=0.08)
    # β | θ, σ, y for a Gaussian prior: precision X'V⁻¹X + P₀
    prior = GaussianPrior.from_cov(np.zeros(d.p), np.eye(d.p) * 100.0**2)
    Vi = np.linalg.inv(V)
    Hp = d.X.T @ Vi @ d.X + prior.precision
    mean_beta = np.linalg.solve(Hp, d.X.T @ Vi @ (d.y - d.offset))
    bd = np.array([ev.draw_beta(theta, sigma, prior, rng) for _ in range(3000)])
    sd_beta = np.sqrt(np.diag(np.linalg.inv(Hp)))
    assert np.max(np.abs(bd.mean(0) - mean_beta) / sd_beta) < 0.1
    np.testing.assert_allclose(bd.std(0), sd_beta, rtol=0.08)
    # all draws at once (batched for a single term): β integrated, then b given those β
    S = 3000
    beta_s, b_s = ev.draw_conditionals(np.tile(theta, (S, 1)), np.full(S, sigma), None, prior, rng)
    assert np.max(np.abs(beta_s.mean(0) - mean_beta) / sd_beta) < 0.1
    np.testing.assert_allclose(beta_s.std(0), sd_beta, rtol=0.08)
    beta_s, b_s = ev.draw_conditionals(
        np.tile(theta, (S, 1)), np.full(S, sigma), np.tile(beta, (S, 1)), None, rng
    )
    assert np.max(np.abs(b_s.mean(0) - mean_b) / sd) < 0.1
    np.testing.assert_allclose(b_s.std(0), sd, rtol=0.08)


def test_op_gradient_through_pytensor(reml):
    """The PyMC model's compiled log-density gradient (through the Op's L_op) matches finite differences."""
    from interlace.backends.pymc.flat import flatten_model
    from interlace.backends.pymc.model import build_model

    for prior in (None, {"Days": Prior("StudentT", nu=3, mu=0, sigma=50)}):
        model, layout = build_model(reml.design, resolve_priors(reml.design, prior), marginal=True)
        assert (layout.beta_prior is None) == (prior is not None)
        flat = flatten_model(model)
        x = flat.initial_point(1)
        logp, grad = flat.fn(x)[:2]
        num = _num_grad(lambda z, flat=flat: float(flat.fn(z)[0]), x)
        np.testing.assert_allclose(grad, num, rtol=1e-5, atol=1e-6 * np.max(np.abs(num)))
        assert np.isfinite(logp)


# ---- fits ---------------------------------------------------------------------------------
def test_sleepstudy_posterior_agrees_with_reml(bayes, reml):
    assert bayes.backend == "pymc"
    sd = bayes.fe_bse
    assert np.all(np.abs(bayes.fe_params - reml.fe_params) < 0.5 * sd)
    # posterior SDs of β are close to the REML standard errors
    np.testing.assert_allclose(bayes.fe_bse, reml.fe_bse, rtol=0.25)
    vc_b, vc_r = bayes.variance_components["Subject"], reml.variance_components["Subject"]
    np.testing.assert_allclose(np.sqrt(np.diag(vc_b)), np.sqrt(np.diag(vc_r)), rtol=0.35)
    assert np.sqrt(bayes.scale) == pytest.approx(np.sqrt(reml.scale), rel=0.1)
    assert bayes.optimizer_info["max_rhat"] < 1.02
    assert bayes.optimizer_info["divergences"] == 0
    assert bayes.converged
    # random effects: posterior means near the conditional modes
    re_b, re_r = bayes.random_effects["Subject"], reml.random_effects["Subject"]
    assert list(re_b.index) == list(re_r.index) and list(re_b.columns) == ["(Intercept)", "Days"]
    post_sd = bayes.idata.posterior["b_Subject"].std(("chain", "draw")).to_numpy()
    assert np.max(np.abs(re_b.to_numpy() - re_r.to_numpy()) / post_sd) < 0.5
    # intervals are posterior quantiles and cover the REML estimates
    ci = bayes.fe_conf_int()
    assert np.all((ci["lower"] < reml.fe_params) & (reml.fe_params < ci["upper"]))
    draws = bayes.fe_draws
    np.testing.assert_allclose(ci["lower"], draws.quantile(0.025), rtol=1e-12)
    assert bayes.varcov.shape == (2, 2)


def test_idata_groups_and_loo(bayes, sleep):
    import arviz as az

    idata = bayes.idata
    for group in ("posterior", "sample_stats", "observed_data", "log_likelihood"):
        assert group in idata.groups()
    post = idata.posterior
    assert post.sizes["chain"] == 2 and post.sizes["draw"] == 600
    assert list(post["beta"].coords["fixed_effect"].values) == ["(Intercept)", "Days"]
    assert post["b_Subject"].dims[2:] == ("Subject", "Subject__effect")
    assert list(post["sd_Subject"].coords["Subject__effect"].values) == ["(Intercept)", "Days"]
    np.testing.assert_array_equal(idata.observed_data["Reaction"].to_numpy(), sleep["Reaction"].to_numpy())
    ll = idata.log_likelihood["Reaction"]
    assert ll.shape == (2, 600, len(sleep))
    # pointwise log-likelihood at one draw, by hand
    beta = post["beta"].to_numpy()[0, 0]
    b = post["b_Subject"].to_numpy()[0, 0]
    sigma = float(post["sigma"].to_numpy()[0, 0])
    codes = bayes.design.terms[0].codes
    mu = beta[0] + beta[1] * sleep["Days"].to_numpy() + b[codes, 0] + b[codes, 1] * sleep["Days"].to_numpy()
    r = sleep["Reaction"].to_numpy() - mu
    expect = -0.5 * np.log(2 * np.pi * sigma**2) - 0.5 * r**2 / sigma**2
    np.testing.assert_allclose(ll.to_numpy()[0, 0], expect, rtol=1e-10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loo = az.loo(idata, var_name="Reaction")  # the per-observation (conditional) variable
    assert np.isfinite(loo.elpd_loo) and -900 < loo.elpd_loo < -820
    assert bayes.loo().elpd_loo == loo.elpd_loo


def test_summary_and_confint(bayes):
    text = str(bayes.summary())
    assert "MCMC" in text and "sd_Days|Subject" in text and "R-hat" in text
    ci = bayes.confint()
    assert list(ci.index) == [
        "sd_(Intercept)|Subject",
        "cor_(Intercept).Days|Subject",
        "sd_Days|Subject",
        "sigma",
        "(Intercept)",
        "Days",
    ]
    assert np.all(ci.iloc[:, 0] < ci.iloc[:, 1])
    with pytest.raises(ValueError, match="quantile"):
        bayes.confint(method="profile")


def test_compare_reml_and_pymc(bayes, reml):
    table = interlace.compare(reml, bayes)
    assert list(table.columns.get_level_values(0).unique()) == ["reml", "pymc"]
    assert list(table.columns.get_level_values(1).unique()) == [
        "estimate", "se", "lower", "upper", "interval"]
    assert table.loc["Days", ("reml", "estimate")] == pytest.approx(reml.fe_params["Days"], rel=1e-12)
    assert table.loc["Days", ("pymc", "estimate")] == pytest.approx(bayes.fe_params["Days"], rel=1e-12)
    assert table.loc["Days", ("pymc", "se")] == pytest.approx(bayes.fe_bse["Days"], rel=1e-12)
    sd_reml = np.sqrt(reml.variance_components["Subject"].loc["Days", "Days"])
    assert table.loc["sd_Days|Subject", ("reml", "estimate")] == pytest.approx(sd_reml, rel=1e-10)
    assert table.loc["sigma", ("reml", "estimate")] == pytest.approx(np.sqrt(reml.scale), rel=1e-12)
    assert table.loc["sigma", ("reml", "interval")] == "Wald" and table.loc["sigma", ("reml", "se")] > 0
    assert table.loc["sigma", ("pymc", "estimate")] == pytest.approx(bayes.variance_draws["sigma"].mean())
    lo, hi = table.loc["sd_Days|Subject", ("pymc", "lower")], table.loc["sd_Days|Subject", ("pymc", "upper")]
    assert lo < sd_reml < hi
    named = interlace.compare(reml, bayes, names=["REML", "NUTS"], level=0.9)
    assert list(named.columns.get_level_values(0).unique()) == ["REML", "NUTS"]
    with pytest.raises(TypeError, match="argument 2"):
        interlace.compare(reml, "not a fit")
    with pytest.raises(ValueError, match="names"):
        interlace.compare(reml, bayes, names=["a"])

    import matplotlib

    matplotlib.use("Agg")
    fig = interlace.plot_compare(reml, bayes, parameters=["Days", "sigma"])
    assert len(fig.axes) == 2
    with pytest.raises(KeyError, match="nope"):
        interlace.plot_compare(reml, bayes, parameters=["nope"])


def test_noncentered_model_and_pymc_sampler_agree(sleep, reml, bayes):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        nc = interlace.fit(
            SLEEP,
            data=sleep,
            random=SLOPES,
            backend="pymc",
            marginalize=False,
            sampler="pymc",
            chains=2,
            draws=400,
            tune=400,
            random_seed=3,
            progressbar=False,
        )
    assert nc.optimizer_info["marginalized"] is False and nc.optimizer_info["sampler"] == "pymc"
    assert "z_Subject" in nc.idata.posterior and "log_likelihood" in nc.idata.groups()
    assert np.all(np.abs(nc.fe_params - reml.fe_params) < 0.5 * nc.fe_bse)
    # the same posterior as the marginal model, within Monte Carlo error
    assert np.all(np.abs(nc.fe_params - bayes.fe_params) < 0.3 * bayes.fe_bse)
    sd_nc = nc.variance_draws.mean()
    sd_m = bayes.variance_draws.mean()
    np.testing.assert_allclose(
        sd_nc[["sd_(Intercept)|Subject", "sd_Days|Subject", "sigma"]],
        sd_m[["sd_(Intercept)|Subject", "sd_Days|Subject", "sigma"]],
        rtol=0.15,
    )


def test_crossed_model_with_a_non_gaussian_fixed_prior():
    """Two terms (the general blocked evaluator) and a Student-t prior, so NUTS samples β too."""
    pen = datasets.load("penicillin")
    reml = interlace.fit("diameter ~ 1", data=pen, random=["(1 | plate)", "(1 | sample)"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        fit = interlace.fit(
            "diameter ~ 1",
            data=pen,
            random=["(1 | plate)", "(1 | sample)"],
            backend="pymc",
            chains=2,
            draws=500,
            tune=500,
            random_seed=2,
            progressbar=False,
            priors={"(Intercept)": Prior("StudentT", nu=4, mu=23, sigma=10)},
        )
    assert "beta_centered" in fit.idata.posterior  # sampled, not integrated
    assert abs(fit.fe_params["(Intercept)"] - reml.fe_params["(Intercept)"]) < 0.5 * fit.fe_bse["(Intercept)"]
    vd = fit.variance_draws.mean()
    assert vd["sd_(Intercept)|plate"] == pytest.approx(np.sqrt(reml.variance_components["plate"]), rel=0.35)
    assert vd["sigma"] == pytest.approx(np.sqrt(reml.scale), rel=0.1)
    assert set(fit.random_effects) == {"plate", "sample"}
    assert fit.optimizer_info["max_rhat"] < 1.02


# ---- priors and arguments -------------------------------------------------------------------
def test_default_priors_are_scaled_to_the_data(reml, sleep):
    ps = resolve_priors(reml.design, None)
    s_y = float(np.std(sleep["Reaction"]))
    # from the order-free cross-products (backends/pymc/columns.py): equal to the row moments to rounding
    assert ps.fixed["(Intercept)"].dist == "Normal"
    expect = {"mu": float(sleep["Reaction"].mean()), "sigma": 2.5 * s_y}
    assert ps.fixed["(Intercept)"].params == pytest.approx(expect, rel=1e-12)
    assert ps.fixed["Days"].params["sigma"] == pytest.approx(2.5 * s_y / np.std(sleep["Days"]))
    assert ps.sigma.dist == "HalfStudentT"
    assert ps.sigma.params == pytest.approx({"nu": 4.0, "sigma": s_y}, rel=1e-12)
    assert ps.sd["Subject:(Intercept)"].params["sigma"] == pytest.approx(2.5 * s_y)
    assert ps.sd["Subject:Days"].params["sigma"] == pytest.approx(2.5 * s_y / np.std(sleep["Days"]))
    ps = resolve_priors(
        reml.design,
        {"Subject": Prior("Exponential", lam=0.1), "eta": 2, "sigma": Prior("HalfNormal", sigma=5)},
    )
    assert ps.sd["Subject:Days"] == Prior("Exponential", lam=0.1) and ps.eta == 2.0
    assert ps.sigma.dist == "HalfNormal"


def test_prior_parameters_are_checked_when_made():
    with pytest.raises(ValueError, match=r"Normal has no parameters 'mean', 'sd'; its parameters are mu,"):
        Prior("Normal", mean=0, sd=10)
    assert Prior("StudentT", nu=3, mu=0, sigma=10).params == {"nu": 3, "mu": 0, "sigma": 10}


@pytest.mark.parametrize(
    "priors, err, match",
    [
        ({"Dayz": Prior("Normal", mu=0, sigma=1)}, KeyError, "Dayz"),
        ({"sigma": Prior("Normal", mu=0, sigma=1)}, ValueError, "positive support"),
        ({"Days": Prior("Nonsense")}, ValueError, "Nonsense"),
        ({"Days": 3.0}, TypeError, "Prior"),
        ({"eta": -1}, ValueError, "eta"),
        ("sigma", TypeError, "dict"),
    ],
)
def test_bad_priors_are_reported(reml, priors, err, match):
    with pytest.raises(err, match=match):
        resolve_priors(reml.design, priors)


@pytest.mark.parametrize(
    "kwargs, err, match",
    [
        ({"draws": 0}, ValueError, "draws"),
        ({"chains": 1.5}, ValueError, "chains"),
        ({"sampler": "stan"}, ValueError, "sampler"),
        ({"marginalize": "yes"}, ValueError, "marginalize"),
        ({"target_accept": 1.5}, ValueError, "target_accept"),
        ({"progressbar": "no"}, TypeError, "progressbar"),
        ({"correlation": interlace.AR1(time="Days", group="Subject"), "marginalize": False}, ValueError,
         "correlation"),
    ],
)
def test_bad_sampling_arguments_are_reported(sleep, kwargs, err, match):
    with pytest.raises(err, match=match):
        interlace.fit(SLEEP, data=sleep, random=SLOPES, backend="pymc", progressbar=False, **kwargs)


def test_weights_and_offset_marginal_and_noncentered_agree(sleep):
    """Prior weights and an offset enter both models the same way (same posterior)."""
    w = np.where(sleep["Days"].to_numpy() > 4, 2.0, 0.5)
    off = 3.0 * sleep["Days"].to_numpy()
    fits = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for marg in ("auto", False):
            fits[marg] = interlace.fit(
                SLEEP,
                data=sleep,
                random=SLOPES,
                backend="pymc",
                weights=w,
                offset=off,
                marginalize=marg,
                chains=2,
                draws=400,
                tune=400,
                random_seed=5,
                progressbar=False,
            )
    reml = interlace.fit(SLEEP, data=sleep, random=SLOPES, weights=w, offset=off)
    a, b = fits["auto"], fits[False]
    assert np.all(np.abs(a.fe_params - reml.fe_params) < 0.5 * a.fe_bse)
    assert np.all(np.abs(a.fe_params - b.fe_params) < 0.35 * a.fe_bse)
    # the offset moves the slope by −3 against the fit without it
    plain = interlace.fit(SLEEP, data=sleep, random=SLOPES, weights=w)
    assert reml.fe_params["Days"] == pytest.approx(plain.fe_params["Days"] - 3.0, abs=1e-6)
    va, vb = a.variance_draws.mean(), b.variance_draws.mean()
    np.testing.assert_allclose(va[["sd_Days|Subject", "sigma"]], vb[["sd_Days|Subject", "sigma"]], rtol=0.15)
    assert va["sigma"] == pytest.approx(np.sqrt(reml.scale), rel=0.1)


def test_unconverged_chains_warn(sleep):
    with pytest.warns(UserWarning, match="R-hat"):
        short = interlace.fit(
            SLEEP,
            data=sleep,
            random=SLOPES,
            backend="pymc",
            chains=2,
            draws=15,
            tune=15,
            random_seed=1,
            progressbar=False,
        )
    assert not short.converged and short.optimizer_info["max_rhat"] > 1.01
    assert "have not converged" in str(short.summary())


def test_a_posterior_is_reported_as_a_posterior(bayes):
    """No z/t-test p-values on a posterior; to_frame is the posterior table; method says what ran."""
    for name in ("fe_pvalues", "fe_tvalues", "pvalues"):
        with pytest.raises(AttributeError, match="a posterior has no"):
            getattr(bayes, name)
    table = bayes.to_frame()
    assert list(table.columns) == ["term", "mean", "sd", "lower", "upper", "r_hat", "ess_bulk"]
    np.testing.assert_allclose(table["mean"], bayes.fe_params.to_numpy())
    assert np.all(table["lower"] < table["mean"]) and np.all(table["mean"] < table["upper"])
    assert bayes.method.startswith("posterior (NUTS")
