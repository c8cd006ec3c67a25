"""Cox proportional hazards with Gaussian random effects (Therneau's coxme; Ripatti & Palmgren 2002).

Linear predictor η = Xβ + Zb (+ offset), b ~ N(0, K(θ)): each random term t with k columns and m
levels contributes m independent k-vectors with covariance Σ_t (a variance σ² for a random
intercept). For fixed θ the penalized partial likelihood

    PPL(β, b) = log PL(β, b) − ½ b'K⁻¹b

(Efron's or Breslow's handling of ties, a separate baseline hazard per stratum) is maximised by
Newton–Raphson. The Laplace approximation of the integrated partial likelihood,

    log ∫ PL(β, b) φ(b; 0, K) db ≈ PPL(β̂, b̂) − ½ log|K| − ½ log|H_bb|,

H = −∂²PPL/∂(b, β)², is maximised over θ (log variances, log-Cholesky factors of vector terms)
by a trust-region Newton method on finite-difference derivatives. Var(β̂) is the β block of H⁻¹,
as coxme reports.

coxme approximates the information of a grouping factor with many levels as sparse: with its
default ``sparse=c(50, .02)``, for the intercepts of the *first* random term written, when its
factor has 50 or more levels (more than 50 for a nested ``a/b`` term, whose innermost factor is
the one considered), the off-diagonal entries between two levels that each hold at most 2 % of
the observations are dropped; the log-determinant and Var(β̂) use that matrix
(:func:`sparse_levels`; ``sparse=None`` keeps the exact Hessian). b̂ is the exact maximiser
(cox_newton.py solves with the exact Hessian).

For the derivatives over θ, the optimum ĉ(θ ± h) is taken on its tangent ĉ + h dĉ/dθ, dĉ/dθ from
the implicit function H dĉ = −(∂K⁻¹/∂θ) b̂: the PPL is then exact to O(h⁴) and first
derivatives to O(h²), without a Newton solve per difference.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg import LinAlgError

from ...linalg.threads import fit_blas_threads
from .cox_newton import CoxTerm, PenalizedCox, term_covariance
from .cox_risk import RiskSets

__all__ = ["CoxTerm", "CoxmeFit", "fit_coxme", "efron", "sparse_levels"]

LOG_VAR_BOUNDS = (float(np.log(1e-8)), float(np.log(1e4)))  # range of a variance
_INDEFINITE = (
    "coxme's sparse approximation of the information (sparse=(50, 0.02)) is not positive definite "
    "near these variances, so its Laplace approximation is undefined; fit with sparse=None (the "
    "exact information)"
)


@dataclass
class CoxmeFit:
    beta: np.ndarray
    b: np.ndarray  # in Z's column order
    covariances: list[np.ndarray]  # Σ_t per term
    loglik_integrated: float
    loglik_penalized: float
    loglik_null: float
    cov_beta: np.ndarray
    n_evaluations: int
    n_newton: int
    converged: bool = True  # the variance search met its criterion (see _maximize_theta)
    message: str = ""


def sparse_levels(counts: np.ndarray, n: int, sparse: tuple[int, float] | None, strict: bool) -> np.ndarray:
    """coxme's rule: the levels holding at most ``sparse[1]`` of the n rows are sparse when the
    factor has at least ``sparse[0]`` levels (more than, ``strict``, for a nested term)."""
    m = counts.size
    if sparse is None or (m <= sparse[0] if strict else m < sparse[0]):
        return np.zeros(m, dtype=bool)
    return counts / n <= sparse[1]


class _Objective:
    """θ ↦ Laplace log-likelihood, remembering the optimum of the latest accepted θ."""

    def __init__(self, prob: PenalizedCox):
        self.prob = prob
        self.base = prob.info(np.zeros(prob.q + prob.p))
        self.evals = 0
        self._last: tuple | None = None  # (θ, tol, result) of the latest call

    def __call__(self, theta: np.ndarray, tol: float = 1e-12):
        if self._last is not None and self._last[1] == tol and np.array_equal(self._last[0], theta):
            return self._last[2]
        Sinv, logdetK = self.prob.penalty(theta)
        inf, ppl, fac = self.prob.maximize(Sinv, self.base, tol)
        self.evals += 1
        out = (ppl - 0.5 * logdetK - 0.5 * self.prob.logdet_bb(fac), inf, ppl, fac)
        self._last = (np.array(theta, dtype=float), tol, out)
        return out

    def tangents(self, theta: np.ndarray, h: float = 1e-4) -> np.ndarray:
        """dĉ/dθ at the base optimum (columns per θ): H dĉ = −(∂K⁻¹/∂θ) b̂ (implicit function)."""
        prob, inf = self.prob, self.base
        Sinv, _ = prob.penalty(theta)
        fac = prob.factor(inf, Sinv)
        b = inf.coef[: prob.q]
        out = np.zeros((prob.q + prob.p, theta.size))
        for i in range(theta.size):
            e = np.zeros_like(theta)
            e[i] = h
            dK = [(a - c) / (2 * h) for a, c in zip(prob.penalty(theta + e)[0], prob.penalty(theta - e)[0],
                                                   strict=True)]
            rhs = np.zeros(prob.q + prob.p)
            rhs[: prob.q] = -prob.kinv(dK, b)
            out[:, i] = prob.newton_step(inf, Sinv, fac, rhs)
        return out

    def at(self, theta: np.ndarray, coef: np.ndarray) -> float:
        """The Laplace log-likelihood at θ with the coefficients held at ``coef``."""
        prob = self.prob
        Sinv, logdetK = prob.penalty(theta)
        inf = prob.info(coef)
        b = coef[: prob.q]
        ppl = inf.st.loglik - 0.5 * float(b @ prob.kinv(Sinv, b))
        self.evals += 1
        return ppl - 0.5 * logdetK - 0.5 * prob.logdet_bb(prob.factor(inf, Sinv))


def _bounds(terms: list[CoxTerm]) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = [], []
    for t in terms:
        c, r = np.triu_indices(t.k)
        for i, j in zip(r, c, strict=True):
            scale = 1.0 if t.k == 1 else 0.5  # log σ² or log of a Cholesky diagonal
            lo.append(LOG_VAR_BOUNDS[0] * scale if i == j else -np.inf)
            hi.append(LOG_VAR_BOUNDS[1] * scale if i == j else np.inf)
    return np.array(lo), np.array(hi)


def _maximize_theta(obj: _Objective, theta: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                    h: float = 1e-3, gain_tol: float = 1e-9, max_iter: int = 100
                    ) -> tuple[np.ndarray, bool, str]:
    """Trust-region Newton ascent on central finite-difference derivatives, within [lo, hi].

    The Hessian's negative is replaced by its absolute eigenvalues where it is not positive
    definite; parameters held at a bound by the gradient stay out of the step. Returns (θ,
    converged, message): converged when the Newton model is concave on the free parameters and
    predicts a gain of at most ``gain_tol`` (or every parameter is held at a bound); not when
    the iterations run out or the trust region shrinks to nothing with a larger gain predicted.
    """
    d = theta.size
    diag = np.isfinite(lo)
    for _ in range(30):  # smaller variances until coxme's approximate information is definite
        try:
            f0, obj.base, *_ = obj(theta)
            break
        except LinAlgError:
            theta = np.where(diag, np.maximum(theta - np.log(2.0), lo), theta)
    else:
        raise ValueError(_INDEFINITE)
    radius = 1.5
    for _ in range(max_iter):
        E = np.eye(d) * h
        try:
            T = obj.tangents(theta) * h
            c0 = obj.base.coef
            fp = np.array([obj.at(theta + E[i], c0 + T[:, i]) for i in range(d)])
            fm = np.array([obj.at(theta - E[i], c0 - T[:, i]) for i in range(d)])
            g = (fp - fm) / (2 * h)
            H = np.diag((fp - 2 * f0 + fm) / h**2)
            for i in range(d):
                for j in range(i):
                    fij = obj.at(theta + E[i] + E[j], c0 + T[:, i] + T[:, j])
                    H[i, j] = H[j, i] = (fij - fp[i] - fp[j] + f0) / h**2
        except LinAlgError:
            raise ValueError(_INDEFINITE) from None
        free = ~(((theta <= lo) & (g < 0)) | ((theta >= hi) & (g > 0)))
        if not free.any():
            return theta, True, "every variance parameter at a bound"
        gf = g[free]
        lam, U = np.linalg.eigh(-H[np.ix_(free, free)])
        concave = bool(np.all(lam > 0))
        lam = np.maximum(np.abs(lam), 1e-8 * max(1.0, float(np.abs(lam).max())))
        full = U @ ((U.T @ gf) / lam)
        if 0.5 * float(gf @ full) <= gain_tol:
            if concave:
                return theta, True, "predicted gain below tolerance"
            return theta, False, "stationary where the Laplace log-likelihood is not concave"
        norm = float(np.max(np.abs(full)))
        if not concave and norm < radius:  # the model has no maximum: go to the trust boundary
            full, norm = full * (radius / norm), radius
        while True:
            s = np.zeros(d)
            s[free] = full * min(1.0, radius / norm)
            s = np.clip(theta + s, lo, hi) - theta
            sf = U.T @ s[free]
            pred = float(gf @ s[free] - 0.5 * sf @ (lam * sf))
            try:
                f1, inf1, *_ = obj(theta + s)
            except LinAlgError:  # no Laplace value there: a shorter step
                f1 = -np.inf
            if f1 - f0 >= 1e-4 * pred and f1 > f0:
                gain = f1 - f0
                if gain > 0.75 * pred and norm >= radius:
                    radius *= 2
                theta, f0, obj.base = theta + s, f1, inf1
                if concave and norm <= radius and pred < 1e-5 and abs(gain - pred) < 0.25 * pred:
                    # a full Newton step the model predicted: what is left is O(pred²)
                    return theta, True, "Newton step converged"
                break
            radius = min(radius, norm) / 4
            if pred <= gain_tol:
                return theta, concave, "predicted gain below tolerance"
            if radius < 1e-9:
                return theta, False, "trust region collapsed before the predicted gain was reached"
    return theta, False, f"iteration limit ({max_iter}) reached"


def fit_coxme(
    X: np.ndarray,
    Z,
    terms: list[CoxTerm],
    time: np.ndarray,
    status: np.ndarray,
    strata: np.ndarray | None = None,
    offset: np.ndarray | None = None,
    ties: str = "efron",
    sparse_cols: np.ndarray | None = None,
    theta0: np.ndarray | None = None,
) -> CoxmeFit:
    """Maximise the Laplace-approximated integrated partial likelihood over the term covariances.

    ``Z`` (n × q, sparse or dense) holds the terms level-major as ``terms`` describe;
    ``sparse_cols`` are the Z columns of coxme's sparse approximation (see :func:`sparse_levels`).
    """
    with fit_blas_threads():
        prob = PenalizedCox(X, Z, terms, time, status, strata, offset, ties, sparse_cols)
        obj = _Objective(prob)
        lo, hi = _bounds(terms)
        start = _default_start(terms) if theta0 is None else np.asarray(theta0, dtype=float)
        theta, converged, message = _maximize_theta(obj, start, lo, hi)
        ilik, inf, ppl, fac = obj(theta)
        cov_beta = prob.cov_beta(fac)
    covs, at = [], 0
    for t in terms:
        covs.append(term_covariance(theta[at : at + t.n_theta], t.k)[0])
        at += t.n_theta
    return CoxmeFit(
        beta=inf.coef[prob.q :], b=inf.coef[: prob.q], covariances=covs, loglik_integrated=float(ilik),
        loglik_penalized=float(ppl), loglik_null=float(prob.null_loglik), cov_beta=cov_beta,
        n_evaluations=obj.evals, n_newton=prob.n_info, converged=converged, message=message,
    )


def _default_start(terms: list[CoxTerm]) -> np.ndarray:
    """σ² = 0.16 for every variance (coxme's grid runs from 0.02² to 0.8²), no correlation."""
    out = []
    for t in terms:
        c, r = np.triu_indices(t.k)
        out.extend(np.where(r == c, np.log(0.16) * (1.0 if t.k == 1 else 0.5), 0.0))
    return np.asarray(out, dtype=float)


def efron(M: np.ndarray, eta: np.ndarray, time: np.ndarray, status: np.ndarray,
          strata: np.ndarray | None = None, ties: str = "efron"):
    """log partial likelihood of η (for coefficients of a dense M) with its gradient and Hessian."""
    rs = RiskSets(time, status, strata, ties)
    o = rs.order
    st = rs.state(np.asarray(eta, dtype=float)[o])
    Ms = np.asarray(M, dtype=float)[o]
    RRM = np.column_stack([rs.rr(st, Ms[:, j]) for j in range(Ms.shape[1])])
    hess = Ms.T @ RRM - Ms.T @ ((st.w * st.a)[:, None] * Ms)
    return st.loglik, Ms.T @ st.resid, hess
