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

import itertools
from dataclasses import dataclass, field

import narwhals as nw
import numpy as np
import scipy.sparse as sp
from formulaic import Formula

from ..model.formula import RandomTerm
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


def _levels(lf: nw.LazyFrame, cols: list[str]) -> list[tuple]:
    table = _collect(lf.group_by(cols).agg(nw.len().alias("__n"))).to_pandas()
    tuples = list(table[cols].itertuples(index=False, name=None))
    per = [sorted({t[i] for t in tuples}, key=_sort_key) for i in range(len(cols))]
    pos = [{v: k for k, v in enumerate(p)} for p in per]
    return sorted(tuples, key=lambda t: tuple(pos[i][v] for i, v in enumerate(t)))


def _sort_key(v):
    return (0, v, "") if isinstance(v, int | float | np.integer | np.floating) else (1, 0, str(v))


def _collect(frame):
    """Collect a (small, aggregated) narwhals lazy frame; polars runs its streaming engine, so
    the scan behind the aggregation never holds the whole table."""
    if frame.implementation.is_polars():
        return frame.collect(engine="streaming")
    return frame.collect()


def _persist(lf):
    """A Dask frame is kept in the cluster's memory after its first read, so the dozen group-bys
    that follow do not each read the source again (nothing comes to this process)."""
    if lf.implementation.is_dask():
        return nw.from_native(lf.to_native().persist())
    return lf


def _codes(table, keys: list[str], index: dict) -> np.ndarray:
    """Level positions of each row of an aggregated table (vectorised lookup)."""
    import pandas as pd

    if len(keys) == 1:  # an index lookup: no merged copy of the table
        found = pd.Index([lv[0] for lv in index]).get_indexer(table[keys[0]])
        return np.fromiter(index.values(), dtype=np.int64, count=len(index))[found]
    lv = pd.DataFrame(list(index.keys()), columns=keys)
    lv["__code"] = list(index.values())
    merged = table[keys].merge(lv, on=keys, how="left", sort=False)
    return merged["__code"].to_numpy(dtype=np.int64)


def _group_sums(lf, keys: list[str], pairs: list[tuple[str, str]]):
    """Σ w·a·b per group of ``keys`` for each (a, b) in ``pairs`` ('1' is the constant).

    The products are formed as columns first and then summed: the plain column sums are the
    aggregations every backend (Dask included) supports inside a group-by.
    """

    def product(a: str, b: str):
        e = nw.col("__w")
        for c in (a, b):
            if c != "1":
                e = e * nw.col(c)
        return e

    names = [f"__s{i}" for i in range(len(pairs))]
    cols = [product(a, b).alias(nm) for (a, b), nm in zip(pairs, names, strict=True)]
    frame = lf.with_columns(*cols)
    aggs = [nw.col(nm).sum() for nm in names]
    if keys:
        return _collect(frame.group_by(keys).agg(*aggs)).to_pandas()
    return _collect(frame.select(*aggs)).to_pandas()


PAIR_GROUPS_PER_PASS = 4_000_000  # groups of a cross-classification aggregated per pass


def _sliced_group_sums(lf, keys: list[str], pairs, split: list[str], levels: list[tuple], slices: int):
    """``_group_sums`` in ``slices`` passes, each over a contiguous share of the levels of the
    single column ``split`` (one pass if ``split`` has several columns)."""
    if slices <= 1 or len(split) != 1:
        yield _group_sums(lf, keys, pairs)
        return
    values = [lv[0] for lv in levels]
    for part in np.array_split(np.arange(len(values)), slices):
        chunk = [values[i] for i in part]
        yield _group_sums(lf.filter(nw.col(split[0]).is_in(chunk)), keys, pairs)


