"""The Bayesian GLMM: the same X, Z and family as ``glmer``'s REML backend, sampled with NUTS.

η = Xβ + Zb + offset with non-centred b_t = z_t L_t' (z ~ N(0, 1), L_t the Cholesky factor of
the term's covariance; lme4's θ is L_t itself, since a GLMM's b is on the link scale), and
y | b from the family with μ = g⁻¹(η): Binomial(wᵢ trials) (``logit_p`` for the logit link),
Poisson, Gamma(shape 1/σ², mean μ) or NB2(μ, θ). Priors: :mod:`.priors` with ``family``.

The result is a :class:`~interlace.results.glmm.GLMMResult` of posterior summaries (means of β,
b, the term covariances and the family parameter; SDs of β), with ``idata`` (posterior,
observed data and the pointwise log-likelihood for ``az.loo``) and ``llf`` = the Laplace
log-likelihood at the posterior means (the REML engine's evaluator).
"""

from __future__ import annotations

import time

import numpy as np
import pymc as pm
import pytensor.tensor as pt
import xarray as xr
from scipy import stats

from ...data.design import DesignMatrices
from ...model.families import Family
from ...model.spec import ModelSpec
from ...results.bayes_after_fit import posterior_b
from ...results.draws import posterior_arrays
from ...results.lmm import FitInfo
from ...results.posterior import PyMCGLMMResult, _mean_theta
from .model import (
    OBS_DIM,
    Start,
    _fixed_effects,
    layout_of,
    sampled_effects,
    start_from,
)
from .posterior import MAX_LOGLIK_ENTRIES
from .priors import link_scale, resolve_priors
from .sampling import (
    DEFAULT_SAMPLER,
    SamplerOptions,
    check_options,
    diagnostics,
    run_sampler,
    warn_if_unconverged,
)

__all__ = ["fit_glmm", "PyMCGLMMResult"]


def _start(design: DesignMatrices, family: Family, priors) -> Start:
    """β from least squares on the linked starting means; each SD half the link scale's unit
    (:func:`.priors.link_scale`: 1 for unit-free links, sd(y)·|dη/dμ| for identity, inverse)."""
    mu0 = family.start_mu(design.y)
    eta0 = family.link.link(mu0) - design.offset
    beta = np.linalg.lstsq(design.X, eta0, rcond=None)[0]
    return start_from(design, priors, beta, link_scale(design, family)[1])


def build_glmm_model(design: DesignMatrices, family: Family, priors):
    """The PyMC model (see the module docstring) and its layout."""
    layout = layout_of(design, marginal=False)
    start = _start(design, family, priors)
    w = np.ones(design.n) if design.weights is None else design.weights
    with pm.Model(coords=layout.coords) as model:
        beta = _fixed_effects(design, priors, start)
        eta = pt.dot(design.X, beta) + design.offset + sampled_effects(design, layout, priors, start)
        name, obs = layout.response, {"observed": design.y, "dims": OBS_DIM}
        if family.name == "binomial":
            trials = np.round(w).astype("int64")
            obs["observed"] = np.round(design.y * w).astype("int64")
            if family.link.name == "logit":
                pm.Binomial(name, n=trials, logit_p=eta, **obs)
            else:
                pm.Binomial(name, n=trials, p=family.link.pt_inverse(eta), **obs)
            return model, layout
        mu = family.link.pt_inverse(eta)
        if family.name == "poisson":
            dist, kw = pm.Poisson, {"mu": mu}
        elif family.name == "Gamma":
            sigma = priors.sigma.family()("sigma", **priors.sigma.params)
            shape = 1.0 / sigma**2
            dist, kw = pm.Gamma, {"alpha": shape, "beta": shape / mu}
        else:
            nb_theta = priors.sigma.family()("nb_theta", **priors.sigma.params)
            dist, kw = pm.NegativeBinomial, {"mu": mu, "alpha": nb_theta}
        if design.weights is None:
            dist(name, **kw, **obs)
        else:  # prior weights multiply each log-density, Σ wᵢ log f(yᵢ | μᵢ), as the Laplace fit
            pm.Potential(f"{name}_weighted", pt.sum(w * pm.logp(dist.dist(**kw), design.y)))
    return model, layout


def _pointwise_loglik(family: Family, design: DesignMatrices, mu: np.ndarray, extra: np.ndarray | None):
    """log f(yᵢ | μᵢ) per draw: mu (S, n), extra the per-draw σ (Gamma) or θ (NB)."""
    y = design.y[None, :]
    w = np.ones(design.n) if design.weights is None else design.weights
    if family.name == "binomial":
        return stats.binom.logpmf(np.round(y * w), np.round(w)[None, :], mu)
    if family.name == "poisson":
        return w * stats.poisson.logpmf(y, mu)
    if family.name == "Gamma":
        disp = extra[:, None] ** 2
        return w * stats.gamma.logpdf(y, 1.0 / disp, scale=mu * disp)
    th = extra[:, None]
    return w * stats.nbinom.logpmf(y, th, th / (th + mu))


