"""Residual correlation structures (nlme's corAR1 and corCompSymm).

Within each group g of the structure, Var(ε_g) = σ² R_g(ρ). A fit whitens y, X and Z by
R_g^(-1/2) and adds Σ_g log|R_g| to the deviance.

- :class:`AR1`: corr(ε_i, ε_j) = φ^|t_i − t_j| for integer times t within a group. Sorted by
  time, e₁ = ε₁ and e_k = (ε_k − φ^d ε_{k−1}) / √(1 − φ^{2d}) (d the gap) are independent with
  unit variance, so R^(-1/2) is bidiagonal and log|R_g| = Σ_k log(1 − φ^{2d_k}).
- :class:`CompoundSymmetry`: R_g = (1 − ρ)I + ρ11'. Its symmetric inverse square root is
  (1 − ρ)^(-1/2) (I − c 11'/n_g) with c = 1 − √((1 − ρ)/(1 + (n_g − 1)ρ)), and
  log|R_g| = (n_g − 1) log(1 − ρ) + log(1 + (n_g − 1)ρ).

The parameter is optimized on an unconstrained scale z: φ = tanh(z); ρ maps (−∞, ∞) onto
(−1/(n_max − 1), 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

__all__ = ["AR1", "CompoundSymmetry", "CorrelationLayout", "correlation_layout", "series_crossing"]


@dataclass(frozen=True)
class AR1:
    """First-order autoregressive residuals ordered by ``time`` within ``group``.

    ``group`` defaults to the model's single grouping factor.
    """

    time: str
    group: str | None = None
    name = "phi"

    def columns(self) -> list[str]:
        return [self.time] + ([self.group] if self.group else [])

    def value(self, z: float, layout: CorrelationLayout) -> float:
        return float(np.tanh(z))

    def to_z(self, value: float, layout: CorrelationLayout) -> float:
        return float(np.arctanh(value))

    def whitener(self, z: float, layout: CorrelationLayout) -> tuple[sp.csr_matrix, float]:
        phi = self.value(z, layout)
        prev, cur, gap = layout.pairs
        n = layout.n
        rho = phi**gap
        scale = 1.0 / np.sqrt(1.0 - rho**2)
        rows = np.concatenate([layout.firsts, cur, cur])
        cols = np.concatenate([layout.firsts, cur, prev])
        vals = np.concatenate([np.ones(layout.firsts.size), scale, -rho * scale])
        Linv = sp.csr_matrix((vals, (rows, cols)), shape=(n, n))
        return Linv, float(np.sum(np.log1p(-(rho**2))))


@dataclass(frozen=True)
class CompoundSymmetry:
    """Equal correlation ρ between all residuals of a ``group``.

    ``group`` defaults to the model's single grouping factor.
    """

    group: str | None = None
    name = "rho"

    def columns(self) -> list[str]:
        return [self.group] if self.group else []

    def _lower(self, layout: CorrelationLayout) -> float:
        n_max = int(layout.sizes.max())
        return -1.0 / (n_max - 1) if n_max > 1 else -1.0

    def value(self, z: float, layout: CorrelationLayout) -> float:
        lo = self._lower(layout)
        return float(lo + (1.0 - lo) * (np.tanh(z) + 1.0) / 2.0)

    def to_z(self, value: float, layout: CorrelationLayout) -> float:
        lo = self._lower(layout)
        return float(np.arctanh(2.0 * (value - lo) / (1.0 - lo) - 1.0))

    def whitener(self, z: float, layout: CorrelationLayout) -> tuple[sp.csr_matrix, float]:
        rho = self.value(z, layout)
        ng = layout.sizes.astype(float)
        a = 1.0 / np.sqrt(1.0 - rho)
        c = 1.0 - np.sqrt((1.0 - rho) / (1.0 + (ng - 1.0) * rho))
        off = -a * c / ng  # per group
        rows, cols, gid = layout.all_pairs
        vals = off[gid] + np.where(rows == cols, a, 0.0)
        Linv = sp.csr_matrix((vals, (rows, cols)), shape=(layout.n, layout.n))
        logdet = float(np.sum((ng - 1.0) * np.log1p(-rho) + np.log1p((ng - 1.0) * rho)))
        return Linv, logdet


@dataclass
class CorrelationLayout:
    """Row indices of each correlation group, in time order: what the whitening needs."""

    n: int
    codes: np.ndarray
    sizes: np.ndarray
    firsts: np.ndarray
    pairs: tuple[np.ndarray, np.ndarray, np.ndarray]  # (previous row, row, time gap)
    all_pairs: tuple[np.ndarray, np.ndarray, np.ndarray]  # (row, col, group) within groups


def correlation_layout(structure, frame: pd.DataFrame, group: str | None) -> CorrelationLayout:
    """Group codes, time order and within-group pairs of the complete-case rows."""
    n = len(frame)
    if group is None:
        codes = np.zeros(n, dtype=np.int64)
    else:
        codes = pd.factorize(frame[group].astype(str), sort=True)[0].astype(np.int64)
    if isinstance(structure, AR1):
        t = frame[structure.time].to_numpy()
        if not np.issubdtype(np.asarray(t).dtype, np.number):
            raise TypeError(f"AR1 time column {structure.time!r} must be numeric (integer positions)")
        t = np.asarray(t, dtype=float)
        if not np.allclose(t, np.round(t)):
            raise ValueError(f"AR1 time column {structure.time!r} must hold integer positions")
        order = np.lexsort((t, codes))
    else:
        t = np.arange(n, dtype=float)
        order = np.argsort(codes, kind="stable")
    sc = codes[order]
    new_group = np.r_[True, sc[1:] != sc[:-1]]
    firsts = order[new_group]
    prev, cur = order[:-1][~new_group[1:]], order[1:][~new_group[1:]]
    gap = t[cur] - t[prev]
    if np.any(gap <= 0):
        raise ValueError(
            f"AR1 time column {getattr(structure, 'time', '')!r} has repeated values within a group; "
            "each observation of a group needs its own time"
        )
    sizes = np.bincount(codes)
    all_pairs = _within_group_pairs(order, sc, sizes) if isinstance(structure, CompoundSymmetry) else (
        np.zeros(0, dtype=np.int64),) * 3
    return CorrelationLayout(n, codes, sizes, firsts, (prev, cur, gap), all_pairs)


def _within_group_pairs(order: np.ndarray, sorted_codes: np.ndarray, sizes: np.ndarray):
    rows, cols, gids = [], [], []
    start = 0
    for g, size in enumerate(sizes):
        idx = order[start : start + size]
        rows.append(np.repeat(idx, size))
        cols.append(np.tile(idx, size))
        gids.append(np.full(size * size, g))
        start += size
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(gids)


def series_crossing(structure, layout: CorrelationLayout, codes: np.ndarray, group: str) -> str | None:
    """None when every series of ``structure`` lies within one level of ``group`` (``codes`` per
    row); otherwise why the levels of ``group`` have no log-likelihood of their own."""
    lo = np.full(layout.sizes.size, np.iinfo(np.int64).max)
    hi = np.full(layout.sizes.size, -1)
    np.minimum.at(lo, layout.codes, codes)
    np.maximum.at(hi, layout.codes, codes)
    if np.all(lo == hi):
        return None
    kind = type(structure).__name__
    return (
        f"the {kind} residual series (group={structure.group!r}) cross the levels of {group!r}, so "
        f"a level's rows are correlated with other levels' rows and have no log-likelihood of their "
        f"own; leave-one-group-out needs each series within one level of {group!r} "
        f"(e.g. {kind}(..., group={group!r}))"
    )
