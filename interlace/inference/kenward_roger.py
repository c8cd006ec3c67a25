"""Kenward-Roger adjusted covariance of β̂ and denominator df (Kenward & Roger 1997).

The marginal covariance is written linearly in the variance parameters τ, as pbkrtest does:

    Σ = Σ_r τ_r G_r,   G_r = Z_t (I_m ⊗ E_ij) Z_t'  for each variance/covariance of a term,
                       G_0 = W⁻¹                      for the residual variance σ².

With A = Σ⁻¹, Φ = (X'AX)⁻¹, P_r = −X'AG_rAX, Q_rs = X'AG_rAG_sAX and the expected
information I_rs = ½ tr(AG_rAG_s) − tr(ΦQ_rs) + ½ tr(ΦP_rΦP_s) (here without the ½, whose
inverse is scaled by 2: W = 2 (2I)⁻¹ as pbkrtest writes it), the adjusted covariance is

    Φ_A = Φ + 2 Φ [Σ_rs W_rs (Q_rs − P_r Φ P_s)] Φ,

and for a contrast matrix L of rank q the df follow from A₁, A₂ (eq. 4–5 of K&R 1997).

Σ = σ²V with V = W⁻¹ + ZΛΛ'Z' is never formed: V⁻¹ = W − WZBZ'W with B = Λ(Λ'Z'WZΛ + I)⁻¹Λ',
so every quantity lives in the (p + q)-dimensional space of the cross-products.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla

from ..data.design import DesignMatrices, tril_colwise

__all__ = ["KRAdjustment", "kenward_roger", "kr_df"]


@dataclass
class KRAdjustment:
    """Φ (unadjusted), Φ_A (adjusted), and the P_r, W needed for the df of any contrast."""

    phi: np.ndarray
    phi_adj: np.ndarray
    P: list[np.ndarray]
    W: np.ndarray


def _param_index_pairs(design: DesignMatrices) -> list[list[tuple[np.ndarray, np.ndarray]]]:
    """For each (term, i ≥ j) parameter, E = Σ P_a P_b' as a list of (a, b) index arrays into Z."""
    params = []
    for t in design.terms:
        rows, cols = tril_colwise(t.k)
        base = t.z_start + np.arange(t.m) * t.k
        for i, j in zip(rows, cols, strict=True):
            a, b = base + i, base + j
            params.append([(a, a)] if i == j else [(a, b), (b, a)])
    return params


