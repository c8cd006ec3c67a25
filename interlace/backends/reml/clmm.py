"""Cumulative link mixed model with a random intercept (R's ordinal::clmm, Laplace).

P(Yᵢ ≤ j | b) = F(α_j − xᵢ'β − b_g), b_g ~ N(0, σ²), α₁ < … < α_{J−1}.
Groups are independent, so the Laplace approximation factorises:

    log L = Σ_g [ h_g(b̂_g) + ½ log 2π − ½ log(−h_g''(b̂_g)) ],
    h_g(b) = Σ_{i∈g} log(F(α_{yᵢ} − ηᵢ − b) − F(α_{yᵢ−1} − ηᵢ − b)) − b²/(2σ²) − ½ log(2πσ²),

with b̂_g found by a vectorised Newton iteration. (α, β, log σ) maximise it; SEs of α and β
come from the Richardson-extrapolated Hessian of −log L.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

from ...inference.derivatives import hessian
from ...model.families import get_link

__all__ = ["CLMMFit", "fit_clmm", "cdf_pdf"]


def cdf_pdf(x: np.ndarray, link: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """F, f = F' and f' for the latent distribution of ``link`` (:meth:`Link.cdf_pdf`)."""
    return get_link(link).cdf_pdf(x)


@dataclass
class CLMMFit:
    """Plain results of a clmm fit: thresholds α (J − 1,), effects β (p,), random-intercept SD σ,
    conditional modes b (m,), Laplace log-likelihood, Cov of (α, β) and the convergence flag."""

    alpha: np.ndarray
    beta: np.ndarray
    sigma: float
    b: np.ndarray
    loglik: float
    cov: np.ndarray  # over (α, β)
    converged: bool
    n_evals: int


class _Problem:
    def __init__(
        self, X: np.ndarray, y: np.ndarray, codes: np.ndarray, n_levels: int, n_groups: int, link: str
    ):
        self.X, self.y, self.codes, self.J, self.m, self.link = X, y, codes, n_levels, n_groups, link
        self.b = np.zeros(n_groups)

    def _bounds(self, alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        full = np.r_[-np.inf, alpha, np.inf]
        return full[self.y + 1], full[self.y]

    def _terms(self, upper, lower, eta_b):
        Fa, fa, dfa = cdf_pdf(upper - eta_b, self.link)
        Fc, fc, dfc = cdf_pdf(lower - eta_b, self.link)
        fa, dfa = np.where(np.isfinite(upper), fa, 0.0), np.where(np.isfinite(upper), dfa, 0.0)
        fc, dfc = np.where(np.isfinite(lower), fc, 0.0), np.where(np.isfinite(lower), dfc, 0.0)
        p = np.maximum(Fa - Fc, 1e-300)
        return p, fa - fc, dfa - dfc

    def loglik(self, alpha: np.ndarray, beta: np.ndarray, sigma: float) -> float:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            return self._loglik(alpha, beta, sigma)

    def _loglik(self, alpha: np.ndarray, beta: np.ndarray, sigma: float) -> float:
        if np.any(np.diff(alpha) <= 0) or sigma <= 0:
            return -np.inf
        upper, lower = self._bounds(alpha)
        eta = self.X @ beta if beta.size else np.zeros(self.y.size)
        b = self.b.copy()
        s2 = sigma**2
        for _ in range(60):
            p, d1, d2 = self._terms(upper, lower, eta + b[self.codes])
            g = np.bincount(self.codes, -d1 / p, self.m) - b / s2
            h = np.bincount(self.codes, d2 / p - (d1 / p) ** 2, self.m) - 1 / s2
            step = g / h
            b = b - step
            if np.max(np.abs(step)) < 1e-12:
                break
        p, d1, d2 = self._terms(upper, lower, eta + b[self.codes])
        h = np.bincount(self.codes, d2 / p - (d1 / p) ** 2, self.m) - 1 / s2
        if np.any(h >= 0):
            return -np.inf
        self.b = b
        ll = (
            np.bincount(self.codes, np.log(p), self.m) - b**2 / (2 * s2) - 0.5 * np.log(s2) - 0.5 * np.log(-h)
        )
        return float(np.sum(ll))


def _unpack(x: np.ndarray, J: int) -> tuple[np.ndarray, np.ndarray, float]:
    k = J - 1
    alpha = np.cumsum(np.r_[x[0], np.exp(x[1:k])])
    return alpha, x[k:-1], float(np.exp(x[-1]))


def fit_clmm(
    X: np.ndarray, y: np.ndarray, codes: np.ndarray, n_levels: int, n_groups: int, link: str = "logit"
) -> CLMMFit:
    """Maximise the Laplace log-likelihood over (α, β, log σ); y in 0 … J−1."""
    prob = _Problem(X, y, codes, n_levels, n_groups, link)
    J, p = n_levels, X.shape[1]
    cum = np.cumsum(np.bincount(y, minlength=J))[:-1] / y.size
    cum = np.clip(cum, 1e-3, 1 - 1e-3)
    a0 = get_link(link).link(cum)  # F⁻¹ of the cumulative proportions
    a0 = np.maximum.accumulate(a0 + np.arange(J - 1) * 1e-3)
    x0 = np.r_[a0[0], np.log(np.maximum(np.diff(a0), 1e-2)), np.zeros(p), 0.0]
    count = [0]

    def nll(x):
        count[0] += 1
        alpha, beta, sigma = _unpack(x, J)
        v = -prob.loglik(alpha, beta, sigma)
        return v if np.isfinite(v) else 1e300

    res = minimize(nll, x0, method="BFGS", options={"gtol": 1e-9, "maxiter": 2000})
    res = minimize(
        nll, res.x, method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 4000}
    )
    res = minimize(nll, res.x, method="BFGS", options={"gtol": 1e-10, "maxiter": 2000})
    alpha, beta, sigma = _unpack(res.x, J)

    def nll_natural(v):
        return -prob.loglik(v[: J - 1], v[J - 1 : J - 1 + p], float(np.exp(v[-1])))

    nat = np.r_[alpha, beta, np.log(sigma)]
    H = hessian(nll_natural, nat, d=1e-3)
    cov = np.linalg.inv(H)[: J - 1 + p, : J - 1 + p]
    ll = prob.loglik(alpha, beta, sigma)
    return CLMMFit(
        alpha=alpha,
        beta=beta,
        sigma=sigma,
        b=prob.b.copy(),
        loglik=ll,
        cov=cov,
        converged=bool(res.success),
        n_evals=count[0],
    )
