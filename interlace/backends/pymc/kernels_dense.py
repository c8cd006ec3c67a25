"""Compiled (numba) evaluation of the dense-factor pieces for several terms (crossed designs).

With A = Λ'M_zzΛ + I and R = Λ'M_z,xy, the symmetric K = [[A, R], [R', M_xy]] is eliminated over
its first q rows, K = 𝒰'𝒰 with 𝒰 upper triangular there (𝒰' is the lower Cholesky factor of
A, with H = 𝒰⁻ᵀR in its rows right of A): ℓ = log|A| = 2 Σ log 𝒰_ii, and the trailing block
left is S = M_xy − H'H. The first term's block of A is block diagonal (every observation has
one level of it), so its rows touch only their own level's block, and their update of the rest
is one rank-q₁ product. A back-substitution from the last row up gives V = 𝒰⁻¹ and
Ũ = 𝒰⁻¹H = A⁻¹R together; Ξ = M_z,xy − M_zzΛŨ — the quantities of
:class:`.dense.DenseMarginalLMM`.

The gradient of ℓ needs only the diagonal k × k blocks of A⁻¹ = VV': for an invertible Λ (T's
diagonal positive), Λ'M_zz = (A − I)Λ⁻¹, so for θᵢ = T[r, c] of a term with m levels

    ∂ℓ/∂θᵢ = 2 tr(A⁻¹Λ'M_zzΛᵢ) = 2 [(m I − Σ_l (A⁻¹)_ll) T⁻¹]_(c, r),   (A⁻¹)_ll = V_lV_l',

V_l the level's k rows of V. :func:`crossed_pieces` returns D_t = Σ_l (A⁻¹)_ll per term;
:func:`crossed_gradient` forms the gradient of the β-integrated density from them (the caller
falls back to the numpy evaluator when a diagonal of T is too small for T⁻¹).

Written for compile time as much as for run time (numba compiles on a machine's first fit; the
sampler's cold start includes it): loops over a few 2-d arrays and no numpy functions (numba
compiles every numpy overload it meets, 0.1–1 s each), the two O(q₁q₂²) products by BLAS called
by symbol (:mod:`.blas`), and three kernels called in turn from Python rather than one
calling the others (numba re-optimises a callee's code inside each caller).
"""

from __future__ import annotations

import math

import numpy as np

from .kernels import _integrate_beta as integrate_beta

__all__ = ["available", "crossed_pieces", "crossed_gradient", "integrate_beta"]

try:  # numba ships with pytensor; the BLAS binding needs scipy's cython_blas capsules
    from numba import njit

    from .blas import L, N, dgemm, dsyrk
except (ImportError, AttributeError, KeyError):  # pragma: no cover
    njit = None


def available() -> bool:
    return njit is not None


def _lam(Ts, zs, ks, ms, V, out, transpose):
    """out[:, :ncol] = Λ'V (``transpose``) or ΛV for V with q rows and ncol columns: rows (l, ·)
    of each term's block ← T'·rows (l, ·) or T·rows (l, ·), as row updates (contiguous)."""
    ncol = V.shape[1]
    for t in range(zs.size):
        k = ks[t]
        for lv in range(ms[t]):
            r0 = zs[t] + lv * k
            for a in range(k):
                for j in range(ncol):
                    out[r0 + a, j] = 0.0
                lo, hi = (a, k) if transpose else (0, a + 1)  # T lower triangular
                for b in range(lo, hi):
                    w = Ts[t, b, a] if transpose else Ts[t, a, b]
                    for j in range(ncol):
                        out[r0 + a, j] += w * V[r0 + b, j]


