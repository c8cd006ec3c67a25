"""Negative binomial GLMM with θ estimated (lme4's ``glmer.nb``).

For a fixed NB2 dispersion θ (Var(y | b) = μ + μ²/θ) the model is an ordinary GLMM fitted by
the Laplace approximation. θ is chosen to maximise the profiled Laplace log-likelihood
ℓ(θ) = max over (θ_b, β) of the Laplace log-likelihood, by a bounded one-dimensional search on
log θ around a start from a Poisson GLMM: the ML θ given that fit's means (as MASS's theta.ml).
"""

from __future__ import annotations

import numpy as np
from scipy import optimize, special

from ...design import DesignMatrices
from ...families import Family
from .glmm import GLMMFit, fit_given_family

__all__ = ["fit_negative_binomial", "theta_ml"]


def theta_ml(y: np.ndarray, mu: np.ndarray, w: np.ndarray) -> float:
    """ML estimate of the NB θ for known means: the root in log θ of the score
    Σ wᵢ [ψ(yᵢ + θ) − ψ(θ) + log θ + 1 − log(θ + μᵢ) − (yᵢ + θ)/(θ + μᵢ)]."""

    def nll(lt: float) -> float:
        th = np.exp(lt)
        ll = special.gammaln(y + th) - special.gammaln(th) + th * np.log(th / (th + mu))
        ll += special.xlogy(y, mu / (th + mu))
        return -float(np.sum(w * ll))

    m, v = np.average(mu, weights=w), np.average((y - mu) ** 2, weights=w)
    start = np.log(m**2 / (v - m)) if v > m else np.log(100.0)
    res = optimize.minimize_scalar(
        nll, bounds=(start - 10, start + 10), method="bounded", options={"xatol": 1e-8}
    )
    return float(np.exp(res.x))


def fit_negative_binomial(design: DesignMatrices, family: Family, nagq: int, optimizer: str) -> GLMMFit:
    """Fit θ (NB dispersion) by maximising the profiled Laplace likelihood; then the final GLMM."""
    prior_w = np.ones(design.n) if design.weights is None else design.weights
    pois = fit_given_family(design, Family("poisson", family.link), nagq, optimizer, with_cov=False)
    lt0 = np.log(theta_ml(design.y, pois.mu, prior_w))
    fits: dict[float, GLMMFit] = {}
    last = [pois]

    def profile(lt: float) -> float:
        fit = fit_given_family(
            design, family.with_theta(np.exp(lt)), nagq, optimizer, start=last[0], with_cov=False
        )
        fits[lt] = last[0] = fit
        return fit.deviance

    lo, hi = lt0 - 3.0, lt0 + 3.0
    res = optimize.minimize_scalar(profile, bounds=(lo, hi), method="bounded", options={"xatol": 1e-6})
    lt = float(res.x)
    if min(lt - lo, hi - lt) < 1e-3:  # the optimum sits at an edge: search a wider window once
        lo, hi = lt - 6.0, lt + 6.0
        lt = float(
            optimize.minimize_scalar(profile, bounds=(lo, hi), method="bounded", options={"xatol": 1e-6}).x
        )
    best = min(fits, key=lambda k: fits[k].deviance)
    final = fit_given_family(design, family.with_theta(np.exp(lt)), nagq, optimizer, start=fits[best])
    final.n_evals += sum(f.n_evals for f in fits.values()) + pois.n_evals
    return final
