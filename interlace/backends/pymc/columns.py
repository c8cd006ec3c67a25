"""Column statistics the default priors and starting values need, from rows or from cross-products.

The PyMC backend scales its default priors by the SD of the response, of each fixed-effect
column and of each random-effect column (:mod:`.priors`). With rows these are plain ``np.std``;
for a lazy frame (``design.gram``: C = [Z X y]'[Z X y] only) the same numbers follow from the
sums C holds, with n the number of observations and the intercept column 1:

    Σ x_j = C[x_j, 1], Σ x_j² = C[x_j, x_j], Σ z_c = Σ_levels C[z_lc, 1], Σ z_c² = Σ_levels C[z_lc, z_lc],

SD² = Σx²/n − (Σx/n)² (numpy's ddof = 0). A column whose SD vanishes is scaled by its root mean
square instead (1 for an intercept). Least-squares starting values use β = (X'X)⁻¹X'y and
RSS = y'y − β'X'y.

An eager design without weights or residual correlation, with an intercept, takes the lazy route
too: :func:`canonical_design` attaches the cross-products of its rows, every product on the grid
of :mod:`interlace.data.canonical` (sums that do not depend on the order of the rows), which is how
a lazy frame's are aggregated for the PyMC backend. The marginal likelihood
(:func:`.model.marginal_density`) and these statistics read those sums on both paths, so an eager
and a lazy fit of the same data see the same numbers bit for bit, and one seed gives the same draws.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ...data.design import DesignMatrices

__all__ = ["ColumnStats", "canonical_design", "column_stats", "row_scale"]


@dataclass
class ColumnStats:
    """Means and scales (SD, or RMS for a constant column) of y − offset, X's and Z's columns."""

    y_mean: float
    y_sd: float
    intercept: int | None
    x_means: np.ndarray
    x_scales: np.ndarray
    z_scales: dict[tuple[str, str], float]  # (group, column) → scale
    beta_ls: np.ndarray  # least-squares β (weighted by the prior weights)
    rss: float  # its weighted residual sum of squares


def _scale(mean: float, mean_sq: float, max_abs: float) -> float:
    s = float(np.sqrt(max(mean_sq - mean * mean, 0.0)))
    if s <= 1e-12 * max(1.0, max_abs):
        s = float(np.sqrt(mean_sq))
    return s if s > 0 else 1.0


def row_scale(x: np.ndarray) -> float:
    """SD of a column, or its root mean square if it is constant (1 for an intercept)."""
    s = float(np.std(x))
    if s <= 1e-12 * max(1.0, float(np.max(np.abs(x)))):
        s = float(np.sqrt(np.mean(x * x)))
    return s if s > 0 else 1.0


def canonical_design(design: DesignMatrices) -> DesignMatrices:
    """``design`` with the order-free cross-products of its rows as ``gram`` (module docstring);
    a lazy design, or one with weights, a residual correlation or no intercept, as it is."""
    if (design.gram is not None or design.weights is not None or design.correlation is not None
            or "(Intercept)" not in design.X_names):
        return design
    cached = design.__dict__.get("_canonical_design")
    if cached is None:
        from ...data.canonical import row_crossproducts

        cached = dataclasses.replace(design, gram=row_crossproducts(design))
        design.__dict__["_canonical_design"] = cached
    return cached


def column_stats(design: DesignMatrices) -> ColumnStats:
    """The statistics from rows, or from cross-products (module docstring)."""
    design = canonical_design(design)
    return _from_gram(design) if design.gram is not None else _from_rows(design)


def _from_rows(design: DesignMatrices) -> ColumnStats:
    yc = design.y - design.offset
    X = design.X
    ones = [j for j in range(X.shape[1]) if np.all(X[:, j] == 1.0)]
    x_scales = np.array([row_scale(x) for x in X.T])
    z = {}
    for t in design.terms:
        cols = design.term_columns(t)
        for c, col in enumerate(t.columns):
            z[(t.group, col)] = row_scale(cols[:, c])
    w = np.ones(design.n) if design.weights is None else design.weights
    sw = np.sqrt(w)
    beta = np.linalg.lstsq(X * sw[:, None], yc * sw, rcond=None)[0]
    r = (yc - X @ beta) * sw
    return ColumnStats(float(np.mean(yc)), float(np.std(yc)), ones[0] if ones else None, X.mean(axis=0),
                       x_scales, z, beta, float(r @ r))


def _from_gram(design: DesignMatrices) -> ColumnStats:
    ZtZ, ZtXy, XytXy = design.gram
    n, p = float(design.n), design.p
    if "(Intercept)" not in design.X_names:
        raise ValueError("backend='pymc' on a lazy frame needs an intercept in the fixed effects "
                         "(its default priors are scaled by column means the intercept's sums give)")
    j0 = design.X_names.index("(Intercept)")
    sums, sq = XytXy[j0] / n, np.diagonal(XytXy) / n
    scales = np.array([_scale(sums[j], sq[j], 0.0) for j in range(p)])
    scales[j0] = 1.0
    zdiag = np.asarray(ZtZ.diagonal())
    z = {}
    for t in design.terms:
        sl = slice(t.z_start, t.z_start + t.q)
        zs = ZtXy[sl, j0].reshape(t.m, t.k).sum(axis=0) / n
        zq = zdiag[sl].reshape(t.m, t.k).sum(axis=0) / n
        for c, col in enumerate(t.columns):
            z[(t.group, col)] = _scale(float(zs[c]), float(zq[c]), 0.0)
    XtX, Xty = XytXy[:p, :p], XytXy[:p, p]
    beta = np.linalg.lstsq(XtX, Xty, rcond=None)[0]
    y_mean = float(sums[p])
    return ColumnStats(y_mean, float(np.sqrt(max(sq[p] - y_mean**2, 0.0))), j0, sums[:p], scales, z, beta,
                       float(XytXy[p, p] - beta @ Xty))
