"""Compiled (numba) evaluation of the dense-factor pieces for several terms (crossed designs).

The first term's block of A = Λ'MΛ + I is block diagonal (every observation has one level of
it): A₁₁ = diag(C_j), C_j = L_jL_j'. With L₂₁ = A₂₁L₁₁⁻ᵀ the Schur complement of the other
terms is Ω = A₂₂ − L₂₁L₂₁' = L_ΩL_Ω', and ℓ = Σ_j log|C_j| + log|Ω|. With R = Λ'M_z,xy,
H₁ = L₁₁⁻¹R₁, H₂ = L_Ω⁻¹(R₂ − L₂₁H₁): S = M_xy − H₁'H₁ − H₂'H₂, Ũ₂ = L_Ω⁻ᵀH₂,
Ũ₁ = L₁₁⁻ᵀ(H₁ − L₂₁'Ũ₂), Ξ = M_z,xy − M_zzΛŨ — the quantities of :class:`.dense.DenseMarginalLMM`.

The gradient of ℓ needs only the diagonal k × k blocks of A⁻¹: for an invertible Λ (T's
diagonal positive), Λ'M_zz = (A − I)Λ⁻¹, so for θᵢ = T[r, c] of a term with m levels

    ∂ℓ/∂θᵢ = 2 tr(A⁻¹Λ'M_zzΛᵢ) = 2 [(m I − Σ_l (A⁻¹)_ll) T⁻¹]_(c, r),

with (A⁻¹)_jj = L_j⁻ᵀ(I + Y_j'Y_j)L_j⁻¹ on the first term (Y = L_Ω⁻¹L₂₁, Y_j its columns of level
j) and (A⁻¹)_ll = (Ω⁻¹)_ll = W_l'W_l on the others (W = L_Ω⁻¹, W_l its columns of level l). The
kernel returns D_t = Σ_l (A⁻¹)_ll per term; the caller forms the gradient (and falls back to
the dense evaluator when a diagonal of T is too small for T⁻¹). One call replaces a dozen q-sized
numpy operations, the O(q³) solve with q right-hand sides of the dense gradient among them.
"""

from __future__ import annotations

import math

import numpy as np

from .kernels import _integrate_beta
from .lapack import N, dgemm

__all__ = ["available", "crossed_pieces", "crossed_integrated"]

try:  # numba ships with pytensor
    from numba import njit
except ImportError:  # pragma: no cover
    njit = None


def available() -> bool:
    return njit is not None


def _lam(Ts, zs, ks, ms, V, out, col0, transpose):
    """out[:, col0:col0 + ncol] = Λ'V (``transpose``) or ΛV for V with q rows: rows (l, ·) of each
    term's block ← T'·rows (l, ·) or T·rows (l, ·), as row updates (contiguous)."""
    ncol = V.shape[1]
    for t in range(zs.size):
        k = ks[t]
        for lv in range(ms[t]):
            r0 = zs[t] + lv * k
            for a in range(k):
                for j in range(ncol):
                    out[r0 + a, col0 + j] = 0.0
                lo, hi = (a, k) if transpose else (0, a + 1)  # T lower triangular
                for b in range(lo, hi):
                    w = Ts[t, b, a] if transpose else Ts[t, a, b]
                    for j in range(ncol):
                        out[r0 + a, col0 + j] += w * V[r0 + b, j]


def _crossed_pieces(Mzz, Mzxy, Mxy, Ts, zs, ks, ms, min_diag, S, D, U, Xi):
    """Fill S (c × c), D (row t·kmax + a, column b: (D_t)_ab), U = Ũ and Xi = Ξ (q × c) at the
    stacked factors Ts; returns (status, log|A|): 1 = done, 0 = A not positive definite, 2 = a
    diagonal of some T at or below ``min_diag`` times its largest entry (T⁻¹ unusable: the
    caller uses the numpy path)."""
    for t in range(zs.size):
        big = 1.0
        for a in range(ks[t]):
            for b in range(a + 1):
                big = max(big, abs(Ts[t, a, b]))
        for a in range(ks[t]):
            if abs(Ts[t, a, a]) <= min_diag * big:
                return 2, 0.0
    q = Mzz.shape[0]
    c = Mzxy.shape[1]
    ld = q + c
    kmax = Ts.shape[1]
    # K = [[Λ'M_zzΛ + I, Λ'M_z,xy], [·, M_xy]] (upper triangle): B = Λ'M_zz, Λ'M_zzΛ = Λ'B'
    B = np.empty((q, q))
    _lam(Ts, zs, ks, ms, Mzz, B, 0, True)
    Bt = np.empty((q, q))
    for i in range(q):
        for j in range(q):
            Bt[i, j] = B[j, i]
    K = np.empty((ld, ld))
    _lam(Ts, zs, ks, ms, Bt, K, 0, True)
    _lam(Ts, zs, ks, ms, Mzxy, K, q, True)
    for i in range(c):
        for j in range(c):
            K[q + i, q + j] = Mxy[i, j]
    for i in range(q):
        K[i, i] += 1.0
    # K = 𝒰'𝒰 over its first q rows, row by row (right-looking, each row update contiguous);
    # the zero blocks of the first term's block-diagonal A₁₁ are skipped
    logdet = 0.0
    for a in range(q):
        s = K[a, a]
        if not s > 0.0:
            return 0, 0.0
        d = math.sqrt(s)
        logdet += 2.0 * math.log(d)
        for j in range(a, ld):
            K[a, j] /= d
        for i in range(a + 1, ld):
            w = K[a, i]
            if w != 0.0:
                for j in range(i, ld):
                    K[i, j] -= w * K[a, j]
    for a in range(c):
        for b in range(a, c):
            S[a, b] = K[q + a, q + b]
            S[b, a] = K[q + a, q + b]
    # [𝒰⁻¹ | Ũ = 𝒰⁻¹H] over K's first q rows, from the last row up (row i of 𝒰 kept in ``row``)
    row = B[0]
    for i in range(q - 1, -1, -1):
        for j in range(i, q):
            row[j] = K[i, j]
        for j in range(i, q):
            K[i, j] = 0.0
        K[i, i] = 1.0
        for t in range(i + 1, q):
            w = row[t]
            if w != 0.0:
                for j in range(t, ld):
                    K[i, j] -= w * K[t, j]
        for j in range(i, ld):
            K[i, j] /= row[i]
    for i in range(q):
        for x in range(c):
            U[i, x] = K[i, q + x]
    # Ξ = M_z,xy − M_zzΛŨ (BLAS, column-major: Ξ' ← Ξ' − (ΛŨ)'M_zz)
    _lam(Ts, zs, ks, ms, U, B, 0, False)
    for i in range(q):
        for x in range(c):
            Xi[i, x] = Mzxy[i, x]
    dgemm(N, N, c, q, q, -1.0, B, 0, q, Mzz, 0, q, 1.0, Xi, 0, c)
    # D_t = Σ_l (A⁻¹)_ll = Σ_l V_lV_l', V_l = the level's rows of V = 𝒰⁻¹ (upper triangular)
    for i in range(zs.size * kmax):
        for j in range(kmax):
            D[i, j] = 0.0
    for t in range(zs.size):
        k = ks[t]
        for r0 in range(zs[t], zs[t] + ms[t] * k, k):
            for a in range(k):
                for b in range(a + 1):
                    s = 0.0
                    for j in range(r0 + a, q):
                        s += K[r0 + a, j] * K[r0 + b, j]
                    D[t * kmax + a, b] += s
        for a in range(k):
            for b in range(a + 1, k):
                D[t * kmax + a, b] = D[t * kmax + b, a]
    return 1, logdet