def _crossed_pieces(Mzz, Mzxy, Mxy, Ts, zs, ks, ms, min_diag, S, D, U, Xi):
    """Fill S (c × c), D ((D_t)_ab at row t·kmax + a, column b, for a, b < k_t), U = Ũ and
    Xi = Ξ (q × c) at the stacked factors Ts; returns (status, log|A|): 1 = done, 0 = A not
    positive definite, 2 = a diagonal of some T at or below ``min_diag`` times its largest entry
    (T⁻¹ unusable: the caller uses the numpy path)."""
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
    # K = [[Λ'M_zzΛ + I, Λ'M_z,xy], [·, M_xy]] (upper triangle): B = Λ'M_zz, and K's first q rows
    # = Λ'[B' | M_z,xy] (M_zz symmetric)
    B = np.empty((q, q))
    tr = ld > 0  # True, as a run-time value: a literal True/False would compile _lam twice
    _lam(Ts, zs, ks, ms, Mzz, B, tr)
    Bt = np.empty((q, ld))
    for i in range(q):
        for j in range(q):
            Bt[i, j] = B[j, i]
        for j in range(c):
            Bt[i, q + j] = Mzxy[i, j]
    K = np.empty((ld, ld))
    _lam(Ts, zs, ks, ms, Bt, K, tr)
    for i in range(ld):
        if i < q:
            K[i, i] += 1.0
        else:
            for j in range(c):
                K[i, q + j] = Mxy[i - q, j]
    # K = 𝒰'𝒰 over its first q rows, row by row (right-looking, each row update contiguous). The
    # first term's rows update only their own block's rows (A₁₁ is block diagonal); their update
    # of the rest, K₂₂ ← K₂₂ − P'P with P = their rows right of A₁₁ ([L₂₁' | H₁]), is one BLAS call
    k1 = ks[0]
    q1 = k1 * ms[0]
    q2 = q - q1
    logdet = 0.0
    for a in range(q):
        if a == q1:
            dsyrk(L, N, ld - q1, q1, -1.0, K, q1, ld, 1.0, K, q1 * ld + q1, ld)
        s = K[a, a]
        if not s > 0.0:
            return 0, 0.0
        d = math.sqrt(s)
        logdet += 2.0 * math.log(d)
        for j in range(a, ld):
            K[a, j] /= d
        for i in range(a + 1, (a // k1 + 1) * k1 if a < q1 else ld):
            w = K[a, i]
            if w != 0.0:
                for j in range(i, ld):
                    K[i, j] -= w * K[a, j]
    for a in range(c):
        for b in range(a, c):
            S[a, b] = K[q + a, q + b]
            S[b, a] = K[q + a, q + b]
    # [V = 𝒰⁻¹ | Ũ = 𝒰⁻¹H] over K's first q rows, from the last row up (row i of 𝒰 kept in
    # B's last row). Before the first term's rows: their part right of A₁₁, [0 | H₁] − 𝒰₁₂[V₂₂ | Ũ₂],
    # by BLAS (𝒰₁₂ copied to B first; V₂₂'s lower triangle zeroed for it)
    for ii in range(q):  # (no stepped ranges: each costs numba ~0.1 s to compile)
        i = q - 1 - ii
        if i == q1 - 1:
            for r in range(q1):
                for j in range(q2):
                    B[r, j] = K[r, q1 + j]
                    K[r, q1 + j] = 0.0
            dgemm(N, N, ld - q1, q1, q2, -1.0, K, q1 * ld + q1, ld, B, 0, q, 1.0, K, q1, ld)
        end = (i // k1 + 1) * k1 if i < q1 else q
        for j in range(i, end):
            B[q - 1, j] = K[i, j]
            K[i, j] = 0.0
        for j in range(q1, i):
            K[i, j] = 0.0
        K[i, i] = 1.0
        for t in range(i + 1, end):
            w = B[q - 1, t]
            if w != 0.0:
                for j in range(t, ld):
                    K[i, j] -= w * K[t, j]
        for j in range(i, ld):
            K[i, j] /= B[q - 1, i]
    for i in range(q):
        for x in range(c):
            U[i, x] = K[i, q + x]
            Xi[i, x] = Mzxy[i, x]
    # Ξ = M_z,xy − M_zzΛŨ (BLAS, column-major: Ξ' ← Ξ' − (ΛŨ)'M_zz)
    _lam(Ts, zs, ks, ms, U, B, not tr)
    dgemm(N, N, c, q, q, -1.0, B, 0, q, Mzz, 0, q, 1.0, Xi, 0, c)
    # D_t = Σ_l (A⁻¹)_ll = Σ_l V_lV_l', V_l = the level's rows of V = 𝒰⁻¹ (upper triangular)
    for t in range(zs.size):
        k = ks[t]
        for a in range(k):
            for b in range(a + 1):
                s = 0.0
                for lv in range(ms[t]):
                    r0 = zs[t] + lv * k
                    for j in range(r0 + a, q):
                        s += K[r0 + a, j] * K[r0 + b, j]
                D[t * kmax + a, b] = s
                D[t * kmax + b, a] = s
    return 1, logdet


def _crossed_gradient(U, Xi, D, E, Ts, zs, ks, ms, th0, rows, cols, sigma, g):
    """∂/∂θ of log p(y | θ, σ) with β integrated out (the formulas of
    :meth:`.marginal.MarginalBase.logp_integrated`) into ``g``, from the pieces of
    :func:`_crossed_pieces` and E (c = (−β̃, 1) and H⁻¹) of :func:`.kernels._integrate_beta`. Three
    kernels called in turn rather than one calling the others: numba re-optimises a callee's
    code inside every caller, which would double the compile time."""
    q, c = U.shape
    p = c - 1
    kmax = Ts.shape[1]
    s2 = sigma * sigma
    # per row of Ũ, Ξ: [Ũ_X H⁻¹ | Ũc | Ξc]
    V = np.empty((q, c + 1))
    for i in range(q):
        su = 0.0
        sz = 0.0
        for b in range(c):
            su += U[i, b] * E[p, b]
            sz += Xi[i, b] * E[p, b]
            if b < p:
                s = 0.0
                for x in range(p):
                    s += U[i, x] * E[x, c + b]
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
            for lv in range(ms[t]):
                i = zs[t] + lv * k
                cr += V[i + r, c] * V[i + cc, p]
                for b in range(p):
                    cr += Xi[i + r, b] * V[i + cc, b]
            g[j] = cr / s2 - s


if njit is not None:
    _lam = njit(cache=True, error_model="numpy")(_lam)
    _crossed_pieces = njit(cache=True, error_model="numpy")(_crossed_pieces)
    crossed_pieces = _crossed_pieces
    crossed_gradient = njit(cache=True, error_model="numpy")(_crossed_gradient)
else:  # pragma: no cover
    crossed_pieces = _crossed_pieces
    crossed_gradient = _crossed_gradient
