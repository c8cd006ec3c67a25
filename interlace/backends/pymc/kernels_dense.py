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

import numpy as np

__all__ = ["available", "crossed_pieces", "crossed_integrated"]

try:  # numba ships with pytensor
    from numba import njit
except ImportError:  # pragma: no cover
    njit = None


def available() -> bool:
    return njit is not None


def _lam_rows(Ts, zs, ks, ms, V, out):
    """out = Λ'V (V with q rows): rows (l, ·) of each term ← T'·rows (l, ·)."""
    ncol = V.shape[1]
    for t in range(zs.size):
        k, z0 = ks[t], zs[t]
        for lv in range(ms[t]):
            r0 = z0 + lv * k
            for a in range(k):
                for j in range(ncol):
                    s = 0.0
                    for b in range(a, k):  # T lower triangular: T'[a, b] = T[b, a], b ≥ a
                        s += Ts[t, b, a] * V[r0 + b, j]
                    out[r0 + a, j] = s


def _lam_apply(Ts, zs, ks, ms, V, out):
    """out = ΛV: rows (l, ·) ← T·rows (l, ·)."""
    ncol = V.shape[1]
    for t in range(zs.size):
        k, z0 = ks[t], zs[t]
        for lv in range(ms[t]):
            r0 = z0 + lv * k
            for a in range(k):
                for j in range(ncol):
                    s = 0.0
                    for b in range(a + 1):
                        s += Ts[t, a, b] * V[r0 + b, j]
                    out[r0 + a, j] = s


def _crossed_pieces(Mzz, Mzxy, Mxy, Ts, zs, ks, ms):
    q = Mzz.shape[0]
    c = Mzxy.shape[1]
    k1, m1 = ks[0], ms[0]
    q1 = k1 * m1
    q2 = q - q1
    nt = zs.size
    kmax = Ts.shape[1]
    # A = Λ'MΛ + I: B = Λ'M, then A = (Λ'B')' (M symmetric)
    B = np.empty((q, q))
    _lam_rows(Ts, zs, ks, ms, Mzz, B)
    Bt = np.ascontiguousarray(B.T)
    A = np.empty((q, q))
    _lam_rows(Ts, zs, ks, ms, Bt, A)
    for i in range(q):
        A[i, i] += 1.0
    logdet = 0.0
    # first term: C_j = L_j L_j'
    L1 = np.zeros((m1, k1, k1))
    for j in range(m1):
        r0 = j * k1
        for a in range(k1):
            for b in range(a + 1):
                s = A[r0 + a, r0 + b]
                for t in range(b):
                    s -= L1[j, a, t] * L1[j, b, t]
                if a == b:
                    if s <= 0.0:
                        return False, Mxy, 0.0, np.zeros((nt, kmax, kmax)), Mzxy, Mzxy
                    L1[j, a, a] = np.sqrt(s)
                    logdet += 2.0 * np.log(L1[j, a, a])
                else:
                    L1[j, a, b] = s / L1[j, b, b]
    # L21 = A21 L11⁻ᵀ (row by row: forward substitution with L_j)
    L21 = np.empty((q2, q1))
    for i in range(q2):
        for j in range(m1):
            r0 = j * k1
            for a in range(k1):
                s = A[q1 + i, r0 + a]
                for t in range(a):
                    s -= L21[i, r0 + t] * L1[j, a, t]
                L21[i, r0 + a] = s / L1[j, a, a]
    Om = A[q1:, q1:] - L21 @ L21.T
    for i in range(q2):  # Cholesky of Ω in place (lower)
        for j in range(i + 1):
            s = Om[i, j]
            for t in range(j):
                s -= Om[i, t] * Om[j, t]
            if i == j:
                if s <= 0.0:
                    return False, Mxy, 0.0, np.zeros((nt, kmax, kmax)), Mzxy, Mzxy
                Om[i, i] = np.sqrt(s)
                logdet += 2.0 * np.log(Om[i, i])
            else:
                Om[i, j] = s / Om[j, j]
    LO = Om
    # R = Λ'M_z,xy; H1 = L11⁻¹R1; H2 = LΩ⁻¹(R2 − L21 H1)
    R = np.empty((q, c))
    _lam_rows(Ts, zs, ks, ms, Mzxy, R)
    H = np.empty((q, c))
    for j in range(m1):
        r0 = j * k1
        for a in range(k1):
            for x in range(c):
                s = R[r0 + a, x]
                for t in range(a):
                    s -= L1[j, a, t] * H[r0 + t, x]
                H[r0 + a, x] = s / L1[j, a, a]
    H2 = R[q1:] - L21 @ H[:q1]
    for i in range(q2):
        for x in range(c):
            s = H2[i, x]
            for t in range(i):
                s -= LO[i, t] * H2[t, x]
            H2[i, x] = s / LO[i, i]
    S = Mxy - H[:q1].T @ H[:q1] - H2.T @ H2
    # Ũ2 = LΩ⁻ᵀH2; Ũ1 = L11⁻ᵀ(H1 − L21'Ũ2)
    U = np.empty((q, c))
    for i in range(q2 - 1, -1, -1):
        for x in range(c):
            s = H2[i, x]
            for t in range(i + 1, q2):
                s -= LO[t, i] * U[q1 + t, x]
            U[q1 + i, x] = s / LO[i, i]
    V1 = H[:q1] - L21.T @ U[q1:]
    for j in range(m1):
        r0 = j * k1
        for a in range(k1 - 1, -1, -1):
            for x in range(c):
                s = V1[r0 + a, x]
                for t in range(a + 1, k1):
                    s -= L1[j, t, a] * U[r0 + t, x]
                U[r0 + a, x] = s / L1[j, a, a]
    LU = np.empty((q, c))
    _lam_apply(Ts, zs, ks, ms, U, LU)
    Xi = Mzxy - Mzz @ LU
    # W = LΩ⁻¹ (lower), Y = W L21
    W = np.zeros((q2, q2))
    for col in range(q2):
        W[col, col] = 1.0 / LO[col, col]
        for i in range(col + 1, q2):
            s = 0.0
            for t in range(col, i):
                s -= LO[i, t] * W[t, col]
            W[i, col] = s / LO[i, i]
    Y = W @ L21
    D = np.zeros((nt, kmax, kmax))
    # first term: Σ_j L_j⁻ᵀ(I + Y_j'Y_j)L_j⁻¹
    G = np.empty((k1, k1))
    Li = np.empty((k1, k1))
    for j in range(m1):
        r0 = j * k1
        for a in range(k1):
            for b in range(k1):
                s = 1.0 if a == b else 0.0
                for i in range(q2):
                    s += Y[i, r0 + a] * Y[i, r0 + b]
                G[a, b] = s
        for b in range(k1):  # Li = L_j⁻¹ (lower)
            for a in range(k1):
                if a < b:
                    Li[a, b] = 0.0
                    continue
                s = 1.0 if a == b else 0.0
                for t in range(b, a):
                    s -= L1[j, a, t] * Li[t, b]
                Li[a, b] = s / L1[j, a, a]
        for a in range(k1):  # D += Li' G Li
            for b in range(k1):
                s = 0.0
                for u in range(k1):
                    for v in range(k1):
                        s += Li[u, a] * G[u, v] * Li[v, b]
                D[0, a, b] += s
    # the other terms: Σ_l W_l'W_l (W's rows from the block's first row on: W lower triangular)
    for t in range(1, nt):
        k, z0 = ks[t], zs[t] - q1
        for lv in range(ms[t]):
            r0 = z0 + lv * k
            for a in range(k):
                for b in range(k):
                    s = 0.0
                    for i in range(r0, q2):
                        s += W[i, r0 + a] * W[i, r0 + b]
                    D[t, a, b] += s
    return True, S, logdet, D, U, Xi


