"""Analytic first derivatives of the profiled deviance in θ, from the blocked factor.

Write the profiled deviance as d(θ) = ℓ(θ) + c·log r²(θ) + const, with ℓ = log|L_Z|² (ML,
c = n) or log|L_Z|² + log|R_X|² (REML, c = n − p). Let Λᵢ = ∂Λ/∂θᵢ: for θᵢ the (r, c) entry of
a term's T, Λᵢ = I_m ⊗ E_rc on that term's block.

**r².** By the envelope theorem (β̂, û minimise the penalized RSS),
∂r²/∂θᵢ = −2 û'Λᵢ'ζ with ζ = Z'W(y − Xβ̂ − ZΛû). More generally, with Ũ = A⁻¹Λ'Z'W[X y]
(A = Λ'Z'WZΛ + I) and Ξ = Z'W[X y] − Z'WZΛŨ, the matrix [X y]'V⁻¹[X y] (V = ZΛΛ'Z' + W⁻¹,
relative) has derivative −(Aᵢ + Aᵢ') with Aᵢ = Σ_levels Ξ_(l,r)'Ũ_(l,c): û = Ũc and ζ = Ξc
for c = (−β̂, 1) give r², and the X block gives ∂(R_X'R_X) for the Jacobian of Var(β̂).

**ℓ, other terms.** With the first term eliminated (see :mod:`.pls`) ℓ = Σ_j log det C_j +
log det Ω̃_aa (a = the other terms' rows, plus X's under REML), and for θᵢ of another term
∂ℓ/∂θᵢ = 2 tr(Ω̃_aa⁻¹ Λ̃'M̃_{a,r} Λᵢ) — only the diagonal k × k blocks of Ω̃_aa⁻¹Λ̃'M̃_{a,r} are
needed.

**ℓ, first term.** With Σ = T₁T₁', F_j = (I + ΣD_j)⁻¹ and W_j = T₁C_j⁻¹T₁',
∂ log det C_j = tr(∂Σ D_jF_j) and ∂W_j = F_j ∂Σ F_j', while ∂Ω̃_aa = −Λ̃'B_a ∂W B_a'Λ̃. So
∂ℓ/∂θᵢ = tr(∂Σ Γ), Γ = Σ_j (D_jF_j − F_j'Q_jF_j), with Q_j the diagonal blocks of B_a'ΠB_a,
Π = Λ̃Ω̃_aa⁻¹Λ̃' (the adjoint of the weighted Gram product); for θᵢ = T₁[r, c] this is
(T₁'(Γ + Γ'))[c, r].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla

from ..data.design import tril_colwise
from .pls import PLSFactor, PLSProblem

__all__ = ["FactorDerivatives", "factor_derivatives", "modes", "logdet_gradient", "theta_cross"]


def modes(problem: PLSProblem, f: PLSFactor) -> tuple[np.ndarray, np.ndarray]:
    """Ũ = A⁻¹Λ'Z'W[X y] (spherical modes) and Ξ = Z'W([X y] − ZΛŨ), each q × (p + 1)."""
    q1, q2, k = problem.q1, problem.q2, problem.k1
    M, Mt = problem.M, f.Mt
    c = problem.p + 1
    theta = f.theta
    rest = problem.rest
    if q2:
        # leading-block solve with the whole factor: pad the right-hand side with zeros
        rhs = np.zeros((f.LRR.shape[0], c))
        rhs[:q2] = rest.apply(theta, Mt[:q2, q2:], transpose=True)
        z = sla.solve_triangular(f.LRR, rhs, lower=True, check_finite=False)
        z[q2:] = 0.0
        U_r = sla.solve_triangular(f.LRR, z, lower=True, trans="T", check_finite=False)[:q2]
        b_r = rest.apply(theta, U_r)
    else:
        U_r = b_r = np.zeros((0, c))
    if not q1:
        Xi_r = M[:q2, q2:] - M[:q2, :q2] @ b_r
        return U_r, Xi_r
    v = np.vstack([-b_r, np.eye(c)])
    s1 = problem.gram.tmul(v)  # Z₁'W([X y] − Z_r b_r)
    m1 = problem.m1
    if k == 1:
        lam = problem.first_T(theta)[0, 0]
        cj = lam * lam * problem.D11[:, 0, 0] + 1.0
        U1 = (lam / cj)[:, None] * s1
        b1 = lam * U1
        Xi1 = s1 - problem.D11[:, 0, 0][:, None] * b1
    else:
        T1 = problem.first_T(theta)
        s3 = s1.reshape(m1, k, c)
        C = f.L11 @ np.swapaxes(f.L11, 1, 2)
        U1 = np.linalg.solve(C, T1.T[None] @ s3)
        b1_3 = T1[None] @ U1
        Xi1 = (s3 - problem.D11 @ b1_3).reshape(q1, c)
        U1 = U1.reshape(q1, c)
        b1 = b1_3.reshape(q1, c)
    if q2:
        Xi_r = M[:q2, q2:] - problem.gram.mul(b1)[:q2] - M[:q2, :q2] @ b_r
    else:
        Xi_r = np.zeros((0, c))
    return np.vstack([U1, U_r]), np.vstack([Xi1, Xi_r])


