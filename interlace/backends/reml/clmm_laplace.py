"""The Laplace log-likelihood of a cumulative link mixed model and its exact gradient.

With scalar random-effects terms b = Λu (Λ = diag(σ_t) over each term's columns, u ~ N(0, I))
and eᵢ = xᵢ'β + (ZΛu)ᵢ, observation i in category yᵢ contributes
gᵢ = log(F(aᵢ) − F(cᵢ)), aᵢ = α_{yᵢ} − eᵢ, cᵢ = α_{yᵢ−1} − eᵢ (α₋₁ = −∞, α_{J−1} = +∞). Then

    log L ≈ ℓ(φ) = Σᵢ gᵢ(û) − ½|û|² − ½ log|A|,   A = Λ'Z'WZΛ + I,   Wᵢ = −∂²gᵢ/∂eᵢ²,

û the joint mode of Σgᵢ − ½|u|² (Newton steps u ← u + A⁻¹(Λ'Z's − u), sᵢ = ∂gᵢ/∂eᵢ), as
``ordinal::clmm`` (Christensen 2019, the Laplace approximation of Pinheiro & Bates 1995). A is the
weighted system of the blocked PLS factor (:class:`~.pirls.GLMMBlocks`): the first term's levels
eliminated level by level, the other terms in a small dense Schur complement; with one term A is
diagonal. The cumulative links' densities are log-concave, so Wᵢ ≥ 0 and A ≥ I.

The gradient over φ = (α, β, σ) is exact: the u-dependence of Σg − ½|u|² vanishes at the mode,
and that of log|A| (through Wᵢ(eᵢ)) is taken by one adjoint solve w = A⁻¹Λ'Z'(h ⊙ ∂W/∂e), with
hᵢ = (ZΛA⁻¹Λ'Z')ᵢᵢ the leverages; ∂log|A|/∂σ_t at fixed W is (q_t − tr_t A⁻¹)/σ_t·2. The
leverages and tr_t A⁻¹ come from the blocked factor's inverse (block formula with the Schur
complement S: A⁻¹ = [[C⁻¹ + C⁻¹A₁₂S⁻¹A₂₁C⁻¹, −C⁻¹A₁₂S⁻¹], [·, S⁻¹]]).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp
from scipy import special

from ...data.design import DesignMatrices
from .pirls import CSR, GLMMBlocks

__all__ = ["latent", "OneTerm", "Blocked", "ClmmLaplace"]

_LOG_SQRT_2PI = 0.5 * np.log(2 * np.pi)
# stand-ins for α₋₁ = −∞ and α_{J−1} = +∞ at which F is exactly 0 / 1 and f, f', f'' exactly 0 in
# double precision for any moderate linear predictor (|e| < 100), without overflow to inf·0
V_ENTRIES = 4_000_000  # entries of S⁻¹G formed at once in the leverages
_PAD = {"logit": (-1e4, 1e4), "probit": (-1e4, 1e4), "cloglog": (-1e4, 300.0), "loglog": (-300.0, 1e4)}


def latent(x: np.ndarray, link: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """F, f = F', f' and f'' of the latent distribution of a cumulative ``link`` (finite x)."""
    if link == "logit":
        F = special.expit(x)
        f = F * (1 - F)
        d = 1 - 2 * F
        f1 = f * d
        return F, f, f1, f1 * d - 2 * f * f
    if link == "probit":
        F = special.ndtr(x)
        f = np.exp(-0.5 * x * x - _LOG_SQRT_2PI)
        return F, f, -x * f, (x * x - 1) * f
    if link == "cloglog":  # F(x) = 1 − exp(−eˣ)
        ex = np.exp(x)
        F = -np.expm1(-ex)
        f = ex * np.exp(-ex)
        f1 = f * (1 - ex)
        return F, f, f1, f1 * (1 - ex) - f * ex
    if link == "loglog":  # F(x) = exp(−e⁻ˣ)
        ex = np.exp(-x)
        F = np.exp(-ex)
        f = ex * F
        f1 = f * (ex - 1)
        return F, f, f1, f1 * (ex - 1) - f * ex
    raise ValueError(f"unknown cumulative link {link!r}")


class OneTerm:
    """A = diag(c), c_j = σ²D_j + 1, for a single random intercept."""

    def __init__(self, codes: np.ndarray, m: int):
        self.codes, self.m, self.q = codes, m, m
        self.spans = [(0, m)]

    def zlam(self, lam: np.ndarray, u: np.ndarray) -> np.ndarray:
        return lam[0] * u[self.codes]

    def lamzt(self, lam: np.ndarray, r: np.ndarray) -> np.ndarray:
        return lam[0] * np.bincount(self.codes, r, self.m)

    def factor(self, lam: np.ndarray, W: np.ndarray):
        c = lam[0] ** 2 * np.bincount(self.codes, W, self.m) + 1.0
        return c, float(np.log(c).sum())

    def solve(self, f, g: np.ndarray) -> np.ndarray:
        return g / f[0]

    def leverages(self, lam: np.ndarray, f) -> tuple[np.ndarray, list[float]]:
        """h = diag(ZΛA⁻¹Λ'Z') and tr_t A⁻¹ per term."""
        inv = 1.0 / f[0]
        return lam[0] ** 2 * inv[self.codes], [float(np.sum(inv))]


class Blocked:
    """A on :class:`GLMMBlocks` (several scalar terms, the first with the most levels)."""

    def __init__(self, design: DesignMatrices):
        self.blocks = GLMMBlocks(design)
        terms = design.terms
        self.Z = CSR(design.Z)
        self.q, self.q1, self.q2 = design.q, terms[0].q, design.q - terms[0].q
        self.codes1 = np.asarray(terms[0].codes, dtype=np.int64)
        # the other terms' columns of each row, as indices into the Schur block (0 … q2−1)
        self.rest_idx = [np.asarray(t.codes, dtype=np.int64) + t.z_start - self.q1 for t in terms[1:]]
        self.spans = [(t.z_start, t.z_start + t.q) for t in terms]
        self.sizes = [t.q for t in terms]
        self._by_level = np.argsort(self.codes1, kind="stable")  # rows grouped by first-term level
        self._level_ptr = np.r_[0, np.cumsum(np.bincount(self.codes1, minlength=self.q1))]

    def _lam_vec(self, lam: np.ndarray) -> np.ndarray:
        return np.repeat(lam, self.sizes)

    def zlam(self, lam: np.ndarray, u: np.ndarray) -> np.ndarray:
        return self.Z.mul(self._lam_vec(lam) * u)

    def lamzt(self, lam: np.ndarray, r: np.ndarray) -> np.ndarray:
        return self._lam_vec(lam) * self.Z.tmul(r)

    def factor(self, lam: np.ndarray, W: np.ndarray):
        f = self.blocks.factor(lam, W, joint=False)
        return f, f.logdet

    def solve(self, f, g: np.ndarray) -> np.ndarray:
        return self.blocks.solve(f[0], g)[0]

    def leverages(self, lam: np.ndarray, f) -> tuple[np.ndarray, list[float]]:
        """h = diag(ZΛA⁻¹Λ'Z') and tr_t A⁻¹ per term, from the blocked inverse: with
        G = A₂₁C⁻¹ (q2 × q1, B̃'s sparsity) and V = S⁻¹G, (A⁻¹)_jj = 1/c_j + G_j'V_j,
        A⁻¹₂₁ = −V and A⁻¹₂₂ = S⁻¹ (from S's Cholesky factor by LAPACK's dpotri)."""
        wf = f[0]
        q2 = self.q2
        c = wf.c_diag[:, 0, 0]
        lam_r = self._lam_vec(lam)[self.q1 :]
        scale = 1.0 / np.sqrt(c)
        if isinstance(wf.Bt, np.ndarray):
            G = sp.csr_matrix((lam_r[:, None] * wf.Bt) * scale[None, :])
        else:  # Λ_r B̃ diag(1/√c) = A₂₁ diag(1/c), on B̃'s pattern
            Bt = wf.Bt
            rows = np.repeat(np.arange(q2), np.diff(Bt.indptr))
            G = sp.csr_matrix((Bt.data * lam_r[rows] * scale[Bt.indices], Bt.indices, Bt.indptr),
                              shape=Bt.shape)
        Sinv, info = sla.lapack.dpotri(wf.LS[:q2, :q2], lower=1)
        if info != 0:
            raise np.linalg.LinAlgError("the Schur complement of the clmm system is singular")
        Sinv = np.tril(Sinv) + np.tril(Sinv, -1).T
        # V = S⁻¹G is read only on G's pattern and at the rows' (k_t, j) pairs: formed over slices
        # of the first term's levels, so no dense q2 × q1 array is held at once
        Gc = G.tocsc()
        GV = np.empty(Gc.nnz)
        j = self.codes1
        Vrow = [np.empty(j.size) for _ in self.rest_idx]
        step = max(1, V_ENTRIES // max(q2, 1))
        for j0 in range(0, self.q1, step):
            j1 = min(self.q1, j0 + step)
            Vc = np.asarray(Gc[:, j0:j1].T @ Sinv)  # rows: levels j0 … j1−1 (Sinv symmetric)
            e0, e1 = Gc.indptr[j0], Gc.indptr[j1]
            cols = np.repeat(np.arange(j1 - j0), np.diff(Gc.indptr[j0 : j1 + 1]))
            GV[e0:e1] = Gc.data[e0:e1] * Vc[cols, Gc.indices[e0:e1]]
            rows = self._by_level[self._level_ptr[j0] : self._level_ptr[j1]]
            for t, kt in enumerate(self.rest_idx):
                Vrow[t][rows] = Vc[j[rows] - j0, kt[rows]]
        a11 = 1.0 / c + np.bincount(np.repeat(np.arange(self.q1), np.diff(Gc.indptr)), GV, self.q1)
        h = lam[0] ** 2 * a11[j]
        for t, kt in enumerate(self.rest_idx):
            lt = lam[t + 1]
            h -= 2.0 * lam[0] * lt * Vrow[t]
            for s, ks in enumerate(self.rest_idx):
                h += lt * lam[s + 1] * Sinv[kt, ks]
        dS = np.diagonal(Sinv)
        traces = [float(np.sum(a11))] + [
            float(np.sum(dS[a - self.q1 : b - self.q1])) for a, b in self.spans[1:]
        ]
        return h, traces


class ClmmLaplace:
    """ℓ(α, β, σ) and its gradient for data (X, y in 0 … J−1) and random terms ``structure``."""

    def __init__(self, X: np.ndarray, y: np.ndarray, J: int, link: str, structure, term_codes):
        self.X, self.y, self.J, self.link = X, y, J, link
        self.S = structure
        self.term_codes = term_codes  # per term: its column of u for each row
        self.pad = np.array(_PAD[link])
        self.up_idx = np.minimum(y, J - 2)
        self.lo_idx = np.maximum(y - 1, 0)
        self.u = np.zeros(structure.q)
        self.n_newton = 0

    # ---- per-observation derivatives -------------------------------------------------------
    def _obs(self, cuts: np.ndarray, e: np.ndarray, order: int):
        """log P and the derivatives of g in (a, c) up to ``order`` (2 or 3). An infinite bound is
        a finite stand-in far enough out that F is exactly 0 or 1 and f, f', f'' exactly 0 there
        (``_PAD``), so every term that involves it vanishes without masking; ``cuts`` is
        (α₋₁, α, α_{J−1}) with those stand-ins."""
        a = cuts[self.y + 1] - e
        c = cuts[self.y] - e
        Fa, fa, fa1, fa2 = latent(a, self.link)
        Fc, fc, fc1, fc2 = latent(c, self.link)
        P = Fa - Fc
        if not (P > 0).all():
            return None
        ip = 1.0 / P
        ga = fa * ip
        gc = -fc * ip
        ra = fa1 * ip  # f'(a)/P
        rc = fc1 * ip
        gaa = ra - ga * ga
        gcc = -rc - gc * gc
        gac = -ga * gc
        out = {"logP": np.log(P), "ga": ga, "gc": gc, "gaa": gaa, "gcc": gcc, "gac": gac}
        if order >= 3:
            sa = fa2 * ip
            sc = fc2 * ip
            out["gaaa"] = sa - ra * ga - 2 * ga * gaa
            out["gaac"] = -ra * gc - 2 * ga * gac
            out["gacc"] = rc * ga - 2 * gc * gac
            out["gccc"] = -sc + rc * gc - 2 * gc * gcc
        return out

    # ---- the mode and ℓ --------------------------------------------------------------------
    def evaluate(self, alpha: np.ndarray, beta: np.ndarray, lam: np.ndarray, gradient: bool = True):
        """(ℓ, ∂ℓ/∂(α, β, σ)) — or (−inf, None) where ℓ is not finite."""
        with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
            return self._evaluate(alpha, beta, lam, gradient)

    def _evaluate(self, alpha, beta, lam, gradient):
        S = self.S
        if (np.diff(alpha) <= 0).any() or (lam <= 0).any():
            return -np.inf, None
        cuts = np.concatenate([self.pad[:1], alpha, self.pad[1:]])
        xb = self.X @ beta if beta.size else np.zeros(self.y.size)
        u = self.u.copy()
        u_old = np.zeros_like(u)  # the fallback when the warm start is infeasible
        obj = -np.inf
        last = np.inf  # size of the last Newton step
        for _ in range(100):
            # once a step was small the next point is the mode to ~1e-12 (quadratic convergence):
            # evaluate it to third order and stop there
            final = last < 1e-6
            d = self._obs(cuts, xb + S.zlam(lam, u), 3 if final else 2)
            if d is None:  # a probability underflowed: step back
                if not (u - u_old).any():
                    return -np.inf, None
                u, last = 0.5 * (u + u_old), np.inf
                continue
            new = float(d["logP"].sum() - 0.5 * u @ u)
            if new < obj - 1e-10 * abs(obj):  # overshot: halve the step
                u, last = 0.5 * (u + u_old), np.inf
                continue
            obj = new
            s = -(d["ga"] + d["gc"])
            W = -(d["gaa"] + 2 * d["gac"] + d["gcc"])
            f = S.factor(lam, W)
            self.n_newton += 1
            if final:
                break
            step = S.solve(f, S.lamzt(lam, s) - u)
            last = float(np.max(np.abs(step))) if step.size else 0.0
            u_old = u
            u = u + step
        else:
            return -np.inf, None
        self.u = u
        ll = float(obj - 0.5 * f[1])
        if not gradient:
            return ll, None
        ga, gc, gaa, gac, gcc = d["ga"], d["gc"], d["gaa"], d["gac"], d["gcc"]
        T = d["gaaa"] + 3 * d["gaac"] + 3 * d["gacc"] + d["gccc"]  # ∂W/∂e
        h, traces = S.leverages(lam, f)
        w = S.solve(f, S.lamzt(lam, h * T))
        zeta = S.zlam(lam, w)
        common = s - 0.5 * h * T + 0.5 * zeta * W  # ∂ℓ/∂e through β (and σ at fixed u)
        g_beta = self.X.T @ common
        up = ga - 0.5 * h * (-(d["gaaa"] + 2 * d["gaac"] + d["gacc"])) - 0.5 * zeta * (-(gaa + gac))
        lo = gc - 0.5 * h * (-(d["gaac"] + 2 * d["gacc"] + d["gccc"])) - 0.5 * zeta * (-(gac + gcc))
        J = self.J
        g_alpha = np.bincount(self.up_idx, up, J - 1) + np.bincount(self.lo_idx, lo, J - 1)
        g_lam = np.empty(lam.size)
        for t, (a, b) in enumerate(S.spans):
            ut = u[a:b][self.term_codes[t]]
            wt_s = float(w[a:b] @ np.bincount(self.term_codes[t], s, b - a))
            g_lam[t] = float(common @ ut) - ((b - a) - traces[t]) / lam[t] - 0.5 * wt_s
        return ll, np.concatenate([g_alpha, g_beta, g_lam])
