"""Wald intervals for variance parameters (SDs and correlations of the random effects, σ).

With A = 2H⁻¹ the asymptotic covariance of the optimised variance parameters (H the Hessian of
the REML criterion / ML deviance in (θ, σ) for an LMM — the matrix lmerTest's Satterthwaite df
use — or of the Laplace deviance in (θ, β) for a GLMM), the reporting-scale parameters
ψ = f(θ, σ) get Var(ψ̂) ≈ J A J' (delta method, J = ∂f/∂(θ, σ) by central differences), and
the interval ψ̂ ± z·SE, clipped to the parameter's range (SD ≥ 0, |correlation| ≤ 1).

These are symmetric and poor near a boundary (an SD near 0): profile intervals
(``confint(method="profile")``) are the better default where their cost is acceptable. A
residual-correlation parameter (AR1, CS) and a family parameter (the negative binomial's θ)
get no interval here (NaN).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from .derivatives import hessian, jacobian
from .satterthwaite import varpar_covariance

__all__ = ["variance_wald"]


def variance_wald(result, level: float = 0.95) -> pd.DataFrame:
    """estimate, se, lower, upper of each SD / correlation (and σ for an LMM), indexed by the
    lme4 ``confint`` names; for fits with an ``engine`` (interlace.fit, interlace.glmer)."""
    engine = result.engine
    d = result.design
    nt = d.n_theta
    if getattr(result, "family", None) is None:
        _, _, A = engine.satterthwaite_parts()
        keep = [*range(nt), A.shape[0] - 1]  # θ and σ (a correlation parameter left out)
        A = A[np.ix_(keep, keep)]
        x = np.r_[result.theta, np.sqrt(result.scale)]

        def f(v):
            return np.r_[d.sd_cor(v[:nt], v[-1]), v[-1]]

        names = [n for n in engine.psi_names() if n.startswith(("sd_", "cor_"))] + ["sigma"]
    else:
        obj = engine._objective()
        beta = result.fe_params.to_numpy()

        def dev(v):
            return obj.laplace(v[:nt], v[nt:])

        A = varpar_covariance(hessian(dev, np.r_[result.theta, beta]))[:nt, :nt]
        x = result.theta.copy()

        def f(v):
            return d.sd_cor(v, 1.0)

        names = engine.psi_names()
    est = f(x)
    J = np.atleast_2d(jacobian(f, x))
    se = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", J, A, J), 0.0))
    z = stats.norm.ppf(0.5 + level / 2)
    lo, hi = est - z * se, est + z * se
    is_cor = np.array([n.startswith("cor_") for n in names])
    lo = np.where(is_cor, np.maximum(lo, -1.0), np.maximum(lo, 0.0))
    hi = np.where(is_cor, np.minimum(hi, 1.0), hi)
    return pd.DataFrame({"estimate": est, "se": se, "lower": lo, "upper": hi}, index=names)
