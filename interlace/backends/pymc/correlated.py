"""The marginal Gaussian likelihood with a residual correlation structure (AR1, compound symmetry).

Var(ε) = σ²R(ρ) (nlme's corAR1 / corCompSymm, :mod:`interlace.model.correlation`). With the
whitener R^(-1/2) the rows y* = R^(-1/2)y, X*, Z* follow the model without correlation, so

    log p(y | θ, σ, β, ρ) = log p(y* | θ, σ, β) − ½ log|R(ρ)|,

the first term from the blocked-Cholesky evaluator of :mod:`.marginal` on the whitened
cross-products (the REML engine's ``LMMObjective.problem`` whitens the rows the same way), one
evaluator per ρ. The whitened cross-products C(ρ) = U'R(ρ)⁻¹U of U = W^½[Z X y − o] are
combinations of a few fixed sparse products, so no rows are touched per ρ:

- AR1: R⁻¹ = Σ_first e e' + Σ_k s_k²(e_k − r_k e_prev)(e_k − r_k e_prev)' with r = φ^d, s² = 1/(1 − r²)
  for the time gap d, so C = U_F'U_F + Σ_d s_d²(P_d − r_d Q_d + r_d² S_d), with P_d, Q_d, S_d the
  products of the current and previous rows of the pairs with gap d; log|R| = Σ_d n_d log(1 − r_d²)
  (n_d pairs with gap d). Their derivatives: ∂r/∂φ = d φ^(d−1),
  ∂C/∂r = (2r(P + S) − (1 + r²)Q) / (1 − r²)², ∂log|R|/∂r = −2r n_d / (1 − r²);
- compound symmetry: R_g⁻¹ = (I − c_g 11') / (1 − ρ), c_g = ρ / (1 + (n_g − 1)ρ), so
  C = (U'U − Σ_g c_g s_g s_g') / (1 − ρ) with s_g = U'1_g, and ∂C/∂ρ = (C − Σ_g c_g' s_g s_g')/(1 − ρ)
  with c_g' = 1/(1 + (n_g − 1)ρ)²; log|R| = Σ_g (n_g − 1)log(1 − ρ) + log(1 + (n_g − 1)ρ).

Without random-effects terms (GLS) U = W^½[X y − o], C(ρ) is (p + 1)-square and, with c = (−β, 1),

    log p(y | σ, β, ρ) = −n/2 log 2πσ² + ½ Σ log wᵢ − c'C(ρ)c / (2σ²) − ½ log|R(ρ)|,

so ∂/∂β = [C c]_X / σ², ∂/∂σ = −n/σ + c'Cc/σ³ and ∂/∂ρ = −c'(∂C/∂ρ)c / (2σ²) − ½ ∂log|R|/∂ρ, all
from the (p + 1)-square products (GLS as in Pinheiro & Bates 2000, ch. 5, on cross-products).
With random-effects terms and q ≤ ``DENSE_Q`` the density is evaluated on the dense C(ρ) directly,
∂/∂ρ analytic too (:class:`DenseWhitened`); for larger q the gradient in (θ, σ, β) is analytic
and ∂/∂ρ a central difference on the value (three evaluators per gradient).

ρ is φ ∈ (−1, 1) for AR1 and ρ ∈ (−1/(n_max − 1), 1) for compound symmetry, with a uniform prior
on that interval. b | y, θ, σ, β, ρ is drawn exactly from the whitened problem at each draw's ρ.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict

import numpy as np
import pytensor.tensor as pt
import scipy.linalg as sla
import scipy.sparse as sp
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op

from ...data.design import DesignMatrices
from ...model.correlation import AR1, CompoundSymmetry
from .marginal import LOG_2PI, MarginalBase, MarginalLMM, MarginalParts
from .op import value_gradient_lop

__all__ = ["CorrelatedLMM", "CorrelatedLogpOp", "correlation_bounds"]

STEP = 1e-5  # central-difference step in ρ
DENSE_MAX = 600  # C(ρ) kept dense up to this size (q + p + 1)
DENSE_Q = 150  # up to this q the density is evaluated on the dense C(ρ), ∂/∂ρ analytic (faster to q ≈ 200)


def correlation_bounds(design: DesignMatrices) -> tuple[float, float]:
    """The open interval of the correlation parameter."""
    if isinstance(design.correlation, AR1):
        return -1.0, 1.0
    n_max = int(design.corr_layout.sizes.max())
    return (-1.0 / (n_max - 1) if n_max > 1 else -1.0), 1.0


class WhitenedCrossProducts:
    """C(ρ) = U'R(ρ)⁻¹U, ∂C/∂ρ and log|R(ρ)| from fixed sparse products (see the module docstring)."""

    def __init__(self, design: DesignMatrices):
        self.design = design
        self.cs = isinstance(design.correlation, CompoundSymmetry)
        w = np.ones(design.n) if design.weights is None else design.weights
        sw = np.sqrt(w)[:, None]
        XY = np.column_stack([design.X, design.y - design.offset]) * sw
        U = sp.hstack([sp.csr_matrix(design.Z.multiply(sw)), sp.csr_matrix(XY)]).tocsr()
        lay = design.corr_layout
        self.q = design.q
        term = np.zeros(design.q, dtype=np.int64)
        for i, t in enumerate(design.terms):
            term[t.z_start : t.z_start + t.q] = i
        self._term = term
        # small: dense arithmetic beats sparse overhead; without terms C is (p + 1)-square
        self.dense = design.q == 0 or design.q + design.p + 1 <= DENSE_MAX
        if self.cs:
            G = sp.csr_matrix((np.ones(design.n), (lay.codes, np.arange(design.n))),
                              shape=(lay.sizes.size, design.n))
            self.UtU = (U.T @ U).tocsc()
            self.sums = (G @ U).tocsr()  # s_g as rows
            self.sizes = lay.sizes.astype(float)
            if self.dense:
                self.UtU, self.sums = self.UtU.toarray(), self.sums.toarray()
            return
        prev, cur, gap = lay.pairs
        Uf = U[lay.firsts]
        self.first = (Uf.T @ Uf).tocsc()
        gaps, self.n_gap = np.unique(gap, return_counts=True)
        self.gaps = gaps.astype(float)
        self.parts = []
        for d in gaps:
            sel = gap == d
            Uc, Up = U[cur[sel]], U[prev[sel]]
            cross = Uc.T @ Up
            P, S = (Uc.T @ Uc).tocsc(), (Up.T @ Up).tocsc()
            self.parts.append((float(d), P, (cross + cross.T).tocsc(), S))
        if self.dense:  # (gap, 3, k, k): P, Q, S stacked for one contraction per ρ
            self.first = self.first.toarray()
            k = U.shape[1]
            self.stack = np.array([[M.toarray() for M in (P, Q, S)] for _, P, Q, S in self.parts])
            self.stack = self.stack.reshape(len(self.parts), 3, k, k)

    def _ar1_weights(self, phi: float) -> tuple[np.ndarray, np.ndarray]:
        """r_d = φ^d per gap and ∂r_d/∂φ."""
        r = phi**self.gaps
        return r, self.gaps * phi ** (self.gaps - 1.0)

    def at(self, rho: float):
        """C(ρ), sparse (or dense when small)."""
        if self.cs:
            c = rho / (1.0 + (self.sizes - 1.0) * rho)
            if self.dense:
                return (self.UtU - (self.sums.T * c) @ self.sums) / (1.0 - rho)
            return ((self.UtU - self.sums.T @ sp.diags(c) @ self.sums) / (1.0 - rho)).tocsc()
        if self.dense:
            r, _ = self._ar1_weights(rho)
            coef = np.column_stack([np.ones_like(r), -r, r * r]) / (1.0 - r * r)[:, None]
            return self.first + np.tensordot(coef, self.stack, axes=([0, 1], [0, 1]))
        C = self.first.copy()
        for d, P, Q, S in self.parts:
            r = rho**d
            C = C + (P - r * Q + r * r * S) / (1.0 - r * r)
        return C

    def derivative(self, rho: float, C=None):
        """∂C/∂ρ (dense only; ``C`` = C(ρ) when already formed)."""
        if self.cs:
            C = self.at(rho) if C is None else C
            dc = 1.0 / (1.0 + (self.sizes - 1.0) * rho) ** 2
            return (C - (self.sums.T * dc) @ self.sums) / (1.0 - rho)
        r, dr = self._ar1_weights(rho)
        den = (1.0 - r * r) ** 2
        coef = np.column_stack([2.0 * r, -(1.0 + r * r), 2.0 * r]) * (dr / den)[:, None]
        return np.tensordot(coef, self.stack, axes=([0, 1], [0, 1]))

    def logdet(self, rho: float) -> tuple[float, float]:
        """log|R(ρ)| and its derivative in ρ (:mod:`interlace.model.correlation`)."""
        if self.cs:
            ng1 = self.sizes - 1.0
            value = float(np.sum(ng1 * np.log1p(-rho) + np.log1p(ng1 * rho)))
            return value, float(np.sum(-ng1 / (1.0 - rho) + ng1 / (1.0 + ng1 * rho)))
        if not self.gaps.size:
            return 0.0, 0.0
        r, dr = self._ar1_weights(rho)
        one = 1.0 - r * r
        return float(self.n_gap @ np.log1p(-r * r)), float(self.n_gap @ (-2.0 * r * dr / one))

    def design_at(self, rho: float) -> DesignMatrices:
        """A design carrying C(ρ) as its cross-products (Z'Z as the lower block triangle)."""
        C, q = self.at(rho), self.q
        ZtZ = sp.coo_matrix(C[:q, :q])
        keep = self._term[ZtZ.row] >= self._term[ZtZ.col]
        ZtZ = sp.csc_matrix((ZtZ.data[keep], (ZtZ.row[keep], ZtZ.col[keep])), shape=(q, q))
        rest = C[:, q:] if isinstance(C, np.ndarray) else C[:, q:].toarray()
        gram = (ZtZ, rest[:q], rest[q:])
        return dataclasses.replace(self.design, gram=gram, correlation=None, corr_layout=None)


