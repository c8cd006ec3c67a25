"""The analytic gradient of the Laplace deviance in (θ, β), from the blocked factor at the mode.

With η = Xβ + ZΛu + offset, r the working residuals and W the weights (:mod:`.glm_kernel`),
φ(u) = −2 log f(y | η) + ‖u‖² (its gradient in u is −2(Λ'Z'r − u), zero at the mode û) and
A = Λ'Z'WZΛ + I, the Laplace deviance is D = φ(û) + log|A|. With z̃ᵢ = Λ'zᵢ,

    hᵢ = z̃ᵢ'A⁻¹z̃ᵢ,   γᵢ = hᵢ dWᵢ/dηᵢ   (∂ log|A| / ∂ηᵢ),
    a = A⁻¹Λ'Z'γ       (the adjoint of û: dû/dx = −(2A)⁻¹ ∂²φ/∂u∂x; a canonical link makes
                        ∂²φ/∂η² = 2W, so A is also φ's Hessian),
    e = −2r + γ − W ∘ (ZΛa),

the envelope theorem (∂φ/∂u = 0 at û) and the implicit function theorem give

    ∂D/∂β  = X'e,
    ∂D/∂θₖ = e'(ZΛₖû) + r'(ZΛₖa) + 2 tr(A⁻¹Λ'Z'WZΛₖ),     Λₖ = ∂Λ/∂θₖ,

and tr(A⁻¹Λ'Z'WZΛₖ) = Σᵢ Wᵢ x_{t,ia} (A⁻¹z̃ᵢ)_{t,b} for θₖ the (a, b) entry of term t's T. In the
first stage β is a PIRLS unknown too (β̂(θ) the joint mode): a and its β part solve the joint
system, and ZΛa becomes ZΛa + Xa_β (the same formula, MixedModels.jl's and lme4's profiled
nAGQ = 0 objective). Everything needs only A⁻¹ on the pairs of columns one observation touches:
from the blocked factor (:mod:`.pirls`), with S the Schur complement of the other terms,
Y = Λ_r'B̃ and C_j = L_jL_j',

    A⁻¹ on level j of the first term = L_j⁻ᵀ(I + Y_j'S⁻¹Y_j)L_j⁻¹,
    A⁻¹ between column c of the others and level j = −(S⁻¹Y)_{c,j} L_j⁻¹,
    A⁻¹ among the others = S⁻¹,

formed densely (S⁻¹Y is q₂ × q₁), so the gradient is offered when q₂²q₁ is at most
:data:`GRAD_FLOPS` (or there is one term). It costs about one factorization. The deviance of a
non-canonical link or of Gamma (whose Laplace data term differs from PIRLS's criterion) has no
analytic gradient here: its derivatives are taken by finite differences.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg as sla

from ...data.design import tril_colwise
from ...linalg.gram import _diag_blocks_of_product
from .pirls import GLMMBlocks, WeightedFactor

__all__ = ["LaplaceGradient", "has_gradient"]


GRAD_FLOPS = 3e8  # largest q₂²q₁ for the dense S⁻¹Y


def has_gradient(family, blocks: GLMMBlocks) -> bool:
    """Canonical binomial/Poisson links, with S⁻¹Y affordable densely (or one term)."""
    canonical = (family.name, family.link.name) in (("binomial", "logit"), ("poisson", "log"))
    return canonical and float(blocks.q2) ** 2 * blocks.q1 <= GRAD_FLOPS


class LaplaceGradient:
    """∂D/∂(θ, β) or, in the joint mode, dD/dθ at the last PIRLS solution."""

    def __init__(self, design, blocks: GLMMBlocks):
        self.b = blocks
        self.terms = design.terms
        self.codes = [np.asarray(t.codes, dtype=np.int64) for t in self.terms]
        self.x = [blocks.x1] + [design.term_columns(t) for t in self.terms[1:]]
        q1 = blocks.q1
        self.col0 = [t.z_start - q1 for t in self.terms]  # rest columns (first term: unused)
        # every term scalar and B's product by pairs: S⁻¹Y on B's cells from the pair list
        self.pairs = blocks.q2 > 0 and blocks.method == "pairs" and blocks.lam.all_scalar
        if self.pairs:
            pa, pb = blocks._pa, blocks._pb
            self.pair_flat = blocks.cell_row[pa] * blocks.q2 + blocks.cell_row[pb]  # into S⁻¹
            self.pair_w = np.where(pa == pb, 0.5, 1.0)  # a cell with itself: once
            self.obs_cell = []  # per other term: each observation's cell (−1: a zero entry, none)
            for t in range(1, len(self.terms)):
                sel = (blocks._e_col >= self.col0[t]) & (blocks._e_col < self.col0[t] + self.terms[t].q)
                cell = np.full(blocks.n, -1, dtype=np.int64)
                cell[blocks._e_obs[sel]] = blocks._e_cell[sel]
                self.obs_cell.append(cell)

    def _sinv(self, f: WeightedFactor) -> np.ndarray:
        q2 = self.b.q2
        Sinv, _ = sla.lapack.dpotri(f.LS[:q2, :q2], lower=1)
        return np.tril(Sinv) + np.tril(Sinv, -1).T

    def _leverage_parts(self, theta: np.ndarray, f: WeightedFactor):
        """(z̃, v): per term t, the rows z̃ᵢ,t = x_t[i]'T_t and v_t = (A⁻¹z̃ᵢ) on term t's
        columns of observation i's levels (A⁻¹ from the blocked factor, module docstring)."""
        B = self.b
        k1, m1, q2 = B.k1, B.m1, B.q2
        Ts = B.lam.Ts(theta)
        codes, x = self.codes, self.x
        j1 = codes[0]
        zt = [x[t] @ Ts[t] for t in range(len(self.terms))]
        Linv = f.Linv
        if self.pairs:
            return zt, self._v_scalar_pairs(theta, f, zt)
        if q2:
            Sinv = self._sinv(f)
            Bt = f.Bt if isinstance(f.Bt, np.ndarray) else f.Bt.matrix().toarray()
            Y = B.rest.apply(theta, Bt, transpose=True)
            SY = Sinv @ Y
            if k1 == 1:
                Q = np.einsum("cj,cj->j", Y, SY)[:, None, None]
            else:
                Q = _diag_blocks_of_product(Y, SY, m1, k1)
            P11 = np.swapaxes(Linv, 1, 2) @ (np.eye(k1)[None] + Q) @ Linv
        else:
            P11 = np.swapaxes(Linv, 1, 2) @ Linv
        if k1 == 1:
            v = [P11[j1, 0, 0][:, None] * zt[0]]
        else:
            v = [np.einsum("iab,ib->ia", P11[j1], zt[0])]
        if q2:
            rest_cols = []
            for t in range(1, len(self.terms)):
                k = self.terms[t].k
                rest_cols.append(self.col0[t] + codes[t][:, None] * k + np.arange(k)[None, :])
            cols = np.concatenate(rest_cols, axis=1)  # (n, Σk) rest columns per observation
            ztr = np.concatenate(zt[1:], axis=1)
            jcols = j1[:, None] * k1 + np.arange(k1)[None, :]
            # K[i, s, :] = −SY[c_is, level j1 block] L_j⁻¹: A⁻¹ between rest column s and level j1
            K = -SY[cols[:, :, None], jcols[:, None, :]]
            K = np.einsum("isa,iab->isb", K, Linv[j1])
            v[0] = v[0] + np.einsum("isb,is->ib", K, ztr)
            S_obs = Sinv[cols[:, :, None], cols[:, None, :]]  # S⁻¹ among each observation's columns
            vr = np.einsum("isb,ib->is", K, zt[0]) + np.einsum("ist,it->is", S_obs, ztr)
            pos = 0
            for t in range(1, len(self.terms)):
                k = self.terms[t].k
                v.append(vr[:, pos : pos + k])
                pos += k
        return zt, v

    def _v_scalar_pairs(self, theta: np.ndarray, f: WeightedFactor, zt: list) -> list:
        """v for scalar terms, with S⁻¹Y taken on B's cells only: (S⁻¹Y)_c = Σ S⁻¹[row c, row c']
        Y_c' over the cells c' of c's level — the pair list of the factorization, so the cost is
        that of forming B̃B̃', not a dense q₂ × q₁ product."""
        B = self.b
        q2 = B.q2
        # S⁻¹'s lower triangle, Fortran-ordered: (i, j), i ≥ j, at flat position j·q₂ + i
        SL, _ = sla.lapack.dpotri(f.LS[:q2, :q2], lower=1)
        SL = SL.ravel(order="F")
        row, lev, pa, pb = B.cell_row, B.cell_lev, B._pa, B._pb
        Yc = B.rest.diag(theta)[row] * f.Bt.data  # Y = Λ_r'B̃ on the cells
        w = np.take(SL, self.pair_flat) * self.pair_w  # rows of a pair: row(pb) ≥ row(pa)
        SYc = np.bincount(pa, weights=w * Yc[pb], minlength=B.n_cells)
        SYc += np.bincount(pb, weights=w * Yc[pa], minlength=B.n_cells)
        linv = f.Linv[:, 0, 0]
        P11 = linv**2 * (1.0 + np.bincount(lev, weights=Yc * SYc, minlength=B.m1))
        j1 = self.codes[0]
        z1 = zt[0][:, 0]
        K = []  # A⁻¹ between each observation's level of term t and its level j of the first
        for cell in self.obs_cell:
            Kt = np.where(cell >= 0, -SYc[np.maximum(cell, 0)], 0.0) * linv[j1]
            K.append(Kt)
        v1 = P11[j1] * z1
        for Kt, z in zip(K, zt[1:], strict=True):
            v1 = v1 + Kt * z[:, 0]
        v = [v1[:, None]]
        cols = [self.col0[t] + self.codes[t] for t in range(1, len(self.terms))]
        for Kt, ca in zip(K, cols, strict=True):
            va = Kt * z1
            for b, cb in enumerate(cols):
                va = va + np.take(SL, np.minimum(ca, cb) * q2 + np.maximum(ca, cb)) * zt[1 + b][:, 0]
            v.append(va[:, None])
        return v

    def __call__(self, theta: np.ndarray, u: np.ndarray, r: np.ndarray, W: np.ndarray, dW: np.ndarray,
                 f: WeightedFactor, joint: bool) -> np.ndarray:
        B = self.b
        zt, v = self._leverage_parts(theta, f)
        codes, x = self.codes, self.x
        h = sum(np.einsum("ia,ia->i", zt[t], v[t]) for t in range(len(self.terms)))
        gamma = h * dW
        gu = B.lam_t_zt(theta, gamma)
        X = B.X
        a, a_beta = B.solve(f, gu, X.T @ gamma if joint else None)
        eta_a = B.z_lam(theta, a)
        if joint:
            eta_a = eta_a + X @ a_beta
        e = gamma - 2.0 * r - W * eta_a
        g_theta = []
        for t, term in enumerate(self.terms):
            s0 = term.z_start
            ut = u[s0 : s0 + term.q].reshape(term.m, term.k)
            at = a[s0 : s0 + term.q].reshape(term.m, term.k)
            rows, cols_ = tril_colwise(term.k)
            for ra, cb in zip(rows, cols_, strict=True):
                xa = x[t][:, ra]
                zu = xa * ut[codes[t], cb]
                za = xa * at[codes[t], cb]
                trace = float(np.sum(W * xa * v[t][:, cb]))
                g_theta.append(float(e @ zu) + float(r @ za) + 2.0 * trace)
        g_theta = np.asarray(g_theta)
        if joint:
            return g_theta
        return np.r_[g_theta, X.T @ e]
