"""Penalized least squares on a blocked Cholesky factor (lme4's PLS, MixedModels.jl's blocks).

For fixed θ the augmented, scaled cross-product matrix of [Z₁ Z_r X y] (Z₁ the first, largest
random-effects term, Z_r the others)

    Ω = Λ̃'MΛ̃ + diag(I_q, 0, 0),   M = [Z₁ Z_r X y]'[Z₁ Z_r X y],   Λ̃ = blockdiag(Λ₁, Λ_r, I)

is factored blockwise. The first term's block Λ₁'Z₁'Z₁Λ₁ + I is block diagonal with k₁ × k₁
blocks C_j = T₁'D_jT₁ + I (each observation has one level), so it is eliminated level by level:
with B = [Z_r X y]'Z₁ and W = blockdiag_j T₁C_j⁻¹T₁', the Schur complement is

    Ω̃ = Λ̃_ρ'(M_ρρ − B W B')Λ̃_ρ + diag(I, 0, 0)     (ρ = the other terms, X, y),

a small dense matrix factored with LAPACK (L_RR). B W B' is a :class:`~.gram.WeightedGram`.
From the factors:

- log|L_Z|² = Σ_j log det C_j + Σ log diag(L_RR)² over the other terms' rows,
- log|R_X|² = Σ log diag(L_RR)² over the X rows,
- r²(θ) = L_yy² is the penalized residual sum of squares at (β̂, û),
- β̂ and û follow by back-substitution; b̂₁ = W_j s_j per level with s = B'[−b̂_r; −β̂; 1].

All cross-products of the (√w-whitened) data are formed once; an evaluation touches no
n-length array and allocates no sparse matrix.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from ..data.design import DesignMatrices
from .gram import WeightedGram

__all__ = ["PLSProblem", "PLSFactor", "BlockLambda"]


class BlockLambda:
    """Λ for a list of terms (block diagonal: m copies of T per term) applied to dense arrays."""

    def __init__(self, terms, offset: int = 0):
        self.blocks = []  # (start, stop, m, k, term)
        pos = offset
        for t in terms:
            self.blocks.append((pos, pos + t.q, t.m, t.k, t))
            pos += t.q
        self.size = pos - offset
        self.offset = offset
        self.all_scalar = all(k == 1 for _, _, _, k, _ in self.blocks)

    def diagonal(self, theta: np.ndarray) -> np.ndarray:
        """For scalar terms only: the diagonal of Λ."""
        out = np.empty(self.size)
        for a, b, _m, _k, t in self.blocks:
            out[a - self.offset : b - self.offset] = theta[t.theta_start]
        return out

    def apply(self, theta: np.ndarray, X: np.ndarray, transpose: bool = False) -> np.ndarray:
        """Λ X (or Λ' X) for X with ``size`` rows; returns a new array."""
        out = np.array(X, dtype=float, copy=True)
        if self.all_scalar:
            lam = self.diagonal(theta)
            return out * (lam[:, None] if out.ndim == 2 else lam)
        for a, b, m, k, t in self.blocks:
            a0, b0 = a - self.offset, b - self.offset
            T = t.T(theta)
            op = T.T if transpose else T
            blk = X[a0:b0].reshape(m, k, -1)
            res = np.zeros(blk.shape)
            for i in range(k):
                for j in range(k):
                    if op[i, j] != 0.0:
                        res[:, i] += op[i, j] * blk[:, j]
            out[a0:b0] = res.reshape(out[a0:b0].shape)
        return out

    def sandwich(
        self, theta: np.ndarray, A: np.ndarray, outer: bool = False, out: np.ndarray | None = None
    ) -> np.ndarray:
        """Λ̃'AΛ̃ (or Λ̃AΛ̃' with ``outer``) for a square A whose first ``size`` rows and columns
        belong to the terms (Λ̃ is the identity on the others); into ``out`` if given."""
        if self.all_scalar:
            lam = np.ones(A.shape[0])
            lam[: self.size] = self.diagonal(theta)
            out = np.multiply(A, lam[:, None], out=out)
            out *= lam[None, :]
            return out
        if out is not None:
            out[...] = self.sandwich(theta, A, outer)
            return out
        out = A.copy()
        s = self.size
        tr = not outer
        out[:s] = self.apply(theta, out[:s], transpose=tr)
        out[:, :s] = self.apply(theta, out[:, :s].T, transpose=tr).T
        return out


@dataclass
class PLSFactor:
    """The factor at one θ and the quantities the deviance and its gradient need."""

    theta: np.ndarray
    logdet_LZ: float
    logdet_RX: float
    r2: float
    L11: np.ndarray  # (m1, k1, k1) lower Cholesky factors of C_j = T₁'D_jT₁ + I
    M1: np.ndarray  # (m1, k1, k1): T₁ L11_j⁻ᵀ per level
    W: np.ndarray  # (m1, k1, k1): T₁ C_j⁻¹ T₁'
    Mt: np.ndarray  # M_ρρ − B W B' (unscaled Schur complement of the first term)
    LRR: np.ndarray  # lower Cholesky factor of Ω̃ (other terms, X, y)


class PLSProblem:
    """Cross-products of a Gaussian LMM, formed once, and the factorization at any θ.

    The data are whitened by the prior weights (rows times √wᵢ) and, for a residual
    correlation structure, by ``whiten`` = R^(-1/2) (block diagonal over its groups); the
    offset is subtracted from y. If whitening mixes levels of the first term (or there are no
    random terms, as in GLS), every term goes to the dense Schur block.
    """

    def __init__(self, design: DesignMatrices, whiten: sp.spmatrix | None = None):
        self.design = design
        if design.gram is not None:
            self._from_gram(design)
            return
        w = np.ones(design.n) if design.weights is None else design.weights
        sw = np.sqrt(w)
        self.sum_log_w = float(np.sum(np.log(w)))
        XY = np.column_stack([design.X, design.y - design.offset])
        if design.weights is not None:
            XY *= sw[:, None]
        Zw = design.Z if design.weights is None else (sp.diags(sw) @ design.Z)
        Zw = sp.csc_matrix(Zw)
        if whiten is not None:  # residual correlation: rows premultiplied by R^(-1/2)
            XY = np.asarray(whiten @ XY)
            Zw = (whiten @ Zw).tocsc()
        terms = design.terms
        self.p = design.p
        self.n = design.n
        self.n_first = 1 if terms and self._is_block_diagonal(Zw[:, : terms[0].q], terms[0].k) else 0
        if self.n_first:
            t1 = terms[0]
            self.k1, self.m1, self.q1 = t1.k, t1.m, t1.q
        else:
            self.k1, self.m1, self.q1 = 1, 0, 0
        self.q2 = design.q - self.q1
        self.rest = BlockLambda(terms[self.n_first :])
        Z1 = Zw[:, : self.q1]
        Zr = Zw[:, self.q1 :]
        self.D11 = self._diag_blocks(Z1)
        # rows ρ = (other terms, X, y) against the first term
        self._set_rest(
            (Zr.T @ Z1).tocsr(),
            np.asarray((Z1.T @ XY).T).reshape(self.p + 1, self.q1),
            (Zr.T @ Zr).toarray(),
            np.asarray(Zr.T @ XY),
            XY.T @ XY,
        )

    def _from_gram(self, design: DesignMatrices) -> None:
        """The same set-up from the cross-products alone (``design.gram``, prior weights included;
        Z'WZ as its lower block triangle, which holds every block this set-up reads)."""
        ZtZ, ZtXy, XytXy = design.gram
        ZtZ = sp.csc_matrix(ZtZ)
        terms = design.terms
        self.sum_log_w = 0.0  # the caller accounts for Σ log wᵢ
        self.p, self.n = design.p, design.n
        t1 = terms[0]
        G1 = ZtZ[: t1.q, : t1.q].tocoo()
        self.n_first = int(self._gram_is_block_diagonal(G1, t1.k))
        self.k1, self.m1, self.q1 = (t1.k, t1.m, t1.q) if self.n_first else (1, 0, 0)
        self.q2 = design.q - self.q1
        self.rest = BlockLambda(terms[self.n_first :])
        q1 = self.q1
        self.D11 = self._gram_diag_blocks(G1, self.m1, self.k1)  # m1 = 0 without a first term
        rest = ZtZ[q1:, q1:].toarray()
        ZrZr = rest + rest.T  # mirror the blocks between terms ...
        for a, b, *_ in self.rest.blocks:  # ... but not the terms' own (whole) blocks
            ZrZr[a:b, a:b] = rest[a:b, a:b]
        self._set_rest(
            ZtZ[q1:, :q1],  # CSC, as WeightedGram keeps it: no extra copy
            np.ascontiguousarray(np.asarray(ZtXy[:q1]).T),
            ZrZr,
            np.asarray(ZtXy[q1:]),
            XytXy,
        )

    def _set_rest(self, Brest, Bxy: np.ndarray, ZrZr: np.ndarray, ZrXY: np.ndarray, XYtXY: np.ndarray):
        """The weighted Gram of B = [Z_r X y]'Z₁ and M = [Z_r X y]'[Z_r X y] from its blocks."""
        term_rows = [(a, b) for a, b, *_ in self.rest.blocks]
        self.gram = WeightedGram(Brest, Bxy, term_rows, self.k1)
        q2 = self.q2
        N = q2 + self.p + 1
        M = np.empty((N, N))
        if q2:
            M[:q2, :q2] = ZrZr
            M[:q2, q2:] = ZrXY
            M[q2:, :q2] = ZrXY.T
        M[q2:, q2:] = XYtXY
        self.M = M
        self._eye_k = np.eye(self.k1)

    @staticmethod
    def _gram_is_block_diagonal(G: sp.coo_matrix, k: int) -> bool:
        """Does the Gram matrix of a term's columns pair only columns of the same level?"""
        return bool(np.all(G.row // k == G.col // k))

    @staticmethod
    def _gram_diag_blocks(G: sp.coo_matrix, m: int, k: int) -> np.ndarray:
        """The m diagonal k × k blocks of a term's Gram matrix."""
        blocks = np.zeros((m, k, k))
        if m:
            same = (G.row // k) == (G.col // k)
            np.add.at(blocks, (G.row[same] // k, G.row[same] % k, G.col[same] % k), G.data[same])
        return blocks

    @classmethod
    def _is_block_diagonal(cls, Z1: sp.csc_matrix, k: int) -> bool:
        return cls._gram_is_block_diagonal((Z1.T @ Z1).tocoo(), k)

    def _diag_blocks(self, Z1: sp.csc_matrix) -> np.ndarray:
        k, m = self.k1, self.m1
        blocks = np.zeros((m, k, k))
        if m == 0:
            return blocks
        if k == 1:
            blocks[:, 0, 0] = np.asarray(Z1.multiply(Z1).sum(axis=0)).ravel()
            return blocks
        return self._gram_diag_blocks((Z1.T @ Z1).tocoo(), m, k)

    def first_T(self, theta: np.ndarray) -> np.ndarray:
        return self.design.terms[0].T(theta) if self.n_first else np.ones((1, 1))

    def first_blocks(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        """(L11, M1, W, Σ_j log det C_j) for the first term at θ."""
        k = self.k1
        T1 = self.first_T(theta)
        if k == 1:
            lam = T1[0, 0]
            c = lam * lam * self.D11[:, 0, 0] + 1.0
            l11 = np.sqrt(c)
            W = (lam * lam / c)[:, None, None]
            return l11[:, None, None], (lam / l11)[:, None, None], W, float(np.sum(np.log(c)))
        C = T1.T[None] @ self.D11 @ T1[None] + self._eye_k[None]
        L11 = np.linalg.cholesky(C)
        Linv = np.linalg.solve(L11, np.broadcast_to(self._eye_k, L11.shape))
        M1 = T1[None] @ np.swapaxes(Linv, 1, 2)
        W = M1 @ np.swapaxes(M1, 1, 2)
        logdet = 2.0 * float(np.sum(np.log(np.diagonal(L11, axis1=1, axis2=2))))
        return L11, M1, W, logdet

    def factor(self, theta: np.ndarray) -> PLSFactor:
        """Factor the augmented system at θ. Raises ``np.linalg.LinAlgError`` if not PD."""
        theta = np.asarray(theta, dtype=float)
        L11, M1, W, logdet = self.first_blocks(theta)
        Mt = self.gram.gram(W) if self.q1 else np.zeros_like(self.M)
        np.subtract(self.M, Mt, out=Mt)
        S = self.rest.sandwich(theta, Mt)
        q2 = self.q2
        S[np.arange(q2), np.arange(q2)] += 1.0
        # S is symmetric, so S.T is the same matrix in Fortran order: factored in place
        LRR, info = sla.lapack.dpotrf(S.T, lower=1, overwrite_a=1, clean=1)
        if info != 0:
            raise np.linalg.LinAlgError("augmented cross-product matrix is not positive definite")
        d = np.diagonal(LRR)
        logdet += 2.0 * float(np.sum(np.log(d[:q2])))
        logdet_RX = 2.0 * float(np.sum(np.log(d[q2 : q2 + self.p])))
        r2 = float(d[-1] ** 2)
        return PLSFactor(theta, logdet, logdet_RX, r2, L11, M1, W, Mt, LRR)

    def first_term_modes(self, f: PLSFactor, v: np.ndarray) -> np.ndarray:
        """b₁ = W s with s = B'v (v over ρ, one column per response); shape (q1, c)."""
        s = self.gram.tmul(v)
        k = self.k1
        if k == 1:
            return f.W[:, 0, 0][:, None] * s
        c = s.shape[1]
        return np.einsum("jab,jbc->jac", f.W, s.reshape(self.m1, k, c)).reshape(self.q1, c)

    def solve(self, f: PLSFactor) -> tuple[np.ndarray, np.ndarray]:
        """β̂ and the conditional modes b̂ = Λû (in Z's column order) from a factor."""
        q2 = self.q2
        LRR = f.LRR
        Laa = LRR[:-1, :-1]
        lya = LRR[-1, :-1]
        xr = sla.solve_triangular(Laa, lya, lower=True, trans="T", check_finite=False)
        beta = xr[q2:]
        b_rest = self.rest.apply(f.theta, xr[:q2]) if q2 else np.zeros(0)
        if not self.q1:
            return beta, b_rest
        v = np.concatenate([-b_rest, -beta, [1.0]])[:, None]
        b1 = self.first_term_modes(f, v)[:, 0]
        return beta, np.concatenate([b1, b_rest])

    def rx_inverse(self, f: PLSFactor) -> np.ndarray:
        """(R_X'R_X)⁻¹, so that Var(β̂) = σ² (R_X'R_X)⁻¹."""
        q2, p = self.q2, self.p
        LXX = f.LRR[q2 : q2 + p, q2 : q2 + p]
        Linv = sla.solve_triangular(LXX, np.eye(p), lower=True, check_finite=False)
        return Linv.T @ Linv