class DenseWhitened(MarginalBase):
    """The marginal density with random-effects terms on a dense C(ρ), for small q (module doc).

    With C = [[C_ZZ, C_Ze], [C_eZ, C_ee]], Λ = Λ(θ), A = Λ'C_ZZΛ + I = LL', c = (−β, 1),
    u = A⁻¹Λ'C_Ze c, b = Λu and ζ = C_Ze c − C_ZZ b (the modes and score of :mod:`.marginal`):
    c'Sc = c'C_ee c − c'C_eZ b, ∂ℓ/∂θᵢ = 2 tr(A⁻¹Λ'C_ZZ ∂Λ/∂θᵢ), and, u being the minimiser of the
    penalised residual sum of squares (envelope theorem), with v = (−b, c) over [Z X y]

        ∂/∂ρ log p = −½ tr(A⁻¹Λ'(∂C_ZZ/∂ρ)Λ) − v'(∂C/∂ρ)v / (2σ²) − ½ ∂log|R|/∂ρ.
    """

    def __init__(self, design: DesignMatrices):
        self._setup(design, whitened=True)
        self.q = design.q

    def _lam(self, Ts: list[np.ndarray], M: np.ndarray, transpose: bool) -> np.ndarray:
        """ΛM (or Λ'M) for M with q rows, block by block (Λ_t = I_m ⊗ T_t): O(q·k·columns)."""
        out = np.empty_like(M)
        for t, T in zip(self.design.terms, Ts, strict=True):
            sl = slice(t.z_start, t.z_start + t.q)
            if t.k == 1:
                out[sl] = T[0, 0] * M[sl]
                continue
            blk = M[sl].reshape((t.m, t.k) + M.shape[1:])
            Tm = T if transpose else T.T  # (Λ'M)_(l,a) = Σ_c T[c, a] M_(l,c)
            out[sl] = np.einsum("ca,lc...->la...", Tm, blk).reshape(M[sl].shape)
        return out

    def evaluate(self, C, dC, theta, sigma: float, beta, gradient: bool = True):
        """(parts, ∂/∂ρ without the log|R| term) at C = C(ρ), dC = ∂C/∂ρ (unused without gradient)."""
        q, s2 = self.q, sigma * sigma
        theta = np.asarray(theta, dtype=float)
        Ts = [t.T(theta) for t in self.design.terms]
        CZZ, CZe, Cee = C[:q, :q], C[:q, q:], C[q:, q:]
        LC = self._lam(Ts, CZZ, transpose=True)  # Λ'C_ZZ
        A = self._lam(Ts, np.ascontiguousarray(LC.T), transpose=True)  # Λ'C_ZZΛ
        A[np.diag_indices(q)] += 1.0
        cf = sla.cho_factor(A, lower=True, check_finite=False)
        logdet = 2.0 * float(np.sum(np.log(np.diagonal(cf[0]))))
        c = np.append(-np.asarray(beta, dtype=float), 1.0)
        r = CZe @ c
        u = sla.cho_solve(cf, self._lam(Ts, r, transpose=True), check_finite=False)
        b = self._lam(Ts, u, transpose=False)
        Sc = Cee @ c - CZe.T @ b
        Q = float(c @ Sc)
        value = self._c_const - self.n * np.log(sigma) - 0.5 * logdet - 0.5 * Q / s2
        if not gradient:
            return MarginalParts(float(value), np.zeros(0), 0.0, np.zeros(0)), 0.0
        Ainv, info = sla.lapack.dpotri(cf[0], lower=1)
        if info != 0:
            raise np.linalg.LinAlgError("cannot invert Λ'C_ZZΛ + I")
        Ainv = np.tril(Ainv) + np.tril(Ainv, -1).T
        g_logdet = np.zeros(self.n_theta)
        for t in self.design.terms:  # ∂ℓ/∂T[r, c] = 2 Σ_l (A⁻¹Λ'C_ZZ)_(l,c),(l,r)
            sl = slice(t.z_start, t.z_start + t.q)
            D = np.einsum("laj,jlb->ab", Ainv[sl].reshape(t.m, t.k, q), LC[:, sl].reshape(q, t.m, t.k))
            rows, cols = self._tri[t.k]
            g_logdet[t.theta_slice] = 2.0 * D[cols, rows]
        zeta = r - CZZ @ b
        g_theta = -0.5 * g_logdet + self._theta_cross(zeta[:, None], u[:, None]) / s2
        g_sigma = float(-self.n / sigma + Q / (s2 * sigma))
        parts = MarginalParts(float(value), g_theta, g_sigma, Sc[: self.p] / s2)
        v = np.concatenate([-b, c])
        LdC = self._lam(Ts, dC[:q, :q], transpose=True)
        trace = float(np.sum(Ainv * self._lam(Ts, np.ascontiguousarray(LdC.T), transpose=True)))
        return parts, -0.5 * trace - 0.5 * float(v @ dC @ v) / s2


