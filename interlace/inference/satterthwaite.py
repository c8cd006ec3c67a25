"""Satterthwaite denominator degrees of freedom, as lmerTest defines them.

With the variance parameters φ = (θ, σ), A = 2 H⁻¹ (H the Hessian of the REML/ML deviance in φ,
β profiled; a Moore–Penrose inverse over eigenvalues > tol) and C(φ) = Var(β̂)(φ), the df of a
contrast ℓ is

    ν = 2 (ℓ'Cℓ)² / (g' A g),    g_i = ℓ' (∂C/∂φ_i) ℓ.
"""

from __future__ import annotations

import numpy as np

__all__ = ["varpar_covariance", "satterthwaite_df"]


def varpar_covariance(H: np.ndarray, tol: float = 1e-8) -> np.ndarray:
    """A = 2 H⁺: the asymptotic covariance of the variance parameters."""
    vals, vecs = np.linalg.eigh((H + H.T) / 2)
    pos = vals > tol
    inv = (vecs[:, pos] / vals[pos]) @ vecs[:, pos].T
    return 2.0 * inv


def satterthwaite_df(
    cov_beta: np.ndarray, jac_cov: np.ndarray, A: np.ndarray, L: np.ndarray | None = None
) -> np.ndarray:
    """df for each row ℓ of ``L`` (default: each coefficient).

    ``jac_cov`` has shape (p, p, n_varpar): ∂Var(β̂)/∂φ.
    """
    p = cov_beta.shape[0]
    L = np.eye(p) if L is None else np.atleast_2d(L)
    out = np.empty(L.shape[0])
    for m, ell in enumerate(L):
        var = float(ell @ cov_beta @ ell)
        g = np.einsum("i,ijk,j->k", ell, jac_cov, ell)
        denom = float(g @ A @ g)
        out[m] = 2.0 * var**2 / denom if denom > 0 else np.inf
    return out
