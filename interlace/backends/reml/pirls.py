"""The reweighted blocked PLS system of a GLMM: lme4's ``pwrssUpdate`` on the LMM's blocks.

For weights W (the IRLS weights at the current linear predictor) PIRLS solves systems in

    A = Λ'Z'WZΛ + I        (u only: β fixed, lme4's nAGQ = 1 stage)
    M = [A, Λ'Z'WX; X'WZΛ, X'WX]        (u and β: the nAGQ = 0 stage)

with the blocking of :mod:`.pls` (MixedModels.jl reuses its LMM blocks for GLMMs the same way).
The first (largest) term's block is block diagonal, C_j = T₁'D_jT₁ + I with
D_j = Σ_{i in level j} Wᵢ z₁ᵢz₁ᵢ', factored level by level: C_j = L_jL_j'. With
B = [Z_r X]'WZ₁ (the other terms and X against the first term) and R_j = T₁L_j⁻ᵀ, the rest is the
Schur complement

    S = Λ̃'([Z_r X]'W[Z_r X] − B̃B̃')Λ̃ + diag(I, 0),    B̃ = B · blockdiag(R_j),

a dense (q₂ [+ p]) square matrix factored with LAPACK (q₂ the other terms' columns). Nothing
depends on W but the values: B's sparsity pattern (its *cells*, pairs of a column of Z_r and a
level of the first term that share observations) and the maps from observations to cells are
built once, so a factorization is a few bincounts over the observations, one product B̃B̃'
(sparse, or dense when that is cheaper) and a dense Cholesky — no sparse LU and no n × q array.

log|A| = Σ_j log det C_j + log det of S's leading q₂ block (the first q₂ diagonal entries of its
Cholesky factor), since X is ordered last; (R_X'R_X)⁻¹ for the nAGQ = 0 covariance is the
inverse of its trailing p × p block.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from ...data.design import DesignMatrices

try:  # scipy's compiled kernels, without the per-call overhead of a sparse matrix object
    from scipy.sparse import _sparsetools
except ImportError:  # pragma: no cover - a future scipy without the private module
    _sparsetools = None

__all__ = ["CSR", "GLMMBlocks", "WeightedFactor", "TermLambda"]

DENSE_SECONDS = 6e-11  # per multiply-add of the dense product B̃B̃' (measured order of magnitude)
SPARSE_SECONDS = 5e-9  # per multiply-add of the sparse product B̃B̃'
SPARSE_OVERHEAD = 1e-4  # fixed cost of one sparse product
PAIR_SECONDS = 7e-9  # per pair of the pair list
DENSE_ENTRIES = 4_000_000  # largest dense B̃ considered
PAIR_BUDGET = 10_000_000  # largest pair list kept (12 bytes a pair)
ROW_SECONDS = 2e-9  # per element of a pass over the rows


class CSR:
    """A fixed CSR pattern with products A x and A'x (the many small products of PIRLS pay
    scipy's sparse-object overhead otherwise)."""

    def __init__(self, A: sp.spmatrix, data: np.ndarray | None = None):
        A = sp.csr_matrix(A)
        A.sort_indices()
        self.shape = A.shape
        self.indptr, self.indices = A.indptr, A.indices
        self.data = np.ascontiguousarray(A.data if data is None else data, dtype=float)

    def with_data(self, data: np.ndarray) -> CSR:
        out = CSR.__new__(CSR)
        out.shape, out.indptr, out.indices = self.shape, self.indptr, self.indices
        out.data = np.ascontiguousarray(data, dtype=float)
        return out

    def matrix(self) -> sp.csr_matrix:
        return sp.csr_matrix((self.data, self.indices, self.indptr), shape=self.shape)

    def mul(self, x: np.ndarray) -> np.ndarray:
        """A x for a vector x."""
        n, m = self.shape
        if _sparsetools is None:
            return self.matrix() @ x
        y = np.zeros(n)
        _sparsetools.csr_matvec(n, m, self.indptr, self.indices, self.data, np.ascontiguousarray(x, float), y)
        return y

    def mul_dense(self, M: np.ndarray) -> np.ndarray:
        """A M for a dense matrix M (columns × k)."""
        n, m = self.shape
        if _sparsetools is None:
            return self.matrix() @ M
        k = M.shape[1]
        out = np.zeros((n, k))
        _sparsetools.csr_matvecs(n, m, k, self.indptr, self.indices, self.data,
                                 np.ascontiguousarray(M, dtype=float).ravel(), out.ravel())
        return out

    def tmul(self, x: np.ndarray) -> np.ndarray:
        """A'x for a vector x."""
        n, m = self.shape
        if _sparsetools is None:
            return self.matrix().T @ x
        y = np.zeros(m)
        _sparsetools.csc_matvec(m, n, self.indptr, self.indices, self.data, np.ascontiguousarray(x, float), y)
        return y


