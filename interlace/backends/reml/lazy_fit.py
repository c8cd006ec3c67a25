"""REML/ML from cross-products alone (lazy frames): a compressed design with the same Gram matrix.

Given C = [Z X y]'W[Z X y] with the first term's block D₁ = Z₁'WZ₁ block diagonal, the rows

    level j of the first term:  [ L_j'  |  L_j⁻¹ B_j' ]        (k₁ rows; L_jL_j' = D_j,
                                                               B_j = the rest against level j)
    the remainder:              [ 0     |  chol(M − Σ_j B_j D_j⁻¹ B_j')' ]

have exactly the Gram matrix C and keep the first term's one-level-per-row structure, so the
blocked-Cholesky engine runs on them unchanged, with n set to the number of observations the
aggregates came from. The remainder is the Schur complement of D₁ in C, positive semidefinite.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from ...design import DesignMatrices

__all__ = ["compressed_design"]


def _psd_factor(S: np.ndarray) -> np.ndarray:
    """R with R'R = S for a symmetric positive semidefinite S (eigenvalues below 0 clipped)."""
    vals, vecs = np.linalg.eigh((S + S.T) / 2)
    vals = np.clip(vals, 0.0, None)
    keep = vals > vals.max() * 1e-14 if vals.max() > 0 else np.zeros_like(vals, dtype=bool)
    return (vecs[:, keep] * np.sqrt(vals[keep])).T


def compressed_design(
    ZtZ: sp.spmatrix, ZtXy: np.ndarray, XytXy: np.ndarray, terms, X_names, response, n: int
) -> DesignMatrices:
    """A DesignMatrices whose cross-products equal the given ones (see the module docstring)."""
    ZtZ = sp.csc_matrix(ZtZ)
    q = ZtZ.shape[0]
    p = XytXy.shape[0] - 1
    t1 = terms[0]
    k, m, q1 = t1.k, t1.m, t1.q
    dense_rest = np.zeros((q - q1 + p + 1, q - q1 + p + 1))
    if q > q1:
        dense_rest[: q - q1, : q - q1] = ZtZ[q1:, q1:].toarray()
        dense_rest[: q - q1, q - q1 :] = ZtXy[q1:]
    dense_rest[q - q1 :, : q - q1] = dense_rest[: q - q1, q - q1 :].T
    dense_rest[q - q1 :, q - q1 :] = XytXy
    B = np.vstack([ZtZ[q1:, :q1].toarray(), ZtXy[:q1].T]) if q > q1 else ZtXy[:q1].T.copy()  # rest × q1
    rows_z1, rows_rest = [], []
    schur = dense_rest.copy()
    for j in range(m):
        sl = slice(j * k, (j + 1) * k)
        D = ZtZ[sl, sl].toarray()
        L = np.linalg.cholesky(D + 1e-300 * np.eye(k))
        Bj = B[:, sl]
        G = sla.solve_triangular(L, Bj.T, lower=True)  # L⁻¹ B_j'  (k × rest)
        rows_z1.append(L.T)
        rows_rest.append(G)
        schur -= G.T @ G
    R = _psd_factor(schur)
    n_syn = m * k + R.shape[0]
    Z1 = sp.block_diag(rows_z1, format="csr") if m else sp.csr_matrix((0, 0))
    Z1 = sp.vstack([Z1, sp.csr_matrix((R.shape[0], q1))], format="csr")
    rest = np.vstack([np.vstack(rows_rest), R])
    Zr = sp.csr_matrix(rest[:, : q - q1])
    Z = sp.hstack([Z1, Zr], format="csc")
    X = rest[:, q - q1 : q - q1 + p]
    y = rest[:, -1]
    return DesignMatrices(
        y=y,
        X=X,
        X_names=list(X_names),
        Z=Z,
        terms=list(terms),
        weights=None,
        offset=np.zeros(n_syn),
        response=response,
        n_rows=int(n),
    )
