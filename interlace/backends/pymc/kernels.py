"""Compiled (numba) loops for the single-term marginal density, the sampler's inner loop.

The formulas are those of :mod:`.single` and :mod:`.marginal`, written as loops over the levels
with k × k and (p + 1)-square arithmetic done in place, so one evaluation of log p(y | θ, σ)
and its gradient is a single call with no per-level Python or numpy overhead. numba ships with
pytensor; compiled code is cached on disk (``cache=True``), so only the first run on a machine
pays for compilation. :func:`available` is False when numba cannot be imported, and the numpy
implementation is used instead.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["available", "integrated", "given_beta"]

try:  # numba is a dependency of pytensor, but keep the numpy path if it is missing
    from numba import njit
except ImportError:  # pragma: no cover - exercised only without numba
    njit = None


def available() -> bool:
    """Are the numba kernels usable (numba installed and compiled)?"""
    return njit is not None


def _levels(T, D, E, Mxy, U, Xi):
    """Pass over the levels: S, log|A|, Γ = Σ_j C_j⁻¹T'D_j; Ũ_j and Ξ_j into U and Xi.
    Returns ok=False when some C_j is not positive definite. The k × k Cholesky factor of C_j
    and its solves are written out in place (no helper calls, no numpy functions): numba
    compiles that several times faster."""
    m, k, c = E.shape
    S = np.empty((c, c))
    for a in range(c):
        for b in range(c):
            S[a, b] = Mxy[a, b]
    Gam = np.empty((k, k))
    TD = np.empty((k, k))
    L = np.empty((k, k))
    Li = np.empty((k, k))
    H = np.empty((k, c))
    for a in range(k):
        for b in range(k):
            Gam[a, b] = 0.0
    logdet = 0.0
    for j in range(m):
        for a in range(k):  # TD = T'D_j
            for b in range(k):
                s = 0.0
                for t in range(k):
                    s += T[t, a] * D[j, t, b]
                TD[a, b] = s
        for a in range(k):  # C = T'D_jT + I = LL' (L lower, row by row)
            for b in range(a + 1):
                s = 1.0 if a == b else 0.0
                for t in range(k):
                    s += TD[a, t] * T[t, b]
                for t in range(b):
                    s -= L[a, t] * L[b, t]
                if a == b:
                    if s <= 0.0:
                        return False, S, 0.0, Gam
                    L[a, a] = math.sqrt(s)
                    logdet += 2.0 * math.log(L[a, a])
                else:
                    L[a, b] = s / L[b, b]
        for a in range(k):  # H = L⁻¹T'E_j
            for b in range(c):
                s = 0.0
                for t in range(k):
                    s += T[t, a] * E[j, t, b]
                for t in range(a):
                    s -= L[a, t] * H[t, b]
                H[a, b] = s / L[a, a]
        for a in range(c):
            for b in range(c):
                s = 0.0
                for t in range(k):
                    s += H[t, a] * H[t, b]
                S[a, b] -= s
        for ii in range(k):  # Ũ_j = L⁻ᵀH, from the last row up
            a = k - 1 - ii
            for b in range(c):
                s = H[a, b]
                for t in range(a + 1, k):
                    s -= L[t, a] * U[j, t, b]
                U[j, a, b] = s / L[a, a]
        for a in range(k):  # Ξ = E − D T Ũ
            for b in range(c):
                s = 0.0
                for t in range(k):
                    tu = 0.0
                    for r in range(k):
                        tu += T[t, r] * U[j, r, b]
                    s += D[j, a, t] * tu
                Xi[j, a, b] = E[j, a, b] - s
        for b in range(k):  # Li = L⁻¹ (lower)
            for a in range(k):
                s = 0.0
                if a >= b:
                    s = 1.0 if a == b else 0.0
                    for t in range(b, a):
                        s -= L[a, t] * Li[t, b]
                    s /= L[a, a]
                Li[a, b] = s
        for a in range(k):  # Γ += C⁻¹TD, C⁻¹ = Li'Li
            for b in range(k):
                s = 0.0
                for t in range(k):
                    ci = 0.0
                    for u in range(max(a, t), k):
                        ci += Li[u, a] * Li[u, t]
                    s += ci * TD[t, b]
                Gam[a, b] += s
    return True, S, logdet, Gam


def _integrate_beta(S, logdet, sigma, P0, P0m0, m0, logdet_S0, n, c_const):
    """β ~ N(m₀, P₀⁻¹) integrated out of the Gaussian marginal, given S (c × c: the [X y] block
    left after eliminating the random effects) and ``logdet`` of that elimination; shared by the
    single-factor and the crossed kernels. Returns (ok, log p, E, Q = c'Sc, tr(H⁻¹S_XX)) with
    H = S_XX/σ² + P₀, β̃ = H⁻¹(S_Xy/σ² + P₀m₀), c = (−β̃, 1) = E[p, :c] and H⁻¹ = E[:p, c:]
    (E is returned whole: slicing views in numba costs compile time); ok is False when H is not
    positive definite. Gauss–Jordan on [H | h | I] → [I | β̃ | H⁻¹] (H symmetric positive
    definite: no pivoting; the pivots multiply to |H|), a few plain loops that compile fast."""
    c = S.shape[0]
    p = c - 1
    s2 = sigma * sigma
    E = np.empty((c, c + p))  # rows 0..p−1: [H | h | I]; row p: c = (−β̃, 1) in its first c columns
    for i in range(p):
        for j in range(p):
            E[i, j] = S[i, j] / s2 + P0[i, j]
            E[i, c + j] = 1.0 if i == j else 0.0
        E[i, p] = S[i, p] / s2 + P0m0[i]
    logdet_H = 0.0
    for a in range(p):
        piv = E[a, a]
        if not piv > 0.0:
            return False, -np.inf, E, 0.0, 0.0
        logdet_H += math.log(piv)
        for j in range(c + p):
            E[a, j] /= piv
        for i in range(p):
            w = E[i, a]
            if i != a and w != 0.0:
                for j in range(c + p):
                    E[i, j] -= w * E[a, j]
    for a in range(p):
        E[p, a] = -E[a, p]
    E[p, p] = 1.0
    Q = 0.0
    quad0 = 0.0
    tr = 0.0
    for a in range(c):
        for b in range(c):
            Q += E[p, a] * S[a, b] * E[p, b]
            if a < p and b < p:
                quad0 += (E[a, p] - m0[a]) * P0[a, b] * (E[b, p] - m0[b])
                tr += E[a, c + b] * S[a, b]
    value = c_const - n * math.log(sigma) - 0.5 * logdet - 0.5 * Q / s2
    value += -0.5 * (logdet_S0 + logdet_H) - 0.5 * quad0
    return True, value, E, Q, tr


def _integrated(T, D, E, Mxy, sigma, P0, P0m0, m0, logdet_S0, n, c_const, rows, cols):
    """log p(y | θ, σ) with β ~ N(m₀, P₀⁻¹) integrated out, ∂/∂θ (lme4 order) and ∂/∂σ."""
    m, k, c = E.shape
    p = c - 1
    nt = rows.shape[0]
    U = np.empty((m, k, c))
    Xi = np.empty((m, k, c))
    ok, S, logdet, Gam = _levels(T, D, E, Mxy, U, Xi)
    g = np.empty(nt)
    for i in range(nt):
        g[i] = 0.0
    if not ok:
        return -np.inf, g, 0.0
    s2 = sigma * sigma
    ok, value, G, Q, tr = _integrate_beta(S, logdet, sigma, P0, P0m0, m0, logdet_S0, n, c_const)
    if not ok:
        return -np.inf, g, 0.0
    # G[p, :c] = c = (−β̃, 1), G[:p, c:] = H⁻¹ (see _integrate_beta)
    cross = np.empty((k, k))
    uz = np.empty((2, k))  # Ũ_jc and Ξ_jc
    V = np.empty((k, p))
    for a in range(k):
        for b in range(k):
            cross[a, b] = 0.0
    for j in range(m):
        for a in range(k):
            su = 0.0
            sz = 0.0
            for b in range(c):
                su += U[j, a, b] * G[p, b]
                sz += Xi[j, a, b] * G[p, b]
            uz[0, a] = su
            uz[1, a] = sz
            for b in range(p):
                s = 0.0
                for t in range(p):
                    s += U[j, a, t] * G[t, c + b]
                V[a, b] = s
        for r in range(k):
            for cc in range(k):
                s = uz[1, r] * uz[0, cc]
                for b in range(p):
                    s += Xi[j, r, b] * V[cc, b]
                cross[r, cc] += s
    for i in range(nt):
        r = rows[i]
        cc = cols[i]
        g[i] = -Gam[cc, r] + cross[r, cc] / s2
    g_sigma = -n / sigma + (Q + tr) / (s2 * sigma)
    return value, g, g_sigma


def _given_beta(T, D, E, Mxy, sigma, beta, n, c_const, rows, cols):
    """log p(y | θ, σ, β) and its gradient in (θ, σ, β)."""
    m, k, c = E.shape
    p = c - 1
    nt = rows.shape[0]
    U = np.empty((m, k, c))
    Xi = np.empty((m, k, c))
    ok, S, logdet, Gam = _levels(T, D, E, Mxy, U, Xi)
    g = np.zeros(nt)
    gb = np.zeros(p)
    if not ok:
        return -np.inf, g, 0.0, gb
    s2 = sigma * sigma
    cv = np.empty(c)
    for a in range(p):
        cv[a] = -beta[a]
    cv[p] = 1.0
    Sc = np.zeros(c)
    for a in range(c):
        for b in range(c):
            Sc[a] += S[a, b] * cv[b]
    Q = 0.0
    for a in range(c):
        Q += cv[a] * Sc[a]
    value = c_const - n * np.log(sigma) - 0.5 * logdet - 0.5 * Q / s2
    cross = np.zeros((k, k))
    u = np.empty(k)
    z = np.empty(k)
    for j in range(m):
        for a in range(k):
            su = 0.0
            sz = 0.0
            for b in range(c):
                su += U[j, a, b] * cv[b]
                sz += Xi[j, a, b] * cv[b]
            u[a] = su
            z[a] = sz
        for r in range(k):
            for cc in range(k):
                cross[r, cc] += z[r] * u[cc]
    for i in range(nt):
        g[i] = -Gam[cols[i], rows[i]] + cross[rows[i], cols[i]] / s2
    for a in range(p):
        gb[a] = Sc[a] / s2
    return value, g, -n / sigma + Q / (s2 * sigma), gb


if njit is not None:
    _levels = njit(cache=True, error_model="numpy")(_levels)
    _integrate_beta = njit(cache=True, error_model="numpy")(_integrate_beta)
    integrated = njit(cache=True, error_model="numpy")(_integrated)
    given_beta = njit(cache=True)(_given_beta)
else:  # pragma: no cover
    integrated = _integrated
    given_beta = _given_beta
