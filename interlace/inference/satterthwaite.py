"""Satterthwaite denominator degrees of freedom, as lmerTest defines them.

With the variance parameters φ = (θ, σ), A = 2 H⁻¹ (H the Hessian of the REML/ML deviance in φ,
β profiled; a Moore–Penrose inverse over eigenvalues > tol) and C(φ) = Var(β̂)(φ), the df of a
contrast ℓ is

    ν = 2 (ℓ'Cℓ)² / (g' A g),    g_i = ℓ' (∂C/∂φ_i) ℓ.
"""

from __future__ import annotations

import numpy as np

__all__ = ["varpar_covariance", "satterthwaite_df", "varpar_hessian", "cov_beta_jacobian"]


def varpar_hessian(
    hess_logdet: np.ndarray, hess_r2: np.ndarray, grad_r2: np.ndarray, r2: float, sigma: float, c: float
) -> np.ndarray:
    """Hessian in φ = (θ, σ) of D(θ, σ) = ℓ(θ) + r²(θ)/σ² + c log σ² (lmerTest's deviance
    with β profiled), from the θ-derivatives of ℓ and r²:

        ∂²D/∂θ² = ∇²ℓ + ∇²r²/σ²,   ∂²D/∂θ∂σ = −2∇r²/σ³,   ∂²D/∂σ² = 6r²/σ⁴ − 2c/σ².
    """
    nt = grad_r2.size
    H = np.empty((nt + 1, nt + 1))
    Htt = hess_logdet + hess_r2 / sigma**2
    H[:nt, :nt] = (Htt + Htt.T) / 2
    H[:nt, nt] = H[nt, :nt] = -2.0 * grad_r2 / sigma**3
    H[nt, nt] = 6.0 * r2 / sigma**4 - 2.0 * c / sigma**2
    return H


def cov_beta_jacobian(rx_inv: np.ndarray, sigma: float, d_rxtrx: np.ndarray) -> np.ndarray:
    """∂Var(β̂)/∂φ for Var(β̂) = σ²(R_X'R_X)⁻¹, shape (p, p, n_θ + 1), from ∂(R_X'R_X)/∂θ:
    ∂(R_X'R_X)⁻¹ = −(R_X'R_X)⁻¹ ∂(R_X'R_X) (R_X'R_X)⁻¹ and ∂Var/∂σ = 2σ(R_X'R_X)⁻¹."""
    nt = d_rxtrx.shape[0]
    p = rx_inv.shape[0]
    J = np.empty((p, p, nt + 1))
    for i in range(nt):
        J[:, :, i] = -(sigma**2) * rx_inv @ d_rxtrx[i] @ rx_inv
    J[:, :, nt] = 2.0 * sigma * rx_inv
    return J

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