class CorrelatedLMM:
    """log p(y | θ, σ, β, ρ), its gradient, and exact draws of b, for one correlation structure."""

    def __init__(self, design: DesignMatrices, cache: int = 8):
        self.design = design
        self.structure = design.correlation
        self.n_theta, self.p = design.n_theta, design.p
        self.lower, self.upper = correlation_bounds(design)
        self._cache: OrderedDict[float, tuple[MarginalLMM, float]] = OrderedDict()
        self._size = cache
        self._cross = WhitenedCrossProducts(design)
        self.gls = not design.terms
        small = self._cross.dense and 0 < design.q <= DENSE_Q
        self._dense = DenseWhitened(design) if small else None
        w = np.ones(design.n) if design.weights is None else design.weights
        self._c_const = -0.5 * design.n * LOG_2PI + 0.5 * float(np.sum(np.log(w)))

    def at(self, rho: float) -> tuple[MarginalLMM, float]:
        """The whitened evaluator at ρ and log|R(ρ)| (the last few kept); with random-effects terms."""
        if self.gls:
            raise ValueError("without random-effects terms the GLS density needs no evaluator per ρ")
        rho = float(rho)
        hit = self._cache.get(rho)
        if hit is not None:
            self._cache.move_to_end(rho)
            return hit
        out = (MarginalLMM(self._cross.design_at(rho)), self.logdet(rho))
        self._cache[rho] = out
        if len(self._cache) > self._size:
            self._cache.popitem(last=False)
        return out

    def logdet(self, rho: float) -> float:
        """log|R(ρ)| (:mod:`interlace.model.correlation`)."""
        return self._cross.logdet(float(rho))[0]

    def _gls(self, sigma: float, beta, rho: float, gradient: bool):
        """The GLS density (no terms) from C(ρ) alone (module docstring): (parts, ∂/∂ρ)."""
        cr = self._cross
        C = cr.at(rho)
        c = np.append(-np.asarray(beta, dtype=float), 1.0)
        Cc = C @ c
        Q = float(c @ Cc)
        s2 = sigma * sigma
        logdet, g_logdet = cr.logdet(rho)
        value = self._c_const - self.design.n * np.log(sigma) - 0.5 * Q / s2 - 0.5 * logdet
        if not gradient:
            return MarginalParts(float(value), np.zeros(0), 0.0, np.zeros(0)), 0.0
        g_rho = -0.5 * float(c @ cr.derivative(rho, C) @ c) / s2 - 0.5 * g_logdet
        g_sigma = -self.design.n / sigma + Q / (s2 * sigma)
        return MarginalParts(float(value), np.zeros(0), float(g_sigma), Cc[: self.p] / s2), g_rho

    def logp(self, theta, sigma: float, beta, rho: float) -> float:
        """log p(y | θ, σ, β, ρ); −inf outside the interval of ρ."""
        rho = float(rho)
        if not self.lower < rho < self.upper:
            return -np.inf
        if self.gls:
            return self._gls(float(sigma), beta, rho, gradient=False)[0].logp
        if self._dense is not None:
            try:
                parts, _ = self._dense.evaluate(self._cross.at(rho), None, theta, float(sigma), beta, False)
            except np.linalg.LinAlgError:
                return -np.inf
            return parts.logp - 0.5 * self.logdet(rho)
        lmm, logdet = self.at(rho)
        return lmm.logp(theta, sigma, beta) - 0.5 * logdet

    def logp_and_grad(self, theta, sigma: float, beta, rho: float) -> tuple[MarginalParts, float]:
        """The value and gradient in (θ, σ, β) as :class:`MarginalParts`, and ∂/∂ρ."""
        rho = float(rho)
        if not self.lower < rho < self.upper:
            return MarginalParts(-np.inf, np.zeros(self.n_theta), 0.0, np.zeros(self.p)), 0.0
        if self.gls:
            return self._gls(float(sigma), beta, rho, gradient=True)
        if self._dense is not None:
            C = self._cross.at(rho)
            dC = self._cross.derivative(rho, C)
            try:
                parts, g_rho = self._dense.evaluate(C, dC, theta, float(sigma), beta)
            except np.linalg.LinAlgError:
                return MarginalParts(-np.inf, np.zeros(self.n_theta), 0.0, np.zeros(self.p)), 0.0
            logdet, g_logdet = self._cross.logdet(rho)
            parts.logp -= 0.5 * logdet
            return parts, g_rho - 0.5 * g_logdet
        lmm, logdet = self.at(rho)
        parts = lmm.logp_and_grad(theta, sigma, beta)
        parts.logp -= 0.5 * logdet
        h = min(STEP, 0.5 * (rho - self.lower), 0.5 * (self.upper - rho))
        up, down = self.logp(theta, sigma, beta, rho + h), self.logp(theta, sigma, beta, rho - h)
        g_rho = (up - down) / (2 * h) if np.isfinite(up) and np.isfinite(down) else 0.0
        return parts, float(g_rho)

    def draw_conditionals(self, theta, sigma, beta, rho, rng) -> tuple[np.ndarray, np.ndarray]:
        """Exact draws of b | y, θ, σ, β, ρ for S posterior draws: returns (β, b) as (S × p, S × q)."""
        S = theta.shape[0]
        if self.gls:
            return beta.reshape(S, self.p), np.zeros((S, 0))
        b = np.array([self.at(float(rho[s]))[0].draw_b(theta[s], float(sigma[s]), beta[s], rng)
                      for s in range(S)])
        return beta.reshape(S, self.p), b.reshape(S, self.design.q)