def theta_cross(problem: PLSProblem, U: np.ndarray, Xi: np.ndarray) -> np.ndarray:
    """Aᵢ = Σ_l Ξ_(l,r)'Ũ_(l,c) for every θᵢ = T[r, c]: shape (n_θ, p + 1, p + 1)."""
    d = problem.design
    c = U.shape[1]
    out = np.zeros((d.n_theta, c, c))
    for t in d.terms:
        sl = slice(t.z_start, t.z_start + t.q)
        Ut = U[sl].reshape(t.m, t.k, c)
        Xt = Xi[sl].reshape(t.m, t.k, c)
        rows, cols = tril_colwise(t.k)
        for i, (r, cc) in enumerate(zip(rows, cols, strict=True)):
            out[t.theta_start + i] = Xt[:, r, :].T @ Ut[:, cc, :]
    return out


def _cho_inverse(L: np.ndarray) -> np.ndarray:
    """(LL')⁻¹ from a lower Cholesky factor (upper triangle zero), as a full symmetric matrix."""
    n = L.shape[0]
    if n == 0:
        return np.zeros((0, 0))
    inv, info = sla.lapack.dpotri(np.array(L, order="F"), lower=1, overwrite_c=1)
    if info != 0:
        raise np.linalg.LinAlgError("cannot invert the Cholesky factor")
    full = inv + inv.T  # the upper triangle of inv is still L's: zero
    full[np.diag_indices(n)] *= 0.5
    return full


def _lambda_t(problem: PLSProblem, theta: np.ndarray, na: int):
    """X ↦ Λ̃'X (a new array) for X with the first na rows of [Z_r X y]: Λ' on the other terms'
    rows, the identity on X's."""
    rest, q2 = problem.rest, problem.q2
    if rest.all_scalar:
        lam = np.ones(na)
        lam[:q2] = rest.diagonal(theta)
        return lambda X: X * lam[:, None]

    def apply(X: np.ndarray) -> np.ndarray:
        out = np.array(X, dtype=float)
        if q2:
            out[:q2] = rest.apply(theta, out[:q2], transpose=True)
        return out

    return apply


