"""Cross-products of a Gaussian LMM computed where the data live (narwhals lazy frames).

With u = [Z, X, y] the row vector of an observation and w its prior weight, every quantity
the REML/ML engine needs is a block of Σ w u u' (Z'WZ, Z'WX, Z'Wy, X'WX, X'Wy, y'Wy) whose
size depends on the numbers of levels and coefficients, not on n. Each block is a group-by
sum: X's treatment dummies and Z's level indicators become group keys, numeric columns
become sums of products. Only these aggregates are collected.

Supported: fixed effects that are plain columns (numeric, or categorical with treatment
coding from the distinct levels, first level the reference) and an intercept; random terms
with an intercept and/or numeric slopes on one grouping column or an interaction ``a:b``;
prior weights.
"""

from __future__ import annotations

import ctypes
import itertools
import sys
from dataclasses import dataclass, field

import narwhals as nw
import numpy as np
import pandas as pd
import scipy.sparse as sp
from formulaic import Formula

from ..model.formula import RandomTerm
from .canonical import block_lower_sparse as _block_lower_sparse
from .canonical import exponent, shift
from .design import TermBlock

__all__ = ["CrossProducts", "lazy_crossproducts", "is_lazy"]


def is_lazy(data) -> bool:
    """Is ``data`` a lazy frame narwhals can push aggregations into?"""
    try:
        nw.from_native(data, eager_only=True)
        return False
    except TypeError:
        pass
    try:
        return isinstance(nw.from_native(data), nw.LazyFrame)
    except TypeError:
        return False


@dataclass
class CrossProducts:
    """Σ w u u' in blocks, plus what the result needs to name things."""

    ZtZ: sp.csc_matrix  # the lower block triangle: Z_a'WZ_b for a ≥ b in term order (a == b whole)
    ZtXy: np.ndarray  # q × (p + 1)
    XytXy: np.ndarray  # (p + 1) × (p + 1)
    n: int
    n_dropped: int
    sum_log_w: float
    X_names: list[str]
    terms: list[TermBlock]
    response: str
    fixed_levels: dict[str, list] = field(default_factory=dict)


def _fixed_terms(fixed: str) -> tuple[str, bool, list[str]]:
    f = Formula(fixed)
    lhs = [str(t) for t in f.lhs]
    if len(lhs) != 1:
        raise ValueError(f"formula {fixed!r} needs exactly one response column")
    names, intercept = [], False
    for t in f.rhs:
        s = str(t)
        if s == "1":
            intercept = True
        elif ":" in s or "(" in s or " " in s:
            raise ValueError(
                f"lazy fits support plain column names as fixed effects; {s!r} is not one "
                "(compute it as a column first, or collect the frame)"
            )
        else:
            names.append(s)
    return lhs[0], intercept, names


def _term_columns(term: RandomTerm) -> tuple[bool, list[str]]:
    intercept, cols = False, []
    for t in Formula(term.expr):
        s = str(t)
        if s == "1":
            intercept = True
        elif ":" in s or "(" in s or " " in s:
            raise ValueError(
                f"lazy fits support numeric slopes on plain columns; {s!r} in {term.source!r} is not one"
            )
        else:
            cols.append(s)
    return intercept, cols


def _sort_key(v):
    return (0, v, "") if isinstance(v, int | float | np.integer | np.floating) else (1, 0, str(v))


def _collect(frame):
    """Collect a (small, aggregated) narwhals lazy frame; polars runs its streaming engine, so
    the scan behind the aggregation never holds the whole table."""
    if frame.implementation.is_polars():
        return frame.collect(engine="streaming")
    return frame.collect()


PAIR_GROUPS_PER_PASS = 3_000_000  # rows (so at most as many groups, each with every sum) per pass