class CorrelatedLogpOp(Op):
    """(θ, σ, β, ρ) ↦ (log p(y | θ, σ, β, ρ) and its four gradients)."""

    def __init__(self, lmm: CorrelatedLMM):
        self.lmm = lmm

    def make_node(self, theta, sigma, beta, rho) -> Apply:
        ins = [pt.as_tensor_variable(v).astype("float64") for v in (theta, sigma, beta, rho)]
        if [v.ndim for v in ins] != [1, 0, 1, 0]:
            raise TypeError("CorrelatedLogpOp takes a vector θ, a scalar σ, a vector β and a scalar ρ")
        outputs = [pt.dscalar(), pt.dvector(), pt.dscalar(), pt.dvector(), pt.dscalar()]
        return Apply(self, ins, outputs)

    def perform(self, node, inputs, output_storage) -> None:
        theta, sigma, beta, rho = inputs
        parts, g_rho = self.lmm.logp_and_grad(theta, float(sigma), beta, float(rho))
        for i, v in enumerate((parts.logp, parts.g_theta, parts.g_sigma, parts.g_beta, g_rho)):
            output_storage[i][0] = np.asarray(v, dtype="float64")

    def L_op(self, inputs, outputs, output_grads):
        return value_gradient_lop(self, inputs, outputs, output_grads)

    def connection_pattern(self, node):
        return [[True] * 5] * 4

    def infer_shape(self, fgraph, node, input_shapes):
        return [(), input_shapes[0], (), input_shapes[2], ()]
