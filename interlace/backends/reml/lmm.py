"""Gaussian LMM by REML/ML: profiled deviance → optimize θ → estimates (lme4's devfun pipeline).

Profiled deviances (β and σ profiled out; Bates et al. 2015, eqs. 34 and 41), with prior
weights w:

    ML:   d(θ)   = log|L_Z|² + n (1 + log(2π r²/n))                         − Σ log wᵢ
    REML: d_R(θ) = log|L_Z|² + log|R_X|² + (n−p)(1 + log(2π r²/(n−p)))     − Σ log wᵢ

σ̂² = r²/n (ML) or r²/(n−p) (REML); Var(β̂) = σ̂² (R_X'R_X)⁻¹.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from ...design import DesignMatrices
from ...inference.derivatives import hessian, jacobian
from ...inference.kenward_roger import kenward_roger, kr_df
from ...inference.satterthwaite import satterthwaite_df, varpar_covariance
from ...spec import ModelSpec
from .optimize import minimize_theta
from .pls import PLSProblem

__all__ = ["LMMFit", "fit_lmm", "profiled_deviance"]

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

    @property
    def llf(self) -> float:
        return -0.5 * self.objective


def profiled_deviance(problem: PLSProblem, theta: np.ndarray, reml: bool) -> float:
    """The profiled deviance (ML) or REML criterion at θ; +inf where the system is not PD."""
    try:
        f = problem.factor(theta)
    except np.linalg.LinAlgError:
        return np.inf
    return _deviance_from_factor(problem, f, reml)


def _deviance_from_factor(problem: PLSProblem, f, reml: bool) -> float:
    n, p = problem.n, problem.p
    if reml:
        nmp = n - p
        return f.logdet_LZ + f.logdet_RX + nmp * (1 + LOG_2PI + np.log(f.r2 / nmp)) - problem.sum_log_w
    return f.logdet_LZ + n * (1 + LOG_2PI + np.log(f.r2 / n)) - problem.sum_log_w


def varpar_deviance(problem: PLSProblem, varpar: np.ndarray, reml: bool) -> float:
    """lmerTest's deviance in φ = (θ, σ), β profiled, σ not (its ``devfun_vp``)."""
    theta, sigma2 = varpar[:-1], varpar[-1] ** 2
    f = problem.factor(theta)
    dev = f.logdet_LZ + f.r2 / sigma2 + problem.n * (LOG_2PI + np.log(sigma2))
    if reml:
        dev += f.logdet_RX - problem.p * (LOG_2PI + np.log(sigma2))
    return dev


def varpar_cov_beta(problem: PLSProblem, varpar: np.ndarray) -> np.ndarray:
    """Var(β̂) = σ² (R_X'R_X)⁻¹ as a function of φ = (θ, σ)."""
    f = problem.factor(varpar[:-1])
    return varpar[-1] ** 2 * problem.rx_inverse(f)


def singular_theta(design: DesignMatrices, theta: np.ndarray, tol: float = 1e-4) -> bool:
    """lme4's ``isSingular``: some θ with a lower bound of 0 is within ``tol`` of it."""
    lower = design.theta_lower()
    return bool(np.any(np.isfinite(lower) & (theta < lower + tol)))


def fit_lmm(design: DesignMatrices, spec: ModelSpec) -> LMMFit:
    """Fit a Gaussian LMM by REML or ML on the blocked-Cholesky engine."""
    problem = PLSProblem(design)
    reml = spec.reml
    n, p = design.n, design.p
    if reml and n <= p:
        raise ValueError(f"REML needs more observations ({n}) than fixed effects ({p})")
    lower = design.theta_lower()
    x0 = design.theta_default() if spec.theta0 is None else np.asarray(spec.theta0, dtype=float)
    if x0.shape != lower.shape:
        raise ValueError(
            f"theta0 has {x0.size} values but the model has {lower.size} variance parameters "
            f"(lower-triangle entries of each term's relative covariance factor)"
        )

    opt = minimize_theta(lambda t: profiled_deviance(problem, t, reml), x0, lower, spec.optimizer)
    theta = opt.x
    f = problem.factor(theta)
    objective = _deviance_from_factor(problem, f, reml)
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
        fe_df, A = _satterthwaite(problem, theta, np.sqrt(scale), cov_beta, reml)
    return LMMFit(
        theta=theta, beta=beta, b=b, scale=float(scale), objective=float(objective),
        cov_beta=cov_beta, fe_df=fe_df, fitted=fitted, resid=resid, converged=opt.converged,
        n_evals=opt.n_evals, grad_norm=opt.grad_norm, message=opt.message,
        is_singular=singular_theta(design, theta), varpar_cov=A,
    )


def _satterthwaite(problem, theta, sigma, cov_beta, reml) -> tuple[np.ndarray, np.ndarray]:
    varpar = np.concatenate([theta, [sigma]])
    H = hessian(lambda v: varpar_deviance(problem, v, reml), varpar)
    A = varpar_covariance(H)
    J = jacobian(lambda v: varpar_cov_beta(problem, v), varpar)
    return satterthwaite_df(cov_beta, J, A), A