def fit_glmm(spec: ModelSpec, design: DesignMatrices, family: Family, n_dropped: int = 0, *,
             draws: int = 1000, tune: int = 1000, chains: int = 4, cores: int | None = None,
             random_seed: int | None = None, progressbar: bool = True, sampler: str = DEFAULT_SAMPLER,
             priors: dict | None = None, target_accept: float = 0.8,
             plugin_loglik=None) -> PyMCGLMMResult:
    """Sample the GLMM's posterior and summarise it as a GLMMResult (see the module docstring)."""
    if not 0 < float(target_accept) < 1:
        raise ValueError(f"target_accept must be between 0 and 1, got {target_accept!r}")
    opts = check_options(SamplerOptions(draws=draws, tune=tune, chains=chains, cores=cores,
                                        random_seed=random_seed, progressbar=progressbar, sampler=sampler,
                                        target_accept=float(target_accept)))
    t0 = time.perf_counter()
    prior_set = resolve_priors(design, priors, family)
    model, layout = build_glmm_model(design, family, prior_set)
    idata, ran, seconds = run_sampler(model, opts)
    ran.pop("after")  # nothing is drawn after sampling here

    beta_d = posterior_arrays(idata, "beta")
    theta_d = posterior_arrays(idata, "theta")
    b_d = posterior_b(design, layout, idata)
    extra_name = prior_set.sigma_key
    extra_d = None if extra_name is None else posterior_arrays(idata, extra_name).astype(float)
    eta_d = beta_d @ design.X.T + np.asarray(design.Z @ b_d.T).T + design.offset[None, :]
    mu_d = family.link.inverse(eta_d)
    _add_observed_and_loglik(idata, design, layout, family, mu_d, extra_d)

    fam = family
    scale = 1.0
    if family.name == "negative_binomial":
        fam = family.with_theta(float(extra_d.mean()))
    elif family.name == "Gamma":
        scale = float(np.mean(extra_d**2))
    theta = _mean_theta(design, theta_d, np.ones(theta_d.shape[0]), 1.0)  # E[ΛΛ'] per term
    beta = beta_d.mean(axis=0)
    b = b_d.mean(axis=0)
    eta = design.X @ beta + design.Z @ b + design.offset
    mu = fam.link.inverse(eta)
    # the Laplace log-likelihood at the posterior means, computed by the caller's engine
    llf = np.nan if plugin_loglik is None else plugin_loglik(theta, beta, fam)
    names = ["beta"] + [tl.sd_name for tl in layout.terms] + ([extra_name] if extra_name else [])
    names += [tl.corr_name for tl in layout.terms if tl.corr_name is not None]
    diag = diagnostics(idata, names)
    converged = warn_if_unconverged(diag, opts.chains)
    info = FitInfo(
        theta=theta, beta=beta, b=b, scale=scale, llf=float(llf),
        cov_beta=np.atleast_2d(np.cov(beta_d, rowvar=False)), fe_df=np.full(design.p, np.inf),
        fitted=mu, resid=design.y - mu, converged=converged,
        is_singular=False,
        optimizer_info={**ran, "random_seed": opts.random_seed, "draws": opts.draws, "tune": opts.tune,
                        "chains": opts.chains,
                        "sampling_seconds": seconds, "divergences": diag.divergences,
                        "max_rhat": diag.max_rhat, "min_ess_bulk": diag.min_ess_bulk,
                        "priors": prior_set, "seconds": time.perf_counter() - t0,
                        "message": "" if converged else "R-hat > 1.01 or divergences"},
    )
    return PyMCGLMMResult(spec, design, info, fam, eta, n_dropped=n_dropped, idata=idata, beta_draws=beta_d,
                          diagnostics=diag, layout=layout, family_param=extra_name)


def _add_observed_and_loglik(idata, design, layout, family, mu_d, extra_d) -> None:
    post = idata.posterior
    nc, nd = post.sizes["chain"], post.sizes["draw"]
    coords = {OBS_DIM: layout.coords[OBS_DIM]}
    if "observed_data" in idata.groups():
        del idata.observed_data
    idata.add_groups(observed_data=xr.Dataset(
        {layout.response: xr.DataArray(design.y, dims=(OBS_DIM,), coords=coords)}))
    if nc * nd * design.n > MAX_LOGLIK_ENTRIES:
        return
    ll = _pointwise_loglik(family, design, mu_d, extra_d).reshape(nc, nd, design.n)
    if "log_likelihood" in idata.groups():
        del idata.log_likelihood
    idata.add_groups(log_likelihood=xr.Dataset({layout.response: xr.DataArray(
        ll, dims=("chain", "draw", OBS_DIM), coords={"chain": post.chain, "draw": post.draw, **coords})}))