def kenward_roger(
    design: DesignMatrices, theta: np.ndarray, scale: float, phi: np.ndarray | None = None,
    use_weights: bool = False,
) -> KRAdjustment:
    """The Kenward-Roger adjustment at a REML fit (θ̂, σ̂²).

    ``phi`` is Var(β̂) of the fit (default: recomputed from Σ). With prior weights pbkrtest
    builds Σ with an identity residual term (ignoring the weights) while taking Φ from lme4's
    weighted fit; ``use_weights=False`` (the default) reproduces that, for parity with R.
    ``use_weights=True`` uses G₀ = W⁻¹, the covariance the weighted model actually implies.
    """
    X, Z = design.X, design.Z
    n = design.n
    w = np.ones(n) if design.weights is None or not use_weights else design.weights
    WZ = Z.multiply(w[:, None]).tocsc()
    WX = X * w[:, None]
    D = (Z.T @ WZ).toarray()  # Z'WZ
    Lam = design.lambda_dense(theta)
    C = Lam.T @ D @ Lam + np.eye(design.q)
    cf = sla.cho_factor(C, lower=True, check_finite=False)
    B = Lam @ sla.cho_solve(cf, Lam.T, check_finite=False)  # Λ C⁻¹ Λ'

    def apply_N(M: np.ndarray) -> np.ndarray:  # N = V⁻¹W⁻¹ = I − WZBZ'
        return M - WZ @ (B @ (Z.T @ M))

    R = WX - WZ @ (B @ (Z.T @ WX))  # V⁻¹X
    R1 = apply_N(R)  # V⁻¹W⁻¹V⁻¹X
    R2 = apply_N(R1)
    DB = D @ B
    S_XX = X.T @ R
    S_ZX = np.asarray(Z.T @ R)  # Z'V⁻¹X
    S_ZZ = D - DB @ D  # Z'V⁻¹Z
    T_XX = X.T @ R1
    T_ZX = np.asarray(Z.T @ R1)  # Z'V⁻¹W⁻¹V⁻¹X
    T_ZZ = D - 2 * DB @ D + DB @ DB @ D
    U_XX = X.T @ R2  # X'(V⁻¹W⁻¹)²V⁻¹X
    trBD = float(np.sum(B * D))
    tr_N2 = n - 2 * trBD + float(np.sum(DB * DB.T))

    s2 = scale
    params = _param_index_pairs(design)
    nt = len(params) + 1  # + residual
    p = design.p
    # P_r and Q_rs on the σ² scale: A = V⁻¹/σ²
    P = [np.zeros((p, p)) for _ in range(nt)]
    Q = [[None] * nt for _ in range(nt)]
    K = np.zeros((nt, nt))

    def quad(Y1, pairs, Y2):
        return sum(Y1[a].T @ Y2[b] for a, b in pairs)

    def tr_pairs(M1, pr, M2, ps):
        # tr(E_r M1 E_s M2) = Σ tr(P_a P_b' M1 P_c P_d' M2) = Σ sum(M2[d, a] * M1[b, c].T)
        return sum(float(np.sum(M2[np.ix_(d, a)] * M1[np.ix_(b, c)].T)) for a, b in pr for c, d in ps)

    for r, pr in enumerate(params, start=1):
        P[r] = -quad(S_ZX, pr, S_ZX) / s2**2
        for s, ps in enumerate(params, start=1):
            if s < r:
                continue
            Q[r][s] = sum(S_ZX[a].T @ S_ZZ[np.ix_(b, c)] @ S_ZX[d] for a, b in pr for c, d in ps) / s2**3
            K[r, s] = K[s, r] = tr_pairs(S_ZZ, pr, S_ZZ, ps) / s2**2
        Q[0][r] = quad(T_ZX, pr, S_ZX) / s2**3  # X'A W⁻¹ A G_r A X
        K[0, r] = K[r, 0] = float(sum(np.trace(T_ZZ[np.ix_(a, b)]) for a, b in pr)) / s2**2
    P[0] = -T_XX / s2**2
    Q[0][0] = U_XX / s2**3
    K[0, 0] = tr_N2 / s2**2
    for r in range(nt):
        for s in range(r):
            Q[r][s] = Q[s][r].T

    if phi is None:
        phi = np.linalg.inv(S_XX / s2)
        phi = (phi + phi.T) / 2
    info = np.empty((nt, nt))
    for r in range(nt):
        for s in range(r, nt):
            info[r, s] = info[s, r] = (
                K[r, s] - 2 * np.trace(phi @ Q[r][s]) + np.trace(phi @ P[r] @ phi @ P[s])
            )
    evals = np.linalg.eigvalsh(info)
    Wm = 2 * (np.linalg.inv(info) if np.min(np.abs(evals)) > 1e-10 else np.linalg.pinv(info))
    U = np.zeros((p, p))
    for r in range(nt):
        for s in range(nt):
            U += Wm[r, s] * (Q[r][s] - P[r] @ phi @ P[s])
    U = (U + U.T) / 2
    phi_adj = phi + 2 * phi @ U @ phi
    return KRAdjustment(phi=phi, phi_adj=phi_adj, P=P, W=Wm)


def kr_df(adj: KRAdjustment, L: np.ndarray) -> float:
    """Kenward-Roger denominator df for the hypothesis Lβ = 0 (rows of L: the contrasts)."""
    return kr_ddf_scale(adj, np.atleast_2d(L))[0]


def kr_ddf_scale(adj: KRAdjustment, L: np.ndarray) -> tuple[float, float]:
    """Kenward & Roger's denominator df ν and F scaling λ for Lβ = 0 (pbkrtest's ``.KR_adjust``):
    from A₁ = Σ W_ij tr(ΘΦP_iΦ) tr(ΘΦP_jΦ) and A₂ = Σ W_ij tr(ΘΦP_iΦ ΘΦP_jΦ), Θ = L'(LΦL')⁻¹L."""
    phi = adj.phi
    q = np.linalg.matrix_rank(L)
    theta_m = L.T @ np.linalg.solve(L @ phi @ L.T, L)
    u = [theta_m @ phi @ Pr @ phi for Pr in adj.P]
    tr_u = np.array([np.trace(x) for x in u])
    A1 = float(tr_u @ adj.W @ tr_u)
    A2 = float(sum(adj.W[i, j] * np.sum(u[i] * u[j].T) for i in range(len(u)) for j in range(len(u))))
    B = (A1 + 6 * A2) / (2 * q)
    g = ((q + 1) * A1 - (q + 4) * A2) / ((q + 2) * A2)
    den = 3 * q + 2 * (1 - g)
    c1, c2, c3 = g / den, (q - g) / den, (q + 2 - g) / den
    v0 = 1 + c1 * B
    v0 = 0.0 if abs(v0) < 1e-10 else v0
    v1, v2 = 1 - c2 * B, 1 - c3 * B
    ratio = (1 - A2 / q) / v1 if v1 != 0 else 0.0
    rho = ratio**2 * v0 / (q * v2)
    ddf = float(4 + (q + 2) / (q * rho - 1))
    scale = 1.0 if abs(ddf - 2) < 1e-2 else ddf * (1 - A2 / q) / (ddf - 2)
    return ddf, float(scale)
