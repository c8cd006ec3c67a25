"""Cox proportional hazards with Gaussian random effects (Therneau's coxme; Ripatti & Palmgren 2002).

Linear predictor η = Xβ + Zb, b ~ N(0, σ²I) (one random intercept per group). For fixed σ² the
penalized partial likelihood PPL(β, b) = log PL(β, b) − b'b/(2σ²) is maximised by Newton–Raphson
(Efron's handling of ties). The Laplace approximation of the integrated partial likelihood,

    log ∫ PL(β, b) φ(b; 0, σ²I) db ≈ PPL(β̂, b̂) − (q/2) log σ² − ½ log|H_bb|,

H_bb = −∂²PPL/∂b², is then maximised over σ². Var(β̂) is the β block of the inverse penalized
information, as coxme reports.

coxme approximates the information of a grouping factor with many levels as sparse: with its
default ``sparse=c(50, .02)``, for a factor of 50 or more levels the off-diagonal entries
between two levels that each hold at most 2 % of the observations are dropped; the
log-determinant and Var(β̂) use that matrix. ``sparse=(50, 0.02)`` reproduces it (``None``
for the exact Hessian).

Efron's partial likelihood at an event time t with d events D and risk set R:
Σ_{i∈D} ηᵢ − Σ_{k<d} log(Σ_R e^η − (k/d) Σ_D e^η); risk-set sums are accumulated from the
latest time backwards, so one pass gives the value, gradient and Hessian.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize_scalar

__all__ = ["CoxmeFit", "fit_coxme", "efron"]


def efron(M: np.ndarray, eta: np.ndarray, time: np.ndarray, status: np.ndarray):
    """Efron log partial likelihood of η = M·coef, with its gradient and Hessian in coef."""
    order = np.argsort(-time, kind="stable")
    t_sorted = time[order]
    w = np.exp(eta - eta.max())  # the shift cancels in every ratio
    k = M.shape[1]
    S0, S1, S2 = 0.0, np.zeros(k), np.zeros((k, k))
    ll, grad, hess = 0.0, np.zeros(k), np.zeros((k, k))
    start = 0
    n = len(time)
    while start < n:
        stop = start
        while stop < n and t_sorted[stop] == t_sorted[start]:
            stop += 1
        idx = order[start:stop]
        Mi, wi = M[idx], w[idx]
        S0 += wi.sum()
        S1 += wi @ Mi
        S2 += (Mi * wi[:, None]).T @ Mi
        ev = idx[status[idx] == 1]
        d = ev.size
        if d:
            Me, we = M[ev], w[ev]
            D0, D1, D2 = we.sum(), we @ Me, (Me * we[:, None]).T @ Me
            ll += float(np.sum(eta[ev] - eta.max()))
            grad += Me.sum(axis=0)
            for j in range(d):
                c = j / d
                s0, s1, s2 = S0 - c * D0, S1 - c * D1, S2 - c * D2
                ll -= np.log(s0)
                grad -= s1 / s0
                hess -= s2 / s0 - np.outer(s1, s1) / s0**2
        start = stop
    return ll, grad, hess


@dataclass
class CoxmeFit:
    beta: np.ndarray
    b: np.ndarray
    variance: float
    loglik_integrated: float
    loglik_penalized: float
    loglik_null: float
    cov_beta: np.ndarray


def _ppl_max(X, Z, time, status, s2, start):
    p, q = X.shape[1], Z.shape[1]
    M = np.column_stack([X, Z])
    coef = start.copy()
    pen = np.r_[np.zeros(p), np.full(q, 1.0 / s2)]

    def value(c):
        return efron(M, M @ c, time, status)[0] - 0.5 * np.sum(pen * c**2)

    cur = value(coef)
    for _ in range(100):
        ll, g, H = efron(M, M @ coef, time, status)
        g = g - pen * coef
        H = H - np.diag(pen)
        step = np.linalg.solve(-H, g)
        t = 1.0
        for _h in range(40):
            new = coef + t * step
            v = value(new)
            if v >= cur - 1e-12:
                break
            t /= 2
        done = abs(v - cur) < 1e-12 * (1 + abs(cur))
        coef, cur = new, v
        if done:
            break
    ll, g, H = efron(M, M @ coef, time, status)
    H = H - np.diag(pen)
    return coef, cur, H


def _sparsify(H: np.ndarray, p: int, small: np.ndarray) -> np.ndarray:
    """Drop frailty–frailty entries between two ``small`` levels (coxme's sparse approximation)."""
    Hs = H.copy()
    drop = np.outer(small, small)
    np.fill_diagonal(drop, False)
    Hs[p:, p:][drop] = 0.0
    return Hs


def fit_coxme(
    X: np.ndarray,
    Z: np.ndarray,
    time: np.ndarray,
    status: np.ndarray,
    sparse: tuple[int, float] | None = (50, 0.02),
) -> CoxmeFit:
    """Maximise the Laplace-approximated integrated partial likelihood over σ²."""
    p, q = X.shape[1], Z.shape[1]
    state = {"start": np.zeros(p + q)}
    small = None
    if sparse is not None and q >= sparse[0]:
        small = Z.sum(axis=0) / Z.shape[0] <= sparse[1]

    def integrated(log_s2):
        s2 = float(np.exp(log_s2))
        coef, ppl, H = _ppl_max(X, Z, time, status, s2, state["start"])
        state["start"] = coef
        if small is not None:
            H = _sparsify(H, p, small)
        logdet = np.linalg.slogdet(-H[p:, p:])[1]
        return ppl - 0.5 * q * np.log(s2) - 0.5 * logdet, coef, ppl, H

    res = minimize_scalar(
        lambda v: -integrated(v)[0],
        bounds=(np.log(1e-6), np.log(1e3)),
        method="bounded",
        options={"xatol": 1e-10},
    )
    ill, coef, ppl, H = integrated(res.x)
    cov = np.linalg.inv(-H)[:p, :p]
    null_ll = efron(np.zeros((len(time), 1)), np.zeros(len(time)), time, status)[0]
    return CoxmeFit(
        beta=coef[:p],
        b=coef[p:],
        variance=float(np.exp(res.x)),
        loglik_integrated=float(ill),
        loglik_penalized=float(ppl),
        loglik_null=float(null_ll),
        cov_beta=cov,
    )
