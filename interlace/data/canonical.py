"""Cross-products whose value does not depend on the order the rows are summed in.

A floating-point sum depends on the order of its terms: numpy's sparse products over the rows
and polars' (parallel, streaming) group-by sums give [Z X y]'[Z X y] entries that differ in the
last bits, and NUTS turns such differences into different draws. Here every product a·b of one
row is first put on a fixed grid, then summed; sums of grid points are exact in any order:

    E_a = exponent of max_rows |a| (max|a| = f·2^E_a, ½ ≤ f < 1),   K = 52 − bitlength(n),
    s_ab = K − E_a − E_b,   ã·b = ⌊a·b·2^s_ab + ½⌋ · 2^(−s_ab)

(with prior weights the product is w·a·b and E_w is subtracted from s_ab too).

|a·b·2^s_ab| < 2^K, so every partial sum of the n integers ⌊·⌉ stays below n·2^K ≤ 2^52 and is
exact: the cross-product Σ ã·b is the same number whichever rows are added first (and however
they are grouped), on the eager and on the lazy path. Scaling by powers of two, the product a·b
(one IEEE rounding) and ⌊x + ½⌋ are the same operations in numpy and polars.

Effect on the likelihood: each product moves by at most half a grid step, 2^(E_a + E_b − K − 1)
≤ max|a|·max|b|·2^(bitlength(n) − 52); the errors are independent across rows, so a sum of n
products moves by about √(n/12) grid steps — for n = 180 (sleepstudy) about 1e-12 of max|a|·max|b|,
for n = 2·10⁷ about 4e-5 of max|a|·max|b|, against sums of order n·|a·b|: relative changes of
1e-14 to 1e-12, below the rounding of a plain float64 sum of that length (up to n·ε).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp

__all__ = ["exponent", "grid_bits", "shift", "on_grid"]


def exponent(max_abs: float) -> int:
    """E with max|a| = f·2^E, ½ ≤ f < 1 (0 for an all-zero column)."""
    return int(math.frexp(float(max_abs))[1])


def grid_bits(n: int) -> int:
    """K = 52 − bitlength(n): n integers below 2^K in magnitude sum exactly in float64."""
    return 52 - int(n).bit_length()


def shift(e_a: int, e_b: int, n: int) -> int:
    """s_ab = K − E_a − E_b: the grid of the products of columns a and b is 2^(−s_ab)."""
    return grid_bits(n) - e_a - e_b


def on_grid(prod: np.ndarray, s: int) -> np.ndarray:
    """⌊a·b·2^s + ½⌋ (integer-valued float64; multiply the sum by 2^(−s))."""
    return np.floor(np.asarray(prod, dtype=float) * 2.0**s + 0.5)


def row_crossproducts(design) -> tuple:
    """(Z'WZ's lower block triangle, Z'W[X y], [X y]'W[X y]) from the rows of an eager design,
    every product on the grid (module doc) — the numbers and layout :func:`.lazy.lazy_crossproducts`
    gives with ``canonical=True`` for the same data (terms in the design's order; a ≥ b blocks)."""
    n = design.n
    w = np.ones(n) if design.weights is None else np.asarray(design.weights, dtype=float)
    e_w = exponent(np.max(np.abs(w)))
    XY = np.column_stack([design.X, design.y - design.offset])
    e_xy = [exponent(np.max(np.abs(c))) for c in XY.T]
    cols = [design.term_columns(t) for t in design.terms]
    e_z = [[exponent(np.max(np.abs(c))) for c in zc.T] for zc in cols]

    def total(a, b, e_a, e_b, groups=None, size=0):
        s = shift(e_a, e_b, n) - e_w
        g = on_grid((w * a) * b, s)
        out = g.sum() if groups is None else np.bincount(groups, weights=g, minlength=size)
        return out * 2.0**-s

    c = XY.shape[1]
    XytXy = np.empty((c, c))
    for i in range(c):
        for j in range(i + 1):
            XytXy[i, j] = XytXy[j, i] = total(XY[:, i], XY[:, j], e_xy[i], e_xy[j])
    q = design.q
    ZtXy = np.zeros((q, c))
    diag: list = []
    lower: list = []
    for a, ta in enumerate(design.terms):
        for ja in range(ta.k):
            for x in range(c):
                ZtXy[ta.z_start + np.arange(ta.m) * ta.k + ja, x] = total(
                    cols[a][:, ja], XY[:, x], e_z[a][ja], e_xy[x], ta.codes, ta.m)
        for b in range(a + 1):
            tb = design.terms[b]
            cell = ta.codes.astype(np.int64) * tb.m + tb.codes if a != b else ta.codes.astype(np.int64)
            present, inverse = np.unique(cell, return_inverse=True)
            la, lb = (present // tb.m, present % tb.m) if a != b else (present, present)
            for ja in range(ta.k):
                for jb in range(tb.k):
                    v = total(cols[a][:, ja], cols[b][:, jb], e_z[a][ja], e_z[b][jb], inverse, present.size)
                    r = (ta.z_start + la * ta.k + ja).astype(np.int32)
                    cc = (tb.z_start + lb * tb.k + jb).astype(np.int32)
                    (diag if a == b else lower).append((r, cc, v))
    return block_lower_sparse(diag, lower, q), ZtXy, XytXy


def block_lower_sparse(diag: list, lower: list, q: int) -> sp.csc_matrix:
    """Z'WZ's lower block triangle from the (rows, cols, values) of its diagonal blocks and of
    the blocks Z_a'WZ_b, a > b: one COO → CSC conversion from preallocated int32 index arrays."""
    parts = diag + lower
    rows = np.empty(sum(v.size for _, _, v in parts), dtype=np.int32)
    cols = np.empty_like(rows)
    vals = np.empty(rows.size)
    at = 0
    for r, c, v in parts:
        rows[at : at + v.size], cols[at : at + v.size], vals[at : at + v.size] = r, c, v
        at += v.size
    return sp.coo_matrix((vals, (rows, cols)), shape=(q, q)).tocsc()
