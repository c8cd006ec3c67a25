"""The marginal log-density on one dense q × q factor, for models with few random effects.

For several grouping factors (crossed or nested) with a small total number q of random effects
— a subject × item experiment has a few hundred — one dense Cholesky factor of
A = Λ'Z'WZΛ + I costs less than the blocked factor's many small per-block operations. With
M = [Z X y]'W[Z X y] (offset removed) computed once, B = Λ'M_zz, A = LL' and R = Λ'M_z,xy:

    ℓ = log|A| = 2 Σ log L_ii,   Ũ = A⁻¹R,   S = M_xy,xy − R'Ũ,   Ξ = M_z,xy − M_zzΛŨ,

and, for θᵢ = T[r, c] of a term (Λᵢ = I_m ⊗ E_rc on its block), ∂ℓ/∂θᵢ = 2 tr(A⁻¹BΛᵢ)
= 2 Σ_l [A⁻¹B]_(l,c),(l,r) over the term's levels l — the same quantities the blocked
evaluator of :mod:`.marginal` returns, so the log-density, its gradient in (θ, σ[, β]) and the
exact conditional draws (u = Ũc + σL⁻ᵀz, b = Λu) follow from :class:`.marginal.MarginalBase`.
Λ is applied term by term (I_m ⊗ T_t on the term's columns), never formed. M is read from the
design's cross-products (``design.gram``: a lazy frame's, or an eager design's order-free ones)
when it has them, else formed from the rows.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from ...data.design import DesignMatrices, tril_colwise
from . import kernels_dense
from .marginal import GaussianPrior, MarginalBase, MarginalParts, Pieces

__all__ = ["DenseMarginalLMM", "MAX_DENSE_Q"]

MAX_DENSE_Q = 200  # above this the blocked factor is used (the dense one costs ~q³ per evaluation)
MIN_DIAG = 1e-6  # the compiled kernel needs T⁻¹: below this ratio of T's diagonal the numpy path runs


class DenseMarginalLMM(MarginalBase):
    """log p(y | θ, σ, β), its gradient and exact draws of b on a dense factor of A."""

    @staticmethod
    def applies(design: DesignMatrices) -> bool:
        return 0 < design.q <= MAX_DENSE_Q

    def __init__(self, design: DesignMatrices):
        self._setup(design)
        q = design.q
        if design.gram is not None:  # Z'WZ's lower block triangle (diagonal blocks whole), mirrored
            ZtZ, ZtXy, XytXy = design.gram
            L = sp.coo_matrix(ZtZ)
            term = np.zeros(q, dtype=np.int64)
            for i, t in enumerate(design.terms):
                term[t.z_start : t.z_start + t.q] = i
            below = term[L.row] > term[L.col]
            self.Mzz = L.toarray()
            self.Mzz[L.col[below], L.row[below]] = L.data[below]
            self.Mzxy = np.array(ZtXy, dtype=float)
            self.Mxy = np.array(XytXy, dtype=float)
        else:
            w = np.ones(design.n) if design.weights is None else design.weights
            XY = np.column_stack([design.X, design.y - design.offset])
            Zw = design.Z.multiply(w[:, None]).tocsc()
            self.Mzz = np.asarray((design.Z.T @ Zw).toarray())
            self.Mzxy = np.asarray(Zw.T @ XY)
            self.Mxy = XY.T @ (XY * w[:, None])
        self._eye = np.eye(q)
        self._blocks = [(t.z_start, t.z_start + t.q, t.m, t.k, t) for t in design.terms]
        # the compiled kernel (several terms, the first one's block first: see kernels_dense)
        terms = design.terms
        self._kernel = (kernels_dense.available() and len(terms) > 1 and terms[0].z_start == 0
                        and all(a.z_start + a.q == b.z_start for a, b in zip(terms, terms[1:], strict=False)))
        if self._kernel:
            self._kmax = max(t.k for t in terms)
            self._zs = np.array([t.z_start for t in terms], dtype=np.int64)
            self._ks = np.array([t.k for t in terms], dtype=np.int64)
            self._ms = np.array([t.m for t in terms], dtype=np.int64)
            self.Mzz = np.ascontiguousarray(self.Mzz)
            self.Mzxy = np.ascontiguousarray(self.Mzxy)
            self.Mxy = np.ascontiguousarray(self.Mxy)
            # θ → the stacked factors T (term, row, column) in one assignment
            idx = [(i, *tril_colwise(t.k)) for i, t in enumerate(terms)]
            self._t_idx = tuple(np.concatenate([np.full(r.size, i) if j == 0 else (r if j == 1 else c)
                                                for i, r, c in idx]) for j in range(3))
            self._th0 = np.array([t.theta_start for t in terms], dtype=np.int64)
            self._rows_all = np.concatenate([tril_colwise(t.k)[0] for t in terms]).astype(np.int64)
            self._cols_all = np.concatenate([tril_colwise(t.k)[1] for t in terms]).astype(np.int64)

    def _T(self, theta: np.ndarray) -> list[np.ndarray]:
        out = []
        for *_, k, t in self._blocks:
            rows, cols = self._tri[k]
            T = np.zeros((k, k))
            T[rows, cols] = theta[t.theta_slice]
            out.append(T)
        return out

    def _lam(self, Ts: list[np.ndarray], V: np.ndarray, transpose: bool = False) -> np.ndarray:
        """ΛV (or Λ'V) for V with q rows."""
        out = np.empty_like(V)
        for (a, b, m, k, _), T in zip(self._blocks, Ts, strict=True):
            M = T.T if transpose else T
            if k == 1:
                out[a:b] = M[0, 0] * V[a:b]
            else:  # level by level: rows (l, ·) of the block ← M @ rows (l, ·)
                out[a:b] = np.matmul(M, V[a:b].reshape(m, k, -1)).reshape(b - a, -1)
        return out

    def _factor(self, theta: np.ndarray):
        Ts = self._T(np.asarray(theta, dtype=float))
        B = self._lam(Ts, self.Mzz, transpose=True)  # Λ'M_zz
        A = self._lam(Ts, B.T, transpose=True) + self._eye  # Λ'M_zzΛ + I (symmetric)
        L = np.linalg.cholesky(A)
        R = self._lam(Ts, self.Mzxy, transpose=True)
        U = sla.cho_solve((L, True), R, check_finite=False)
        return Ts, B, L, R, U

    def _kernel_pieces(self, theta: np.ndarray):
        """(status, S, ℓ, D, U, Ξ) from :func:`.kernels_dense.crossed_pieces` (status 2: a diagonal
        of T too small for T⁻¹, use the numpy path; 0: A not positive definite)."""
        Tall = np.zeros((len(self._blocks), self._kmax, self._kmax))
        Tall[self._t_idx] = theta
        q, c, kx = self.design.q, self.Mxy.shape[0], self._kmax
        S, D = np.empty((c, c)), np.empty((len(self._blocks) * kx, kx))
        U, Xi = np.empty((q, c)), np.empty((q, c))
        status, logdet = kernels_dense.crossed_pieces(
            self.Mzz, self.Mzxy, self.Mxy, Tall, self._zs, self._ks, self._ms, MIN_DIAG, S, D, U, Xi)
        return status, S, logdet, D, U, Xi, Tall

    def _compiled(self, theta: np.ndarray) -> Pieces | None:
        """The pieces from :func:`.kernels_dense.crossed_pieces`; None when T⁻¹ is unsafe."""
        status, S, logdet, D, U, Xi, Tall = self._kernel_pieces(np.asarray(theta, dtype=float))
        if status == 2:
            return None
        if status == 0:
            raise np.linalg.LinAlgError("A is not positive definite")
        kx = self._kmax
        D = D.reshape(len(self._blocks), kx, kx)
        g = np.zeros(self.n_theta)
        for i, (_, _, m, k, t) in enumerate(self._blocks):
            G = (m * np.eye(k) - D[i, :k, :k]) @ np.linalg.inv(Tall[i, :k, :k])  # module doc of kernels_dense
            rows, cols = tril_colwise(k)
            g[t.theta_slice] = 2.0 * G[cols, rows]
        return Pieces(S, float(logdet), g, U, Xi)

    def logp_integrated(self, theta: np.ndarray, sigma: float, prior: GaussianPrior,
                        gradient: bool = True) -> MarginalParts:
        """The base formulas in three compiled calls: :func:`.kernels_dense.crossed_pieces`,
        :func:`.kernels_dense.integrate_beta`, :func:`.kernels_dense.crossed_gradient`."""
        if not self._kernel:
            return super().logp_integrated(theta, sigma, prior, gradient)
        status, S, logdet, D, U, Xi, Tall = self._kernel_pieces(theta)
        if status == 2:
            return super().logp_integrated(theta, sigma, prior, gradient)
        if status == 1:
            sigma = float(sigma)
            ok, value, E, Q, tr = kernels_dense.integrate_beta(
                S, logdet, sigma, prior.precision, prior.precision @ prior.mean, prior.mean, prior.logdet_cov,
                float(self.n), self._c_const)
            if ok:
                g = np.empty(self.n_theta)
                kernels_dense.crossed_gradient(U, Xi, D, E, Tall, self._zs, self._ks, self._ms,
                                               self._th0, self._rows_all, self._cols_all, sigma, g)
                s2 = sigma * sigma
                return MarginalParts(float(value), g, -self.n / sigma + (Q + tr) / (s2 * sigma), np.zeros(0))
        return MarginalParts(-np.inf, np.zeros(self.n_theta), 0.0, np.zeros(0))

    def pieces(self, theta: np.ndarray, gradient: bool = True) -> Pieces:
        if self._kernel:
            P = self._compiled(theta)
            if P is not None:
                return P
        Ts, B, L, R, U = self._factor(theta)
        S = self.Mxy - R.T @ U
        logdet = 2.0 * float(np.sum(np.log(np.diagonal(L))))
        if not gradient:
            return Pieces(S, logdet, np.zeros(0), np.zeros((0, 0)), np.zeros((0, 0)))
        P = sla.cho_solve((L, True), B, check_finite=False)  # A⁻¹Λ'M_zz
        g = np.zeros(self.n_theta)
        for a, b, m, k, t in self._blocks:
            blk = P[a:b, a:b].reshape(m, k, m, k)
            K = np.einsum("lclr->cr", blk)
            rows, cols = tril_colwise(k)
            g[t.theta_slice] = 2.0 * K[cols, rows]
        Xi = self.Mzxy - self.Mzz @ self._lam(Ts, U)
        return Pieces(S, logdet, g, U, Xi)

    def draw_b(
        self, theta: np.ndarray, sigma: float, beta: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        """One exact draw of b = Λu, u ~ N(Ũc, σ²A⁻¹) (Z's column order)."""
        Ts, _, L, _, U = self._factor(theta)
        c = np.append(-np.asarray(beta, dtype=float), 1.0)
        z = rng.standard_normal(self.design.q)
        u = U @ c + float(sigma) * sla.solve_triangular(L, z, lower=True, trans="T", check_finite=False)
        return self._lam(Ts, u[:, None])[:, 0]

    def draw_conditionals(
        self, theta: np.ndarray, sigma: np.ndarray, beta: np.ndarray | None, prior: GaussianPrior | None, rng
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`.MarginalBase.draw_conditionals` with one factorization of A per posterior draw
        for both β | y, θ, σ (S = M_xy − R'Ũ) and b | y, θ, σ, β; the normal deviates are taken
        from ``rng`` in the base class's order (all of β's, then all of b's)."""
        n_draws, p, q = theta.shape[0], self.p, self.design.q
        z_beta = [rng.standard_normal(p) for _ in range(n_draws)] if beta is None else None
        z_u = [rng.standard_normal(q) for _ in range(n_draws)]
        betas = np.empty((n_draws, p))
        b = np.empty((n_draws, q))
        empty = np.zeros(0)
        for s in range(n_draws):
            Ts, _, L, R, U = self._factor(theta[s])
            sig = float(sigma[s])
            if z_beta is None:
                betas[s] = beta[s]
            else:
                P = Pieces(self.Mxy - R.T @ U, 0.0, empty, empty, empty)
                _, LH, bt = self._beta_posterior(P, sig, prior)
                betas[s] = bt + sla.solve_triangular(LH, z_beta[s], lower=True, trans="T", check_finite=False)
            c = np.append(-betas[s], 1.0)
            u = U @ c + sig * sla.solve_triangular(L, z_u[s], lower=True, trans="T", check_finite=False)
            b[s] = self._lam(Ts, u[:, None])[:, 0]
        return betas, b

    def conditional_mean_b(self, theta: np.ndarray, beta: np.ndarray) -> np.ndarray:
        """E[b | y, θ, β] = ΛŨc."""
        Ts, _, _, _, U = self._factor(theta)
        c = np.append(-np.asarray(beta, dtype=float), 1.0)
        return self._lam(Ts, (U @ c)[:, None])[:, 0]