def lazy_crossproducts(
    data, fixed: str, random: list[RandomTerm], weights: str | None = None, canonical: bool = False
) -> CrossProducts:
    """Aggregate the cross-products of ``fixed`` + ``random`` over a lazy frame.

    Passes over the source: one census (rows, Σwy and Σwy² per level of the first term's
    factor, rows with missing values counted apart), then one group-by over every key (the
    grouping factors and the categorical fixed factors) with all the sums Σw·a·b, in as many
    slices of the first factor's levels as ``PAIR_GROUPS_PER_PASS`` rows per pass need
    (usually one). Each slice's rows, Σwy and Σwy² must equal the census's over its levels:
    a source that changes while it is read raises a ValueError saying so. Each slice's result
    is summed down at once to the tables of :func:`_layout` (a crossed pair table keeps only
    the products of the two terms' columns), so memory beyond one slice grows with those tables,
    not with the number of groups times the number of sums. ``canonical`` puts every product on
    the grid of :mod:`.canonical` (the census also takes max |column|), so the sums do not depend
    on the order the backend adds the rows in.
    """
    lf = nw.from_native(data)
    schema = lf.collect_schema()
    response, intercept, fixed_cols = _fixed_terms(fixed)
    used = [response, *fixed_cols]
    term_specs = []
    for t in random:
        has_int, zcols = _term_columns(t)
        term_specs.append((t, has_int, zcols))
        used += zcols + list(t.factors)
    if weights is not None:
        used.append(weights)
    used = list(dict.fromkeys(used))
    missing = [c for c in used if c not in schema]
    if missing:
        raise KeyError(f"column(s) {missing} are not in the lazy frame; available: {list(schema)[:20]}")
    numeric = {c: schema[c].is_numeric() for c in used}
    for c in [response, *(z for _, _, zs in term_specs for z in zs)] + ([weights] if weights else []):
        if not numeric[c]:
            raise TypeError(f"column {c!r} must be numeric for a lazy fit")
    cat_fixed = [c for c in fixed_cols if not numeric[c]]
    num_fixed = [c for c in fixed_cols if numeric[c]]
    keys = list(dict.fromkeys(cat_fixed + [f for t, _, _ in term_specs for f in t.factors]))
    zcols_all = [z for _, _, zs in term_specs for z in zs]
    U = list(dict.fromkeys(["1", *num_fixed, *zcols_all, response]))
    pairs = list(itertools.combinations_with_replacement(U, 2))
    ok = nw.all_horizontal(*[~nw.col(c).is_null() for c in used], ignore_nulls=False)
    w = (nw.col(weights) if weights else nw.lit(1.0)).cast(nw.Float64)
    base = lf.select(used).with_columns(ok.alias("__ok"), w.alias("__w"))

    # pass 1: the census
    split = list(term_specs[0][0].factors)
    numeric_u = [c for c in U if c != "1"] + ["__w"]
    census = _aggregate(base, split + ["__ok"], [("1", response), (response, response)],
                        maxabs=numeric_u if canonical else ()).to_pandas()
    n_total = int(census["__n"].sum())
    census = census[census["__ok"].astype(bool)].reset_index(drop=True)
    n = int(census["__n"].sum())
    if n == 0:
        raise ValueError("no rows left to fit: the data are empty after dropping missing values")
    grid = None
    if canonical:  # exponents of max |column| over the complete rows (a maximum is order-free)
        grid = ({"1": exponent(1.0), **{c: exponent(census[f"__m_{c}"].max()) for c in numeric_u}}, n)

    # passes 2…: every sum, grouped by every key, in slices of the split factor's levels; each
    # slice is summed down at once to the tables the blocks need (the big crossed pair tables
    # keep only their pair sums), so no slice's full group-by outlives its pass
    rows = base.filter(nw.col("__ok"))
    if weights is not None:
        rows = rows.with_columns(nw.col("__w").log().alias("__lw"))
    codes = {c: _Registry() for c in keys}
    layout = _layout(term_specs, cat_fixed, num_fixed, keys, pairs, response)
    parts: dict = {name: [] for name in layout}
    needed = sorted({nm for _, names in layout.values() for nm in names})
    sum_log_w, n_pass = 0.0, 1
    for chunk, expect in _slices(census, split, n):
        frame = rows if chunk is None else rows.filter(nw.col(split[0]).is_in(chunk))
        g = _aggregate(frame, keys, pairs, log_w=weights is not None, grid=grid)
        n_pass += 1
        _check_pass(g, expect, n_pass, response_key=f"__s{pairs.index(('1', response))}",
                    square_key=f"__s{pairs.index((response, response))}")
        if weights is not None:
            sum_log_w += float(g["__lw"].sum())
        key_codes = {c: codes[c].encode(g[c].to_pandas()).astype(np.int32) for c in keys}
        sums = {nm: g[nm].to_numpy().astype(float, copy=False) for nm in needed}
        del g
        sizes = {c: len(codes[c].index) for c in keys}
        for name, (table_keys, names) in layout.items():
            parts[name].append(_reduce(key_codes, sums, table_keys, names, sizes))
        del key_codes, sums
    ranks = {c: codes[c].ranks() for c in keys}
    tables = {}
    for name, slices in parts.items():  # one column at a time, each slice's copy freed as it is joined
        t = tables[name] = {k: np.concatenate([sl.pop(k) for sl in slices]) for k in list(slices[0])}
        for c in layout[name][0]:  # codes in the sorted order of each column's values
            t[c] = ranks[c][0].astype(np.int32)[t[c]]
        slices.clear()
    del parts
    cp = _assemble(tables, ranks, pairs, U, term_specs, cat_fixed, num_fixed, fixed_cols, intercept,
                   numeric, response, n, n_total, sum_log_w)
    del tables
    _release_freed_heap()
    return cp