class TermLambda:
    """Λ(θ) for a list of terms, applied to vectors and to matrices (rows in the terms' order),
    with the per-term factors T(θ) cached for the last θ."""

    def __init__(self, terms):
        self.terms = list(terms)
        self.spans = []
        pos = 0
        for t in self.terms:
            self.spans.append((pos, pos + t.q, t.m, t.k))
            pos += t.q
        self.size = pos
        self.all_scalar = all(t.k == 1 for t in self.terms)
        self._key: bytes | None = None
        self._Ts: list[np.ndarray] = []
        self._diag: np.ndarray | None = None

    def _update(self, theta: np.ndarray) -> None:
        key = theta.tobytes()
        if key == self._key:
            return
        self._Ts = [t.T(theta) for t in self.terms]
        if self.all_scalar:
            self._diag = np.empty(self.size)
            for (a, b, _m, _k), T in zip(self.spans, self._Ts, strict=True):
                self._diag[a:b] = T[0, 0]
        self._key = key

    def Ts(self, theta: np.ndarray) -> list[np.ndarray]:
        self._update(theta)
        return self._Ts

    def diag(self, theta: np.ndarray) -> np.ndarray:
        """The diagonal of Λ (all terms scalar)."""
        self._update(theta)
        return self._diag

    def apply(self, theta: np.ndarray, v: np.ndarray, transpose: bool = False) -> np.ndarray:
        """Λv (or Λ'v) for v with ``size`` rows (a vector or a matrix); a new array."""
        self._update(theta)
        if self.all_scalar:
            return v * (self._diag if v.ndim == 1 else self._diag[:, None])
        out = np.empty(v.shape)
        for (a, b, m, k), T in zip(self.spans, self._Ts, strict=True):
            op = T if transpose else T.T  # rows of a level block: v_j' T' = (T v_j)'
            if v.ndim == 1:
                out[a:b] = (v[a:b].reshape(m, k) @ op).ravel()
            else:
                out[a:b] = np.einsum("mkc,kl->mlc", v[a:b].reshape(m, k, -1), op).reshape(b - a, -1)
        return out

    def sandwich(self, theta: np.ndarray, G: np.ndarray) -> None:
        """G ← Λ̃'GΛ̃ in place, Λ̃ = blockdiag(Λ, I) (G's leading ``size`` rows are the terms')."""
        s = self.size
        if self.all_scalar:
            lam = self.diag(theta)
            G[:s] *= lam[:, None]
            G[:, :s] *= lam[None, :]
            return
        G[:s] = self.apply(theta, G[:s], transpose=True)
        G[:, :s] = self.apply(theta, G[:, :s].T, transpose=True).T


@dataclass
class WeightedFactor:
    """The blocked factor of A (or M, ``joint``) at θ and one set of weights."""

    theta: np.ndarray
    joint: bool
    Linv: np.ndarray  # (m1, k1, k1): L_j⁻¹
    Bt: CSR | np.ndarray | None  # B̃ for the other terms' rows (q2 × q1)
    BXt: np.ndarray | None  # B̃ for X's rows (p × q1), joint only
    LS: np.ndarray  # lower Cholesky factor of S
    logdet: float  # log|A|
    c_diag: np.ndarray  # (m1, k1, k1): C_j


