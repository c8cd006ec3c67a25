"""The weighted Gram matrix G(W) = B W B' of a fixed matrix B and a block-diagonal W.

In the blocked PLS the first (largest) random-effects term is eliminated analytically: with
B = [Z_r X y]'Z₁ (the other terms, the fixed effects and the response against the first term)
and W = blockdiag_j T₁(T₁'D_jT₁ + I)⁻¹T₁' (one k₁ × k₁ block per level j of the first term), the
cross-products of everything else become M − B W B'. B is fixed; W changes with θ. So G is
evaluated once per deviance evaluation, and its adjoint (the diagonal blocks of B'ΠB for a
symmetric Π) once per gradient evaluation.

B's rows are split by term:

- *sparse rows* (terms that meet few levels of the first term): every pair of nonzeros of B in
  the same level j contributes B_ia W_j[a, b] B_kb to G_ik. The pairs and their coefficients are
  listed once, as a sparse matrix P with vec(lower triangle of G) = P vec(W) and the blocks of
  B'ΠB = P' vec(Π) (diagonal of Π halved, then symmetrized) — each a single sparse
  matrix-vector product, with no sparse matrix allocated per evaluation;
- *dense rows* (terms that meet most levels, X and y): dense BLAS products.

Which terms go where is chosen by a cost model, under a memory budget for P.

When every row is dense (e.g. two crossed terms that meet in most cells), the products are
formed from factors, over slices of the levels: G = (B R)(B R)' with W_j = R_jR_j' by a
symmetric rank-k update (half the flops of a general product), and, when Π = Λ̃(LL')⁻¹Λ̃' is
given by its Cholesky factor, B'ΠB's blocks as V'V with V = L⁻¹Λ̃'B (a triangular solve, again
half the flops of Π B). The temporaries are one slice of B, not a second copy of it.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

__all__ = ["WeightedGram"]

PAIR_SECONDS = 3e-9  # per pair per product (sparse matvec, measured order of magnitude)
SPMM_SECONDS = 1e-9  # per multiply-add of sparse times dense
FLOP_SECONDS = 3e-11  # per flop of dense BLAS-3 (one thread)
PAIR_BUDGET = 80_000_000  # pairs kept in memory (12 bytes each)
DENSE_BUDGET = 150_000_000  # entries of the dense rows of B kept in memory
CHUNK_PAIRS = 1_000_000
CHUNK_COLUMNS = 2048  # columns of B per slice of the all-dense products


def _level_entries(B: sp.csc_matrix, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Nonzeros of B sorted by (level, row, column within level): rows, subs, values, level ptr."""
    coo = B.tocoo()
    level = coo.col // k
    sub = coo.col % k
    order = np.lexsort((sub, coo.row, level))
    counts = np.bincount(level, minlength=B.shape[1] // k)
    ptr = np.zeros(counts.size + 1, dtype=np.int64)
    np.cumsum(counts, out=ptr[1:])
    return coo.row[order].astype(np.int64), sub[order].astype(np.int64), coo.data[order], ptr


def _pair_matrix(B: sp.csc_matrix, k: int, S: np.ndarray, N: int) -> sp.csc_matrix:
    """P with P vec(W) = the lower triangle of B W B' placed at rows and columns ``S`` of a
    row-major N × N matrix (B's rows are rows S of that matrix).

    Within each level the nonzeros are ordered by row, so every ordered pair (e, e') with
    e ≤ e' has row(e) ≤ row(e'). A pair in one row with different columns stands for both
    orders (W is symmetric), so its coefficient is doubled. Built in chunks of whole levels,
    so the temporaries stay small next to P itself.
    """
    q1 = B.shape[1]
    m = q1 // k
    rows, subs, vals, ptr = _level_entries(B, k)
    rows = S[rows]
    n_level = np.diff(ptr)
    per_level = n_level * (n_level + 1) // 2
    total = int(per_level.sum())
    out = np.empty(total, dtype=np.int32 if N * N < 2**31 - 1 else np.int64)
    coef = np.empty(total)
    wcol = np.empty(total, dtype=np.int64) if k > 1 else None
    cum = np.concatenate([[0], np.cumsum(per_level)])
    bounds = np.searchsorted(cum, np.arange(0, total, CHUNK_PAIRS), side="right") - 1
    bounds = np.unique(np.r_[np.clip(bounds, 0, m), m])
    for j0, j1 in zip(bounds[:-1], bounds[1:], strict=True):
        e0, e1 = ptr[j0], ptr[j1]
        if e1 == e0:
            continue
        ent = np.arange(e0, e1)
        partners = np.repeat(ptr[j0 + 1 : j1 + 1], n_level[j0:j1]) - ent  # entries b ≥ a, same level
        first = np.repeat(ent, partners)
        second = np.arange(first.size) - np.repeat(np.cumsum(partners) - partners - ent, partners)
        ri, rk = rows[first], rows[second]
        s0, s1 = cum[j0], cum[j1]
        np.multiply(rk, N, out=rk)
        rk += ri
        out[s0:s1] = rk
        np.multiply(vals[first], vals[second], out=coef[s0:s1])
        if k > 1:
            same = (ri * (N + 1) == rk) & (first != second)  # one row, two columns
            coef[s0:s1][same] *= 2.0
            level = np.searchsorted(ptr, first, side="right") - 1
            wcol[s0:s1] = (level * k + subs[first]) * k + subs[second]
    if k > 1:  # group the pairs by their W entry (the columns of P)
        order = np.argsort(wcol, kind="stable")
        out, coef, wcol = out[order], coef[order], wcol[order]
        counts = np.bincount(wcol, minlength=m * k * k)
    else:
        counts = per_level
    indptr = np.zeros(m * k * k + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    if total < 2**31 - 1:
        indptr = indptr.astype(np.int32)
    return sp.csc_matrix((coef, out, indptr), shape=(N * N, m * k * k), copy=False)


def _psd_root(W: np.ndarray) -> np.ndarray:
    """R with R_j R_j' = W_j for positive semidefinite k × k blocks W_j (shape (m, k, k)); round-off
    negatives are set to zero."""
    if W.shape[1] == 1:
        return np.sqrt(np.maximum(W, 0.0))
    e, U = np.linalg.eigh(W)
    return U * np.sqrt(np.maximum(e, 0.0))[:, None, :]


def _diag_blocks_of_product(A: np.ndarray, E: np.ndarray, m: int, k: int) -> np.ndarray:
    """The k × k diagonal blocks of A'E for A, E of shape (d, m·k): shape (m, k, k)."""
    d = A.shape[0]
    A3, E3 = A.reshape(d, m, k), E.reshape(d, m, k)
    Q = np.empty((m, k, k))
    for a in range(k):
        for b in range(k):
            Q[:, a, b] = np.einsum("dj,dj->j", A3[:, :, a], E3[:, :, b])
    return Q


class WeightedGram:
    """G(W) = B W B' and its adjoint for B (N × m·k, rows of ``B_sparse`` then ``B_dense``).

    ``term_rows`` lists the (start, stop) row ranges of the terms in ``B_sparse``; each is
    put on the sparse or the dense path as a whole (``sparse_terms`` overrides the cost
    model's choice). ``B_dense`` (X and y) is always dense.
    """

    def __init__(
        self,
        B_sparse: sp.spmatrix,
        B_dense: np.ndarray,
        term_rows: list[tuple[int, int]],
        k: int,
        sparse_terms: list[int] | None = None,
    ):
        self.k = k
        q1 = B_dense.shape[1]
        self.m = q1 // k if k else 0
        self.n_sparse_rows = B_sparse.shape[0]
        self.N = B_sparse.shape[0] + B_dense.shape[0]
        Bs = sp.csc_matrix(B_sparse)
        Bs.sum_duplicates()
        Bs.eliminate_zeros()
        if sparse_terms is None:
            sparse_terms = self._choose(Bs, B_dense.shape[0], term_rows)
        self.sparse_terms = list(sparse_terms)
        S = np.concatenate([np.arange(*term_rows[t]) for t in sparse_terms] + [np.zeros(0, np.int64)])
        S = np.sort(S.astype(np.int64))
        D = np.setdiff1d(np.arange(self.N), S)
        self.S, self.D = S, D
        self.S_prefix = bool(S.size == 0 or np.array_equal(S, np.arange(S.size)))
        rows_csr = Bs.tocsr()
        del Bs
        self.BS = sp.csc_matrix(rows_csr[S]) if S.size else sp.csc_matrix((0, q1))
        D_r = D[D < self.n_sparse_rows]
        # the dense rows written straight into BD (no second dense copy of a large B)
        self.BD = np.empty((D_r.size + B_dense.shape[0], q1))
        if D_r.size:
            rows_csr[D_r].toarray(out=self.BD[: D_r.size])
        self.BD[D_r.size :] = B_dense
        del rows_csr
        self.BS_T = sp.csr_matrix(self.BS.T)
        self.P = _pair_matrix(self.BS, k, S, self.N) if S.size else None
        self.PT = self.P.T if S.size else None

    # ---- the split -----------------------------------------------------------------------
    def _choose(self, Bs: sp.csc_matrix, n_xy: int, term_rows: list[tuple[int, int]]) -> list[int]:
        """Terms to put on the sparse path: the cheapest split within the memory budgets (or,
        if none fits, the split needing the least memory)."""
        k, m = self.k, self.m
        n_t = len(term_rows)
        if n_t == 0 or m == 0:
            return []
        csr = Bs.tocsr()
        # entries per (term, level)
        counts = np.zeros((n_t, m))
        nnz = np.zeros(n_t)
        for t, (a, b) in enumerate(term_rows):
            block = csr[a:b].tocoo()
            counts[t] = np.bincount(block.col // k, minlength=m)
            nnz[t] = block.nnz
        sizes = np.array([b - a for a, b in term_rows], dtype=float)
        q1 = m * k
        subsets = (
            [c for r in range(n_t + 1) for c in combinations(range(n_t), r)]
            if n_t <= 8
            else [tuple(range(i)) for i in range(n_t + 1)]
        )
        best, best_cost = [], np.inf
        smallest, smallest_bytes = [], np.inf
        for sub in subsets:
            e = counts[list(sub)].sum(axis=0) if sub else np.zeros(m)
            pairs = float(np.sum(e * (e + 1) / 2))
            n_dense = n_xy + float(sizes.sum() - sizes[list(sub)].sum())
            nbytes = 12 * pairs + 8 * n_dense * q1
            if nbytes < smallest_bytes:
                smallest, smallest_bytes = list(sub), nbytes
            if pairs > PAIR_BUDGET or n_dense * q1 > DENSE_BUDGET:
                continue
            nnz_s = float(nnz[list(sub)].sum())
            cost = (
                2 * pairs * PAIR_SECONDS
                + 3 * nnz_s * n_dense * SPMM_SECONDS
                + 3 * 2 * n_dense * n_dense * q1 * FLOP_SECONDS
            )
            if cost < best_cost:
                best, best_cost = list(sub), cost
        return best if np.isfinite(best_cost) else smallest

    # ---- products --------------------------------------------------------------------------
    def _scale_cols(self, A: np.ndarray, W: np.ndarray) -> np.ndarray:
        """A · blockdiag(W) for A with m·k columns (m = len(W): all levels, or a slice of them)."""
        k, m = self.k, W.shape[0]
        if k == 1:
            return A * W[:, 0, 0][None, :]
        r = A.shape[0]
        A3 = A.reshape(r, m, k)
        out = np.zeros((r, m, k))
        for a in range(k):
            for b in range(k):
                out[:, :, b] += A3[:, :, a] * W[None, :, a, b]
        return out.reshape(r, m * k)

    def _level_slices(self) -> list[tuple[int, int]]:
        step = max(1, CHUNK_COLUMNS // self.k)
        return [(j0, min(self.m, j0 + step)) for j0 in range(0, self.m, step)]

    def gram(self, W: np.ndarray) -> np.ndarray:
        """B W B' (N × N, symmetric, a new array) for W of shape (m, k, k)."""
        N = self.N
        S, D = self.S, self.D
        ns = S.size
        if not ns:
            return self._dense_gram(W)
        BWd = self._scale_cols(self.BD, W)
        G_DD = BWd @ self.BD.T
        G = (self.P @ W.reshape(-1)).reshape(N, N)  # the S × S lower triangle, zeros elsewhere
        G += G.T
        G[S, S] *= 0.5
        G_SD = np.asarray(self.BS @ BWd.T)
        if self.S_prefix:
            G[:ns, ns:] = G_SD
            G[ns:, :ns] = G_SD.T
            G[ns:, ns:] = G_DD
        else:
            G[np.ix_(D, D)] = G_DD
            G[np.ix_(S, D)] = G_SD
            G[np.ix_(D, S)] = G_SD.T
        return G

    def _dense_gram(self, W: np.ndarray) -> np.ndarray:
        """B W B' when all rows are dense (D = all rows, in order): Σ over slices of levels of
        (B R)(B R)' by rank updates of the lower triangle, then mirrored."""
        k, N = self.k, self.N
        R = _psd_root(W)
        C = np.zeros((N, N), order="F")
        for j0, j1 in self._level_slices():
            A = self._scale_cols(self.BD[:, j0 * k : j1 * k], R[j0:j1])
            # A' is Fortran-ordered: C += (A')'A' = A A', lower triangle only
            C = sla.blas.dsyrk(1.0, A.T, beta=1.0, c=C, trans=1, lower=1, overwrite_c=1)
        d = np.diagonal(C).copy()
        G = C + C.T  # C's upper triangle is zero
        G[np.diag_indices(N)] = d
        return G

    def adjoint_chol(self, L: np.ndarray, lam_t, na: int) -> np.ndarray:
        """``adjoint(Π, na)`` for Π = Λ̃(LL')⁻¹Λ̃' when all rows are dense, from the lower
        triangular L (na × na) and ``lam_t`` mapping na-row arrays X to Λ̃'X: the diagonal
        blocks of V'V, V = L⁻¹Λ̃'B_a, one slice of levels at a time."""
        k, m = self.k, self.m
        if self.S.size:
            raise ValueError("adjoint_chol needs every row of B on the dense path")
        Q = np.zeros((m, k, k))
        if na == 0:
            return Q
        Lf = np.asfortranarray(L)
        for j0, j1 in self._level_slices():
            X = np.ascontiguousarray(lam_t(self.BD[:na, j0 * k : j1 * k]))
            if np.may_share_memory(X, self.BD):  # solved in place below: never in B itself
                X = X.copy()
            # X' is Fortran-ordered: solve V'L' = X', i.e. V = L⁻¹X, in place
            Vt = sla.blas.dtrsm(1.0, Lf, X.T, side=1, lower=1, trans_a=1, overwrite_b=1)
            Q[j0:j1] = _diag_blocks_of_product(Vt.T, Vt.T, j1 - j0, k)
        return Q

    def adjoint(self, Pi: np.ndarray, na: int | None = None) -> np.ndarray:
        """Diagonal k × k blocks of B_a'ΠB_a, shape (m, k, k), for a symmetric Π over B's first
        ``na`` rows (B_a; default ``len(Pi)``). This is the adjoint of W ↦ B W B' restricted to
        those rows. Π may also be given as an N × N array whose leading na × na block is used
        (then it is read in place, with no copy)."""
        na = Pi.shape[0] if na is None else na
        k, m = self.k, self.m
        S, D = self.S, self.D
        ns = S.size
        Da = D[D < na]
        nd = Da.size
        BDa = self.BD[:nd]  # D is sorted, so its first rows are the ones below na
        if self.S_prefix:
            Pi_DD = Pi[ns:na, ns:na]
            Pi_DS = Pi[ns:na, :ns]
        else:
            Pi_DD = Pi[np.ix_(Da, Da)]
            Pi_DS = Pi[np.ix_(Da, S)]
        E = Pi_DD @ BDa
        if ns:
            E += 2.0 * np.asarray(self.BS_T @ Pi_DS.T).T  # Π_DS B_S, counted for SD and DS
        Q = _diag_blocks_of_product(BDa, E, m, k)
        if ns:
            # P's pairs read straight out of Π laid out N × N, its diagonal counted half
            N = self.N
            if Pi.shape == (N, N) and Pi.flags.c_contiguous:
                PiN = Pi
            else:
                PiN = np.zeros((N, N))
                PiN[:na, :na] = Pi[:na, :na]
            flat = PiN.reshape(-1)
            diag = S * (N + 1)
            saved = flat[diag].copy()
            flat[diag] *= 0.5
            Qs = (self.PT @ flat).reshape(m, k, k)
            flat[diag] = saved
            Q += Qs + np.swapaxes(Qs, 1, 2)
        if k > 1:
            Q = 0.5 * (Q + np.swapaxes(Q, 1, 2))
        return Q

    def tmul(self, V: np.ndarray) -> np.ndarray:
        """B'V (m·k × c) for V of shape (N, c)."""
        out = self.BD.T @ V[self.D]
        if self.S.size:
            out += self.BS_T @ V[self.S]
        return out

    def mul(self, U: np.ndarray) -> np.ndarray:
        """BU (N × c) for U of shape (m·k, c)."""
        out = np.empty((self.N, U.shape[1]))
        out[self.D] = self.BD @ U
        if self.S.size:
            out[self.S] = self.BS @ U
        return out
