"""The frequentist backend: REML/ML on a blocked Cholesky (lme4's PLS formulation)."""

from __future__ import annotations

from ...design import DesignMatrices
from ...result import CrossedLMEResult, FitInfo
from ...spec import ModelSpec
from .lmm import LMMFit, fit_lmm

__all__ = ["fit", "LMMFit", "fit_lmm"]


def fit(spec: ModelSpec, design: DesignMatrices, n_dropped: int = 0) -> CrossedLMEResult:
    """Fit ``spec`` on ``design`` and wrap the numbers in the unified result."""
    est = fit_lmm(design, spec)
    info = FitInfo(
        theta=est.theta, beta=est.beta, b=est.b, scale=est.scale, llf=est.llf,
        cov_beta=est.cov_beta, fe_df=est.fe_df, fitted=est.fitted, resid=est.resid,
        converged=est.converged, is_singular=est.is_singular,
        correlation_params=est.correlation_params,
        optimizer_info={
            "optimizer": spec.optimizer, "n_evals": est.n_evals, "grad_norm": est.grad_norm,
            "message": est.message,
        },
    )
    return CrossedLMEResult(spec, design, info, backend="reml", n_dropped=n_dropped)