def logdet_gradient(problem: PLSProblem, f: PLSFactor, reml: bool) -> np.ndarray:
    """∂ℓ/∂θ with ℓ = log|L_Z|² (ML) or log|L_Z|² + log|R_X|² (REML)."""
    d = problem.design
    theta = f.theta
    q2 = problem.q2
    na = q2 + (problem.p if reml else 0)
    grad = np.zeros(d.n_theta)
    Oinv = _cho_inverse(f.LRR[:na, :na])
    rest = problem.rest
    # other terms: 2 Σ_l [Ω̃⁻¹ Λ̃'M̃_{a,r}]_{(l,c),(l,r)} = 2 Σ_l Σ_n (Λ̃Ω̃⁻¹)[n,(l,c)] M̃[n,(l,r)]
    if q2:
        Mt = f.Mt[:na, :q2]
        if rest.all_scalar:
            lam = np.ones(na)
            lam[:q2] = rest.diagonal(theta)
            per_col = np.einsum("n,nj,nj->j", lam, Oinv[:, :q2], Mt)
            for a, b, _m, _k, t in rest.blocks:
                grad[t.theta_start] = 2.0 * per_col[a:b].sum()
        else:
            LO = Oinv[:, :q2].copy()
            LO[:q2] = rest.apply(theta, LO[:q2])
            for a, b, m, k, t in rest.blocks:
                Kd = np.einsum("nlc,nlr->cr", LO[:, a:b].reshape(na, m, k), Mt[:, a:b].reshape(na, m, k))
                rows, cols = tril_colwise(k)
                grad[t.theta_start : t.theta_start + t.n_theta] = 2.0 * Kd[cols, rows]
    if problem.q1:
        t1 = d.terms[0]
        k = problem.k1
        N = problem.gram.N
        if problem.gram.S.size == 0:  # B all dense: Q from Ω̃_aa's Cholesky factor, Π never formed
            Q = problem.gram.adjoint_chol(f.LRR[:na, :na], _lambda_t(problem, theta, na), na)
        else:
            Pi = np.empty((N, N))  # Π = Λ̃Ω̃⁻¹Λ̃' in the leading na × na block, read in place
            if na:
                rest.sandwich(theta, Oinv, outer=True, out=Pi[:na, :na])
            Q = problem.gram.adjoint(Pi, na)
        D = problem.D11
        T1 = problem.first_T(theta)
        if k == 1:
            lam = T1[0, 0]
            F = 1.0 / (1.0 + lam * lam * D[:, 0, 0])
            gamma = float(np.sum(D[:, 0, 0] * F - F * F * Q[:, 0, 0]))
            grad[t1.theta_start] = 2.0 * lam * gamma
        else:
            Sig = T1 @ T1.T
            F = np.linalg.inv(np.eye(k)[None] + Sig[None] @ D)
            G = np.sum(D @ F - np.swapaxes(F, 1, 2) @ Q @ F, axis=0)
            H = T1.T @ (G + G.T)
            rows, cols = tril_colwise(k)
            grad[t1.theta_start : t1.theta_start + t1.n_theta] = H[cols, rows]
    return grad


@dataclass
class FactorDerivatives:
    """First derivatives in θ at one factor: of ℓ, of r², and of R_X'R_X."""

    beta: np.ndarray
    r2: float
    g_logdet: np.ndarray  # (n_θ,)
    g_r2: np.ndarray  # (n_θ,)
    d_rxtrx: np.ndarray  # (n_θ, p, p): ∂(R_X'R_X)/∂θᵢ


def factor_derivatives(
    problem: PLSProblem, f: PLSFactor, reml: bool, logdet: bool = True
) -> FactorDerivatives:
    """∂ℓ/∂θ, ∂r²/∂θ and ∂(R_X'R_X)/∂θ at the factor ``f``."""
    p = problem.p
    U, Xi = modes(problem, f)
    A = theta_cross(problem, U, Xi)
    S = A + np.swapaxes(A, 1, 2)
    LXX = f.LRR[problem.q2 : problem.q2 + p, problem.q2 : problem.q2 + p]
    lxy = f.LRR[-1, problem.q2 : problem.q2 + p]
    beta = sla.solve_triangular(LXX, lxy, lower=True, trans="T", check_finite=False) if p else np.zeros(0)
    cvec = np.concatenate([-beta, [1.0]])
    g_r2 = -np.einsum("i,nij,j->n", cvec, S, cvec)
    g_ld = logdet_gradient(problem, f, reml) if logdet else np.zeros(problem.design.n_theta)
    return FactorDerivatives(beta=beta, r2=f.r2, g_logdet=g_ld, g_r2=g_r2, d_rxtrx=-S[:, :p, :p])
