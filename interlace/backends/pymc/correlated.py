"""The marginal Gaussian likelihood with a residual correlation structure (AR1, compound symmetry).

Var(ε) = σ²R(ρ) (nlme's corAR1 / corCompSymm, :mod:`interlace.model.correlation`). With the
whitener R^(-1/2) the rows y* = R^(-1/2)y, X*, Z* follow the model without correlation, so

    log p(y | θ, σ, β, ρ) = log p(y* | θ, σ, β) − ½ log|R(ρ)|,

the first term from the blocked-Cholesky evaluator of :mod:`.marginal` on the whitened
cross-products (the REML engine's ``LMMObjective.problem`` does the same), one evaluator per ρ.
Its gradient in (θ, σ, β) is analytic; ∂/∂ρ is a central difference in ρ on the value (the REML
side also has no analytic derivative in ρ). Without random-effects terms this is GLS.

ρ is φ ∈ (−1, 1) for AR1 and ρ ∈ (−1/(n_max − 1), 1) for compound symmetry, with a uniform prior
on that interval. b | y, θ, σ, β, ρ is drawn exactly from the whitened problem at each draw's ρ.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytensor.tensor as pt
from pytensor.gradient import DisconnectedType, grad_not_implemented
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op

from ...data.design import DesignMatrices
from ...model.correlation import AR1
from .marginal import MarginalLMM, MarginalParts

__all__ = ["CorrelatedLMM", "CorrelatedLogpOp", "correlation_bounds"]

STEP = 1e-5  # central-difference step in ρ


def correlation_bounds(design: DesignMatrices) -> tuple[float, float]:
    """The open interval of the correlation parameter."""
    if isinstance(design.correlation, AR1):
        return -1.0, 1.0
    n_max = int(design.corr_layout.sizes.max())
    return (-1.0 / (n_max - 1) if n_max > 1 else -1.0), 1.0


class CorrelatedLMM:
    """log p(y | θ, σ, β, ρ), its gradient, and exact draws of b, for one correlation structure."""

    def __init__(self, design: DesignMatrices, cache: int = 8):
        self.design = design
        self.structure = design.correlation
        self.n_theta, self.p = design.n_theta, design.p
        self.lower, self.upper = correlation_bounds(design)
        self._cache: OrderedDict[float, tuple[MarginalLMM, float]] = OrderedDict()
        self._size = cache

    def at(self, rho: float) -> tuple[MarginalLMM, float]:
        """The whitened evaluator at ρ and log|R(ρ)| (the last few kept)."""
        rho = float(rho)
        hit = self._cache.get(rho)
        if hit is not None:
            self._cache.move_to_end(rho)
            return hit
        z = self.structure.to_z(rho, self.design.corr_layout)
        Linv, logdet = self.structure.whitener(z, self.design.corr_layout)
        out = (MarginalLMM(self.design, whiten=Linv), float(logdet))
        self._cache[rho] = out
        if len(self._cache) > self._size:
            self._cache.popitem(last=False)
        return out

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
        g = output_grads[0]
        for og in output_grads[1:]:
            if not isinstance(og.type, DisconnectedType):
                return [grad_not_implemented(self, i, x, "second derivatives") for i, x in enumerate(inputs)]
        if isinstance(g.type, DisconnectedType):
            return [pt.zeros_like(x) for x in inputs]
        return [g * outputs[1], g * outputs[2], g * outputs[3], g * outputs[4]]

    def connection_pattern(self, node):
        return [[True] * 5] * 4

    def infer_shape(self, fgraph, node, input_shapes):
        return [(), input_shapes[0], (), input_shapes[2], ()]
