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
import scipy.sparse as sp

from ...design import DesignMatrices

__all__ = ["compressed_design"]


def _psd_factor(S: np.ndarray) -> np.ndarray:
    """R with R'R = S for a symmetric positive semidefinite S (eigenvalues below 0 clipped)."""
    vals, vecs = np.linalg.eigh((S + S.T) / 2)
    vals = np.clip(vals, 0.0, None)
    keep = vals > vals.max() * 1e-14 if vals.max() > 0 else np.zeros_like(vals, dtype=bool)
    return (vecs[:, keep] * np.sqrt(vals[keep])).T


def _diag_blocks(Z1tZ1: sp.spmatrix, m: int, k: int) -> np.ndarray:
    coo = sp.coo_matrix(Z1tZ1)
    blocks = np.zeros((m, k, k))
    same = coo.row // k == coo.col // k
    np.add.at(blocks, (coo.row[same] // k, coo.row[same] % k, coo.col[same] % k), coo.data[same])
    return blocks


def compressed_design(
    ZtZ: sp.spmatrix, ZtXy: np.ndarray, XytXy: np.ndarray, terms, X_names, response, n: int
) -> DesignMatrices:
    """A DesignMatrices whose cross-products equal the given ones (see the module docstring)."""
    ZtZ = sp.csc_matrix(ZtZ)
    q = ZtZ.shape[0]
    p = XytXy.shape[0] - 1
    t1 = terms[0]
    k, m, q1 = t1.k, t1.m, t1.q
    q2 = q - q1
    D = _diag_blocks(ZtZ[:q1, :q1], m, k)
    L = np.linalg.cholesky(D)
    Linv = np.linalg.inv(L)
    # block-diagonal L_j' and L_j⁻¹ as sparse matrices
    idx = (np.arange(m) * k)[:, None, None]
    rows = np.broadcast_to(idx + np.arange(k)[None, :, None], (m, k, k)).ravel()
    cols = np.broadcast_to(idx + np.arange(k)[None, None, :], (m, k, k)).ravel()
    Lt_bd = sp.csr_matrix((np.swapaxes(L, 1, 2).ravel(), (rows, cols)), shape=(q1, q1))
    Linv_bd = sp.csr_matrix((Linv.ravel(), (rows, cols)), shape=(q1, q1))
    Bs = ZtZ[q1:, :q1]  # other terms against the first (sparse)
    Bd = ZtXy[:q1].T  # X and y against the first (dense, (p+1) × q1)
    Gs = (Linv_bd @ Bs.T).tocsr()  # q1 × q2: rows L_j⁻¹ B_j' for the other terms
    Gd = np.asarray(Linv_bd @ Bd.T)  # q1 × (p+1)
    # the Schur complement of D₁ in C
    schur = np.empty((q2 + p + 1, q2 + p + 1))
    if q2:
        schur[:q2, :q2] = ZtZ[q1:, q1:].toarray() - (Gs.T @ Gs).toarray()
        cross = ZtXy[q1:] - np.asarray(Gs.T @ Gd)
        schur[:q2, q2:] = cross
        schur[q2:, :q2] = cross.T
    schur[q2:, q2:] = XytXy - Gd.T @ Gd
    R = _psd_factor(schur)
    r = R.shape[0]
    Z_top = sp.hstack([Lt_bd, Gs], format="csr")
    Z_bottom = sp.hstack([sp.csr_matrix((r, q1)), sp.csr_matrix(R[:, :q2])], format="csr")
    Z = sp.vstack([Z_top, Z_bottom], format="csc")
    rest = np.vstack([Gd, R[:, q2:]])
    n_syn = q1 + r
    return DesignMatrices(
        y=rest[:, -1].copy(),
        X=rest[:, :p].copy(),
        X_names=list(X_names),
        Z=Z,
        terms=list(terms),
        weights=None,
        offset=np.zeros(n_syn),
        response=response,
        n_rows=int(n),
    )
