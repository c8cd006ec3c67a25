"""Gaussian LMM by REML/ML: profiled deviance → optimize θ → estimates (lme4's devfun pipeline).

Profiled deviances (β and σ profiled out; Bates et al. 2015, eqs. 34 and 41), with prior
weights w:

    ML:   d(θ)   = log|L_Z|² + n (1 + log(2π r²/n))                         − Σ log wᵢ
    REML: d_R(θ) = log|L_Z|² + log|R_X|² + (n−p)(1 + log(2π r²/(n−p)))     − Σ log wᵢ

σ̂² = r²/n (ML) or r²/(n−p) (REML); Var(β̂) = σ̂² (R_X'R_X)⁻¹.

θ is optimized with the analytic gradient (:mod:`.gradient`). Satterthwaite's inputs (lmerTest's
Hessian of the deviance in φ = (θ, σ) and Jacobian of Var(β̂)) come from the same derivatives:
σ parts and the Jacobian in closed form, the θθ block by central differences of the analytic
gradients. With a residual correlation structure (whose parameter has no analytic derivative
here) the derivative-free path of numerical derivatives is used throughout.
"""

from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass, field

import numpy as np

from ...data.design import DesignMatrices
from ...inference.derivatives import hessian, jacobian
from ...inference.kenward_roger import kenward_roger, kr_df
from ...inference.satterthwaite import cov_beta_jacobian, satterthwaite_df, varpar_covariance, varpar_hessian
from ...linalg.gradient import factor_derivatives
from ...linalg.pls import PLSProblem
from ...linalg.threads import fit_blas_threads
from ...model.spec import ModelSpec
from .convergence import convergence_warning, minimize_with_remedies, theta_columns, theta_rescaling

__all__ = ["LMMFit", "LMMObjective", "fit_lmm"]

LOG_2PI = float(np.log(2 * np.pi))


def blas_threads():
    """The engine's BLAS limit while fitting (see :func:`interlace.linalg.threads.fit_blas_threads`)."""
    return fit_blas_threads()


@dataclass
class LMMFit:
    """Plain results of a REML/ML fit."""

    theta: np.ndarray
    beta: np.ndarray
    b: np.ndarray
    scale: float
    objective: float  # REML criterion or ML deviance at the optimum
    cov_beta: np.ndarray
    fe_df: np.ndarray
    fitted: np.ndarray
    resid: np.ndarray
    converged: bool
    n_evals: int
    grad_norm: float
    message: str
    is_singular: bool
    varpar_cov: np.ndarray | None = None  # A = 2H⁺ over φ = (θ, [z], σ) (Satterthwaite)
    cov_beta_jac: np.ndarray | None = None  # J = ∂Var(β̂)/∂φ, shape (p, p, len(φ))
    correlation_params: dict[str, float] = field(default_factory=dict)
    tried: list[str] = field(default_factory=list)  # optimizer runs and remedies, in order

    @property
    def llf(self) -> float:
        return -0.5 * self.objective


