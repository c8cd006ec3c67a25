"""``clmm(..., backend="pymc")``: the cumulative link mixed model sampled with NUTS.

P(yᵢ ≤ j | b) = F(α_j − xᵢ'β − zᵢ'b), F = g⁻¹ of the same :class:`~interlace.model.families.Link`
the Laplace fit uses (``Link.pt_inverse``), so P(yᵢ = j | b) = F(α_j − ηᵢ) − F(α_{j−1} − ηᵢ) with
α₀ = −∞, α_J = ∞. The thresholds are one vector under PyMC's ordered transform
(α₁ < … < α_{J−1}); the random effects are non-centred from the design's Z, one block per
random-effects term (as the GLMM, :mod:`.glmm`), so several terms work as they do there.

Priors (keys of ``priors=``): ``"thresholds"`` Normal(0, 10) each (ordered); the GLMM defaults
on the link scale for β (Normal(0, 2.5/s_j)) and for each random-effect SD (HalfNormal(2.5/s_c)).
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
import xarray as xr

from ...data.design import DesignMatrices
from ...model.families import get_family, get_link
from ...results.bayes_after_fit import posterior_b
from ...results.bayes_models import PosteriorModelResult
from ...results.draws import posterior_arrays
from ...results.posterior import variance_draws, variance_names
from .model import (
    OBS_DIM,
    _fixed_effects,
    layout_of,
    sampled_effects,
    start_from,
)
from .priors import Prior, _check_prior, resolve_priors
from .sampling import SamplerOptions, check_options, diagnostics, run_sampler, warn_if_unconverged

__all__ = ["fit_clmm_pymc", "random_effect_means", "run_info"]

THRESHOLD_DIM = "threshold"


def linear_predictor(design: DesignMatrices, priors, start):
    """Xβ (registering β) — zero without columns."""
    if design.p == 0:
        return pt.zeros(design.n)
    return pt.dot(design.X, _fixed_effects(design, priors, start))


def random_effect_means(design: DesignMatrices, layout, idata) -> dict[str, pd.DataFrame]:
    """Posterior means of b per group: levels × effects."""
    out = {}
    for g in layout.groups:
        arr = idata.posterior[f"b_{g}"].to_numpy()
        out[g] = pd.DataFrame(arr.reshape((-1,) + arr.shape[2:]).mean(axis=0),
                              index=layout.coords[g], columns=layout.group_effects[g])
    return out


def _start_thresholds(y: np.ndarray, n_levels: int, link) -> np.ndarray:
    cum = np.cumsum(np.bincount(y, minlength=n_levels))[:-1] / y.size
    a = link.link(np.clip(cum, 0.02, 0.98))
    return np.maximum.accumulate(a + 1e-3 * np.arange(a.size))


def _pointwise(y: np.ndarray, eta: np.ndarray, alpha: np.ndarray, link) -> np.ndarray:
    """log P(yᵢ | draw) for draws: eta (S, n), alpha (S, J − 1)."""
    edge = np.full((alpha.shape[0], 1), np.inf)
    full = np.concatenate([-edge, alpha, edge], axis=1)
    with np.errstate(over="ignore", invalid="ignore"):
        up = link.cdf_pdf(full[:, y + 1] - eta)[0]
        lo = link.cdf_pdf(full[:, y] - eta)[0]
    return np.log(np.maximum(up - lo, 1e-300))


def fit_clmm_pymc(formula: str, design: DesignMatrices, keep: list[int], y: np.ndarray, levels: list,
                  link: str, n_dropped: int = 0, *, draws: int = 1000, tune: int = 1000, chains: int = 4,
                  cores: int | None = None, random_seed: int | None = None, progressbar: bool = True,
                  sampler: str = "nutpie", priors: dict | None = None,
                  target_accept: float = 0.8) -> PosteriorModelResult:
    """Sample the clmm posterior (see the module docstring) on the Laplace fit's design."""
    opts = check_options(SamplerOptions(draws=draws, tune=tune, chains=chains, cores=cores,
                                        random_seed=random_seed, progressbar=progressbar, sampler=sampler,
                                        target_accept=float(target_accept)))
    t0 = time.perf_counter()
    lk = get_link(link)
    d = dataclasses.replace(design, X=design.X[:, keep], X_names=[design.X_names[j] for j in keep])
    if priors is not None and not isinstance(priors, dict):
        raise TypeError(f"priors= must be a dict such as {{'thresholds': Prior('Normal', mu=0, sigma=5)}}, "
                        f"got {priors!r}")
    user = dict(priors or {})
    th_prior = _check_prior("thresholds", user.pop("thresholds", Prior("Normal", mu=0.0, sigma=10.0)),
                            positive=False)
    ps = resolve_priors(d, user or None, get_family("binomial"))
    start = start_from(d, ps, np.zeros(d.p), 1.0)
    J = len(levels)
    tnames = [f"{levels[j]}|{levels[j + 1]}" for j in range(J - 1)]
    layout = layout_of(d, marginal=False)
    layout.coords[THRESHOLD_DIM] = tnames
    with pm.Model(coords=layout.coords) as model:
        alpha = th_prior.family()("thresholds", **th_prior.params, dims=THRESHOLD_DIM,
                                  transform=pm.distributions.transforms.ordered,
                                  initval=_start_thresholds(y, J, lk))
        eta = linear_predictor(d, ps, start) + sampled_effects(d, layout, ps, start)
        F = lk.pt_inverse(alpha[None, :] - eta[:, None])
        n = d.n
        cum = pt.concatenate([pt.zeros((n, 1)), F, pt.ones((n, 1))], axis=1)
        probs = pt.clip(cum[:, 1:] - cum[:, :-1], 1e-300, 1.0)
        pm.Categorical(layout.response, p=probs, observed=y, dims=OBS_DIM)
    idata, used, seconds = run_sampler(model, opts)
    beta_d = posterior_arrays(idata, "beta") if d.p else np.zeros((opts.draws * opts.chains, 0))
    alpha_d = posterior_arrays(idata, "thresholds")
    theta_d = posterior_arrays(idata, "theta")
    b_d = posterior_b(d, layout, idata)
    eta_d = beta_d @ d.X.T + np.asarray(d.Z @ b_d.T).T
    _add_loglik(idata, layout, y, _pointwise(y, eta_d, alpha_d, lk))
    var = pd.DataFrame(variance_draws(d, theta_d, np.ones(theta_d.shape[0]))[:, :-1],
                       columns=variance_names(d)[:-1])
    names = ["thresholds"] + (["beta"] if d.p else []) + [tl.sd_name for tl in layout.terms]
    names += [tl.corr_name for tl in layout.terms if tl.corr_name is not None]
    diag = diagnostics(idata, names)
    converged = warn_if_unconverged(diag, opts.chains)
    info = run_info(used, opts, seconds, diag, converged, t0, priors={"thresholds": th_prior, "rest": ps})
    effects = random_effect_means(d, layout, idata)
    return PosteriorModelResult("clmm", formula, d.X_names, beta_d, var, effects, idata, diag, info,
                                nobs=d.n, n_dropped=n_dropped, link=link, threshold_names=tnames,
                                threshold_draws=alpha_d)