def _release_freed_heap() -> None:
    """Hand the heap the slices' temporaries were freed into back to the OS (glibc's
    ``malloc_trim``), so the engine that follows starts from the aggregates' own size: the slices'
    arrays of a few million entries fall under glibc's mmap threshold and would otherwise stay
    resident (about 200 MB at 20 million rows). A no-op where there is no glibc."""
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # another C library (e.g. musl): nothing to trim
        pass


def _layout(term_specs, cat_fixed, num_fixed, keys, pairs, response) -> dict:
    """The tables the blocks are read from: name → (its keys, the sums it keeps).

    ``"X"`` (keys: the categorical fixed factors) gives X'WX, X'Wy, y'Wy; ``("t", a)`` (term a's
    factors and the categorical fixed factors) gives Z_a'WZ_a and Z_a'W[X y]; ``("p", a, b)`` (the
    factors of terms a and b) gives Z_a'WZ_b with only the products of their columns.
    """

    def in_keys(fs) -> tuple:
        return tuple(k for k in keys if k in set(fs))

    def sums(first: list[str], second: list[str]) -> list[str]:
        return [f"__s{i}" for i, (u, v) in enumerate(pairs)
                if (u in first and v in second) or (v in first and u in second)]

    xy = ["1", *num_fixed, response]
    zs = [(["1"] if has_int else []) + zcols for _, has_int, zcols in term_specs]
    out: dict = {"X": (in_keys(cat_fixed), sums(xy, xy))}
    for a, (t, _, _) in enumerate(term_specs):
        out[("t", a)] = (in_keys([*t.factors, *cat_fixed]), sums(zs[a], zs[a] + xy))
        for b in range(a):
            out[("p", b, a)] = (in_keys([*term_specs[b][0].factors, *t.factors]), sums(zs[a], zs[b]))
    return out


