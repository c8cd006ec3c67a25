"""pytensor Ops for the marginal log-densities log p(y | θ, σ, β) and log p(y | θ, σ).

Each Op returns the log-density and its gradients from one call of the evaluator
(:meth:`~.marginal.MarginalBase.logp_and_grad` / ``logp_integrated``); the gradient of the first
output is expressed through the others, so a graph that needs both evaluates the factor once.
"""

from __future__ import annotations

import numpy as np
import pytensor.tensor as pt
from pytensor.gradient import DisconnectedType, grad_not_implemented
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op

from .marginal import GaussianPrior, MarginalBase

__all__ = ["MarginalLogpOp", "IntegratedLogpOp", "value_gradient_lop"]


def value_gradient_lop(op: Op, inputs, outputs, output_grads) -> list:
    """``L_op`` of an Op whose outputs are (value, ∂value/∂input₀, ∂value/∂input₁, …): the gradient
    of the value is g·(stored gradients); gradients of the gradient outputs (second derivatives)
    are not implemented."""
    g = output_grads[0]
    for og in output_grads[1:]:
        if not isinstance(og.type, DisconnectedType):
            return [grad_not_implemented(op, i, x, "second derivatives") for i, x in enumerate(inputs)]
    if isinstance(g.type, DisconnectedType):
        return [pt.zeros_like(x) for x in inputs]
    return [g * outputs[i + 1] for i in range(len(inputs))]


class MarginalLogpOp(Op):
    """(θ, σ, β) ↦ (log p(y | θ, σ, β), ∂/∂θ, ∂/∂σ, ∂/∂β) for one fixed data set."""

    def __init__(self, lmm: MarginalBase):
        self.lmm = lmm

    def make_node(self, theta, sigma, beta) -> Apply:
        theta = pt.as_tensor_variable(theta).astype("float64")
        sigma = pt.as_tensor_variable(sigma).astype("float64")
        beta = pt.as_tensor_variable(beta).astype("float64")
        if theta.ndim != 1 or sigma.ndim != 0 or beta.ndim != 1:
            raise TypeError("MarginalLogpOp takes a vector θ, a scalar σ and a vector β")
        outputs = [pt.dscalar(), pt.dvector(), pt.dscalar(), pt.dvector()]
        return Apply(self, [theta, sigma, beta], outputs)

    def perform(self, node, inputs, output_storage) -> None:
        theta, sigma, beta = inputs
        parts = self.lmm.logp_and_grad(theta, float(sigma), beta)
        output_storage[0][0] = np.asarray(parts.logp, dtype="float64")
        output_storage[1][0] = np.asarray(parts.g_theta, dtype="float64")
        output_storage[2][0] = np.asarray(parts.g_sigma, dtype="float64")
        output_storage[3][0] = np.asarray(parts.g_beta, dtype="float64")

    def L_op(self, inputs, outputs, output_grads):
        return value_gradient_lop(self, inputs, outputs, output_grads)

    def connection_pattern(self, node):
        return [[True, True, True, True]] * 3

    def infer_shape(self, fgraph, node, input_shapes):
        return [(), input_shapes[0], (), input_shapes[2]]


class IntegratedLogpOp(Op):
    """(θ, σ) ↦ (log p(y | θ, σ), ∂/∂θ, ∂/∂σ) with β ~ N(m₀, S₀) integrated out."""

    def __init__(self, lmm: MarginalBase, prior: GaussianPrior):
        self.lmm = lmm
        self.prior = prior

    def make_node(self, theta, sigma) -> Apply:
        theta = pt.as_tensor_variable(theta).astype("float64")
        sigma = pt.as_tensor_variable(sigma).astype("float64")
        if theta.ndim != 1 or sigma.ndim != 0:
            raise TypeError("IntegratedLogpOp takes a vector θ and a scalar σ")
        return Apply(self, [theta, sigma], [pt.dscalar(), pt.dvector(), pt.dscalar()])

    def perform(self, node, inputs, output_storage) -> None:
        theta, sigma = inputs
        parts = self.lmm.logp_integrated(theta, float(sigma), self.prior)
        output_storage[0][0] = np.asarray(parts.logp, dtype="float64")
        output_storage[1][0] = np.asarray(parts.g_theta, dtype="float64")
        output_storage[2][0] = np.asarray(parts.g_sigma, dtype="float64")

    def L_op(self, inputs, outputs, output_grads):
        return value_gradient_lop(self, inputs, outputs, output_grads)

    def connection_pattern(self, node):
        return [[True, True, True]] * 2

    def infer_shape(self, fgraph, node, input_shapes):
        return [(), input_shapes[0], ()]