def _crossed_integrated(Mzz, Mzxy, Mxy, Ts, zs, ks, ms, th0, rows, cols, min_diag, sigma, P0, P0m0, m0,
                        logdet_S0, n, c_const):
    """log p(y | θ, σ) with β ~ N(m₀, P₀⁻¹) integrated out and its gradient in (θ, σ): the formulas
    of :meth:`.marginal.MarginalBase.logp_integrated` on these pieces. status 1 = done, 0 = A or
    H not positive definite (−inf), 2 = a diagonal of T below ``min_diag`` (use the numpy path)."""
    nt = zs.size
    nth = 0
    for t in range(nt):
        nth += ks[t] * (ks[t] + 1) // 2
    g = np.zeros(nth)
    for t in range(nt):
        big = 1.0
        for a in range(ks[t]):
            for b in range(a + 1):
                big = max(big, abs(Ts[t, a, b]))
        for a in range(ks[t]):
            if abs(Ts[t, a, a]) <= min_diag * big:
                return 2, 0.0, g, 0.0
    ok, S, logdet, D, U, Xi = _crossed_pieces(Mzz, Mzxy, Mxy, Ts, zs, ks, ms)
    if not ok:
        return 0, -np.inf, g, 0.0
    c = S.shape[0]
    p = c - 1
    s2 = sigma * sigma
    ok, value, cv, Hi, Q, tr = _integrate_beta(S, logdet, sigma, P0, P0m0, m0, logdet_S0, n, c_const)
    if not ok:
        return 0, -np.inf, g, 0.0
    kmax = Ts.shape[1]
    for t in range(nt):
        k, z0 = ks[t], zs[t]
        cross = np.zeros((kmax, kmax))
        u = np.empty(k)
        z = np.empty(k)
        V = np.empty((k, p))
        for lv in range(ms[t]):
            r0 = z0 + lv * k
            for a in range(k):
                su = 0.0
                sz = 0.0
                for b in range(c):
                    su += U[r0 + a, b] * cv[b]
                    sz += Xi[r0 + a, b] * cv[b]
                u[a] = su
                z[a] = sz
                for b in range(p):
                    s = 0.0
                    for x in range(p):
                        s += U[r0 + a, x] * Hi[x, b]
                    V[a, b] = s
            for r in range(k):
                for cc in range(k):
                    s = z[r] * u[cc]
                    for b in range(p):
                        s += Xi[r0 + r, b] * V[cc, b]
                    cross[r, cc] += s
        # ½ ∂ℓ/∂T[r, c] = [(m I − D_t) T⁻¹]_(c, r)
        Tinv = np.linalg.inv(np.ascontiguousarray(Ts[t, :k, :k]))
        X = -D[t, :k, :k]
        for a in range(k):
            X[a, a] += ms[t]
        Gh = X @ Tinv
        for i in range(k * (k + 1) // 2):
            r = rows[th0[t] + i]
            cc = cols[th0[t] + i]
            g[th0[t] + i] = -Gh[cc, r] + cross[r, cc] / s2
    g_sigma = -n / sigma + (Q + tr) / (s2 * sigma)
    return 1, value, g, g_sigma


if njit is not None:
    from .kernels import _integrate_beta

    _lam_rows = njit(cache=True)(_lam_rows)
    _lam_apply = njit(cache=True)(_lam_apply)
    _crossed_pieces = njit(cache=True)(_crossed_pieces)
    crossed_pieces = _crossed_pieces
    crossed_integrated = njit(cache=True)(_crossed_integrated)
else:  # pragma: no cover
    crossed_pieces = _crossed_pieces
    crossed_integrated = _crossed_integrated