def run_info(used: dict, opts: SamplerOptions, seconds: float, diag, converged: bool, t0: float,
             **extra) -> dict:
    """The sampler settings, timings and diagnostics a result keeps in ``optimizer_info``
    (``used``: what :func:`~.sampling.run_sampler` reports ran, minus its generator)."""
    ran = {k: v for k, v in used.items() if k != "after"}
    return {**ran, "draws": opts.draws, "tune": opts.tune, "chains": opts.chains,
            "sampling_seconds": seconds, "divergences": diag.divergences, "max_rhat": diag.max_rhat,
            "min_ess_bulk": diag.min_ess_bulk, **extra, "seconds": time.perf_counter() - t0,
            "message": "" if converged else "R-hat > 1.01 or divergences"}


def _add_loglik(idata, layout, y: np.ndarray, ll: np.ndarray) -> None:
    """observed_data and the pointwise log-likelihood (S, n) for az.loo."""
    post = idata.posterior
    nc, nd = post.sizes["chain"], post.sizes["draw"]
    coords = {OBS_DIM: layout.coords[OBS_DIM]}
    for g in ("observed_data", "log_likelihood"):
        if g in idata.groups():
            delattr(idata, g)
    obs = xr.DataArray(y, dims=(OBS_DIM,), coords=coords)
    idata.add_groups(observed_data=xr.Dataset({layout.response: obs}))
    idata.add_groups(log_likelihood=xr.Dataset({layout.response: xr.DataArray(
        ll.reshape(nc, nd, -1), dims=("chain", "draw", OBS_DIM),
        coords={"chain": post.chain, "draw": post.draw, **coords})}))
