"""Conjugate gradients for many right-hand sides at once (preconditioned, one column per system).

Each column j of B is solved by its own CG recursion (Hestenes & Stiefel 1952; the
preconditioned form in Saad, *Iterative Methods for Sparse Linear Systems*, 2nd ed., alg. 9.1):
the columns share only the matrix products, so a sparse operator is applied to an (n × s)
block per iteration instead of s times to a vector. A column stops when its residual falls
below ``rtol`` times its right-hand side.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["BlockCGResult", "block_pcg"]


@dataclass
class BlockCGResult:
    X: np.ndarray
    iterations: int
    converged: bool
    max_relres: float


def block_pcg(
    matvec: Callable[[np.ndarray], np.ndarray],
    B: np.ndarray,
    inv_diag: np.ndarray,
    X0: np.ndarray | None = None,
    rtol: float = 1e-8,
    maxiter: int = 2000,
) -> BlockCGResult:
    """Solve A X = B for symmetric positive definite A given as ``matvec`` (applied to blocks
    of columns), with the Jacobi preconditioner ``inv_diag`` = 1 / diag(A)."""
    B = np.asarray(B, dtype=float)
    if B.ndim != 2:
        raise ValueError("B must be a matrix (one column per right-hand side)")
    X = np.zeros_like(B) if X0 is None else np.array(X0, dtype=float, copy=True)
    if B.shape[1] == 0 or B.shape[0] == 0:
        return BlockCGResult(X, 0, True, 0.0)
    bnorm = np.linalg.norm(B, axis=0)
    bnorm[bnorm == 0] = 1.0
    R = B - matvec(X) if X0 is not None else B.copy()
    Mi = inv_diag[:, None]
    Z = Mi * R
    P = Z.copy()
    rz = np.einsum("ij,ij->j", R, Z)
    relres = np.linalg.norm(R, axis=0) / bnorm
    active = np.flatnonzero(relres > rtol)
    it = 0
    while active.size and it < maxiter:
        it += 1
        Pa = P[:, active]
        APa = matvec(Pa)
        pap = np.einsum("ij,ij->j", Pa, APa)
        alpha = rz[active] / np.where(pap > 0, pap, 1.0)
        X[:, active] += Pa * alpha
        Ra = R[:, active] - APa * alpha
        R[:, active] = Ra
        Za = Mi * Ra
        rz_new = np.einsum("ij,ij->j", Ra, Za)
        beta = rz_new / np.where(rz[active] != 0, rz[active], 1.0)
        P[:, active] = Za + Pa * beta
        rz[active] = rz_new
        relres[active] = np.linalg.norm(Ra, axis=0) / bnorm[active]
        active = active[relres[active] > rtol]
    return BlockCGResult(X, it, active.size == 0, float(relres.max()))
