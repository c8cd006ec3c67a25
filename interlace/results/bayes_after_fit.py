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
from .refusals import needs_rows_error

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
    if getattr(d, "gram", None) is not None:
        raise needs_rows_error("simulate()")
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
    if getattr(d, "gram", None) is None:
        var_f, moments = np.var(beta @ d.X.T, axis=1, ddof=1), term_second_moments(d)
    else:
        var_f, moments = _lazy_moments(result, beta)
    var_r = np.zeros(beta.shape[0])
    for t, A in zip(d.terms, moments, strict=True):
        rows, cols = tril_colwise(t.k)
        T = np.zeros((beta.shape[0], t.k, t.k))
        T[:, rows, cols] = theta[:, t.theta_slice]
        S = T @ np.swapaxes(T, 1, 2) * (sigma**2)[:, None, None]
        var_r += np.einsum("sij,ij->s", S, A)
    return {"fixed": var_f, "random": var_r, "residual": sigma**2}


def _lazy_moments(result, beta: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """A lazy-frame fit's Var(Xβ) per draw and mean zᵢzᵢ' per term from its cross-products:
    (β'X'Xβ − (1'Xβ)²/n)/(n − 1), and Σ_j D_tj / n with D_tj the diagonal blocks of Z_t'Z_t (as
    :func:`interlace.diagnostics._fixed_and_random_variance` for the REML fit)."""
    d = result.design
    if result.spec.has_weights or "(Intercept)" not in d.X_names:
        raise needs_rows_error("r2()/icc() of a weighted fit or one without an intercept")
    n = d.n
    XtX = np.asarray(d.gram[2], dtype=float)[: d.p, : d.p]
    total = beta @ XtX[d.X_names.index("(Intercept)")]
    var_f = (np.einsum("si,ij,sj->s", beta, XtX, beta) - total**2 / n) / (n - 1)
    moments = []
    for t in d.terms:
        G = d.gram[0][t.z_start : t.z_start + t.q, t.z_start : t.z_start + t.q].tocoo()
        same = (G.row // t.k) == (G.col // t.k)
        S = np.zeros((t.k, t.k))
        np.add.at(S, (G.row[same] % t.k, G.col[same] % t.k), G.data[same])
        moments.append(S / n)
    return var_f, moments


def summarise_draws(values: dict[str, np.ndarray], level: float = 0.95) -> dict[str, float]:
    """{name: posterior mean, name_lower / name_upper: the equal-tailed interval}."""
    a = (1 - level) / 2
    out: dict[str, float] = {}
    for k, v in values.items():
        out[k] = float(np.mean(v))
        out[f"{k}_lower"], out[f"{k}_upper"] = (float(x) for x in np.quantile(v, [a, 1 - a]))
    return out