def _crossed_integrated(S, logdet, D, U, Xi, Ts, zs, ks, ms, th0, rows, cols, sigma, P0, P0m0, m0,
                        logdet_S0, n, c_const, g):
    """log p(y | θ, σ) with β ~ N(m₀, P₀⁻¹) integrated out, its gradient in θ (into ``g``) and σ
    from the pieces of :func:`_crossed_pieces`: the formulas of
    :meth:`.marginal.MarginalBase.logp_integrated`. Returns (ok, value, ∂/∂σ); ok is False when
    H is not positive definite (−inf). A separate kernel, not a caller of
    :func:`_crossed_pieces`: numba re-optimises a callee's code inside every caller."""
    q, c = U.shape
    p = c - 1
    kmax = Ts.shape[1]
    s2 = sigma * sigma
    ok, value, cv, Hi, Q, tr = _integrate_beta(S, logdet, sigma, P0, P0m0, m0, logdet_S0, n, c_const)
    if not ok:
        return False, -np.inf, 0.0
    # per row of Ũ, Ξ: [Ũ_X H⁻¹ | Ũc | Ξc]
    V = np.empty((q, c + 1))
    for i in range(q):
        su = 0.0
        sz = 0.0
        for b in range(c):
            su += U[i, b] * cv[b]
            sz += Xi[i, b] * cv[b]
            if b < p:
                s = 0.0
                for x in range(p):
                    s += U[i, x] * Hi[x, b]
                V[i, b] = s
        V[i, p] = su
        V[i, c] = sz
    Ti = np.empty((kmax, kmax))
    for t in range(zs.size):
        k = ks[t]
        for b in range(k):  # T⁻¹ (lower) by forward substitution
            for a in range(k):
                s = 0.0
                if a >= b:
                    s = 1.0 if a == b else 0.0
                    for u in range(b, a):
                        s -= Ts[t, a, u] * Ti[u, b]
                    s /= Ts[t, a, a]
                Ti[a, b] = s
        # θ = T[r, c]: −½ ∂ℓ = −[(m I − D_t) T⁻¹]_(c, r); the residual's and −½ ∂log|H|'s part
        # Σ_l (Ξc)_(l,r)(Ũc)_(l,c) + Ξ_X(l,r)·H⁻¹Ũ_X(l,c), over σ²
        for j in range(th0[t], th0[t] + k * (k + 1) // 2):
            r = rows[j]
            cc = cols[j]
            s = ms[t] * Ti[cc, r]
            for u in range(k):
                s -= D[t * kmax + cc, u] * Ti[u, r]
            cr = 0.0
            for i in range(zs[t], zs[t] + ms[t] * k, k):
                cr += V[i + r, c] * V[i + cc, p]
                for b in range(p):
                    cr += Xi[i + r, b] * V[i + cc, b]
            g[j] = cr / s2 - s
    return True, value, -n / sigma + (Q + tr) / (s2 * sigma)


if njit is not None:
    _lam = njit(cache=True, error_model="numpy")(_lam)
    _crossed_pieces = njit(cache=True, error_model="numpy")(_crossed_pieces)
    crossed_pieces = _crossed_pieces
    crossed_integrated = njit(cache=True, error_model="numpy")(_crossed_integrated)
else:  # pragma: no cover
    crossed_pieces = _crossed_pieces
    crossed_integrated = _crossed_integrated
