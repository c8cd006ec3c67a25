"""The marginal log-density for one grouping factor: level-wise k × k algebra.

When every random-effects term has the same grouping factor (one term such as ``(x | g)``, or
``(x || g)``, which lme4 splits into terms on one factor), the terms' columns of one level are
taken together (k = their total; T is block diagonal with the terms' factors, zeros elsewhere).
Every observation then has one level, so A = Λ'Z'WZΛ + I is block diagonal with
blocks C_j = T'D_jT + I (D_j = Z_j'WZ_j) and the blocked factor of :mod:`.marginal` reduces to
per-level k × k Cholesky factors C_j = L_jL_j' plus the (p + 1)-square Schur complement of
[X y]. With E_j = Z_j'W[X y] (k × (p + 1)) and H_j = L_j⁻¹T'E_j:

    S = [X y]'W[X y] − Σ_j H_j'H_j,   ℓ = Σ_j log det C_j,
    Ũ_j = L_j⁻ᵀH_j,   Ξ_j = E_j − D_jTŨ_j,   ∂ℓ/∂T[r, c] = 2 [Σ_j C_j⁻¹T'D_j]_(c, r),

the case "no other terms" of the general formulas, on the same cross-products as the REML
engine, with batched k × k operations and no q-sized work. A lazy frame's design carries these
cross-products (``design.gram``) instead of rows; they are read from there.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ...data.design import DesignMatrices
from . import kernels
from .marginal import GaussianPrior, MarginalBase, MarginalParts, Pieces

__all__ = ["SingleTermLMM"]


class SingleTermLMM(MarginalBase):
    """log p(y | θ, σ, β), its gradient and exact draws of b, for one grouping factor."""

    @staticmethod
    def applies(design: DesignMatrices) -> bool:
        """All terms share one grouping factor (the same level of every observation; a lazy
        design has no per-row codes: the same factors)."""
        terms = design.terms
        if design.gram is not None and design.Z.shape[0] == 0:
            return bool(terms) and all(t.factors == terms[0].factors for t in terms[1:])
        return bool(terms) and all(
            t.m == terms[0].m and np.array_equal(t.codes, terms[0].codes) for t in terms[1:]
        )

    def __init__(self, design: DesignMatrices):
        if not self.applies(design):
            raise ValueError("SingleTermLMM needs random-effects terms on a single grouping factor")
        self._setup(design)
        self.k, self.m = sum(t.k for t in design.terms), design.terms[0].m
        # combined (level-major over all terms) column → column of Z; T's θ positions
        perm, rows, cols, off = [], [], [], 0
        for t in design.terms:
            r, c = self._tri[t.k]
            rows.extend(r + off)
            cols.extend(c + off)
            off += t.k
        for j in range(self.m):
            for t in design.terms:
                perm.extend(t.z_start + j * t.k + np.arange(t.k))
        self.perm = np.asarray(perm, dtype=np.int64)
        if design.gram is not None:  # a lazy frame: the same blocks from the cross-products
            ZtZ, ZtXy, self.Mxy = design.gram
            L = sp.coo_matrix(ZtZ)  # Z_a'WZ_b for terms a ≥ b (a == b whole): mirror the a > b blocks
            term = np.zeros(design.q, dtype=np.int64)
            for i, t in enumerate(design.terms):
                term[t.z_start : t.z_start + t.q] = i
            below = term[L.row] > term[L.col]
            mirror = sp.coo_matrix((L.data[below], (L.col[below], L.row[below])), shape=L.shape)
            full = (L.tocsc() + mirror.tocsc()).tocsc()
            self.E = np.asarray(ZtXy)[self.perm].reshape(self.m, self.k, self.p + 1)
            G = full[self.perm][:, self.perm].tocoo()
        else:
            w = np.ones(design.n) if design.weights is None else design.weights
            sw = np.sqrt(w)
            XY = np.column_stack([design.X, design.y - design.offset]) * sw[:, None]
            Zw = design.Z.multiply(sw[:, None]).tocsc()[:, self.perm]
            self.Mxy = XY.T @ XY
            self.E = np.asarray(Zw.T @ XY).reshape(self.m, self.k, self.p + 1)
            G = (Zw.T @ Zw).tocoo()
        D = np.zeros((self.m, self.k, self.k))
        np.add.at(D, (G.row // self.k, G.row % self.k, G.col % self.k), G.data)
        self.D = D
        self.rows, self.cols = np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)
        self._eye = np.eye(self.k)
        self.use_kernels = kernels.available()
        self._rows64 = np.ascontiguousarray(self.rows, dtype=np.int64)
        self._cols64 = np.ascontiguousarray(self.cols, dtype=np.int64)

    def _T(self, theta: np.ndarray) -> np.ndarray:
        T = np.zeros((self.k, self.k))
        T[self.rows, self.cols] = theta
        return T

    def _factor(self, theta: np.ndarray):
        """T, L_j (batched lower factors of C_j), H_j = L_j⁻¹T'E_j and ℓ."""
        T = self._T(theta)
        if self.k == 1:
            lam = T[0, 0]
            L = np.sqrt(lam * lam * self.D + 1.0)
            H = (lam / L) * self.E
            logdet = 2.0 * float(np.sum(np.log(L)))
        else:
            L = np.linalg.cholesky(T.T @ self.D @ T + self._eye)
            H = np.linalg.solve(L, T.T @ self.E)
            logdet = 2.0 * float(np.sum(np.log(np.diagonal(L, axis1=1, axis2=2))))
        return T, L, H, logdet

    def _back(self, L: np.ndarray, H: np.ndarray) -> np.ndarray:
        """L_j⁻ᵀH_j per level."""
        if self.k == 1:
            return H / L
        return np.linalg.solve(np.swapaxes(L, 1, 2), H)

    def pieces(self, theta: np.ndarray, gradient: bool = True) -> Pieces:
        T, L, H, logdet = self._factor(theta)
        S = self.Mxy - np.einsum("jka,jkb->ab", H, H)
        if not gradient:
            return Pieces(S, logdet, np.zeros(0), np.zeros((0, 0)), np.zeros((0, 0)))
        U = self._back(L, H)
        Xi = self.E - self.D @ (T @ U)
        if self.k == 1:
            Gam = np.array([[float(np.sum(T[0, 0] * self.D[:, 0, 0] / L[:, 0, 0] ** 2))]])
        else:
            Cinv = np.linalg.inv(L @ np.swapaxes(L, 1, 2))
            Gam = np.einsum("jab,jbc->ac", Cinv, T.T @ self.D)
        return Pieces(S, logdet, 2.0 * Gam[self.cols, self.rows], self._to_z(U), self._to_z(Xi))

    def _to_z(self, A: np.ndarray) -> np.ndarray:
        """Rows in the combined level-major order (m, k, ·) → rows in Z's column order."""
        flat = A.reshape(self.m * self.k, -1)
        out = np.empty_like(flat)
        out[self.perm] = flat
        return out

    def logp_and_grad(self, theta: np.ndarray, sigma: float, beta: np.ndarray) -> MarginalParts:
        if not self.use_kernels:
            return super().logp_and_grad(theta, sigma, beta)
        T = self._T(np.asarray(theta, dtype=float))
        value, g, gs, gb = kernels.given_beta(
            T,
            self.D,
            self.E,
            self.Mxy,
            float(sigma),
            np.asarray(beta, dtype=float),
            float(self.n),
            self._c_const,
            self._rows64,
            self._cols64,
        )
        return MarginalParts(float(value), g, float(gs), gb)

    def logp_integrated(
        self, theta: np.ndarray, sigma: float, prior: GaussianPrior, gradient: bool = True
    ) -> MarginalParts:
        if not self.use_kernels:
            return super().logp_integrated(theta, sigma, prior, gradient)
        T = self._T(np.asarray(theta, dtype=float))
        value, g, gs = kernels.integrated(
            T,
            self.D,
            self.E,
            self.Mxy,
            float(sigma),
            prior.precision,
            prior.precision @ prior.mean,
            prior.mean,
            prior.logdet_cov,
            float(self.n),
            self._c_const,
            self._rows64,
            self._cols64,
        )
        return MarginalParts(float(value), g, float(gs), np.zeros(0))

    def draw_b(
        self, theta: np.ndarray, sigma: float, beta: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        """One exact draw of b | y, θ, σ, β: b_j = T L_j⁻ᵀ(H_jc + σz_j)."""
        T, L, H, _ = self._factor(np.asarray(theta, dtype=float))
        c = np.append(-np.asarray(beta, dtype=float), 1.0)
        h = (H @ c)[:, :, None] + float(sigma) * rng.standard_normal((self.m, self.k, 1))
        return self._to_z(self._back(L, h)[:, :, 0] @ T.T)[:, 0]

    def draw_conditionals(
        self, theta: np.ndarray, sigma: np.ndarray, beta: np.ndarray | None, prior: GaussianPrior | None, rng
    ) -> tuple[np.ndarray, np.ndarray]:
        """All draws at once: the level-wise algebra batched over draws (see the base method)."""
        S, k, m, p = theta.shape[0], self.k, self.m, self.p
        T = np.zeros((S, k, k))
        T[:, self.rows, self.cols] = theta
        Tt = np.swapaxes(T, 1, 2)[:, None]
        L = np.linalg.cholesky(Tt @ self.D[None] @ T[:, None] + self._eye)  # (S, m, k, k)
        H = np.linalg.solve(L, Tt @ self.E[None])  # (S, m, k, p + 1)
        sigma = np.asarray(sigma, dtype=float).reshape(S)
        if beta is None:
            Smat = self.Mxy[None] - np.einsum("sjka,sjkb->sab", H, H)
            s2 = sigma[:, None, None] ** 2
            Hb = Smat[:, :p, :p] / s2 + prior.precision[None]
            hb = Smat[:, :p, p] / s2[:, :, 0] + (prior.precision @ prior.mean)[None]
            LH = np.linalg.cholesky(Hb)
            mean = np.linalg.solve(Hb, hb[:, :, None])[:, :, 0]
            z = rng.standard_normal((S, p, 1))
            beta = mean + np.linalg.solve(np.swapaxes(LH, 1, 2), z)[:, :, 0]
        beta = np.asarray(beta, dtype=float).reshape(S, p)
        c = np.concatenate([-beta, np.ones((S, 1))], axis=1)
        h = np.einsum("sjka,sa->sjk", H, c) + sigma[:, None, None] * rng.standard_normal((S, m, k))
        u = np.linalg.solve(np.swapaxes(L, 2, 3), h[..., None])[..., 0]
        b = np.einsum("sab,sjb->sja", T, u)
        out = np.empty((S, m * k))
        out[:, self.perm] = b.reshape(S, m * k)
        return beta, out

    def conditional_mean_b(self, theta: np.ndarray, beta: np.ndarray) -> np.ndarray:
        T, L, H, _ = self._factor(np.asarray(theta, dtype=float))
        c = np.append(-np.asarray(beta, dtype=float), 1.0)
        return self._to_z(self._back(L, (H @ c)[:, :, None])[:, :, 0] @ T.T)[:, 0]
