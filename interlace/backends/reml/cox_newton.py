"""The penalized partial likelihood of a Cox model with Gaussian random effects, at fixed θ.

PPL(β, b) = log PL(β, b) − ½ b'K⁻¹b is maximised by Newton–Raphson. The coefficients are
ordered [S, D_b, β]: S the intercepts under coxme's sparse approximation (see coxme.py), D_b the
other random effects. The information H = −∂²PPL is assembled from block-level prefix sums
(cox_risk.py) — H_SS's diagonal in O(n), each column of H_·D in O(blocks + its non-zeros) — and
H̃ (H with the S–S off-diagonal entries dropped, coxme's matrix) is factored through its Schur
complement H̃_DD − H̃_DS H̃_SS⁻¹ H̃_SD (dense, |D_b| + p square). Newton steps use the exact H:
directly when H̃ = H or the model is small, else by conjugate gradients preconditioned with H̃.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.linalg import LinAlgError, cho_factor, cho_solve

from .cox_risk import GroupKernel, RiskSets, RiskState

__all__ = ["CoxTerm", "PenalizedCox", "term_covariance"]

_CHUNK = 1 << 21  # entries of a blocks × columns work array
_DENSE_EXACT = 200  # with at most this many coefficients, Newton steps use the exact dense Hessian


@dataclass(frozen=True)
class CoxTerm:
    """A random term's place in Z: ``m`` levels × ``k`` columns from ``z_start``, level-major."""

    k: int
    m: int
    z_start: int

    @property
    def q(self) -> int:
        return self.k * self.m

    @property
    def n_theta(self) -> int:
        return self.k * (self.k + 1) // 2


def term_covariance(theta: np.ndarray, k: int) -> tuple[np.ndarray, float]:
    """Σ and log|Σ| from a term's parameters: log σ² (k = 1) or a log-Cholesky factor
    (lower triangle column by column, the diagonal on the log scale)."""
    if k == 1:
        return np.array([[np.exp(theta[0])]]), float(theta[0])
    L = np.zeros((k, k))
    c, r = np.triu_indices(k)
    L[r, c] = theta
    d = np.diag_indices(k)
    L[d] = np.exp(L[d])
    return L @ L.T, float(2 * np.sum(theta[r == c]))


@dataclass
class _Info:
    """log PL, its gradient and information (no penalty) at one coefficient vector."""

    coef: np.ndarray
    st: RiskState
    grad: np.ndarray  # coef order
    hSS: np.ndarray
    hSD: np.ndarray
    hDD: np.ndarray
    vv: np.ndarray | None = None  # off-diagonal of Z_S'RR'Z_S (small models, for exact steps)


