"""Gaussian LMM by REML/ML: profiled deviance → optimize θ → estimates (lme4's devfun pipeline).

Profiled deviances (β and σ profiled out; Bates et al. 2015, eqs. 34 and 41), with prior
weights w:

    ML:   d(θ)   = log|L_Z|² + n (1 + log(2π r²/n))                         − Σ log wᵢ
    REML: d_R(θ) = log|L_Z|² + log|R_X|² + (n−p)(1 + log(2π r²/(n−p)))     − Σ log wᵢ

σ̂² = r²/n (ML) or r²/(n−p) (REML); Var(β̂) = σ̂² (R_X'R_X)⁻¹.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from ...design import DesignMatrices
from ...inference.derivatives import hessian, jacobian
from ...inference.kenward_roger import kenward_roger, kr_df
from ...inference.satterthwaite import satterthwaite_df, varpar_covariance
from ...spec import ModelSpec
from .optimize import minimize_theta
from .pls import PLSProblem

__all__ = ["LMMFit", "LMMObjective", "fit_lmm"]

LOG_2PI = float(np.log(2 * np.pi))


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
    varpar_cov: np.ndarray | None = None
    correlation_params: dict[str, float] = field(default_factory=dict)

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


def _deviance_from_factor(problem: PLSProblem, f, reml: bool) -> float:
    n, p = problem.n, problem.p
    if reml:
        nmp = n - p
        return f.logdet_LZ + f.logdet_RX + nmp * (1 + LOG_2PI + np.log(f.r2 / nmp)) - problem.sum_log_w
    return f.logdet_LZ + n * (1 + LOG_2PI + np.log(f.r2 / n)) - problem.sum_log_w


def singular_theta(design: DesignMatrices, theta: np.ndarray, tol: float = 1e-4) -> bool:
    """lme4's ``isSingular``: some θ with a lower bound of 0 is within ``tol`` of it."""
    lower = design.theta_lower()
    return bool(np.any(np.isfinite(lower) & (theta < lower + tol)))


def fit_lmm(design: DesignMatrices, spec: ModelSpec) -> LMMFit:
    """Fit a Gaussian LMM (or, with a correlation structure and no terms, a GLS) by REML or ML."""
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

    opt = minimize_theta(obj, x0, lower, spec.optimizer)
    x = opt.x
    theta = x[: obj.n_theta]
    problem, _ = obj.problem(x)
    f = problem.factor(theta)
    objective = obj(x)
    beta, b = problem.solve(f)
    scale = f.r2 / (n - p if reml else n)
    cov_beta = scale * problem.rx_inverse(f)
    if not opt.converged:
        warnings.warn(
            f"model failed to converge: |gradient| = {opt.grad_norm:.2e} "
            f"(optimizer {spec.optimizer!r}: {opt.message}); try optimizer='bobyqa' or "
            "rescale predictors",
            stacklevel=3,
        )
    fitted = design.X @ beta + design.Z @ b + design.offset
    resid = design.y - fitted

    A = None
    if spec.df_method == "kenward-roger":
        adj = kenward_roger(design, theta, scale, phi=cov_beta)
        cov_beta = adj.phi_adj
        fe_df = np.array([kr_df(adj, row) for row in np.eye(p)])
    else:
        varpar = np.concatenate([x, [np.sqrt(scale)]])
        A = varpar_covariance(hessian(obj.varpar_deviance, varpar))
        J = jacobian(obj.cov_beta, varpar)
        fe_df = satterthwaite_df(cov_beta, J, A)
    corr_params = {}
    if obj.n_corr:
        corr_params[obj.corr.name] = obj.corr.value(x[-1], design.corr_layout)
    return LMMFit(
        theta=theta, beta=beta, b=b, scale=float(scale), objective=float(objective),
        cov_beta=cov_beta, fe_df=fe_df, fitted=fitted, resid=resid, converged=opt.converged,
        n_evals=opt.n_evals, grad_norm=opt.grad_norm, message=opt.message,
        is_singular=singular_theta(design, theta), varpar_cov=A, correlation_params=corr_params,
    )