class LMMObjective:
    """The profiled deviance as a function of x = (θ, z), z the correlation parameter if any.

    Without a residual correlation structure the cross-products are formed once; with one,
    they are re-formed for each new z (the whitening depends on it) and cached.
    """

    def __init__(self, design: DesignMatrices, reml: bool):
        self.design = design
        self.reml = reml
        self.n_theta = design.n_theta
        self.corr = design.correlation
        self._key: float | None = None
        self._cached: tuple[PLSProblem, float] | None = None
        self._plain = PLSProblem(design) if self.corr is None else None
        self._last: tuple | None = None  # (θ, factor, derivatives) of the last gradient
        self._parts: tuple | None = None  # (x, H̃, J̃) of the last _scaled_parts
        # x = P x̃ (convergence.theta_rescaling): numerical derivatives take their steps in x̃,
        # where every parameter has a comparable scale
        self.rescale: np.ndarray | None = None

    @property
    def n_corr(self) -> int:
        return 0 if self.corr is None else 1

    def problem(self, x: np.ndarray) -> tuple[PLSProblem, float]:
        """The PLS problem at x's correlation parameter, and Σ_g log|R_g|."""
        if self._plain is not None:
            return self._plain, 0.0
        z = float(x[self.n_theta])
        if self._key != z:
            Linv, logdet = self.corr.whitener(z, self.design.corr_layout)
            self._cached = (PLSProblem(self.design, whiten=Linv), logdet)
            self._key = z
        return self._cached

    def __call__(self, x: np.ndarray) -> float:
        problem, logdet_R = self.problem(x)
        try:
            f = problem.factor(x[: self.n_theta])
        except np.linalg.LinAlgError:
            return np.inf
        return _deviance_from_factor(problem, f, self.reml) + logdet_R

    @property
    def has_gradient(self) -> bool:
        """The analytic θ-gradient is available (not with a residual correlation structure)."""
        return self.corr is None

    def value_and_grad(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """The profiled deviance and its analytic gradient in θ (see :mod:`.gradient`)."""
        try:
            f, fd = self.factor_and_derivatives(x)
        except np.linalg.LinAlgError:
            return np.inf, np.zeros_like(x)
        problem = self._plain
        c = problem.n - problem.p if self.reml else problem.n
        return _deviance_from_factor(problem, f, self.reml), fd.g_logdet + c * fd.g_r2 / fd.r2

    def factor_and_derivatives(self, theta: np.ndarray):
        """The factor and its θ-derivatives (:class:`~.gradient.FactorDerivatives`) at θ;
        the last pair is kept, so the fit's final evaluation is not repeated."""
        theta = np.asarray(theta, dtype=float)
        if self._last is not None and np.array_equal(self._last[0], theta):
            return self._last[1], self._last[2]
        problem = self._plain
        f = problem.factor(theta)
        fd = factor_derivatives(problem, f, self.reml)
        self._last = (theta.copy(), f, fd)
        return f, fd

    def satterthwaite_parts(
        self, theta: np.ndarray, scale: float, P: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(H, J): H the Hessian of the deviance in φ = (θ, σ) (β profiled, lmerTest's
        ``devfun_vp``) and J = ∂Var(β̂)/∂φ, both at (θ, σ² = scale); with ``P``, in
        φ̃ = (θ̃, σ) for θ = Pθ̃ instead.

        H's θθ block is the central-difference Jacobian of the analytic gradients of ℓ and r²
        (steps in θ̃ when P is given); its σ parts and J are analytic
        (:func:`~interlace.inference.satterthwaite.varpar_hessian`).
        """
        problem = self._plain
        f, fd = self.factor_and_derivatives(theta)
        nt = self.n_theta

        def pieces(th: np.ndarray) -> np.ndarray:
            g = factor_derivatives(problem, problem.factor(th), self.reml)
            return np.concatenate([g.g_logdet, g.g_r2])

        g_r2, d_rxtrx = fd.g_r2, fd.d_rxtrx
        if not nt:
            Jg = np.zeros((0, 0))
        elif P is None:
            Jg = jacobian(pieces, theta, d=1e-4, eps=1e-5, r=1)
        else:  # the Jacobian in θ̃ of P'·pieces(Pθ̃)

            def pieces_t(u: np.ndarray) -> np.ndarray:
                out = pieces(P @ u)
                return np.concatenate([P.T @ out[:nt], P.T @ out[nt:]])

            Jg = _central_jacobian(pieces_t, np.linalg.solve(P, theta))
            g_r2, d_rxtrx = P.T @ g_r2, np.tensordot(P.T, d_rxtrx, axes=1)
        sigma = float(np.sqrt(scale))
        c = problem.n - problem.p if self.reml else problem.n
        H = varpar_hessian(Jg[:nt], Jg[nt:], g_r2, f.r2, sigma, c)
        J = cov_beta_jacobian(problem.rx_inverse(f), sigma, d_rxtrx)
        return H, J

    def scale_at(self, x: np.ndarray) -> float:
        """σ̂²(x) = r²/(n − p) (REML) or r²/n (ML)."""
        problem, _ = self.problem(x)
        f = problem.factor(x[: self.n_theta])
        return f.r2 / (problem.n - problem.p if self.reml else problem.n)

    def _scaled_parts(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(H̃, J̃) over φ̃ = (x̃, σ), x = P x̃ (P = ``rescale``, or I): the last pair is kept,
        as the convergence check and Satterthwaite's df share it."""
        x = np.asarray(x, dtype=float)
        if self._parts is not None and np.array_equal(self._parts[0], x):
            return self._parts[1], self._parts[2]
        scale = self.scale_at(x)
        P = self.rescale
        if self.has_gradient:
            H, J = self.satterthwaite_parts(x, scale, P)
        else:  # numerically, with steps in (x̃, σ)
            Q = self._varpar_map(x.size)
            v = np.linalg.solve(Q, np.concatenate([x, [np.sqrt(scale)]]))
            H = hessian(lambda u: self.varpar_deviance(Q @ u), v)
            J = jacobian(lambda u: self.cov_beta(Q @ u), v)
        self._parts = (x.copy(), H, J)
        return H, J

    def _varpar_map(self, nx: int) -> np.ndarray:
        Q = np.eye(nx + 1)
        if self.rescale is not None:
            Q[:nx, :nx] = self.rescale
        return Q

    def varpar_covariance(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(A, J) over φ = (x, σ) at σ̂(x): A = 2H⁺ (Satterthwaite's covariance of φ̂) and
        J = ∂Var(β̂)/∂φ. H is inverted in φ̃ = (x̃, σ), where it is well conditioned, and A and
        J are mapped to φ (A = Q Ã Q', J = J̃ Q⁻¹ for φ = Q φ̃)."""
        H, J = self._scaled_parts(x)
        A = varpar_covariance(H)
        if self.rescale is None:
            return A, J
        Q = self._varpar_map(np.asarray(x).size)
        return Q @ A @ Q.T, J @ np.linalg.inv(Q)

    def profiled_derivatives(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Gradient and Hessian of the profiled deviance in x̃ = P⁻¹x (P = ``rescale``, or I), for
        the convergence check: the Hessian is the Schur complement of σ in (x̃, σ)'s."""
        x = np.asarray(x, dtype=float)
        P = np.eye(x.size) if self.rescale is None else self.rescale
        if self.has_gradient:
            g = P.T @ self.value_and_grad(x)[1]
        else:
            g = _central_jacobian(lambda v: self(P @ v), np.linalg.solve(P, x))
        H = self._scaled_parts(x)[0]
        nx = H.shape[0] - 1
        H_prof = H[:nx, :nx] - np.outer(H[:nx, nx], H[nx, :nx]) / H[nx, nx]
        return np.asarray(g, dtype=float), H_prof

    def varpar_deviance(self, varpar: np.ndarray) -> float:
        """lmerTest's deviance in φ = (θ, z, σ): β profiled, σ not (its ``devfun_vp``)."""
        x, sigma2 = varpar[:-1], varpar[-1] ** 2
        problem, logdet_R = self.problem(x)
        f = problem.factor(x[: self.n_theta])
        dev = f.logdet_LZ + f.r2 / sigma2 + problem.n * (LOG_2PI + np.log(sigma2)) + logdet_R
        if self.reml:
            dev += f.logdet_RX - problem.p * (LOG_2PI + np.log(sigma2))
        return dev

    def cov_beta(self, varpar: np.ndarray) -> np.ndarray:
        """Var(β̂) = σ² (R_X'R_X)⁻¹ as a function of φ = (θ, z, σ)."""
        problem, _ = self.problem(varpar[:-1])
        f = problem.factor(varpar[: self.n_theta])
        return varpar[-1] ** 2 * problem.rx_inverse(f)


def _central_jacobian(fun, u: np.ndarray, rel: float = 1e-4, floor: float = 1e-4) -> np.ndarray:
    """Central differences with steps max(rel·|uᵢ|, floor): on the rescaled θ̃, whose entries
    are O(1), a floor keeps the steps well above the rounding of the deviance and its
    gradients (near θ̃ᵢ = 0 too)."""
    cols = []
    for i in range(u.size):
        e = np.zeros_like(u)
        e[i] = max(rel * abs(u[i]), floor)
        cols.append((np.asarray(fun(u + e)) - np.asarray(fun(u - e))) / (2 * e[i]))
    return np.stack(cols, axis=-1)


def _verbose(fun, value_and_grad):
    """Wrap the objective so that each evaluation reports its criterion on stderr."""
    count = [0]

    def report(v):
        count[0] += 1
        sys.stderr.write(f"\rREML/ML: evaluation {count[0]:4d}, criterion {v:.6f}")
        sys.stderr.flush()

    def f(x):
        v = fun(x)
        report(v)
        return v

    def fg(x):
        v, g = value_and_grad(x)
        report(v)
        return v, g

    return f, (fg if value_and_grad is not None else None)


def _deviance_from_factor(problem: PLSProblem, f, reml: bool) -> float:
    n, p = problem.n, problem.p
    if reml:
        nmp = n - p
        return f.logdet_LZ + f.logdet_RX + nmp * (1 + LOG_2PI + np.log(f.r2 / nmp)) - problem.sum_log_w
    return f.logdet_LZ + n * (1 + LOG_2PI + np.log(f.r2 / n)) - problem.sum_log_w


def fit_lmm(design: DesignMatrices, spec: ModelSpec) -> LMMFit:
    """Fit a Gaussian LMM (or, with a correlation structure and no terms, a GLS) by REML or ML."""
    with blas_threads():
        return _fit_lmm(design, spec)


def _fit_lmm(design: DesignMatrices, spec: ModelSpec) -> LMMFit:
    reml = spec.reml
    n, p = design.n, design.p
    if reml and n <= p:
        raise ValueError(f"REML needs more observations ({n}) than fixed effects ({p})")
    obj = LMMObjective(design, reml)
    lower_theta = design.theta_lower()
    theta0 = design.theta_default() if spec.theta0 is None else np.asarray(spec.theta0, dtype=float)
    if theta0.shape != lower_theta.shape:
        raise ValueError(
            f"theta0 has {theta0.size} values but the model has {lower_theta.size} variance parameters "
            f"(lower-triangle entries of each term's relative covariance factor)"
        )
    x0, lower = theta0, lower_theta
    if obj.n_corr:
        x0 = np.r_[theta0, obj.corr.to_z(0.0, design.corr_layout)]
        lower = np.r_[lower_theta, -np.inf]

    levels = np.array([t.m for t in design.terms for _ in range(t.n_theta)], dtype=float)
    scale = np.ones(x0.size)
    scale[: levels.size] = np.sqrt(levels / levels.max()) if levels.size else 1.0
    fun, vg = obj, (obj.value_and_grad if obj.has_gradient else None)
    if spec.options.get("verbose"):
        fun, vg = _verbose(fun, vg)
    obj.rescale = theta_rescaling(design, obj.n_corr)
    opt = minimize_with_remedies(
        fun, x0, lower, spec.optimizer, obj.profiled_derivatives, value_and_grad=vg, scale=scale,
        rescale=obj.rescale,
        rescaled_start=np.r_[design.theta_default(), x0[obj.n_theta :]], columns=theta_columns(design),
    )
    if spec.options.get("verbose"):
        sys.stderr.write(f"\rREML/ML: done after {opt.n_evals} evaluations, criterion {opt.fun:.6f}\n")
    x = opt.x
    theta = x[: obj.n_theta]
    problem, _ = obj.problem(x)
    f = obj.factor_and_derivatives(theta)[0] if obj.has_gradient else problem.factor(theta)
    objective = _deviance_from_factor(problem, f, reml) + obj.problem(x)[1]
    beta, b = problem.solve(f)
    scale = f.r2 / (n - p if reml else n)
    cov_beta = scale * problem.rx_inverse(f)
    fitted = design.X @ beta + design.Z @ b + design.offset
    resid = design.y - fitted

    A = J = None
    if spec.df_method == "kenward-roger":
        adj = kenward_roger(design, theta, scale, phi=cov_beta)
        cov_beta = adj.phi_adj
        fe_df = np.array([kr_df(adj, row) for row in np.eye(p)])
    else:
        A, J = obj.varpar_covariance(x)
        fe_df = satterthwaite_df(cov_beta, J, A)
    if not opt.converged:
        warnings.warn(convergence_warning(opt), stacklevel=4)
    corr_params = {}
    if obj.n_corr:
        corr_params[obj.corr.name] = obj.corr.value(x[-1], design.corr_layout)
    return LMMFit(
        theta=theta, beta=beta, b=b, scale=float(scale), objective=float(objective),
        cov_beta=cov_beta, fe_df=fe_df, fitted=fitted, resid=resid, converged=opt.converged,
        n_evals=opt.n_evals, grad_norm=opt.grad_norm, message=opt.message,
        is_singular=design.is_singular(theta), varpar_cov=A, cov_beta_jac=J,
        correlation_params=corr_params, tried=opt.tried,
    )
