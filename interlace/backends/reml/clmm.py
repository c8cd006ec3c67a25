"""Cumulative link mixed models with scalar random-effects terms (R's ordinal::clmm, Laplace).

P(Yᵢ ≤ j | b) = F(α_j − xᵢ'β − zᵢ'b), b_t ~ N(0, σ_t² I) per term t, α₁ < … < α_{J−1}.
The Laplace log-likelihood and its exact gradient are :class:`~.clmm_laplace.ClmmLaplace`
(joint mode of all terms on the blocked factor; one term is a diagonal system). (α, β, log σ)
maximise it by BFGS on the unconstrained scale (α₁, log(α_j − α_{j−1}), β, log σ); Newton steps
with the finite-difference Hessian of the exact gradient then polish the optimum, and that
Hessian (over α, β, log σ, as ordinal's τ = log σ) gives Cov(α, β) as its inverse's block.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

from ...data.design import DesignMatrices
from ...model.families import get_link
from .clmm_laplace import Blocked, ClmmLaplace, OneTerm

__all__ = ["CLMMFit", "fit_clmm", "cdf_pdf"]

GTOL = 1e-5  # BFGS's gradient tolerance; the Newton polish takes it the rest of the way
BOUNDARY = 1e-4  # a random term's σ below this is at the boundary (held at its estimate)


def cdf_pdf(x: np.ndarray, link: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """F, f = F' and f' for the latent distribution of ``link`` (:meth:`Link.cdf_pdf`)."""
    return get_link(link).cdf_pdf(x)


@dataclass
class CLMMFit:
    """Plain results of a clmm fit: thresholds α (J − 1,), effects β (p,), the SD σ_t of each
    random term, the conditional modes b (Z's columns), Laplace log-likelihood, Cov of (α, β)
    and the convergence flag."""

    alpha: np.ndarray
    beta: np.ndarray
    sigmas: np.ndarray
    b: np.ndarray
    loglik: float
    cov: np.ndarray  # over (α, β)
    converged: bool
    n_evals: int
    gradient: np.ndarray  # ∂ℓ/∂(α, β, log σ) at the estimates

    @property
    def sigma(self) -> float:
        """σ of the first (or only) random term."""
        return float(self.sigmas[0])


def _unpack(x: np.ndarray, k: int, p: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    alpha = np.cumsum(np.r_[x[0], np.exp(x[1:k])])
    return alpha, x[k : k + p], np.exp(x[k + p :])


def _start(y: np.ndarray, J: int, p: int, n_terms: int, link: str) -> np.ndarray:
    """α from the marginal cumulative proportions (F⁻¹), β = 0, σ_t = 1."""
    cum = np.clip(np.cumsum(np.bincount(y, minlength=J))[:-1] / y.size, 1e-3, 1 - 1e-3)
    a0 = np.maximum.accumulate(get_link(link).link(cum) + np.arange(J - 1) * 1e-3)
    return np.r_[a0[0], np.log(np.maximum(np.diff(a0), 1e-2)), np.zeros(p), np.zeros(n_terms)]


def fit_clmm(
    X: np.ndarray, y: np.ndarray, design: DesignMatrices, n_levels: int, link: str = "logit"
) -> CLMMFit:
    """Maximise the Laplace log-likelihood over (α, β, log σ); y in 0 … J−1, the random terms
    (scalar, intercepts) those of ``design`` (its ``terms`` and sparse ``Z``)."""
    terms = design.terms
    if len(terms) == 1:
        structure = OneTerm(np.asarray(terms[0].codes, dtype=np.int64), terms[0].m)
    else:
        structure = Blocked(design)
    codes = [np.asarray(t.codes, dtype=np.int64) for t in terms]
    prob = ClmmLaplace(np.ascontiguousarray(X, dtype=float), np.asarray(y, dtype=np.int64), n_levels,
                       link, structure, codes)
    J, p, nt = n_levels, X.shape[1], len(terms)
    k = J - 1
    count = [0]

    def nll(x):
        count[0] += 1
        alpha, beta, lam = _unpack(x, k, p)
        ll, g = prob.evaluate(alpha, beta, lam)
        if not np.isfinite(ll):
            return 1e300, np.zeros_like(x)
        # chain rule to the unconstrained scale: α_j = x₀ + Σ_{m ≤ j} exp(x_m)
        gx = np.empty_like(x)
        ga = g[:k]
        tail = np.cumsum(ga[::-1])[::-1]  # Σ_{j ≥ m} ∂ℓ/∂α_j
        gx[0] = tail[0]
        gx[1:k] = tail[1:] * np.exp(x[1:k])
        gx[k : k + p] = g[k : k + p]
        gx[k + p :] = g[k + p :] * lam
        return -ll, -gx

    res = minimize(nll, _start(y, J, p, nt, link), jac=True, method="BFGS",
                   options={"gtol": GTOL, "maxiter": 1000})
    alpha, beta, lam = _unpack(res.x, k, p)
    nat = np.r_[alpha, beta, np.log(lam)]

    def grad_natural(v):
        count[0] += 1
        ll, g = prob.evaluate(v[:k], v[k : k + p], np.exp(v[k + p :]))
        if g is None:
            raise FloatingPointError("the Laplace log-likelihood is not finite near the estimates")
        g = g.copy()
        g[k + p :] *= np.exp(v[k + p :])
        return ll, g

    # Newton polish with the Hessian of the exact gradient (forward differences). A term whose σ
    # went to the boundary (σ < BOUNDARY) is held there: its log σ has no curvature to use, and
    # Cov(α, β) is that of the model without it (ordinal reports no SE for it either).
    converged = bool(res.success)
    free = np.r_[np.ones(k + p, dtype=bool), np.exp(nat[k + p :]) >= BOUNDARY]
    H = None
    at_nat = None  # (ℓ, gradient, modes) at nat when the accepted trial step already gave them
    for _ in range(4):  # Newton steps with one Hessian (BFGS ends close: it barely changes)
        if at_nat is None:
            ll, g = grad_natural(nat)
            u_nat = prob.u.copy()  # the modes at nat (the Hessian's evaluations move them)
        else:
            ll, g, u_nat = at_nat
            prob.u = u_nat.copy()
        if H is None:
            H = _jacobian(lambda v: grad_natural(v)[1], nat, free, g)
            H = 0.5 * (H + H.T)
        gf = g[free]
        try:
            step = np.linalg.solve(H, gf)
        except np.linalg.LinAlgError:
            break
        if np.max(np.abs(step)) < 1e-8 or np.max(np.abs(gf)) < 1e-9:
            break
        trial = nat.copy()
        trial[free] -= step
        if np.any(np.diff(trial[:k]) <= 0):
            break
        try:  # ℓ with its gradient at the trial: the next step's, if the trial is accepted
            ll_t, g_t = grad_natural(trial)
        except FloatingPointError:
            break
        if ll_t < ll - 1e-9:
            break
        nat, at_nat = trial, (ll_t, g_t, prob.u.copy())
        ll, g, u_nat = at_nat
    converged = converged or bool(np.max(np.abs(g[free])) < 1e-4)
    cov = np.linalg.inv(-H)[: k + p, : k + p]
    alpha, beta, lam = nat[:k], nat[k : k + p], np.exp(nat[k + p :])
    b = np.concatenate([lam[t] * u_nat[a:b_] for t, (a, b_) in enumerate(structure.spans)])
    return CLMMFit(alpha=alpha, beta=beta, sigmas=lam, b=b, loglik=ll, cov=cov, converged=converged,
                   n_evals=count[0], gradient=g)


def _jacobian(fun, x: np.ndarray, free: np.ndarray, f0: np.ndarray, rel: float = 1e-5) -> np.ndarray:
    """∂fun_i/∂x_j over the ``free`` i and j by forward differences from f0 = fun(x), steps
    rel·max(1, |x|). fun is an exact gradient (to ~1e-12, the modes' Newton tolerance), so the
    error is dominated by the O(h) truncation, ~1e-5 relative: far below what the SEs need."""
    h = rel * np.maximum(1.0, np.abs(x))
    cols = []
    for i in np.flatnonzero(free):
        e = np.zeros_like(x)
        e[i] = h[i]
        cols.append(((fun(x + e) - f0) / h[i])[free])
    return np.column_stack(cols)
