"""Group-level log-likelihood of a Gaussian LMM: each level's rows with its random effects
integrated out exactly, for leave-one-group-out (LOGO) cross-validation with arviz.

For a grouping factor g (all its random-effects terms together, k columns per level: zᵢ is
observation i's row of those columns, T the block-diagonal relative factor of g's terms) and a
posterior draw (β, θ, σ, b), the rows of level j given everything but level j's own effects are

    y_j ~ N(μ_j, σ²(W_j⁻¹ + Z_j T T' Z_j')),   μ = Xβ + offset + Z₋g b₋g,

where Z₋g b₋g are the effects of the *other* grouping factors at that draw (nothing when g is
the only one). With r = y − μ, D_j = Σᵢ wᵢ zᵢzᵢ', e_j = Σᵢ wᵢ zᵢrᵢ, C_j = T'D_jT + I = L_jL_j'
and h_j = L_j⁻¹T'e_j (the matrix determinant lemma and Woodbury's identity, as in the marginal
likelihood of :mod:`.marginal`):

    log p(y_j | ·) = −n_j/2 log(2πσ²) + ½ Σᵢ log wᵢ − log|L_j| − (Σᵢ wᵢrᵢ² − ‖h_j‖²) / (2σ²).

With a single grouping factor this is the exact marginal likelihood of the level's rows given
(β, θ, σ), and the levels' terms sum to log p(y | β, θ, σ). With crossed or nested factors the
levels of g are independent only given the other factors' effects, so those are held at the
draw's values: the terms then sum to log p(y | β, θ, σ, b₋g), and PSIS-LOO over them estimates
the predictive density of a new level of g observed with the existing levels of the others.
Either way ``az.loo(idata, var_name="marginal_<g>")`` is leave-one-level-of-g-out CV.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ...data.design import DesignMatrices, tril_colwise

__all__ = ["group_loglik", "level_loglik", "Factor", "CHUNK"]

CHUNK = 256  # draws per batch (memory: CHUNK × levels × k² and CHUNK × n)


class Factor:
    """What does not change across draws for grouping factor ``group``."""

    def __init__(self, design: DesignMatrices, group: str):
        self.terms = [t for t in design.terms if t.group == group]
        if not self.terms:
            raise KeyError(f"{group!r} is not a grouping factor of this model")
        t0 = self.terms[0]
        self.m, self.codes = t0.m, t0.codes
        self.k = sum(t.k for t in self.terms)
        self.Zg = np.column_stack([design.term_columns(t) for t in self.terms])  # n × k
        self.cols = np.concatenate([np.arange(t.z_start, t.z_start + t.q) for t in self.terms])
        other = np.ones(design.q, dtype=bool)
        other[self.cols] = False
        self.other = np.flatnonzero(other)
        self.Z_other = design.Z.tocsc()[:, self.other] if self.other.size else None
        n = design.n
        self.w = np.ones(n) if design.weights is None else np.asarray(design.weights, dtype=float)
        self.A = sp.csr_matrix((np.ones(n), (self.codes, np.arange(n))), shape=(self.m, n))
        self.n_j = np.asarray(self.A.sum(axis=1)).ravel()
        self.logw_j = self.A @ np.log(self.w)
        wz = self.Zg * self.w[:, None]
        D = np.zeros((self.m, self.k, self.k))
        for a in range(self.k):
            for c in range(self.k):
                D[:, a, c] = self.A @ (wz[:, a] * self.Zg[:, c])
        self.D = D

    def T(self, theta: np.ndarray) -> np.ndarray:
        """Draws (S, k, k) of the block-diagonal relative factor of the factor's terms."""
        S = theta.shape[0]
        T = np.zeros((S, self.k, self.k))
        off = 0
        for t in self.terms:
            rows, cols = tril_colwise(t.k)
            T[:, off + rows, off + cols] = theta[:, t.theta_slice]
            off += t.k
        return T


def group_loglik(
    design: DesignMatrices,
    group: str,
    beta: np.ndarray,
    sigma: np.ndarray,
    theta: np.ndarray,
    b: np.ndarray,
) -> np.ndarray:
    """log p(y_j | β, θ, σ, b₋g) per draw and level j of ``group``: shape (S, levels).

    ``beta`` (S, p), ``sigma`` (S,), ``theta`` (S, n_theta) and ``b`` (S, q, Z's column order)
    are posterior draws; see the module docstring for the formula."""
    f = Factor(design, group)
    S = beta.shape[0]
    out = np.empty((S, f.m))
    base = design.y - design.offset
    for lo in range(0, S, CHUNK):
        hi = min(S, lo + CHUNK)
        r = base[None, :] - beta[lo:hi] @ design.X.T
        if f.Z_other is not None:
            r = r - np.asarray(f.Z_other @ b[lo:hi, f.other].T).T
        wr = r * f.w[None, :]
        rr = (f.A @ (wr * r).T).T  # (s, m): Σᵢ wᵢ rᵢ²
        e = np.stack([(f.A @ (wr * f.Zg[:, a][None, :]).T).T for a in range(f.k)], axis=-1)  # (s, m, k)
        out[lo:hi] = level_loglik(rr, e, f.D[None], f.T(theta[lo:hi]), f.n_j, sigma[lo:hi])
        out[lo:hi] += 0.5 * f.logw_j[None, :]
    return out


def level_loglik(
    rr: np.ndarray, e: np.ndarray, D: np.ndarray, T: np.ndarray, n_j: np.ndarray, sigma: np.ndarray
) -> np.ndarray:
    """The module docstring's formula without its ½ Σᵢ log wᵢ, from the level-wise sums of s
    draws: rr (s, m) = Σᵢ wᵢrᵢ², e (s, m, k) = Σᵢ wᵢzᵢrᵢ, D (s or 1, m, k, k) = Σᵢ wᵢzᵢzᵢ', the
    relative factors T (s, k, k), the level sizes n_j (m,) and σ (s,). Returns (s, m)."""
    Tt = np.swapaxes(T, 1, 2)
    C = Tt[:, None] @ D @ T[:, None] + np.eye(T.shape[-1])
    L = np.linalg.cholesky(C)  # (s, m, k, k)
    h = np.linalg.solve(L, (Tt[:, None] @ e[..., None]))[..., 0]
    logdet = np.sum(np.log(np.diagonal(L, axis1=2, axis2=3)), axis=-1)
    s2 = sigma[:, None] ** 2
    return -0.5 * n_j[None, :] * np.log(2 * np.pi * s2) - logdet - (rr - np.sum(h * h, axis=-1)) / (2 * s2)