def _reduce(key_codes: dict, sums: dict, table_keys: tuple, names: list[str], sizes: dict) -> dict:
    """The sums ``names`` of one slice's groups, summed over the keys not in ``table_keys``
    (groups in the sorted order of their codes; each group's sum in the slice's row order)."""
    if len(table_keys) == len(key_codes):
        return {**{k: key_codes[k] for k in table_keys}, **{nm: sums[nm].copy() for nm in names}}
    m = len(next(iter(sums.values())))
    if not table_keys:
        return {nm: np.array([sums[nm].sum()]) for nm in names}
    span = 1
    for k in table_keys:
        span *= sizes[k]
    if span < 2**62:  # one mixed-radix int64 key
        combined = np.zeros(m, dtype=np.int64)
        for k in table_keys:
            combined = combined * sizes[k] + key_codes[k]
        present, inverse = np.unique(combined, return_inverse=True)
        digits = {}
        for k in reversed(table_keys):
            digits[k] = (present % sizes[k]).astype(np.int32)
            present = present // sizes[k]
    else:
        present, inverse = np.unique(np.stack([key_codes[k] for k in table_keys], axis=1), axis=0,
                                     return_inverse=True)
        digits = {k: present[:, i].astype(np.int32) for i, k in enumerate(table_keys)}
    inverse = inverse.ravel()
    size = len(digits[table_keys[0]])
    out = {k: digits[k] for k in table_keys}
    for nm in names:
        out[nm] = np.bincount(inverse, weights=sums[nm], minlength=size)
    return out


def _aggregate(frame, keys: list[str], pairs: list[tuple[str, str]], log_w: bool = False,
               grid: tuple[dict, int] | None = None, maxabs=()):
    """Rows (``__n``) and Σ w·a·b (``__s{i}`` for the i-th of ``pairs``; '1' is the constant)
    per group of ``keys``, collected as a narwhals DataFrame; with ``grid`` = (column exponents,
    n) each product on the grid of :mod:`.canonical`, and max |c| (``__m_c``) for c in ``maxabs``.

    The products are formed as columns first and then summed: the plain column sums are the
    aggregations every backend (Dask included) supports inside a group-by.
    """

    def grid_shift(a: str, b: str) -> int:
        exps, n_rows = grid
        return shift(exps[a], exps[b], n_rows) - exps["__w"]

    def product(a: str, b: str):
        e = nw.col("__w")
        for c in (a, b):
            if c != "1":
                e = e * nw.col(c)
        if grid is not None:
            e = (e * 2.0 ** grid_shift(a, b) + 0.5).floor()
        return e

    names = [f"__s{i}" for i in range(len(pairs))]
    cols = [product(a, b).alias(nm) for (a, b), nm in zip(pairs, names, strict=True)]
    frame = frame.with_columns(*cols)
    aggs = [nw.len().alias("__n"), *(nw.col(nm).sum() for nm in names)]
    if log_w:
        aggs.append(nw.col("__lw").sum())
    aggs += [nw.col(c).abs().max().alias(f"__m_{c}") for c in maxabs]
    table = _collect(frame.group_by(keys).agg(*aggs))
    if grid is not None:  # back from grid units: a power of two, exact
        table = table.with_columns(*(
            (nw.col(nm) * 2.0 ** -grid_shift(a, b)).alias(nm)
            for (a, b), nm in zip(pairs, names, strict=True)))
    return table


class _Registry:
    """Integer codes for the values of one key column, grown slice by slice."""

    def __init__(self):
        self.index: pd.Index | None = None

    def encode(self, values: pd.Series) -> np.ndarray:
        if self.index is None:
            self.index = pd.Index(pd.unique(values))
        pos = self.index.get_indexer(values)
        if (pos < 0).any():
            self.index = self.index.append(pd.Index(pd.unique(values[pos < 0])))
            pos = self.index.get_indexer(values)
        return pos.astype(np.int64)

    def ranks(self) -> tuple[np.ndarray, list]:
        """(rank of each code in sorted value order, the sorted values)."""
        vals = self.index.to_numpy()
        if self.index.dtype.kind in "iufb":
            order = np.argsort(vals, kind="stable")
        elif all(isinstance(v, str) for v in vals):
            order = np.argsort(vals.astype(str), kind="stable")
        else:
            order = np.array(sorted(range(len(vals)), key=lambda i: _sort_key(vals[i])), dtype=np.int64)
        rank = np.empty(len(vals), dtype=np.int64)
        rank[order] = np.arange(len(vals))
        return rank, [vals[i].item() if hasattr(vals[i], "item") else vals[i] for i in order]


