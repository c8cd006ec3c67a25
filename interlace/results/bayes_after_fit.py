"""The after-fit toolkit on a posterior: what REML results do by refitting, PyMC results do with draws.

- ``simulate``: the posterior predictive. Simulation s uses posterior draw d(s) (drawn with the
  seed): β, σ, θ and, with ``include_re=False``, that draw's b; with ``include_re=True`` (the
  REML default, lme4's ``simulate``) new b ~ N(0, σ²ΛΛ') from that draw's θ and σ.
- ``r2`` / ``icc``: Nakagawa's R² and the ICC computed for every draw (σ²_f from Xβ_d, σ²_r from
  θ_d and σ_d), summarised by the posterior mean and a 95 % equal-tailed interval.
"""

from __future__ import annotations

import numpy as np

from ..data.design import DesignMatrices, tril_colwise
from .draws import flat_b, posterior_arrays

__all__ = ["posterior_b", "posterior_simulate", "term_second_moments", "r2_draws", "summarise_draws"]


def posterior_b(design: DesignMatrices, layout, idata) -> np.ndarray:
    """Draws (S, q) of b in Z's column order, chains stacked."""
    return flat_b(design, layout, idata).reshape(-1, design.q)


def _draw_index(n_draws: int, nsim: int, rng: np.random.Generator) -> np.ndarray:
    """Posterior draws to use, without repeats while nsim ≤ the number of draws."""
    if nsim <= n_draws:
        return rng.choice(n_draws, size=nsim, replace=False)
    return rng.integers(0, n_draws, size=nsim)


def posterior_simulate(result, nsim: int, seed, include_re: bool, sample_y) -> np.ndarray:
    """(n, nsim) responses: ``sample_y(mean, draw index, rng)`` draws y given the linear predictor."""
    if int(nsim) < 1:
        raise ValueError(f"nsim must be a positive integer, got {nsim!r}")
    d = result.design
    rng = np.random.default_rng(seed)
    beta = posterior_arrays(result.idata, "beta")
    theta = posterior_arrays(result.idata, "theta")
    scale = _posterior_sd(result)
    b_post = None if include_re else posterior_b(d, result.layout, result.idata)
    out = np.empty((d.n, int(nsim)))
    for s, k in enumerate(_draw_index(beta.shape[0], int(nsim), rng)):
        b = d.draw_b(theta[k], rng, scale[k]) if include_re else b_post[k]
        out[:, s] = sample_y(d.X @ beta[k] + d.Z @ b + d.offset, k, rng)
    return out


def _posterior_sd(result) -> np.ndarray:
    """Per draw, the factor between ΛΛ' and Var(b): σ for a Gaussian LMM, 1 for a GLMM."""
    post = result.idata.posterior
    n = posterior_arrays(result.idata, "beta").shape[0]
    if getattr(result, "family", None) is None and "sigma" in post:
        return posterior_arrays(result.idata, "sigma").astype(float)
    return np.ones(n)


def term_second_moments(design: DesignMatrices) -> list[np.ndarray]:
    """Per term, the k × k mean over observations of zᵢzᵢ' (its model-matrix rows)."""
    out = []
    for t in design.terms:
        rows = design.term_columns(t)
        out.append(rows.T @ rows / design.n)
    return out


def r2_draws(result) -> dict[str, np.ndarray]:
    """Per draw: σ²_f (fixed), σ²_r (random, Johnson's mean of zᵢ'Σzᵢ) and σ²_ε."""
    d = result.design
    beta = posterior_arrays(result.idata, "beta")
    theta = posterior_arrays(result.idata, "theta")
    sigma = _posterior_sd(result)
    fixed = beta @ d.X.T
    var_f = np.var(fixed, axis=1, ddof=1)
    var_r = np.zeros(beta.shape[0])
    for t, A in zip(d.terms, term_second_moments(d), strict=True):
        rows, cols = tril_colwise(t.k)
        T = np.zeros((beta.shape[0], t.k, t.k))
        T[:, rows, cols] = theta[:, t.theta_slice]
        S = T @ np.swapaxes(T, 1, 2) * (sigma**2)[:, None, None]
        var_r += np.einsum("sij,ij->s", S, A)
    return {"fixed": var_f, "random": var_r, "residual": sigma**2}


def summarise_draws(values: dict[str, np.ndarray], level: float = 0.95) -> dict[str, float]:
    """{name: posterior mean, name_lower / name_upper: the equal-tailed interval}."""
    a = (1 - level) / 2
    out: dict[str, float] = {}
    for k, v in values.items():
        out[k] = float(np.mean(v))
        out[f"{k}_lower"], out[f"{k}_upper"] = (float(x) for x in np.quantile(v, [a, 1 - a]))
    return out
