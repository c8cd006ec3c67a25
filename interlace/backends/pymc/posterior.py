"""From raw draws to a complete InferenceData: b for the marginal model, observed data, log-likelihood.

- Marginal model: for every draw (θ, σ[, β]) one exact draw of β | y, θ, σ (when β was
  integrated out) and of b | y, θ, σ, β (see :class:`~.marginal.MarginalBase`), stored as
  ``beta`` and per group as ``b_<group>`` with dims (group level, effect) — the same variables
  the non-centred model has.
- ``observed_data``: the response. ``log_likelihood``: under the response's name the pointwise
  conditional log-density log N(yᵢ | xᵢ'β + zᵢ'b + oᵢ, σ²/wᵢ) per draw (the usual conditional
  LOO of a hierarchical model, as bambi reports it), and per grouping factor g,
  ``marginal_<g>``: per level, the log-density of its rows with its random effects integrated
  out (:mod:`.logo`), for leave-one-group-out. ``az.loo(idata, var_name=...)`` picks one. With a
  residual correlation structure the density does not split into independent terms: the
  pointwise terms are then the leave-one-out densities log p(yᵢ | y₋ᵢ, ·) of the multivariate
  normal, and ``marginal_<g>`` exists when each series lies within one level of g
  (:mod:`.corr_loglik`). Neither is stored for a lazy frame (no rows), which has no
  ``observed_data`` either.
"""

from __future__ import annotations

import warnings

import numpy as np
import xarray as xr

from ...data.design import DesignMatrices
from ...results.draws import flat_b, posterior_arrays
from ...results.posterior import GROUP_LOGLIK_PREFIX
from .corr_loglik import correlated_group_loglik, correlated_loglik, series_refusal
from .logo import group_loglik
from .model import FIXED_DIM, OBS_DIM, ModelLayout

__all__ = ["complete_idata", "posterior_arrays", "MAX_LOGLIK_ENTRIES"]

MAX_LOGLIK_ENTRIES = 50_000_000  # draws × observations kept in log_likelihood (400 MB)


def _conditional_draws(
    design: DesignMatrices, layout: ModelLayout, idata, rng
) -> tuple[np.ndarray, np.ndarray]:
    """Exact draws for the marginal model, per posterior draw: β | θ, σ, y when β was integrated
    out (else the sampled β), then b | θ, σ, β, y. Shapes (chains, draws, p) and (…, q)."""
    post = idata.posterior
    nc, nd = post.sizes["chain"], post.sizes["draw"]
    theta = posterior_arrays(idata, "theta")
    sigma = posterior_arrays(idata, "sigma")
    beta = None if layout.beta_prior is not None else posterior_arrays(idata, "beta")
    if layout.corr_param is not None:  # residual correlation: b at each draw's ρ
        rho = posterior_arrays(idata, layout.corr_param)
        beta, b = layout.lmm.draw_conditionals(theta, sigma, beta, rho, rng)
    else:
        beta, b = layout.lmm.draw_conditionals(theta, sigma, beta, layout.beta_prior, rng)
    return beta.reshape(nc, nd, design.p), b.reshape(nc, nd, design.q)


def _group_arrays(design: DesignMatrices, layout: ModelLayout, b: np.ndarray) -> dict[str, np.ndarray]:
    """Split (chains, draws, q) into ``b_<group>`` arrays (chains, draws, levels, effects)."""
    out = {}
    for g, idx in layout.groups.items():
        parts = []
        for i in idx:
            t = design.terms[i]
            parts.append(b[..., t.z_start : t.z_start + t.q].reshape(b.shape[:2] + (t.m, t.k)))
        out[f"b_{g}"] = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=-1)
    return out


