"""The EMM rows ℓ of a fit from a lazy frame, from its cross-products (no reference-grid rows).

A lazy fit's fixed effects are an intercept, numeric columns and factors in treatment coding
(``c[T.level]``), with no interactions. The reference grid crosses the factors' levels with each
numeric column at its mean, and an EMM averages the grid rows of one combination of ``specs`` (and
``by``) with equal weights, so its ℓ is: 1 for the intercept; the column mean for a numeric
column; for a factor in the combination, the indicator of its level; for any other factor, 1/K on
each of its K levels (the reference level's share is absorbed by the intercept). The means are
Σx/n, read from X'X's intercept row: an unweighted fit with an intercept is needed when there
is a numeric column (X'WX holds weighted sums).
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

__all__ = ["crossproduct_rows"]


def crossproduct_rows(result, specs: list[str], by: list[str]) -> tuple[np.ndarray, pd.DataFrame]:
    """(L, the table of the combinations) for ``specs`` within ``by``, emmeans' order."""
    d = result.design
    levels: dict[str, list] = getattr(result, "fixed_levels", None) or {}
    names = list(d.X_names)
    numeric = [n for n in names if n != "(Intercept)" and not (n.endswith("]") and "[T." in n)]
    predictors = list(dict.fromkeys(n.split("[T.", 1)[0] if n not in numeric and n != "(Intercept)"
                                    else n for n in names if n != "(Intercept)"))
    for v in specs + by:
        if v not in predictors:
            raise KeyError(f"{v!r} is not a predictor of the model; predictors: {predictors}")
        if v in numeric:
            raise ValueError(f"{v!r} is numeric: emmeans takes categorical predictors in specs/by")
        if v not in levels:
            raise ValueError(f"the levels of {v!r} were not kept with this lazy fit; collect the lazy frame")
    p = d.p
    base = np.zeros(p)
    if "(Intercept)" in names:
        base[names.index("(Intercept)")] = 1.0
    if numeric:
        if "(Intercept)" not in names or result.spec.has_weights:
            raise ValueError(
                "emmeans puts numeric predictors at their means, which a weighted fit from a lazy "
                "frame (or one without an intercept) did not collect (X'WX holds weighted sums); "
                "collect the lazy frame and fit it"
            )
        XtX = np.asarray(d.gram[2], dtype=float)[:p, :p]
        i0 = names.index("(Intercept)")
        for n in numeric:
            base[names.index(n)] = XtX[i0, names.index(n)] / d.n
    for f, lv in levels.items():  # factors outside the combination: averaged over their levels
        for level in lv:
            if f"{f}[T.{level}]" in names:
                base[names.index(f"{f}[T.{level}]")] = 1.0 / len(lv)
    keys = specs + by
    rows, labels = [], []
    for combo in itertools.product(*reversed([levels[v] for v in keys])):
        combo = tuple(reversed(combo))
        ell = base.copy()
        for v, level in zip(keys, combo, strict=True):
            for other in levels[v]:
                if f"{v}[T.{other}]" in names:
                    ell[names.index(f"{v}[T.{other}]")] = float(other == level)
        rows.append(ell)
        labels.append(combo)
    return np.vstack(rows), pd.DataFrame(labels, columns=keys)