def lazy_crossproducts(
    data, fixed: str, random: list[RandomTerm], weights: str | None = None
) -> CrossProducts:
    """Aggregate the cross-products of ``fixed`` + ``random`` over a lazy frame."""
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
    n_total = int(_collect(lf.select(nw.len())).to_pandas().iloc[0, 0])
    lf = lf.select(used).drop_nulls()
    lf = lf.with_columns((nw.col(weights) if weights else nw.lit(1.0)).cast(nw.Float64).alias("__w"))
    lf = _persist(lf)
    n = int(_collect(lf.select(nw.len())).to_pandas().iloc[0, 0])
    if n == 0:
        raise ValueError("no rows left to fit: the data are empty after dropping missing values")

    cat_fixed = [c for c in fixed_cols if not numeric[c]]
    num_fixed = [c for c in fixed_cols if numeric[c]]
    fixed_levels = {c: [v[0] for v in _levels(lf, [c])] for c in cat_fixed}
    # X columns: (name, numeric part, {factor: level} indicator conditions)
    xcols: list[tuple[str, str, dict]] = [("(Intercept)", "1", {})] if intercept else []
    for c in fixed_cols:
        if numeric[c]:
            xcols.append((c, c, {}))
        else:
            levels = (
                fixed_levels[c][1:]
                if intercept or any(not numeric[d] for d in fixed_cols[: fixed_cols.index(c)])
                else fixed_levels[c]
            )
            xcols.extend((f"{c}[T.{lv}]" if lv is not None else c, "1", {c: lv}) for lv in levels)
    nums = ["1", *num_fixed, response]
    npair = list(itertools.combinations_with_replacement(nums, 2))

    def x_value(table, col, num_b):
        """Σ over groups: (indicator of col) × Σ w·(col's numeric)·num_b."""
        name, num_a, cond = col
        key = f"__s{npair.index(tuple(sorted((num_a, num_b), key=nums.index)))}"
        mask = np.ones(len(table), dtype=bool)
        for f, lv in cond.items():
            mask &= (table[f] == lv).to_numpy()
        return float(table.loc[mask, key].sum())

    # X'WX, X'Wy, y'Wy from one group-by over the categorical fixed factors
    tab = _group_sums(lf, cat_fixed, npair)
    p = len(xcols)
    XytXy = np.zeros((p + 1, p + 1))
    for i, ci in enumerate(xcols):
        for j, cj in enumerate(xcols[: i + 1]):
            merged = (cj[0], cj[1], {**ci[2], **cj[2]})
            conflict = any(f in ci[2] and f in cj[2] and ci[2][f] != cj[2][f] for f in ci[2])
            XytXy[i, j] = XytXy[j, i] = 0.0 if conflict else x_value(tab, (ci[0], ci[1], merged[2]), cj[1])
        XytXy[i, p] = XytXy[p, i] = x_value(tab, ci, response)
    XytXy[p, p] = x_value(tab, ("y", response, {}), response)

    # random-effects terms, sorted as the eager design sorts them
    blocks = []
    for t, has_int, zcols in term_specs:
        keys = list(t.factors)
        levels = _levels(lf, keys)
        cols = (["1"] if has_int else []) + zcols
        names = (["(Intercept)"] if has_int else []) + zcols
        blocks.append((t, keys, levels, cols, names))
    for t, _, levels, cols, _ in blocks:
        if len(levels) < 2 or len(levels) >= n or len(levels) * len(cols) >= n:
            raise ValueError(
                f"grouping factor {t.group!r} in {t.source!r} has {len(levels)} levels for {n} rows"
            )
    order = sorted(range(len(blocks)), key=lambda i: -len(blocks[i][2]))
    terms: list[TermBlock] = []
    z0 = th0 = 0
    for i in order:
        t, keys, levels, cols, names = blocks[i]
        labels = [v[0] for v in levels] if len(keys) == 1 else [":".join(map(str, v)) for v in levels]
        tb = TermBlock(
            group=t.group,
            factors=t.factors,
            expr=t.expr,
            columns=names,
            levels=labels,
            codes=np.zeros(0, dtype=np.int64),
            z_start=z0,
            theta_start=th0,
        )
        terms.append(tb)
        z0 += tb.q
        th0 += tb.n_theta
    q = z0
    ordered = [blocks[i] for i in order]
    index = [{lv: k for k, lv in enumerate(b[2])} for b in ordered]

    ZtXy = np.zeros((q, p + 1))
    diag: list = []  # (rows, cols, values) of Z_a'WZ_a
    lower: list = []  # ... of Z_a'WZ_b, a > b: stored once, mirrored at the end
    for a, (_ta, keys_a, _, zc_a, _) in enumerate(ordered):
        tb_a = terms[a]
        # Z_a'WX and Z_a'Wy: group by the term's keys and the categorical fixed factors
        gkeys = list(dict.fromkeys(keys_a + cat_fixed))
        pairs = [(z, m) for z in zc_a for m in nums]
        g = _group_sums(lf, gkeys, pairs)
        lvl = _codes(g, keys_a, index[a])
        for j, z in enumerate(zc_a):
            for xi, (_name, num, cond) in enumerate(xcols + [("y", response, {})]):
                key = f"__s{pairs.index((z, num))}"
                mask = np.ones(len(g), dtype=bool)
                for f, lv in cond.items():
                    mask &= (g[f] == lv).to_numpy()
                contrib = np.bincount(lvl[mask], weights=g.loc[mask, key].to_numpy(), minlength=tb_a.m)
                ZtXy[tb_a.z_start + np.arange(tb_a.m) * tb_a.k + j, xi] = contrib
        # Z_a'WZ_b for b ≤ a (a == b gives the diagonal blocks)
        for b in range(a + 1):
            tb_b = terms[b]
            keys_b, zc_b = ordered[b][1], ordered[b][3]
            gk = list(dict.fromkeys(keys_a + keys_b))
            pairs = [(za, zb) for za in zc_a for zb in zc_b]
            # a cross-classification can have as many groups as rows: aggregate it in slices of
            # term a's levels so that no single group-by result is large
            slices = 1 if a == b else -(-min(n, tb_a.m * tb_b.m) // PAIR_GROUPS_PER_PASS)
            for g in _sliced_group_sums(lf, gk, pairs, keys_a, ordered[a][2], slices):
                la = _codes(g, keys_a, index[a])
                lb = _codes(g, keys_b, index[b])
                for k, (za, zb) in enumerate(pairs):
                    ja, jb = zc_a.index(za), zc_b.index(zb)
                    r_idx = (tb_a.z_start + la * tb_a.k + ja).astype(np.int32)
                    c_idx = (tb_b.z_start + lb * tb_b.k + jb).astype(np.int32)
                    v = g[f"__s{k}"].to_numpy(dtype=float)
                    (diag if a == b else lower).append((r_idx, c_idx, v))
                del g, la, lb
    ZtZ = _block_lower_sparse(diag, lower, q)
    del diag, lower
    sum_log_w = 0.0
    if weights is not None:
        sum_log_w = float(_collect(lf.select(nw.col("__w").log().sum())).to_pandas().iloc[0, 0])
    return CrossProducts(
        ZtZ=ZtZ,
        ZtXy=ZtXy,
        XytXy=XytXy,
        n=n,
        n_dropped=n_total - n,
        sum_log_w=sum_log_w,
        X_names=[c[0] for c in xcols],
        terms=terms,
        response=response,
        fixed_levels=fixed_levels,
    )


def _block_lower_sparse(diag: list, lower: list, q: int) -> sp.csc_matrix:
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
