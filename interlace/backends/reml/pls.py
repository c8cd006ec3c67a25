"""Penalized least squares on a blocked Cholesky factor (lme4's PLS, MixedModels.jl's blocks).

For fixed θ the augmented, scaled cross-product matrix

    [ Λ₁'Z₁'Z₁Λ₁ + I   sym                ]
    [ Λᵣ'Zᵣ'Z₁Λ₁        Λᵣ'Zᵣ'ZᵣΛᵣ + I  sym ]        (Zᵣ = the other terms)
    [ [X y]'Z₁Λ₁        [X y]'ZᵣΛᵣ   [X y]'[X y] ]

is factored as L L'. The first (largest) term's block is block diagonal with k₁ × k₁ blocks
(every observation has exactly one level), so its factor is a batch of tiny Choleskys; its
off-diagonal block is scaled, not factored; the remaining Schur complement (other terms, X, y)
is dense and small and goes to LAPACK. From L:

- log|L_Z|² = Σ log diag(L)² over the random-effect rows,
- log|R_X|² = Σ log diag(L)² over the X rows,
- r²(θ) = L_yy² is the penalized residual sum of squares at (β̂, û),
- β̂ and û follow by back-substitution.

All cross-products of the (√w-whitened) data are formed once; an evaluation touches no
n-length array.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from ...design import DesignMatrices

__all__ = ["PLSProblem", "PLSFactor"]


def _blockdiag_structure(m: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """CSR indptr/indices for a block-diagonal matrix of m dense k × k blocks (row-major data)."""
    indptr = np.arange(0, m * k * k + 1, k, dtype=np.int64)
    base = np.repeat(np.arange(m) * k, k * k).reshape(m, k, k)
    indices = (base + np.arange(k)[None, None, :]).ravel()
    return indptr, indices


@dataclass
class PLSFactor:
    """The factor at one θ and the quantities the deviance needs."""

    theta: np.ndarray
    logdet_LZ: float
    logdet_RX: float
    r2: float
    L11: np.ndarray  # (m1, k1, k1) lower-triangular blocks
    M1: np.ndarray  # (m1, k1, k1): T₁ L11⁻ᵀ per level
    L21: np.ndarray | sp.spmatrix  # rows: other-term columns (sparse part)
    L21_xy: np.ndarray  # rows: X columns then y, dense (p+1, q1)
    LRR: np.ndarray  # dense lower factor of the Schur complement (q2 + p + 1)


class PLSProblem:
    """Cross-products of a Gaussian LMM, formed once, and the factorization at any θ.

    The data are whitened by the prior weights (rows times √wᵢ) and, for a residual
    correlation structure, by ``whiten`` = R^(-1/2) (block diagonal over its groups); the
    offset is subtracted from y. If whitening mixes levels of the first term (or there are no
    random terms, as in GLS), every term goes to the dense Schur block.
    """

    def __init__(self, design: DesignMatrices, whiten: sp.spmatrix | None = None):
        self.design = design
        w = np.ones(design.y.shape[0]) if design.weights is None else design.weights
        sw = np.sqrt(w)
        self.sum_log_w = float(np.sum(np.log(w)))
        XY = np.column_stack([design.X, design.y - design.offset]) * sw[:, None]
        Zw = (sp.diags(sw) @ design.Z).tocsc()
        if whiten is not None:  # residual correlation: rows premultiplied by R^(-1/2)
            XY = np.asarray(whiten @ XY)
            Zw = (whiten @ Zw).tocsc()
        terms = design.terms
        self.p = design.p
        self.n = design.n
        # the first (largest) term gets the block-diagonal treatment when its Z'Z allows it
        self.n_first = 1 if terms and self._is_block_diagonal(Zw[:, : terms[0].q], terms[0].k) else 0
        if self.n_first:
            t1 = terms[0]
            self.k1, self.m1, self.q1 = t1.k, t1.m, t1.q
        else:
            self.k1, self.m1, self.q1 = 1, 0, 0
        self.q2 = design.q - self.q1
        Z1 = Zw[:, : self.q1]
        Zr = Zw[:, self.q1 :]
        # first term: the k1 × k1 diagonal blocks of Z1'Z1
        self.D11 = self._diag_blocks(Z1)
        # other terms against the first: sparse; X and y against the first: dense
        self.A_r1 = (Zr.T @ Z1).tocsr()
        self.A_xy1 = np.asarray((Z1.T @ XY).T).reshape(self.p + 1, self.q1)
        # Schur part, unscaled
        self.A_rr = (Zr.T @ Zr).toarray() if self.q2 else np.zeros((0, 0))
        self.A_xyr = np.asarray((Zr.T @ XY).T) if self.q2 else np.zeros((self.p + 1, 0))
        self.A_xyxy = XY.T @ XY
        self._bd1 = _blockdiag_structure(self.m1, self.k1)
        self._rest_struct = [(_blockdiag_structure(t.m, t.k), t) for t in terms[self.n_first :]]

    @staticmethod
    def _is_block_diagonal(Z1: sp.csc_matrix, k: int) -> bool:
        G = (Z1.T @ Z1).tocoo()
        return bool(np.all(G.row // k == G.col // k))

    def _diag_blocks(self, Z1: sp.csc_matrix) -> np.ndarray:
        k, m = self.k1, self.m1
        G = (Z1.T @ Z1).tocoo()
        blocks = np.zeros((m, k, k))
        same = (G.row // k) == (G.col // k)
        np.add.at(blocks, (G.row[same] // k, G.row[same] % k, G.col[same] % k), G.data[same])
        return blocks

    def _lambda_rest(self, theta: np.ndarray) -> sp.csr_matrix:
        """Λᵣ (block diagonal over the other terms) as a sparse matrix."""
        mats = []
        for (indptr, indices), t in self._rest_struct:
            T = t.T(theta)
            data = np.broadcast_to(T, (t.m, t.k, t.k)).ravel()
            mats.append(sp.csr_matrix((data, indices, indptr), shape=(t.q, t.q)))
        if not mats:
            return sp.csr_matrix((0, 0))
        return sp.block_diag(mats, format="csr")

    def factor(self, theta: np.ndarray) -> PLSFactor:
        """Factor the augmented system at θ. Raises ``np.linalg.LinAlgError`` if not PD."""
        theta = np.asarray(theta, dtype=float)
        k = self.k1
        T1 = self.design.terms[0].T(theta) if self.n_first else np.ones((1, 1))
        # L11 L11' = T1' D_j T1 + I, per level
        A11 = np.swapaxes(T1, 0, 1)[None] @ self.D11 @ T1[None] + np.eye(k)[None]
        if k == 1:
            l11 = np.sqrt(A11[:, 0, 0])
            L11 = l11[:, None, None]
            M1 = (T1[0, 0] / l11)[:, None, None]
        else:
            L11 = np.linalg.cholesky(A11)
            eye = np.broadcast_to(np.eye(k), L11.shape)
            Linv = np.linalg.solve(L11, eye)
            M1 = T1[None] @ np.swapaxes(Linv, 1, 2)
        logdet = 2.0 * float(np.sum(np.log(np.diagonal(L11, axis1=1, axis2=2))))
        indptr, indices = self._bd1
        M = sp.csr_matrix((M1.ravel(), indices, indptr), shape=(self.q1, self.q1))
        # L21 = Λr' A_r1 Λ1 L11⁻ᵀ (sparse), and the X/y rows (dense)
        L21_xy = np.asarray((M.T @ self.A_xy1.T).T)
        q2 = self.q2
        S = self.A_xyxy - L21_xy @ L21_xy.T
        if q2:
            Lr = self._lambda_rest(theta)
            L21 = (Lr.T @ self.A_r1 @ M).tocsr()
            Arr = Lr.T @ (Lr.T @ self.A_rr).T  # Λr' A_rr Λr (A_rr symmetric)
            Arr[np.diag_indices(q2)] += 1.0
            Arr -= (L21 @ L21.T).toarray()
            Axr = np.asarray((Lr.T @ self.A_xyr.T).T) - np.asarray((L21 @ L21_xy.T).T)
            S = np.block([[Arr, Axr.T], [Axr, S]])
        else:
            L21 = sp.csr_matrix((0, self.q1))
        LRR = sla.cholesky(S, lower=True, check_finite=False)
        d = np.diagonal(LRR)
        logdet += 2.0 * float(np.sum(np.log(d[:q2])))
        logdet_RX = 2.0 * float(np.sum(np.log(d[q2 : q2 + self.p])))
        r2 = float(d[-1] ** 2)
        return PLSFactor(theta, logdet, logdet_RX, r2, L11, M1, L21, L21_xy, LRR)

    def solve(self, f: PLSFactor) -> tuple[np.ndarray, np.ndarray]:
        """β̂ and the conditional modes b̂ = Λû (in Z's column order) from a factor."""
        q2, p = self.q2, self.p
        LRR = f.LRR
        Laa = LRR[:-1, :-1]
        lya = LRR[-1, :-1]
        xr = sla.solve_triangular(Laa, lya, lower=True, trans="T", check_finite=False)
        beta = xr[q2:]
        u_rest = xr[:q2]
        # u1 = L11⁻ᵀ (l21_y − L21_a' x_R)
        rhs = f.L21_xy[-1].copy()
        rhs -= f.L21_xy[:p].T @ beta
        if q2:
            rhs -= f.L21.T @ u_rest
        k = self.k1
        rhs = rhs.reshape(self.m1, k)
        # b1 = Λ1 u1 = T1 L11⁻ᵀ rhs = M1 rhs per level
        b1 = np.einsum("mij,mj->mi", f.M1, rhs).ravel()
        b_rest = self._lambda_rest(f.theta) @ u_rest if q2 else np.zeros(0)
        return beta, np.concatenate([b1, b_rest])

    def rx_inverse(self, f: PLSFactor) -> np.ndarray:
        """(R_X'R_X)⁻¹, so that Var(β̂) = σ² (R_X'R_X)⁻¹."""
        q2, p = self.q2, self.p
        LXX = f.LRR[q2 : q2 + p, q2 : q2 + p]
        Linv = sla.solve_triangular(LXX, np.eye(p), lower=True, check_finite=False)
        return Linv.T @ Linv
