"""Log-likelihood terms for LOO when the residuals are correlated (AR1, compound symmetry, GLS).

With Var(ε) = σ²W^(-½)R(ρ)W^(-½) (R block diagonal over the structure's series, W the prior
weights) the likelihood does not factor over observations, but the leave-one-out predictive
density of a multivariate normal has a closed form (Bürkner, Gabry & Vehtari 2021, "Efficient
leave-one-out cross-validation for Bayesian non-factorized normal and Student-t models",
*Computational Statistics* 36:1243; the ``loo`` R package vignette "LOO-CV for non-factorized
models"). For y ~ N(μ, Σ), C = Σ⁻¹ and g = C(y − μ), yᵢ | y₋ᵢ ~ N(yᵢ − gᵢ/Cᵢᵢ, 1/Cᵢᵢ), so

    log p(yᵢ | y₋ᵢ, ·) = −½ log 2π + ½ log Cᵢᵢ − ½ gᵢ² / Cᵢᵢ,

and PSIS over these terms is the paper's method. Per posterior draw μ = Xβ + Zb + offset (b
the draw's effects, as in the uncorrelated conditional LOO) and, with v = W^½(y − μ),
C = σ⁻²W^½R⁻¹W^½: Cᵢᵢ = wᵢ(R⁻¹)ᵢᵢ/σ² and gᵢ²/Cᵢᵢ = (R⁻¹v)ᵢ² / (σ²(R⁻¹)ᵢᵢ). R⁻¹ is never
formed (:mod:`interlace.model.correlation`):

- AR1 with gaps d (r = φ^d, s² = 1/(1 − r²)): R⁻¹ = Σ_first eₜeₜ' + Σ_pairs s²(e_cur −
  r e_prev)(e_cur − r e_prev)', tridiagonal per series;
- compound symmetry: R_g⁻¹ = (I − c_g 11')/(1 − ρ), c_g = ρ/(1 + (n_g − 1)ρ),

so a draw costs O(n). Group-level terms (leave-one-group-out) for a random-effects grouping
factor g exist when every series lies within one level of g: then level j's rows are
y_j ~ N(μ_j, σ²(W_j^(-½)R_jW_j^(-½) + Z_jTT'Z_j')), and whitening the rows by R^(-½)W^½
(which mixes rows of one series only, so of one level only) turns it into the uncorrelated case
of :mod:`.logo` with unit weights, plus the Jacobian ½ Σᵢ log wᵢ − ½ log|R_j|. The whitened
cross-products change with ρ, so they are formed per draw (O(n k²)).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ...data.design import DesignMatrices
from ...model.correlation import AR1, series_crossing
from .logo import Factor, level_loglik

__all__ = ["correlated_loglik", "correlated_group_loglik", "series_refusal"]

LOG_2PI = float(np.log(2 * np.pi))
BLOCK = 4_000_000  # values per draw batch (draws × rows × columns)


class _Series:
    """The structure's series, and R(ρ)⁻¹, R(ρ)^(-½) and log|R(ρ)| per row for draws of ρ."""

    def __init__(self, design: DesignMatrices):
        lay = design.corr_layout
        self.n = design.n
        self.ar1 = isinstance(design.correlation, AR1)
        self.codes = lay.codes
        self.firsts = lay.firsts
        self.prev, self.cur, gap = lay.pairs
        self.gap = gap.astype(float)
        self.sizes = lay.sizes.astype(float)
        series = (np.ones(self.n), (lay.codes, np.arange(self.n)))
        self.G = sp.csr_matrix(series, shape=(lay.sizes.size, self.n))

    def _group_sums(self, v: np.ndarray) -> np.ndarray:
        """Σ over each series of v (s, n, ...): (s, series, ...)."""
        flat = v.reshape(v.shape[0], self.n, -1)
        out = np.stack([(self.G @ flat[..., c].T).T for c in range(flat.shape[-1])], axis=-1)
        return out.reshape((v.shape[0], self.G.shape[0]) + v.shape[2:])

    def _pairs(self, rho: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        r = rho[:, None] ** self.gap[None, :]
        return r, 1.0 / np.sqrt(1.0 - r * r)

    def solve_diag(self, v: np.ndarray, rho: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """R⁻¹v and the diagonal of R⁻¹ for draws: v (s, n), ρ (s,) → two (s, n) arrays."""
        s = v.shape[0]
        if self.ar1:
            r, sc = self._pairs(rho)
            u = sc * (v[:, self.cur] - r * v[:, self.prev])  # whitened rows of the pairs
            out = np.zeros_like(v)
            diag = np.zeros((s, self.n))
            out[:, self.firsts] = v[:, self.firsts]
            diag[:, self.firsts] = 1.0
            out[:, self.cur] += sc * u  # each row is "cur" of at most one pair, "prev" of at most one
            out[:, self.prev] -= r * sc * u
            diag[:, self.cur] += sc * sc
            diag[:, self.prev] += (r * sc) ** 2
            return out, diag
        c = rho[:, None] / (1.0 + (self.sizes[None, :] - 1.0) * rho[:, None])  # (s, series)
        inv = 1.0 / (1.0 - rho)[:, None]
        sums = self._group_sums(v)
        out = (v - (c * sums)[:, self.codes]) * inv
        diag = (1.0 - c[:, self.codes]) * inv
        return out, diag

    def whiten(self, v: np.ndarray, rho: np.ndarray) -> np.ndarray:
        """R^(-½)v (the whitener of :mod:`interlace.model.correlation`) for v (s, n, ...)."""
        extra = (Ellipsis,) + (None,) * (v.ndim - 2)
        if self.ar1:
            r, sc = self._pairs(rho)
            out = v.copy()
            out[:, self.cur] = sc[extra] * (v[:, self.cur] - r[extra] * v[:, self.prev])
            return out
        ng = self.sizes[None, :]
        a = 1.0 / np.sqrt(1.0 - rho)[:, None]
        c = 1.0 - np.sqrt((1.0 - rho[:, None]) / (1.0 + (ng - 1.0) * rho[:, None]))
        k = (a * c / ng)[:, self.codes]
        return a[extra] * v - k[extra] * self._group_sums(v)[:, self.codes]

    def logdet_rows(self, rho: np.ndarray) -> np.ndarray:
        """(s, n) terms that add up, per series, to log|R(ρ)| of that series."""
        out = np.zeros((rho.shape[0], self.n))
        if self.ar1:
            r, _ = self._pairs(rho)
            out[:, self.cur] = np.log1p(-r * r)
            return out
        ng = self.sizes[None, :]
        per = (ng - 1.0) * np.log1p(-rho[:, None]) + np.log1p((ng - 1.0) * rho[:, None])
        return (per / ng)[:, self.codes]


def _batch(design: DesignMatrices, width: int) -> int:
    return max(1, BLOCK // (design.n * max(width, 1)))


def correlated_loglik(
    design: DesignMatrices, beta: np.ndarray, sigma: np.ndarray, rho: np.ndarray, b: np.ndarray
) -> np.ndarray:
    """log p(yᵢ | y₋ᵢ, β, σ, ρ, b) per draw and row (module docstring): shape (S, n).

    ``beta`` (S, p), ``sigma`` (S,), ``rho`` (S,) and ``b`` (S, q) are posterior draws."""
    ser = _Series(design)
    S = beta.shape[0]
    w = np.ones(design.n) if design.weights is None else np.asarray(design.weights, dtype=float)
    sw, logw = np.sqrt(w), np.log(w)
    base = design.y - design.offset
    out = np.empty((S, design.n))
    step = _batch(design, 3)
    for lo in range(0, S, step):
        hi = min(S, lo + step)
        r = base[None, :] - beta[lo:hi] @ design.X.T
        if design.q:
            r = r - np.asarray(design.Z @ b[lo:hi].T).T
        Rv, dR = ser.solve_diag(r * sw[None, :], rho[lo:hi])
        s2 = sigma[lo:hi, None] ** 2
        out[lo:hi] = -0.5 * (LOG_2PI + np.log(s2) - np.log(dR) - logw[None, :]) - 0.5 * Rv * Rv / (s2 * dR)
    return out


def series_refusal(design: DesignMatrices, group: str) -> str | None:
    """Why ``group`` has no group-level log-likelihood under the design's correlation structure
    (None when it has one, or when it is not a grouping factor): :func:`series_crossing`."""
    codes = next((t.codes for t in design.terms if t.group == group), None)
    if design.correlation is None or codes is None:
        return None
    return series_crossing(design.correlation, design.corr_layout, codes, group)


def correlated_group_loglik(
    design: DesignMatrices,
    group: str,
    beta: np.ndarray,
    sigma: np.ndarray,
    theta: np.ndarray,
    rho: np.ndarray,
    b: np.ndarray,
) -> np.ndarray:
    """log p(y_j | β, θ, σ, ρ, b₋g) per draw and level j of ``group``: shape (S, levels).

    Needs every series within one level of ``group`` (:func:`series_refusal`)."""
    why = series_refusal(design, group)
    if why is not None:
        raise ValueError(why)
    f = Factor(design, group)
    ser = _Series(design)
    S = beta.shape[0]
    sw = np.sqrt(f.w)
    swZ = f.Zg * sw[:, None]
    base = design.y - design.offset
    out = np.empty((S, f.m))
    step = _batch(design, f.k + 2)
    for lo in range(0, S, step):
        hi = min(S, lo + step)
        rh = rho[lo:hi]
        r = base[None, :] - beta[lo:hi] @ design.X.T
        if f.Z_other is not None:
            r = r - np.asarray(f.Z_other @ b[lo:hi, f.other].T).T
        ur = ser.whiten(r * sw[None, :], rh)  # (s, n)
        uz = ser.whiten(np.broadcast_to(swZ, (hi - lo,) + swZ.shape), rh)  # (s, n, k)
        rr = (f.A @ (ur * ur).T).T
        e = np.stack([(f.A @ (uz[..., a] * ur).T).T for a in range(f.k)], axis=-1)
        D = np.empty((hi - lo, f.m, f.k, f.k))
        for a in range(f.k):
            for c in range(a + 1):
                D[:, :, a, c] = D[:, :, c, a] = (f.A @ (uz[..., a] * uz[..., c]).T).T
        jac = 0.5 * f.logw_j[None, :] - 0.5 * (f.A @ ser.logdet_rows(rh).T).T
        out[lo:hi] = level_loglik(rr, e, D, f.T(theta[lo:hi]), f.n_j, sigma[lo:hi]) + jac
    return out