class PenalizedCox:
    """Data, layout, information and the inner Newton solver for one model."""

    def __init__(self, X, Z, terms, time, status, strata, offset, ties, sparse_cols):
        self.rs = rs = RiskSets(time, status, strata, ties)
        o = rs.order
        self.n, self.p = X.shape
        self.X = np.ascontiguousarray(np.asarray(X, dtype=float)[o])
        Zs = sp.csr_matrix(Z, dtype=float)[o]
        Zs.sum_duplicates()
        self.q = q = Zs.shape[1]
        self.terms = terms
        self.offset = np.zeros(self.n) if offset is None else np.asarray(offset, dtype=float)[o]
        S = np.zeros(q, dtype=bool)
        if sparse_cols is not None:
            S[np.asarray(sparse_cols, dtype=np.int64)] = True
        self.nS = nS = int(S.sum())
        self.nD = int(q - nS) + self.p  # the dense block: other b's and β
        pos = np.empty(q, dtype=np.int64)
        pos[S] = np.arange(nS)
        pos[~S] = nS + np.arange(q - nS)
        self.perm = np.r_[np.flatnonzero(S), np.flatnonzero(~S), q + np.arange(self.p)]
        self.Zs, self.ZsT = Zs, Zs.T.tocsr()
        Zp = sp.csr_matrix((Zs.data, pos[Zs.indices], Zs.indptr), shape=Zs.shape)
        self.ZpT = Zp.T.tocsr()  # Z with columns in [S, D_b] order, transposed
        zr = np.repeat(np.arange(self.n), np.diff(Zs.indptr))
        zc, zv = pos[Zs.indices], Zs.data
        self.zr, self.zv = zr, zv
        nb = rs.n_blocks
        # block sums of w z for every column, as a fixed sparse pattern (q × blocks)
        key = zc * nb + rs.block[zr]
        uniq, self.n_inv = np.unique(key, return_inverse=True)
        rows = uniq // nb
        self.n_indices = (uniq % nb).astype(np.int32)
        self.n_indptr = np.searchsorted(rows, np.arange(q + 1)).astype(np.int32)
        self.n_size = uniq.size
        # dense columns of Z: entries by position, for blocks × columns arrays
        dmask = zc >= nS
        dorder = np.argsort(zc[dmask], kind="stable")
        self.d_r, self.d_c, self.d_v = zr[dmask][dorder], zc[dmask][dorder] - nS, zv[dmask][dorder]
        # Z' diag(v) Z pattern: all pairs of entries within a row
        cnt = np.diff(Zs.indptr)[zr]
        a = np.repeat(np.arange(zr.size), cnt)
        off = np.arange(a.size) - np.repeat(np.cumsum(cnt) - cnt, cnt)
        bb = Zs.indptr[zr[a]] + off
        pk = zc[a] * q + zc[bb]
        puniq, self.p_inv = np.unique(pk, return_inverse=True)
        self.p_row, self.p_val = zr[a], zv[a] * zv[bb]
        self.p_i, self.p_j = puniq // q, puniq % q
        iS, jS = self.p_i < nS, self.p_j < nS
        if np.any(iS & jS & (self.p_i != self.p_j)):
            raise ValueError("internal: sparse columns must hold at most one entry per row")
        self.p_ss, self.p_sd = np.flatnonzero(iS & jS), np.flatnonzero(iS & ~jS)
        self.p_dd = np.flatnonzero(~iS & ~jS)
        self.N = sp.csr_matrix((np.zeros(self.n_size), self.n_indices, self.n_indptr), (q, nb))
        self.Ne = self.N.copy()
        # small models: the whole information from one blocks × coefficients array, and exact
        # Newton steps from the dense exact H_SS
        self.small = q + self.p <= _DENSE_EXACT and max(nb, rs.pblock.size) * (q + self.p) <= _CHUNK
        self.exact_dense = 0 < nS and self.small
        self.z_key = rs.block[zr] * (q + self.p) + zc
        # sparse intercepts: level per row and the kernel for diag(Z_S'RR'Z_S)
        codes = np.full(self.n, -1, dtype=np.int64)
        self.zS = np.zeros(self.n)
        sm = zc < nS
        codes[zr[sm]], self.zS[zr[sm]] = zc[sm], zv[sm]
        self.kernel = GroupKernel(rs, codes, nS) if nS else None
        self.term_pos = [pos[t.z_start : t.z_start + t.q].reshape(t.m, t.k) for t in terms]
        self.null_loglik = rs.null_loglik(self.offset)
        self.n_info = 0
        self._pen_pos: list | None = None  # see _penalty_positions

    # ---- penalty -------------------------------------------------------------------------
    def penalty(self, theta: np.ndarray) -> tuple[list[np.ndarray], float]:
        """Σ_t⁻¹ per term and log|K|."""
        out, logdet, at = [], 0.0, 0
        for t in self.terms:
            Sig, ld = term_covariance(theta[at : at + t.n_theta], t.k)
            out.append(1.0 / Sig if t.k == 1 else np.linalg.inv(Sig))
            logdet += t.m * ld
            at += t.n_theta
        return out, logdet

    def kinv(self, Sinv, b: np.ndarray) -> np.ndarray:
        out = np.empty_like(b)
        for t, Si in zip(self.terms, Sinv, strict=True):
            sl = slice(t.z_start, t.z_start + t.q)
            out[sl] = (b[sl].reshape(t.m, t.k) @ Si).ravel()
        return out

    # ---- likelihood and information ------------------------------------------------------
    def eta(self, coef: np.ndarray) -> np.ndarray:
        return self.X @ coef[self.q :] + self.Zs @ coef[: self.q] + self.offset

    def ppl(self, coef, Sinv) -> float:
        b = coef[: self.q]
        return self.rs.loglik(self.eta(coef)) - 0.5 * float(b @ self.kinv(Sinv, b))

    def info(self, coef: np.ndarray) -> _Info:
        """Gradient and information of log PL at ``coef`` in the [S, D_b, β] blocks."""
        self.n_info += 1
        rs, nS, nD, p = self.rs, self.nS, self.nD, self.p
        st = rs.state(self.eta(coef))
        grad = np.concatenate([self.ZsT @ st.resid, self.X.T @ st.resid])
        if self.small:
            return self._info_small(coef, st, grad)
        w, wa, dlt = st.w, st.w * st.a, rs.status
        # A0 = M' diag(w∘a) M
        pv = np.bincount(self.p_inv, weights=wa[self.p_row] * self.p_val, minlength=self.p_i.size)
        Zwx = self.ZpT @ (wa[:, None] * self.X)  # (q × p), [S, D_b] order
        hSS = np.bincount(self.p_i[self.p_ss], weights=pv[self.p_ss], minlength=nS).astype(float)
        hSD, hDD = np.zeros((nS, nD)), np.zeros((nD, nD))
        hSD[self.p_i[self.p_sd], self.p_j[self.p_sd] - nS] = pv[self.p_sd]
        hDD[self.p_i[self.p_dd] - nS, self.p_j[self.p_dd] - nS] = pv[self.p_dd]
        hSD[:, nD - p :] = Zwx[:nS]
        hDD[: nD - p, nD - p :] = Zwx[nS:]
        hDD[nD - p :, : nD - p] = Zwx[nS:].T
        hDD[nD - p :, nD - p :] = self.X.T @ (wa[:, None] * self.X)
        # minus M'RR'M: S diagonal by the kernel, the D columns from block sums
        if nS:
            hSS -= self.kernel.diag(st, self.zS, rs.suffix(st.g2))
        wz, wdz = w[self.zr] * self.zv, (w * dlt)[self.zr] * self.zv
        N, Ne = self.N, self.Ne
        N.data[:] = np.bincount(self.n_inv, wz, self.n_size)
        Ne.data[:] = np.bincount(self.n_inv, wdz, self.n_size)
        wX = w[:, None] * self.X
        NX, NXe = rs.block_sums(wX), rs.block_sums(dlt[:, None] * wX)
        nb, nDb = rs.n_blocks, nD - p
        step = max(1, _CHUNK // max(nb, 1))
        for j0 in range(0, nD, step):
            j1 = min(nD, j0 + step)
            Bs, Be = np.zeros((nb, j1 - j0)), np.zeros((nb, j1 - j0))
            if j0 < nDb:
                lo, hi = np.searchsorted(self.d_c, [j0, min(j1, nDb)])
                r, c, v = self.d_r[lo:hi], self.d_c[lo:hi] - j0, self.d_v[lo:hi]
                k = rs.block[r] * (j1 - j0) + c
                Bs += np.bincount(k, w[r] * v, nb * (j1 - j0)).reshape(nb, -1)
                Be += np.bincount(k, (w * dlt)[r] * v, nb * (j1 - j0)).reshape(nb, -1)
            if j1 > nDb:
                a0 = max(j0, nDb)
                Bs[:, a0 - j0 :] = NX[:, a0 - nDb : j1 - nDb]
                Be[:, a0 - j0 :] = NXe[:, a0 - nDb : j1 - nDb]
            A, C = rs.rr_blocks(st, Bs, Be)
            Q = np.vstack([N @ A - Ne @ C, NX.T @ A - NXe.T @ C])
            hSD[:, j0:j1] -= Q[:nS]
            hDD[:, j0:j1] -= Q[nS:]
        return _Info(coef=coef, st=st, grad=grad, hSS=hSS, hSD=hSD, hDD=hDD)

    def _info_small(self, coef: np.ndarray, st: RiskState, grad: np.ndarray) -> _Info:
        """info() for small models: V = R'M for all coefficients at once, M'RR'M = V'V."""
        rs, nS, q, p = self.rs, self.nS, self.q, self.p
        nb, m = rs.n_blocks, q + p
        w, wa, dlt = st.w, st.w * st.a, rs.status
        wz = w[self.zr] * self.zv
        Bs = np.bincount(self.z_key, wz, nb * m).reshape(nb, m)
        Be = np.bincount(self.z_key, wz * dlt[self.zr], nb * m).reshape(nb, m)
        wX = w[:, None] * self.X
        Bs[:, q:] = rs.block_sums(wX)
        Be[:, q:] = rs.block_sums(dlt[:, None] * wX)
        V = (rs.risk_sums(Bs)[rs.pblock] - rs.c[:, None] * Be[rs.pblock]) / st.den[:, None]
        H = -(V.T @ V)
        pv = np.bincount(self.p_inv, weights=wa[self.p_row] * self.p_val, minlength=self.p_i.size)
        H[self.p_i, self.p_j] += pv
        Zwx = self.ZpT @ (wa[:, None] * self.X)
        H[:q, q:] += Zwx
        H[q:, :q] += Zwx.T
        H[q:, q:] += self.X.T @ (wa[:, None] * self.X)
        vv = None
        if nS:
            vv = -H[:nS, :nS]
            vv[np.diag_indices(nS)] = 0.0
        hSS = np.diag(H)[:nS].copy()
        return _Info(coef=coef, st=st, grad=grad, hSS=hSS, hSD=H[:nS, nS:], hDD=H[nS:, nS:], vv=vv)

    def _rt_sparse(self, st: RiskState) -> np.ndarray:
        """R'Z_S (event pairs × sparse columns), dense: for small models only."""
        rs, nS = self.rs, self.nS
        rows = self.kernel.rows
        k = rs.block[rows] * nS + self.kernel.level
        u = st.w[rows] * self.zS[rows]
        Bs = np.bincount(k, u, rs.n_blocks * nS).reshape(rs.n_blocks, nS)
        Be = np.bincount(k, u * rs.status[rows], rs.n_blocks * nS).reshape(rs.n_blocks, nS)
        S1 = rs.risk_sums(Bs)
        return (S1[rs.pblock] - rs.c[:, None] * Be[rs.pblock]) / st.den[:, None]

    def hess_vec(self, inf: _Info, Sinv, v: np.ndarray) -> np.ndarray:
        """H v with the exact penalized information (coef order)."""
        st = inf.st
        u = self.X @ v[self.q :] + self.Zs @ v[: self.q]
        r = st.w * st.a * u - self.rs.rr(st, u)
        return np.concatenate([self.ZsT @ r + self.kinv(Sinv, v[: self.q]), self.X.T @ r])

    def factor(self, inf: _Info, Sinv, shift: np.ndarray | None = None):
        """H̃ = information + K⁻¹ in blocks: (hSS, hSD, Cholesky of the Schur complement, hDD).

        ``shift`` is added to H̃_SS (see :meth:`offdiag_rowsums`). Raises ``LinAlgError`` when
        H̃ is not positive definite, which coxme's sparse approximation can make it.
        """
        hSS, hSD, hDD = inf.hSS.copy(), inf.hSD.copy(), inf.hDD.copy()
        for pos, Si in zip(self._penalty_positions(), Sinv, strict=True):
            for i, j, ss, sd, dd in pos:
                if ss is not None:
                    hSS[ss] += Si[i, i]
                hSD[sd] += Si[i, j]
                hDD[dd] += Si[i, j]
        if shift is not None:
            hSS = hSS + shift
        if np.any(hSS <= 0):
            raise LinAlgError("the penalized information is not positive definite")
        return hSS, hSD, cho_factor(hDD - (hSD.T / hSS) @ hSD, lower=True, check_finite=False), hDD

    def _penalty_positions(self) -> list:
        """Where K⁻¹'s entry (i, j) of each term goes in the [S, D] blocks: per term, tuples
        (i, j, SS indices or None, SD index pair, DD index pair) — fixed by the layout."""
        if self._pen_pos is None:
            nS, out = self.nS, []
            for P in self.term_pos:
                k, per = P.shape[1], []
                for i in range(k):
                    for j in range(k):
                        r, c = P[:, i], P[:, j]
                        rS, cS = r < nS, c < nS
                        sd, dd = rS & ~cS, ~rS & ~cS
                        per.append((i, j, r[rS] if i == j else None, (r[sd], c[sd] - nS),
                                    (r[dd] - nS, c[dd] - nS)))
                out.append(per)
            self._pen_pos = out
        return self._pen_pos

    def offdiag_rowsums(self, inf: _Info) -> np.ndarray:
        """Row sums of the entries coxme's approximation drops (off-diagonal Z_S'RR'Z_S ≥ 0).

        H̃ = H + P with P those entries; H̃ + diag(P1) = H + (a signless Laplacian) is positive
        definite, so it preconditions the exact steps where H̃ itself is not.
        """
        st, rs = inf.st, self.rs
        codes = np.full(self.n, 0, dtype=np.int64)
        rows = self.kernel.rows
        codes[rows] = self.kernel.level
        u = self.zS * rs.rr(st, self.zS)
        total = np.bincount(codes[rows], weights=u[rows], minlength=self.nS)
        return total - self.kernel.diag(st, self.zS, rs.suffix(st.g2))

    def solve(self, fac, g: np.ndarray) -> np.ndarray:
        """H̃⁻¹ g (coef order)."""
        hSS, hSD, cf, _ = fac
        gp = g[self.perm]
        gS, gD = gp[: self.nS], gp[self.nS :]
        dD = cho_solve(cf, gD - hSD.T @ (gS / hSS), check_finite=False)
        out = np.empty_like(g)
        out[self.perm] = np.concatenate([(gS - hSD @ dD) / hSS, dD])
        return out

    def newton_step(self, inf, Sinv, fac, g, rtol=1e-5, max_iter=50, shifted=False) -> np.ndarray:
        """Solve H d = g: directly when H̃ = H or the model is small, else by CG preconditioned
        with H̃ (``shifted``: with H̃ + diag(P1), whose SS diagonal is not H's)."""
        if self.exact_dense and not shifted:
            if inf.vv is None:  # computed when a step needs it
                V = self._rt_sparse(inf.st)
                inf.vv = V.T @ V
                inf.vv[np.diag_indices(self.nS)] = 0.0
            hSS, hSD, _cf, hDD = fac
            nS = self.nS
            H = np.empty((nS + self.nD,) * 2)
            H[:nS, :nS] = -inf.vv
            H[np.arange(nS), np.arange(nS)] = hSS
            H[:nS, nS:], H[nS:, :nS], H[nS:, nS:] = hSD, hSD.T, hDD
            out = np.empty_like(g)
            out[self.perm] = cho_solve(cho_factor(H, lower=True, check_finite=False), g[self.perm],
                                       check_finite=False)
            return out
        d = self.solve(fac, g)
        if not self.nS:
            return d
        r = g - self.hess_vec(inf, Sinv, d)
        z = self.solve(fac, r)
        pdir, rz = z.copy(), float(r @ z)
        g0 = max(float(g @ d), 1e-300)
        for _ in range(max_iter):
            if rz <= rtol**2 * g0:
                break
            Hp = self.hess_vec(inf, Sinv, pdir)
            alpha = rz / float(pdir @ Hp)
            d += alpha * pdir
            r -= alpha * Hp
            z = self.solve(fac, r)
            rz, rz_old = float(r @ z), rz
            pdir = z + (rz / rz_old) * pdir
        return d

    def maximize(self, Sinv, start: _Info, tol: float, max_iter: int = 100):
        """Newton on the PPL from ``start`` until the decrement g'H⁻¹g is at most ``tol``.

        The steps are exact Newton steps (CG to 1e-5), so after a full step from a decrement d with
        d² ≤ tol/100 the next one is far below tol: that point is returned without another solve.
        Raises ``LinAlgError`` when H̃ is not positive definite at the optimum (no Laplace value).
        """
        inf, final = start, False
        for _ in range(max_iter):
            b = inf.coef[: self.q]
            kb = self.kinv(Sinv, b)
            ppl = inf.st.loglik - 0.5 * float(b @ kb)
            try:
                fac = self.factor(inf, Sinv)
            except LinAlgError:
                if final or not self.nS:
                    raise
                fac = None
            if final:
                return inf, ppl, fac
            g = inf.grad.copy()
            g[: self.q] -= kb
            pre = fac if fac is not None else self.factor(inf, Sinv, self.offdiag_rowsums(inf))
            d = self.newton_step(inf, Sinv, pre, g, shifted=fac is None)
            dec = float(g @ d)
            if dec <= tol and fac is not None:
                return inf, ppl, fac
            t = 1.0
            if dec > 1e-6:  # far from the optimum: halve until the PPL rises enough
                for _h in range(40):
                    if self.ppl(inf.coef + t * d, Sinv) >= ppl + 1e-4 * t * dec:
                        break
                    t /= 2
                else:  # no increase along the step: at the optimum to rounding
                    if fac is None:
                        raise LinAlgError("the penalized information is not positive definite")
                    return inf, ppl, fac
            else:
                final = dec * dec <= 1e-2 * tol  # quadratic convergence: the next is ≪ tol
            inf = self.info(inf.coef + t * d)
        return inf, ppl, self.factor(inf, Sinv)

    def logdet_bb(self, fac) -> float:
        hSS, _hSD, (L, _lower), _ = fac
        nDb = self.nD - self.p
        return float(np.sum(np.log(hSS)) + 2 * np.sum(np.log(np.diag(L)[:nDb])))

    def cov_beta(self, fac) -> np.ndarray:
        """The β block of H̃⁻¹ = the trailing block of the Schur complement's inverse."""
        cf = fac[2]
        E = np.zeros((self.nD, self.p))
        E[self.nD - self.p :, :] = np.eye(self.p)
        return cho_solve(cf, E)[self.nD - self.p :, :]
