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
  products of the current and previous rows of the pairs with gap d;
- compound symmetry: R_g⁻¹ = (I − c_g 11') / (1 − ρ), c_g = ρ / (1 + (n_g − 1)ρ), so
  C = (U'U − Σ_g c_g s_g s_g') / (1 − ρ) with s_g = U'1_g.

Without random-effects terms (GLS) the rows themselves are whitened.
Its gradient in (θ, σ, β) is analytic; ∂/∂ρ is a central difference in ρ on the value (the REML
side also has no analytic derivative in ρ). Without random-effects terms this is GLS.

ρ is φ ∈ (−1, 1) for AR1 and ρ ∈ (−1/(n_max − 1), 1) for compound symmetry, with a uniform prior
on that interval. b | y, θ, σ, β, ρ is drawn exactly from the whitened problem at each draw's ρ.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict

import numpy as np
import pytensor.tensor as pt
import scipy.sparse as sp
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op

from ...data.design import DesignMatrices
from ...model.correlation import AR1, CompoundSymmetry
from .marginal import MarginalLMM, MarginalParts
from .op import value_gradient_lop

__all__ = ["CorrelatedLMM", "CorrelatedLogpOp", "correlation_bounds"]

STEP = 1e-5  # central-difference step in ρ
DENSE_MAX = 600  # C(ρ) kept dense up to this size (q + p + 1)


def correlation_bounds(design: DesignMatrices) -> tuple[float, float]:
    """The open interval of the correlation parameter."""
    if isinstance(design.correlation, AR1):
        return -1.0, 1.0
    n_max = int(design.corr_layout.sizes.max())
    return (-1.0 / (n_max - 1) if n_max > 1 else -1.0), 1.0


class WhitenedCrossProducts:
    """C(ρ) = U'R(ρ)⁻¹U from fixed sparse products (see the module docstring)."""

    def __init__(self, design: DesignMatrices):
        self.design = design
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
        if isinstance(design.correlation, CompoundSymmetry):
            G = sp.csr_matrix((np.ones(design.n), (lay.codes, np.arange(design.n))),
                              shape=(lay.sizes.size, design.n))
            self.UtU = (U.T @ U).tocsc()
            self.sums = (G @ U).tocsr()  # s_g as rows
            self.sizes = lay.sizes.astype(float)
        else:
            prev, cur, gap = lay.pairs
            Uf = U[lay.firsts]
            self.first = (Uf.T @ Uf).tocsc()
            self.parts = []
            for d in np.unique(gap):
                sel = gap == d
                Uc, Up = U[cur[sel]], U[prev[sel]]
                cross = Uc.T @ Up
                P, S = (Uc.T @ Uc).tocsc(), (Up.T @ Up).tocsc()
                self.parts.append((float(d), P, (cross + cross.T).tocsc(), S))

        if design.q + design.p + 1 <= DENSE_MAX:  # small: dense arithmetic beats sparse overhead
            def dense(M):
                return M.toarray()

            if isinstance(design.correlation, CompoundSymmetry):
                self.UtU, self.sums = dense(self.UtU), dense(self.sums)
            else:
                self.first = dense(self.first)
                self.parts = [(d, dense(P), dense(Q), dense(S)) for d, P, Q, S in self.parts]

    def at(self, rho: float):
        """C(ρ), sparse (or dense when small)."""
        if isinstance(self.design.correlation, CompoundSymmetry):
            c = rho / (1.0 + (self.sizes - 1.0) * rho)
            if isinstance(self.sums, np.ndarray):
                return (self.UtU - (self.sums.T * c) @ self.sums) / (1.0 - rho)
            return ((self.UtU - self.sums.T @ sp.diags(c) @ self.sums) / (1.0 - rho)).tocsc()
        C = self.first.copy()
        for d, P, Q, S in self.parts:
            r = rho**d
            C = C + (P - r * Q + r * r * S) / (1.0 - r * r)
        return C

    def design_at(self, rho: float) -> DesignMatrices:
        """A design carrying C(ρ) as its cross-products (Z'Z as the lower block triangle)."""
        C, q = self.at(rho), self.q
        ZtZ = sp.coo_matrix(C[:q, :q])
        keep = self._term[ZtZ.row] >= self._term[ZtZ.col]
        ZtZ = sp.csc_matrix((ZtZ.data[keep], (ZtZ.row[keep], ZtZ.col[keep])), shape=(q, q))
        rest = C[:, q:] if isinstance(C, np.ndarray) else C[:, q:].toarray()
        gram = (ZtZ, rest[:q], rest[q:])
        return dataclasses.replace(self.design, gram=gram, correlation=None, corr_layout=None)


class CorrelatedLMM:
    """log p(y | θ, σ, β, ρ), its gradient, and exact draws of b, for one correlation structure."""

    def __init__(self, design: DesignMatrices, cache: int = 8):
        self.design = design
        self.structure = design.correlation
        self.n_theta, self.p = design.n_theta, design.p
        self.lower, self.upper = correlation_bounds(design)
        self._cache: OrderedDict[float, tuple[MarginalLMM, float]] = OrderedDict()
        self._size = cache
        self._cross = WhitenedCrossProducts(design) if design.terms else None

    def at(self, rho: float) -> tuple[MarginalLMM, float]:
        """The whitened evaluator at ρ and log|R(ρ)| (the last few kept)."""
        rho = float(rho)
        hit = self._cache.get(rho)
        if hit is not None:
            self._cache.move_to_end(rho)
            return hit
        out = (self._evaluator(rho), self.logdet(rho))
        self._cache[rho] = out
        if len(self._cache) > self._size:
            self._cache.popitem(last=False)
        return out

    def logdet(self, rho: float) -> float:
        """log|R(ρ)| (:mod:`interlace.model.correlation`)."""
        lay = self.design.corr_layout
        if isinstance(self.structure, AR1):
            return float(np.sum(np.log1p(-(rho ** (2 * lay.pairs[2])))))
        ng = lay.sizes.astype(float)
        return float(np.sum((ng - 1.0) * np.log1p(-rho) + np.log1p((ng - 1.0) * rho)))

    def _evaluator(self, rho: float) -> MarginalLMM:
        if self._cross is not None:
            return MarginalLMM(self._cross.design_at(rho))
        z = self.structure.to_z(rho, self.design.corr_layout)
        return MarginalLMM(self.design, whiten=self.structure.whitener(z, self.design.corr_layout)[0])

    def logp(self, theta, sigma: float, beta, rho: float) -> float:
        """log p(y | θ, σ, β, ρ); −inf outside the interval of ρ."""
        if not self.lower < rho < self.upper:
            return -np.inf
        lmm, logdet = self.at(rho)
        return lmm.logp(theta, sigma, beta) - 0.5 * logdet

    def logp_and_grad(self, theta, sigma: float, beta, rho: float) -> tuple[MarginalParts, float]:
        """The value and gradient in (θ, σ, β) as :class:`MarginalParts`, and ∂/∂ρ."""
        rho = float(rho)
        if not self.lower < rho < self.upper:
            return MarginalParts(-np.inf, np.zeros(self.n_theta), 0.0, np.zeros(self.p)), 0.0
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