class GLMMBlocks:
    """The fixed structure of a GLMM's blocked system, and its factorization for any (θ, W)."""

    def __init__(self, design: DesignMatrices):
        Z = sp.csc_matrix(design.Z)
        terms = design.terms
        t1 = terms[0]
        self.n, self.p = design.n, design.p
        self.k1, self.m1, self.q1 = t1.k, t1.m, t1.q
        self.q2 = design.q - self.q1
        self.X = design.X
        self.lam = TermLambda(terms)
        self.rest = TermLambda(terms[1:])
        self.first = TermLambda(terms[:1])
        k1, q1, q2 = self.k1, self.q1, self.q2
        self.Z = CSR(Z)
        self.codes1 = np.asarray(t1.codes, dtype=np.int64)
        self.x1 = design.term_columns(t1)
        # D_j from W: Σ Wᵢ z₁ᵢ_a z₁ᵢ_b into (level, a, b)
        a, b = np.divmod(np.arange(k1 * k1), k1)
        self._d_index = (self.codes1[:, None] * (k1 * k1) + np.arange(k1 * k1)[None, :]).ravel()
        self._d_coef = (self.x1[:, a] * self.x1[:, b]).ravel()
        self._z1_index = [self.codes1 * k1 + a for a in range(k1)]  # Z₁'s column of each row
        # Z₁'WX by (level, column of X) in one pass: flat positions level·p + column
        self._bx_index = (self.codes1[:, None] * self.p + np.arange(self.p)[None, :]).ravel()
        self.rest_diag = None
        self.product_cost = 0.0
        self.n_cells = 0
        if q2:
            Zr = Z[:, q1:].tocsr()
            ZrT = Zr.T.tocsr()
            self._zr = Zr
            self._zrt = (ZrT.data, ZrT.indices, ZrT.indptr)
            rest_terms = terms[1:]
            if len(rest_terms) == 1 and rest_terms[0].k == 1:
                self.rest_diag = (np.asarray(rest_terms[0].codes, dtype=np.int64), Zr.data.copy())
                if Zr.nnz != self.n:  # an explicit zero or a missing entry: use the general path
                    self.rest_diag = None
            self._setup_cells(Zr.tocoo())
        # relative cost of a factorization and of a PIRLS step (a few passes over the n rows, a
        # triangular solve, B̃ products): PIRLS keeps an older factor while that is cheaper
        N = q2 + self.p
        nnz_b = self.n_cells * k1 if q2 else 0
        step = 30 * self.n * ROW_SECONDS + 2.0 * N * N * 1e-9 + 4 * nnz_b * ROW_SECONDS + 1e-4
        factor = self.product_cost + N**3 / 3 * DENSE_SECONDS + 12 * self.n * ROW_SECONDS + 2e-4
        self.factor_to_step_cost = factor / step

    def _setup_cells(self, coo: sp.coo_matrix) -> None:
        """B's pattern: cells (column c of Z_r, level j of the first term), sorted by (c, j), and
        the cheapest way to form B̃B̃' (dense, a pair list, or a sparse product) by a cost model."""
        k1, m1, q1, q2 = self.k1, self.m1, self.q1, self.q2
        obs = coo.row.astype(np.int64)
        lev = self.codes1[obs]
        key = coo.col.astype(np.int64) * m1 + lev
        cells, e_cell = np.unique(key, return_inverse=True)
        self.n_cells = nc = cells.size
        self.cell_row = cells // m1
        self.cell_lev = cells % m1
        self._e_cell = e_cell.astype(np.int64)
        self._e_coef = [coo.data * self.x1[obs, a] for a in range(k1)]
        self._e_obs = obs
        self._e_col = coo.col.astype(np.int64)
        self._e_val = coo.data
        self._ex_index = (self._e_col[:, None] * self.p + np.arange(self.p)[None, :]).ravel()
        counts = np.bincount(self.cell_row, minlength=q2) * k1
        self._indptr = np.zeros(q2 + 1, dtype=np.int64)
        np.cumsum(counts, out=self._indptr[1:])
        self._indices = (self.cell_lev[:, None] * k1 + np.arange(k1)[None, :]).ravel()
        if self._indices.size < 2**31 - 1 and q2 * q1 < 2**31 - 1:
            self._indptr = self._indptr.astype(np.int32)
            self._indices = self._indices.astype(np.int32)
        per_level = np.bincount(self.cell_lev, minlength=m1).astype(float)
        n_pairs = float(np.sum(per_level * (per_level + 1) / 2))
        costs = {
            "sparse": float(np.sum((per_level * k1) ** 2)) * SPARSE_SECONDS + SPARSE_OVERHEAD,
            "dense": float(q2) * q2 * q1 * DENSE_SECONDS if q2 * q1 <= DENSE_ENTRIES else np.inf,
            "pairs": n_pairs * k1 * PAIR_SECONDS if n_pairs <= PAIR_BUDGET else np.inf,
        }
        self.method = min(costs, key=costs.get)
        self.product_cost = costs[self.method]
        pattern = sp.csr_matrix((np.ones(self._indices.size), self._indices, self._indptr), shape=(q2, q1))
        self._b_pattern = CSR(pattern)
        if self.method == "dense":
            self._flat = (self.cell_row[:, None] * q1 + self._indices.reshape(-1, k1)).ravel()
        elif self.method == "pairs":
            order = np.argsort(self.cell_lev, kind="stable")  # by level, rows ascending within
            ptr = np.zeros(m1 + 1, dtype=np.int64)
            np.cumsum(per_level.astype(np.int64), out=ptr[1:])
            pos = np.arange(nc)
            n_part = ptr[self.cell_lev[order] + 1] - pos
            first = np.repeat(pos, n_part)
            second = first + np.arange(first.size) - np.repeat(np.cumsum(n_part) - n_part, n_part)
            self._pa, self._pb = order[first], order[second]
            lower = self.cell_row[self._pb] * q2 + self.cell_row[self._pa]  # row(pb) ≥ row(pa)
            uniq, self._p_out = np.unique(lower, return_inverse=True)
            self._p_lower = uniq
            self._p_upper = (uniq % q2) * q2 + uniq // q2
            self._p_n = uniq.size

    # ---- Λ and Z -------------------------------------------------------------------------------
    def z_lam(self, theta: np.ndarray, u: np.ndarray) -> np.ndarray:
        """ZΛu (n)."""
        return self.Z.mul(self.lam.apply(theta, u))

    def lam_t_zt(self, theta: np.ndarray, r: np.ndarray) -> np.ndarray:
        """Λ'Z'r (q)."""
        return self.lam.apply(theta, self.Z.tmul(r), transpose=True)

    # ---- the factorization -------------------------------------------------------------------
    def first_blocks(self, theta: np.ndarray, W: np.ndarray) -> tuple[np.ndarray, ...]:
        """(C, L⁻¹, R, Σ log det C_j) of the first term's blocks at θ and W."""
        k1, m1 = self.k1, self.m1
        T1 = self.first.Ts(theta)[0]
        w_d = np.repeat(W, k1 * k1) if k1 > 1 else W
        D = np.bincount(self._d_index, weights=w_d * self._d_coef, minlength=m1 * k1 * k1)
        if k1 == 1:
            lam = T1[0, 0]
            c = lam * lam * D + 1.0
            linv = 1.0 / np.sqrt(c)
            logdet = float(np.sum(np.log(c)))
            return c[:, None, None], linv[:, None, None], (lam * linv)[:, None, None], logdet
        D = D.reshape(m1, k1, k1)
        C = T1.T[None] @ D @ T1[None] + np.eye(k1)[None]
        L = np.linalg.cholesky(C)
        Linv = np.linalg.solve(L, np.broadcast_to(np.eye(k1), L.shape))
        R = T1[None] @ np.swapaxes(Linv, 1, 2)
        logdet = 2.0 * float(np.sum(np.log(np.diagonal(L, axis1=1, axis2=2))))
        return C, Linv, R, logdet

    def _weighted(self, parts: tuple, W: np.ndarray) -> sp.csr_matrix:
        data, indices, indptr = parts
        return sp.csr_matrix((data * W[indices], indices, indptr), shape=(indptr.size - 1, self.n))

    def _bbt(self, data: np.ndarray):
        """(B̃ as stored for solves, B̃B̃' dense) from B̃'s cell values (cells × k1)."""
        q1, q2 = self.q1, self.q2
        if self.method == "dense":
            Bt = np.zeros((q2, q1))
            Bt.flat[self._flat] = data.ravel()
            return Bt, Bt @ Bt.T
        Bt = self._b_pattern.with_data(data.ravel())
        if self.method == "sparse":
            M = Bt.matrix()
            return Bt, (M @ M.T).toarray()
        if self.k1 == 1:
            prod = data[self._pa, 0] * data[self._pb, 0]
        else:
            prod = np.einsum("ca,ca->c", data[self._pa], data[self._pb])
        vals = np.bincount(self._p_out, weights=prod, minlength=self._p_n)
        BB = np.zeros((q2, q2))
        BB.flat[self._p_upper] = vals
        BB.flat[self._p_lower] = vals
        return Bt, BB

    def factor(self, theta: np.ndarray, W: np.ndarray, joint: bool) -> WeightedFactor:
        """Factor A (or M with ``joint``) at θ and weights W. Raises ``LinAlgError`` if not PD."""
        theta = np.asarray(theta, dtype=float)
        k1, m1, q1, q2, p = self.k1, self.m1, self.q1, self.q2, self.p
        C, Linv, R, logdet = self.first_blocks(theta, W)
        N = q2 + (p if joint else 0)
        G = np.empty((N, N))
        Bt = BXt = None
        if q2:
            w_e = W[self._e_obs]
            V = [np.bincount(self._e_cell, weights=w_e * c, minlength=self.n_cells) for c in self._e_coef]
            if k1 == 1:
                data = (V[0] * R[self.cell_lev, 0, 0])[:, None]
            else:
                Rc = R[self.cell_lev]  # (cells, k1, k1)
                data = sum(V[a][:, None] * Rc[:, a, :] for a in range(k1))
            Bt, BB = self._bbt(data)
            if self.rest_diag is not None:
                codes, z = self.rest_diag
                G[:q2, :q2] = -BB
                G[np.arange(q2), np.arange(q2)] += np.bincount(codes, weights=W * z * z, minlength=q2)
            else:
                ZrTw = self._weighted(self._zrt, W)
                G[:q2, :q2] = (ZrTw @ self._zr).toarray() - BB
        if joint:
            X = self.X
            WX = X * W[:, None]
            BX = np.empty((p, m1, k1))  # Z₁'WX by level and column, as rows of X
            for a in range(k1):
                wxa = (WX * self.x1[:, a : a + 1]).ravel()
                BX[:, :, a] = np.bincount(self._bx_index, weights=wxa, minlength=m1 * p).reshape(m1, p).T
            if k1 == 1:
                BXt = BX[:, :, 0] * R[:, 0, 0][None, :]
            else:
                BXt = np.einsum("jab,xja->xjb", R, BX).reshape(p, q1)
            G[q2:, q2:] = X.T @ WX - BXt @ BXt.T
            if q2:
                WXe = (WX[self._e_obs] * self._e_val[:, None]).ravel()
                ZrWX = np.bincount(self._ex_index, weights=WXe, minlength=q2 * p).reshape(q2, p)
                cross = ZrWX - (Bt @ BXt.T if isinstance(Bt, np.ndarray) else Bt.mul_dense(BXt.T))
                G[:q2, q2:] = cross
                G[q2:, :q2] = cross.T
        if N:
            self.rest.sandwich(theta, G)
            G[np.arange(q2), np.arange(q2)] += 1.0
            # G is symmetric: G.T is the same matrix in Fortran order, factored in place
            LS, info = sla.lapack.dpotrf(G.T, lower=1, overwrite_a=1, clean=1)
            if info != 0:
                raise np.linalg.LinAlgError("the PIRLS system is not positive definite")
            logdet += 2.0 * float(np.sum(np.log(np.diagonal(LS)[:q2])))
        else:
            LS = G
        return WeightedFactor(theta, joint, Linv, Bt, BXt, LS, logdet, C)

    # ---- solving -------------------------------------------------------------------------------
    def _first_mul(self, M: np.ndarray, v: np.ndarray, transpose: bool = False) -> np.ndarray:
        """blockdiag(M_j) v (or blockdiag(M_j') v) for per-level k1 × k1 blocks."""
        if self.k1 == 1:
            return M[:, 0, 0] * v
        sub = "jba,jb->ja" if transpose else "jab,jb->ja"
        return np.einsum(sub, M, v.reshape(self.m1, self.k1)).ravel()

    def solve(self, f: WeightedFactor, g: np.ndarray, gx: np.ndarray | None = None):
        """The solution of A x = g (u only), or of M [x; xβ] = [g; gx] if ``gx`` is given (then
        ``f`` must be joint). Returns (x, xβ or None)."""
        q1, q2 = self.q1, self.q2
        joint = gx is not None
        y1 = self._first_mul(f.Linv, g[:q1])
        N = q2 + (self.p if joint else 0)
        if not N:
            return self._first_mul(f.Linv, y1, transpose=True), None
        rhs = np.empty(N)
        if q2:
            By = f.Bt @ y1 if isinstance(f.Bt, np.ndarray) else f.Bt.mul(y1)
            rhs[:q2] = g[q1:] - self.rest.apply(f.theta, By, transpose=True)
        if joint:
            rhs[q2:] = gx - f.BXt @ y1
        x, info = sla.lapack.dpotrs(f.LS[:N, :N], rhs, lower=1)
        if q2:
            v = self.rest.apply(f.theta, x[:q2])
            y1 = y1 - (f.Bt.T @ v if isinstance(f.Bt, np.ndarray) else f.Bt.tmul(v))
        if joint:
            y1 = y1 - f.BXt.T @ x[q2:]
        x1 = self._first_mul(f.Linv, y1, transpose=True)
        return np.concatenate([x1, x[:q2]]), (x[q2:] if joint else None)

    def beta_cov(self, f: WeightedFactor) -> np.ndarray:
        """(R_X'R_X)⁻¹ from a joint factor: the inverse of the Schur complement of X."""
        q2, p = self.q2, self.p
        LX = f.LS[q2 : q2 + p, q2 : q2 + p]
        Li = sla.solve_triangular(LX, np.eye(p), lower=True, check_finite=False)
        return Li.T @ Li