def _slices(census, split: list[str], n: int):
    """(levels of ``split`` to keep or None for all, the census totals over them) per pass."""

    def totals(rows) -> tuple[int, float, float]:
        return int(rows["__n"].sum()), float(rows["__s0"].sum()), float(rows["__s1"].sum())

    n_slices = -(-n // PAIR_GROUPS_PER_PASS)
    if n_slices <= 1 or len(split) != 1:
        yield None, totals(census)
        return
    cum = np.cumsum(census["__n"].to_numpy()) - census["__n"].to_numpy()
    which = np.minimum((cum * n_slices) // n, n_slices - 1)
    for s in range(n_slices):
        rows = census[which == s]
        if len(rows):
            yield rows[split[0]].tolist(), totals(rows)


def _check_pass(g, expect: tuple[int, float, float], k: int, response_key: str, square_key: str) -> None:
    """Did pass ``k`` see the rows the census saw? (row count, Σwy and Σwy² over its levels)"""
    n_e, sy_e, syy_e = expect
    n_g, sy_g, syy_g = int(g["__n"].sum()), float(g[response_key].sum()), float(g[square_key].sum())
    tol = 1e-9 * (np.sqrt(max(n_e, 1) * abs(syy_e)) + abs(sy_e)) + 1e-300
    if n_g != n_e or abs(sy_g - sy_e) > tol or abs(syy_g - syy_e) > 1e-9 * abs(syy_e) + 1e-300:
        raise ValueError(
            f"the data changed between passes over the lazy frame: pass {k} saw {n_g} complete rows "
            f"(sum of the response {sy_g:.10g}) where the first pass saw {n_e} ({sy_e:.10g}); the source "
            "was modified (a file replaced or appended to) while interlace read it. Fit again on a source "
            "that stays fixed during the fit (e.g. a copy or a snapshot)."
        )


def _assemble(tables: dict, ranks: dict, pairs, U, term_specs, cat_fixed, num_fixed, fixed_cols, intercept,
              numeric, response, n: int, n_total: int, sum_log_w: float) -> CrossProducts:
    """The blocks of Σ w u u' from the aggregated tables (see :func:`_layout`)."""

    def col(tab: dict, a: str, b: str) -> np.ndarray:
        i, j = sorted((U.index(a), U.index(b)))
        return tab[f"__s{pairs.index((U[i], U[j]))}"]

    fixed_levels = {c: ranks[c][1] for c in cat_fixed}
    # X columns: (name, numeric part, {factor: level position} indicator conditions)
    xcols: list[tuple[str, str, dict]] = [("(Intercept)", "1", {})] if intercept else []
    for c in fixed_cols:
        if numeric[c]:
            xcols.append((c, c, {}))
        else:
            start = 1 if intercept or any(not numeric[d] for d in fixed_cols[: fixed_cols.index(c)]) else 0
            xcols.extend((f"{c}[T.{lv}]", "1", {c: i}) for i, lv in enumerate(fixed_levels[c]) if i >= start)

    def mask(tab: dict, *conds: dict) -> np.ndarray | None:
        merged: dict = {}
        for cond in conds:
            for f, i in cond.items():
                if merged.get(f, i) != i:
                    return None  # two different levels of one factor: never both
                merged[f] = i
        m = np.ones(len(next(iter(tab.values()))), dtype=bool)
        for f, i in merged.items():
            m &= tab[f] == i
        return m

    p = len(xcols)
    XytXy = np.zeros((p + 1, p + 1))
    targets = xcols + [("y", response, {})]
    tab_x = tables["X"]
    for i, ci in enumerate(targets):
        for j, cj in enumerate(targets[: i + 1]):
            m = mask(tab_x, ci[2], cj[2])
            XytXy[i, j] = XytXy[j, i] = 0.0 if m is None else float(col(tab_x, ci[1], cj[1])[m].sum())

    # random-effects terms: levels, sorted as the eager design sorts them
    present: dict[int, np.ndarray] = {}  # interaction terms: their combined codes that occur

    def combined(tab: dict, fs) -> np.ndarray:
        out = np.zeros(len(tab[fs[0]]), dtype=np.int64)
        for f in fs:
            out = out * len(ranks[f][1]) + tab[f]
        return out

    def level_codes(tab: dict, a: int) -> np.ndarray:
        """Term a's level of each row of ``tab`` (a table whose keys include a's factors)."""
        fs = list(term_specs[a][0].factors)
        if len(fs) == 1:
            return tab[fs[0]].astype(np.int64)
        return np.searchsorted(present[a], combined(tab, fs))

    blocks = []
    for a, (t, has_int, zcols) in enumerate(term_specs):
        fs = list(t.factors)
        if len(fs) == 1:
            labels = list(ranks[fs[0]][1])
        else:
            present[a] = rest = np.unique(combined(tables[("t", a)], fs))
            digits = []
            for f in reversed(fs):
                digits.append(rest % len(ranks[f][1]))
                rest = rest // len(ranks[f][1])
            digits.reverse()
            labels = [":".join(str(ranks[f][1][d[i]]) for f, d in zip(fs, digits, strict=True))
                      for i in range(present[a].size)]
        zc = (["1"] if has_int else []) + zcols
        blocks.append((t, a, labels, zc, (["(Intercept)"] if has_int else []) + zcols))
    for t, _, labels, zc, _ in blocks:
        if len(labels) < 2 or len(labels) >= n or len(labels) * len(zc) >= n:
            raise ValueError(
                f"grouping factor {t.group!r} in {t.source!r} has {len(labels)} levels for {n} rows"
            )
    order = sorted(range(len(blocks)), key=lambda i: -len(blocks[i][2]))
    terms: list[TermBlock] = []
    z0 = th0 = 0
    for i in order:
        t, _, labels, _, names = blocks[i]
        tb = TermBlock(group=t.group, factors=t.factors, expr=t.expr, columns=names, levels=labels,
                       codes=np.zeros(0, dtype=np.int64), z_start=z0, theta_start=th0)
        terms.append(tb)
        z0 += tb.q
        th0 += tb.n_theta
    q = z0
    ordered = [blocks[i] for i in order]

    ZtXy = np.zeros((q, p + 1))
    diag: list = []  # (rows, cols, values) of Z_a'WZ_a
    lower: list = []  # ... of Z_a'WZ_b, a > b: stored once, mirrored by the engine
    for a, (_t, ia, _, zc_a, _) in enumerate(ordered):
        tb_a, tab = terms[a], tables[("t", ia)]
        la = level_codes(tab, ia)
        base = tb_a.z_start + np.arange(tb_a.m, dtype=np.int64) * tb_a.k
        for ja, z in enumerate(zc_a):
            for xi, (_name, num, cond) in enumerate(targets):
                m = mask(tab, cond)
                ZtXy[base + ja, xi] = np.bincount(la[m], weights=col(tab, z, num)[m], minlength=tb_a.m)
            for jb, zb in enumerate(zc_a):
                v = np.bincount(la, weights=col(tab, z, zb), minlength=tb_a.m)
                diag.append(((base + ja).astype(np.int32), (base + jb).astype(np.int32), v))
        for b in range(a):
            tb_b, ib, zc_b = terms[b], ordered[b][1], ordered[b][3]
            tab = tables[("p", min(ia, ib), max(ia, ib))]
            la, lb = level_codes(tab, ia), level_codes(tab, ib)
            for ja, za in enumerate(zc_a):
                for jb, zb in enumerate(zc_b):
                    r_idx = (tb_a.z_start + la * tb_a.k + ja).astype(np.int32)
                    c_idx = (tb_b.z_start + lb * tb_b.k + jb).astype(np.int32)
                    lower.append((r_idx, c_idx, col(tab, za, zb)))
            del la, lb
    ZtZ = _block_lower_sparse(diag, lower, q)
    del diag, lower
    return CrossProducts(
        ZtZ=ZtZ, ZtXy=ZtXy, XytXy=XytXy, n=n, n_dropped=n_total - n, sum_log_w=sum_log_w,
        X_names=[c[0] for c in xcols], terms=terms, response=response, fixed_levels=fixed_levels,
    )