def _loglik(design: DesignMatrices, beta: np.ndarray, sigma: np.ndarray, b: np.ndarray) -> np.ndarray:
    """log N(yᵢ | μᵢ, σ²/wᵢ) for draws (S, ·): returns (S, n)."""
    mu = beta @ design.X.T + np.asarray(design.Z @ b.T).T + design.offset[None, :]
    w = np.ones(design.n) if design.weights is None else design.weights
    var = (sigma[:, None] ** 2) / w[None, :]
    r = design.y[None, :] - mu
    return -0.5 * (np.log(2 * np.pi * var) + r * r / var)


def complete_idata(design: DesignMatrices, layout: ModelLayout, idata, response: str, rng=None):
    """Add b (marginal model), observed_data and log_likelihood to ``idata`` in place; returns it.
    ``rng`` (a Generator, or a seed) drives the exact conditional draws."""
    post = idata.posterior
    nc, nd = post.sizes["chain"], post.sizes["draw"]
    if layout.marginal:
        beta, b = _conditional_draws(design, layout, idata, np.random.default_rng(rng))
        extra = {}
        if layout.beta_prior is not None:
            extra["beta"] = xr.DataArray(
                beta,
                dims=("chain", "draw", FIXED_DIM),
                coords={"chain": post.chain, "draw": post.draw, FIXED_DIM: layout.coords[FIXED_DIM]},
            )
        for name, arr in _group_arrays(design, layout, b).items():
            g = name[2:]
            extra[name] = xr.DataArray(
                arr,
                dims=("chain", "draw", g, layout.group_effect_dims[g]),
                coords={
                    "chain": post.chain,
                    "draw": post.draw,
                    g: layout.coords[g],
                    layout.group_effect_dims[g]: layout.group_effects[g],
                },
            )
        idata.posterior = post.assign(extra)
    else:
        b = flat_b(design, layout, idata)
    if design.gram is not None:
        return idata  # a lazy fit has no rows: no observed data, no pointwise likelihood
    obs = xr.Dataset(
        {response: xr.DataArray(design.y, dims=(OBS_DIM,), coords={OBS_DIM: layout.coords[OBS_DIM]})}
    )
    if "observed_data" in idata.groups():
        del idata.observed_data
    idata.add_groups(observed_data=obs)
    if "log_likelihood" in idata.groups():
        del idata.log_likelihood
    if nc * nd * design.n > MAX_LOGLIK_ENTRIES:
        warnings.warn(
            f"log_likelihood not stored: {nc * nd} draws × {design.n} observations exceed "
            f"{MAX_LOGLIK_ENTRIES:,} values; az.loo needs it — use fewer draws",
            stacklevel=4,
        )
        return idata
    beta = posterior_arrays(idata, "beta")
    sigma = posterior_arrays(idata, "sigma")
    b = b.reshape(nc * nd, design.q)
    rho = None if layout.corr_param is None else posterior_arrays(idata, layout.corr_param).astype(float)
    ll = _loglik(design, beta, sigma, b) if rho is None else correlated_loglik(design, beta, sigma, rho, b)
    ll = ll.reshape(nc, nd, design.n)
    cc = {"chain": post.chain, "draw": post.draw}
    per_obs = {**cc, OBS_DIM: layout.coords[OBS_DIM]}
    lik = {response: xr.DataArray(ll, dims=("chain", "draw", OBS_DIM), coords=per_obs)}
    theta = posterior_arrays(idata, "theta")
    for g in layout.groups:  # per level, its random effects integrated out (leave-one-group-out)
        if rho is None:
            lg = group_loglik(design, g, beta, sigma, theta, b)
        elif series_refusal(design, g) is None:
            lg = correlated_group_loglik(design, g, beta, sigma, theta, rho, b)
        else:
            continue  # series crossing the levels of g: result.loo(group=g) says so
        lg = lg.reshape(nc, nd, -1)
        lik[f"{GROUP_LOGLIK_PREFIX}{g}"] = xr.DataArray(
            lg, dims=("chain", "draw", g), coords={**cc, g: layout.coords[g]}
        )
    idata.add_groups(log_likelihood=xr.Dataset(lik))
    return idata
