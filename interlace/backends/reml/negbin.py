"""Negative binomial GLMM with θ estimated (lme4's ``glmer.nb``).

For a fixed NB2 dispersion θ (Var(y | b) = μ + μ²/θ) the model is an ordinary GLMM fitted by
the Laplace approximation. θ is chosen to maximise the profiled Laplace log-likelihood
ℓ(θ) = max over (θ_b, β) of the Laplace log-likelihood: a coarse grid on log θ (steps of 2)
around a start from a Poisson GLMM — the ML θ given that fit's means, as MASS's theta.ml —
extended until its best point is interior, then Brent's method between its neighbours. θ lies in
[1e-3, 1e7]; beyond 1e6 the counts are Poisson-like and a warning says so.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import optimize, special

from ...data.design import DesignMatrices
from ...model.families import Family
from .glmm import GLMMFit, fit_given_family

__all__ = ["fit_negative_binomial", "theta_ml"]

LOG_THETA_MIN, LOG_THETA_MAX = float(np.log(1e-3)), float(np.log(1e7))


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


def fit_negative_binomial(
    design: DesignMatrices, family: Family, nagq: int, optimizer: str, fast: bool = False
) -> GLMMFit:
    """Fit θ (NB dispersion) by maximising the profiled Laplace likelihood; then the final GLMM."""
    prior_w = np.ones(design.n) if design.weights is None else design.weights
    def quiet_fit(fam: Family, start: GLMMFit | None = None) -> GLMMFit:
        with warnings.catch_warnings():  # only the final fit's convergence is reported
            warnings.simplefilter("ignore")
            return fit_given_family(design, fam, nagq, optimizer, start=start, with_cov=False, fast=fast)

    pois = quiet_fit(Family("poisson", family.link))
    lt0 = np.log(theta_ml(design.y, pois.mu, prior_w))
    fits: dict[float, GLMMFit] = {}
    last = [pois]

    def profile(lt: float) -> float:
        fit = quiet_fit(family.with_theta(np.exp(lt)), start=last[0])
        fits[lt] = last[0] = fit
        return fit.deviance

    # a coarse grid in log θ (steps of 2) around the start, extended until its best point is
    # interior, then Brent between that point's neighbours: robust where the profile is flat
    # (θ → ∞ is the Poisson model) and noisy at the 1e-7 level
    grid = sorted({float(np.clip(lt0 + d, LOG_THETA_MIN, LOG_THETA_MAX)) for d in (-2.0, 0.0, 2.0)})
    dev = {lt: profile(lt) for lt in grid}
    while True:
        best = min(dev, key=dev.get)
        keys = sorted(dev)
        i = keys.index(best)
        if i == 0 and best > LOG_THETA_MIN:
            step = max(best - 2.0, LOG_THETA_MIN)
        elif i == len(keys) - 1 and best < LOG_THETA_MAX:
            step = min(best + 2.0, LOG_THETA_MAX)
        else:
            break
        dev[step] = profile(step)
    lo, hi = keys[max(i - 1, 0)], keys[min(i + 1, len(keys) - 1)]
    lt = best
    if hi > lo:
        res = optimize.minimize_scalar(profile, bounds=(lo, hi), method="bounded", options={"xatol": 1e-5})
        lt = float(res.x) if res.fun <= dev[best] else best
    if lt > np.log(1e6):  # the profile is flat out there: θ = ∞ is the Poisson model
        warnings.warn(
            f"the negative binomial θ is {np.exp(lt):.2g} (limit {np.exp(LOG_THETA_MAX):.0e}): the counts "
            "show no overdispersion beyond the random effects, and a Poisson GLMM fits as well",
            stacklevel=4,
        )
    best = min(fits, key=lambda k: fits[k].deviance)
    final = fit_given_family(
        design, family.with_theta(np.exp(lt)), nagq, optimizer, start=fits[best], fast=fast
    )
    final.n_evals += sum(f.n_evals for f in fits.values()) + pois.n_evals
    return final
