"""The Gaussian LMM with the random effects integrated out, on the REML engine's blocked factor.

y ~ N(Xβ + o, σ²V), V = W⁻¹ + ZΛΛ'Z'. With A = Λ'Z'WZΛ + I (|V| = |A| / Π wᵢ), S the
(p + 1)-square matrix [X y]'W^½V⁻¹W^½[X y] (offset removed; the Schur complement of [X y] in
the factor) and c = (−β, 1):

    log p(y | θ, σ, β) = −n/2 log(2πσ²) + ½ Σ log wᵢ − ½ ℓ(θ) − c'Sc / (2σ²),   ℓ = log|A|.

Gradient. With the spherical modes of every column of [X y], Ũ = A⁻¹Λ'Z'W[X y], and
Ξ = Z'W([X y] − ZΛŨ) (both q × (p + 1)), u = Ũc and ζ = Ξc are the modes and score of the
residual, and for θᵢ = T[r, c] of a term (Λᵢ = I_m ⊗ E_rc) ∂S/∂θᵢ = −(Aᵢ + Aᵢ'),
Aᵢ = Σ_l Ξ_(l,r)'Ũ_(l,c). Hence ∂/∂θᵢ = −½ ∂ℓ/∂θᵢ + Σ_l ζ_(l,r) u_(l,c) / σ²,
∂/∂β = [Sc]_X / σ², ∂/∂σ = −n/σ + c'Sc/σ³.

β integrated too. With a Gaussian prior β ~ N(m₀, S₀) (P₀ = S₀⁻¹), H = S_XX/σ² + P₀,
h = s_Xy/σ² + P₀m₀ and β̃ = H⁻¹h (the mode of β | y, θ, σ, which is N(β̃, H⁻¹)):

    log p(y | θ, σ) = log p(y | θ, σ, β̃) + log p(β̃) + p/2 log 2π − ½ log|H|,

and, β̃ being a maximiser (envelope theorem), its gradient is the β-given gradient at β̃ plus
−½ ∂log|H|: Σ_l Ξ_X(l,r)·H⁻¹Ũ_X(l,c) / σ² for θᵢ, and tr(H⁻¹S_XX)/σ³ for σ.

ℓ and its gradient come from the blocked factor (the first term eliminated level by level:
C_j = T₁'D_jT₁ + I, W_j = T₁C_j⁻¹T₁', B = [Z_r X y]'Z₁; Ω = Λ_r'M̃_rrΛ_r + I over the other
terms, M̃ = M − BWB'), ℓ = Σ_j log det C_j + log det Ω:

- θᵢ of another term: ∂ℓ = 2 Σ_l [Ω⁻¹Λ_r'M̃_rr]_(l,c),(l,r);
- θᵢ of the first term: with G_j = C_j⁻¹T₁' and Q_j the diagonal blocks of B_r'ΠB_r,
  Π = Λ_rΩ⁻¹Λ_r', ∂ℓ = 2 [Σ_j G_j(D_j − Q_j(I − W_jD_j))]_(c,r).

Conditional draws. u | y, θ, σ, β ~ N(û, σ²A⁻¹); with A = LL' in the same blocks
(L = [[L₁₁, 0], [L_r1, L_Ω]]) a draw u = û + σL⁻ᵀz is, per block,
u_r = Ω⁻¹Λ_r'M̃_r,xy c + σL_Ω⁻ᵀz_r and u₁ = G_j(s₁ − B_r'Λ_ru_r)_j + σL₁₁⁻ᵀz₁ (s₁ = Z₁'W[X y]c);
b = Λu.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla

from ...data.design import DesignMatrices, tril_colwise
from ...linalg.pls import PLSProblem

__all__ = ["MarginalLMM", "MarginalParts", "MarginalBase", "GaussianPrior"]

LOG_2PI = float(np.log(2.0 * np.pi))


@dataclass
class MarginalParts:
    """log-density and gradient; ``g_beta`` is empty when β is integrated out."""

    logp: float
    g_theta: np.ndarray
    g_sigma: float
    g_beta: np.ndarray


@dataclass
class GaussianPrior:
    """β ~ N(mean, cov), kept as the precision and log|cov|."""

    mean: np.ndarray
    precision: np.ndarray
    logdet_cov: float

    @classmethod
    def from_cov(cls, mean: np.ndarray, cov: np.ndarray) -> GaussianPrior:
        P = np.linalg.inv(cov)
        return cls(np.asarray(mean, dtype=float), 0.5 * (P + P.T), float(np.linalg.slogdet(cov)[1]))


@dataclass
class Pieces:
    """What one factorization at θ gives: S, ℓ, ∂ℓ/∂θ, and Ũ, Ξ (q × (p + 1))."""

    S: np.ndarray
    logdet: float
    g_logdet: np.ndarray
    U: np.ndarray
    Xi: np.ndarray


class MarginalBase:
    """The log-density formulas on top of an evaluator of :class:`Pieces` (see module doc)."""

    design: DesignMatrices
    n: int
    p: int
    n_theta: int
    _c_const: float

    def _setup(self, design: DesignMatrices, whitened: bool = False) -> None:
        if design.correlation is not None and not whitened:
            raise ValueError("a residual correlation needs the whitened evaluator (.correlated)")
        self.design = design
        self.n, self.p, self.n_theta = design.n, design.p, design.n_theta
        w = np.ones(design.n) if design.weights is None else design.weights
        self._c_const = -0.5 * self.n * LOG_2PI + 0.5 * float(np.sum(np.log(w)))
        self._tri = {t.k: tril_colwise(t.k) for t in design.terms}

    def pieces(self, theta: np.ndarray, gradient: bool = True) -> Pieces:  # pragma: no cover - abstract
        raise NotImplementedError

    def _theta_cross(self, Xi: np.ndarray, U: np.ndarray) -> np.ndarray:
        """Σ_l Σ_col Ξ_(l,r),col U_(l,c),col for every θᵢ = T[r, c]; Ξ, U of shape (q, ·)."""
        out = np.zeros(self.n_theta)
        for t in self.design.terms:
            sl = slice(t.z_start, t.z_start + t.q)
            a = Xi[sl].reshape(t.m, t.k, -1)
            b = U[sl].reshape(t.m, t.k, -1)
            C = np.einsum("lrx,lcx->rc", a, b)
            rows, cols = self._tri[t.k]
            out[t.theta_slice] = C[rows, cols]
        return out

    def _value(self, P: Pieces, sigma: float, c: np.ndarray) -> tuple[float, np.ndarray, float]:
        Sc = P.S @ c
        Q = float(c @ Sc)
        return self._c_const - self.n * np.log(sigma) - 0.5 * P.logdet - 0.5 * Q / (sigma * sigma), Sc, Q

    def logp(self, theta: np.ndarray, sigma: float, beta: np.ndarray) -> float:
        """log p(y | θ, σ, β); −inf where the factorization fails."""
        try:
            P = self.pieces(np.asarray(theta, dtype=float), gradient=False)
        except np.linalg.LinAlgError:
            return -np.inf
        return self._value(P, float(sigma), np.append(-np.asarray(beta, dtype=float), 1.0))[0]

    def logp_and_grad(self, theta: np.ndarray, sigma: float, beta: np.ndarray) -> MarginalParts:
        """log p(y | θ, σ, β) and its gradient in (θ, σ, β)."""
        sigma = float(sigma)
        try:
            P = self.pieces(np.asarray(theta, dtype=float))
        except np.linalg.LinAlgError:
            return MarginalParts(-np.inf, np.zeros(self.n_theta), 0.0, np.zeros(self.p))
        c = np.append(-np.asarray(beta, dtype=float), 1.0)
        value, Sc, Q = self._value(P, sigma, c)
        s2 = sigma * sigma
        g_theta = -0.5 * P.g_logdet + self._theta_cross((P.Xi @ c)[:, None], (P.U @ c)[:, None]) / s2
        return MarginalParts(
            float(value), g_theta, float(-self.n / sigma + Q / (s2 * sigma)), Sc[: self.p] / s2
        )

    # ---- β integrated out ---------------------------------------------------------------
    def _beta_posterior(self, P: Pieces, sigma: float, prior: GaussianPrior):
        """H, its lower Cholesky factor and β̃ = H⁻¹h."""
        p = self.p
        s2 = sigma * sigma
        H = P.S[:p, :p] / s2 + prior.precision
        h = P.S[:p, p] / s2 + prior.precision @ prior.mean
        LH = np.linalg.cholesky(H)
        return H, LH, np.linalg.solve(H, h)

    def logp_integrated(
        self, theta: np.ndarray, sigma: float, prior: GaussianPrior, gradient: bool = True
    ) -> MarginalParts:
        """log p(y | θ, σ) with β ~ N(prior) integrated out, and its gradient in (θ, σ)."""
        sigma = float(sigma)
        p = self.p
        try:
            P = self.pieces(np.asarray(theta, dtype=float), gradient=gradient)
            H, LH, bt = self._beta_posterior(P, sigma, prior)
        except np.linalg.LinAlgError:
            return MarginalParts(-np.inf, np.zeros(self.n_theta), 0.0, np.zeros(0))
        c = np.append(-bt, 1.0)
        value, _, Q = self._value(P, sigma, c)
        d = bt - prior.mean
        logdet_H = 2.0 * float(np.sum(np.log(np.diagonal(LH))))
        value += -0.5 * (prior.logdet_cov + logdet_H) - 0.5 * float(d @ prior.precision @ d)
        if not gradient:
            return MarginalParts(float(value), np.zeros(0), 0.0, np.zeros(0))
        s2 = sigma * sigma
        Hinv = np.linalg.inv(H)
        # one pass over the levels for both θ terms: the residual's and −½ ∂log|H|'s
        Xi = np.column_stack([P.Xi @ c, P.Xi[:, :p]])
        U = np.column_stack([P.U @ c, P.U[:, :p] @ Hinv])
        g_theta = -0.5 * P.g_logdet + self._theta_cross(Xi, U) / s2
        g_sigma = -self.n / sigma + (Q + float(np.sum(Hinv * P.S[:p, :p]))) / (s2 * sigma)
        return MarginalParts(float(value), g_theta, float(g_sigma), np.zeros(0))

    def draw_beta(
        self, theta: np.ndarray, sigma: float, prior: GaussianPrior, rng: np.random.Generator
    ) -> np.ndarray:
        """One exact draw of β | y, θ, σ ~ N(β̃, H⁻¹)."""
        P = self.pieces(np.asarray(theta, dtype=float), gradient=False)
        _, LH, bt = self._beta_posterior(P, float(sigma), prior)
        z = rng.standard_normal(self.p)
        return bt + sla.solve_triangular(LH, z, lower=True, trans="T", check_finite=False)

    def draw_b(self, theta, sigma, beta, rng) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def draw_conditionals(
        self, theta: np.ndarray, sigma: np.ndarray, beta: np.ndarray | None, prior: GaussianPrior | None, rng
    ) -> tuple[np.ndarray, np.ndarray]:
        """For S posterior draws (rows of θ, σ and, unless β was integrated out, β): exact draws
        of β | y, θ, σ (when ``beta`` is None) and of b | y, θ, σ, β. Returns (S × p, S × q)."""
        S = theta.shape[0]
        if beta is None:
            beta = np.array([self.draw_beta(theta[s], float(sigma[s]), prior, rng) for s in range(S)])
        b = np.array([self.draw_b(theta[s], float(sigma[s]), beta[s], rng) for s in range(S)])
        return beta.reshape(S, self.p), b.reshape(S, self.design.q)

    def conditional_mean_b(self, theta, beta) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError


def _sym_inverse(L: np.ndarray) -> np.ndarray:
    """(LL')⁻¹ as a full matrix from a lower Cholesky factor."""
    if L.shape[0] == 0:
        return np.zeros((0, 0))
    Linv, info = sla.lapack.dtrtri(L, lower=1)
    if info != 0:
        raise np.linalg.LinAlgError("cannot invert the Cholesky factor of the random-effects block")
    return Linv.T @ Linv


class MarginalLMM(MarginalBase):
    """The general evaluator: any number of terms, on :class:`~..reml.pls.PLSProblem`;
    ``whiten`` = R^(-1/2) of a residual correlation structure premultiplies the rows."""

    def __init__(self, design: DesignMatrices, whiten=None):
        self._setup(design, whitened=whiten is not None)
        self.problem = PLSProblem(design, whiten=whiten)
        self._first = design.terms[0] if self.problem.q1 else None

    def pieces(self, theta: np.ndarray, gradient: bool = True) -> Pieces:
        pr = self.problem
        f = pr.factor(theta)
        Lxy = f.LRR[pr.q2 :, pr.q2 :]
        S = Lxy @ Lxy.T
        if not gradient:
            return Pieces(S, f.logdet_LZ, np.zeros(0), np.zeros((0, 0)), np.zeros((0, 0)))
        U, Xi, _ = self._modes(f, np.eye(self.p + 1))
        return Pieces(S, f.logdet_LZ, self._logdet_grad(f), U, Xi)

    def _first_blocks(self, f) -> tuple[np.ndarray, np.ndarray]:
        """(T₁, G) with G_j = C_j⁻¹T₁' per level of the first term, shape (m₁, k₁, k₁)."""
        T1 = self.problem.first_T(f.theta)
        L = f.L11
        Y = np.linalg.solve(L, np.broadcast_to(T1.T, L.shape))
        return T1, np.linalg.solve(np.swapaxes(L, 1, 2), Y)

    def _modes(self, f, C: np.ndarray, noise=None, sigma: float = 0.0):
        """Modes u = Ũ C (or a draw, with ``noise`` = (z₁, z_r) for one column), ζ = Ξ C and b."""
        pr = self.problem
        q1, q2, theta = pr.q1, pr.q2, f.theta
        ncol = C.shape[1]
        if q2:
            L_O = f.LRR[:q2, :q2]
            rhs = pr.rest.apply(theta, f.Mt[:q2, q2:] @ C, transpose=True)
            u_r = sla.cho_solve((L_O, True), rhs, check_finite=False)
            if noise is not None:
                u_r = (
                    u_r
                    + sigma
                    * sla.solve_triangular(L_O, noise[1], lower=True, trans="T", check_finite=False)[:, None]
                )
            b_r = pr.rest.apply(theta, u_r)
        else:
            u_r = b_r = np.zeros((0, ncol))
        v = np.vstack([-b_r, C])
        zeta_r = pr.M[:q2] @ v if q2 else np.zeros((0, ncol))
        if not q1:
            return u_r, zeta_r, b_r
        k, m = pr.k1, pr.m1
        s1 = pr.gram.tmul(v)  # Z₁'W([X y]C − Z_r b_r)
        T1, G = self._first_blocks(f)
        u1 = np.einsum("jab,jbc->jac", G, s1.reshape(m, k, ncol))
        if noise is not None:
            z1 = noise[0].reshape(m, k, 1)
            u1 = u1 + sigma * np.linalg.solve(np.swapaxes(f.L11, 1, 2), z1)
        b1 = np.einsum("ab,jbc->jac", T1, u1)
        zeta1 = (s1.reshape(m, k, ncol) - pr.D11 @ b1).reshape(q1, ncol)
        b1 = b1.reshape(q1, ncol)
        if q2:
            zeta_r = zeta_r - pr.gram.mul(b1)[:q2]
        return (np.vstack([u1.reshape(q1, ncol), u_r]), np.vstack([zeta1, zeta_r]), np.vstack([b1, b_r]))

    def _logdet_grad(self, f) -> np.ndarray:
        """∂ log|A| / ∂θ."""
        pr = self.problem
        theta, q2 = f.theta, pr.q2
        grad = np.zeros(self.n_theta)
        Oinv = _sym_inverse(f.LRR[:q2, :q2]) if q2 else np.zeros((0, 0))
        if q2:
            Y = pr.rest.apply(theta, f.Mt[:q2, :q2], transpose=True)  # Λ_r'M̃_rr
            for a, b, m, k, t in pr.rest.blocks:
                K = np.einsum("lcn,nlr->cr", Oinv[a:b].reshape(m, k, q2), Y[:, a:b].reshape(q2, m, k))
                rows, cols = self._tri[k]
                grad[t.theta_slice] = 2.0 * K[cols, rows]
        if pr.q1:
            k = pr.k1
            _, G = self._first_blocks(f)
            D = pr.D11
            if q2:
                Qb = pr.gram.adjoint(pr.rest.sandwich(theta, Oinv, outer=True))
                Gam = np.sum(G @ (D - Qb @ (np.eye(k)[None] - f.W @ D)), axis=0)
            else:
                Gam = np.sum(G @ D, axis=0)
            rows, cols = self._tri[k]
            grad[self._first.theta_slice] = 2.0 * Gam[cols, rows]
        return grad

    def draw_b(
        self, theta: np.ndarray, sigma: float, beta: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        """One exact draw of b = Λu from b | y, θ, σ, β (Z's column order)."""
        f = self.problem.factor(np.asarray(theta, dtype=float))
        c = np.append(-np.asarray(beta, dtype=float), 1.0)[:, None]
        pr = self.problem
        noise = (rng.standard_normal(pr.q1), rng.standard_normal(pr.q2))
        return self._modes(f, c, noise=noise, sigma=float(sigma))[2][:, 0]

    def conditional_mean_b(self, theta: np.ndarray, beta: np.ndarray) -> np.ndarray:
        """E[b | y, θ, β] = Λû (it does not depend on σ)."""
        f = self.problem.factor(np.asarray(theta, dtype=float))
        c = np.append(-np.asarray(beta, dtype=float), 1.0)[:, None]
        return self._modes(f, c)[2][:, 0]
