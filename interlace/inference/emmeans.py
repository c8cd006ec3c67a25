"""Estimated marginal means and contrasts (R's emmeans, for REML/ML fits).

The reference grid crosses every level of each categorical predictor, with numeric
predictors at their mean. The EMM of a combination of ``specs`` (within ``by``) is ℓ'β̂
with ℓ the equally weighted average of the grid's model-matrix rows for that combination;
SE = √(ℓ'Var(β̂)ℓ) and the df come from the fit's ``df_method`` (Satterthwaite or
Kenward-Roger) for that ℓ. Pairwise contrasts are differences of EMMs, with Tukey
(studentized range), Holm, Bonferroni or no adjustment within each ``by`` group.

For a PyMC fit (a result with ``fe_draws``) the same ℓ are applied to every posterior draw of
β: the estimate is the posterior mean of ℓ'β, SE its posterior SD, the interval equal-tailed
(credible), df NaN; contrasts report ``pd``, the posterior probability of the estimate's sign,
instead of p-values, and no multiplicity adjustment applies. ``method`` says which.
"""

from __future__ import annotations

import itertools
import re

import numpy as np
import pandas as pd
from scipy import stats

from ..data.design import model_variables, rebuild_matrix
from ..model.rformula import r_labels

__all__ = ["EMMeans", "emmeans", "contrast"]


class EMMeans:
    """Marginal means: ``table`` (DataFrame) and the rows ``L`` that define them; ``method`` is
    ``"frequentist"`` or ``"posterior"`` (a PyMC fit)."""

    def __init__(
        self, result, table: pd.DataFrame, L: np.ndarray, specs: list[str], by: list[str],
        method: str = "frequentist",
    ):
        self.result, self.table, self.L, self.specs, self.by = result, table, L, specs, by
        self.method = method
        table.attrs["method"] = method

    def to_frame(self) -> pd.DataFrame:
        return self.table.copy()

    def __repr__(self) -> str:
        text = self.table.to_string(index=False)
        if self.method == "posterior":
            n = len(self.result.fe_draws)
            text = (f"Posterior means and SDs over {n} draws; lower/upper are equal-tailed "
                    f"credible intervals\n{text}")
        return text


def _posterior(result) -> np.ndarray | None:
    draws = getattr(result, "fe_draws", None)
    return None if draws is None else draws.to_numpy()


def _as_list(x) -> list[str]:
    if x is None:
        return []
    return [x] if isinstance(x, str) else list(x)


def _levels(col: pd.Series, as_factor: bool = False) -> list | None:
    if isinstance(col.dtype, pd.CategoricalDtype):
        return list(col.cat.remove_unused_categories().cat.categories)
    if as_factor or pd.api.types.is_bool_dtype(col) or not pd.api.types.is_numeric_dtype(col):
        return sorted(pd.unique(col))
    return None


def _factor_variables(model_spec, variables: list[str]) -> set[str]:
    """Numeric columns the formula turns into factors (``factor(x)``, ``C(x)``): emmeans treats
    them as factors, as R's emmeans does for ``factor(x)`` terms."""
    out = set()
    for expr, (kind, _state) in model_spec.encoder_state.items():
        if str(kind.value) == "categorical" and expr not in variables:
            out |= {v for v in variables if re.search(rf"(?<![\w.`]){re.escape(v)}(?![\w.`])", expr)}
    return out


def _label(var: str, level) -> str:
    """emmeans' contrast labels: numeric-looking levels get the variable name in front."""
    text = str(level)
    try:
        float(text)
    except ValueError:
        return text
    return f"{var}{text}"


def _summarise(result, L: np.ndarray, est: np.ndarray, level: float) -> dict[str, np.ndarray]:
    cov = result.fe_cov.to_numpy()
    se = np.sqrt(np.einsum("ij,jk,ik->i", L, cov, L))
    df = result.engine.contrast_df(L)
    return {"estimate": est, "SE": se, "df": df}


def emmeans(result, specs, by=None, level: float = 0.95) -> EMMeans:
    """Estimated marginal means of the factor(s) ``specs`` (optionally within ``by``)."""
    frame = getattr(result, "model_frame", None)
    posterior = _posterior(result)
    if frame is None or (getattr(result, "engine", None) is None and posterior is None):
        raise TypeError("emmeans needs a fit from interlace.fit (backend='reml' or 'pymc')")
    specs, by = _as_list(specs), _as_list(by)
    d = result.design
    variables = model_variables(d.fixed_spec, [str(c) for c in frame.columns])
    as_factor = _factor_variables(d.fixed_spec, variables)
    grid_levels: dict[str, list] = {}
    for v in variables:
        if v not in frame.columns:
            raise KeyError(f"predictor {v!r} is not in the model frame")
        levels = _levels(frame[v], v in as_factor)
        grid_levels[v] = levels if levels is not None else [float(frame[v].mean())]
    for v in specs + by:
        if v not in grid_levels:
            raise KeyError(f"{v!r} is not a predictor of the model; predictors: {variables}")
        if _levels(frame[v], v in as_factor) is None:
            raise ValueError(f"{v!r} is numeric: emmeans takes categorical predictors in specs/by")
    names = list(grid_levels)
    combos = list(itertools.product(*[grid_levels[v] for v in names]))
    grid = pd.DataFrame(combos, columns=names)
    for v in names:
        if isinstance(frame[v].dtype, pd.CategoricalDtype):
            grid[v] = pd.Categorical(grid[v], categories=frame[v].cat.categories)
    mm = rebuild_matrix(d.fixed_spec, grid, "emmeans reference grid")
    cols = r_labels(["(Intercept)" if c == "Intercept" else str(c) for c in mm.columns], d.labels)
    Xg = np.asarray(mm, dtype=float)[:, [cols.index(c) for c in d.X_names]]
    keys = specs + by
    # emmeans order: the first variable varies fastest, by-variables slowest
    key_levels = [grid_levels[v] for v in keys]
    rows, labels = [], []
    for combo in itertools.product(*reversed(key_levels)):
        combo = tuple(reversed(combo))
        mask = np.ones(len(grid), dtype=bool)
        for v, lv in zip(keys, combo, strict=True):
            mask &= (grid[v] == lv).to_numpy()
        rows.append(Xg[mask].mean(axis=0))
        labels.append(combo)
    L = np.vstack(rows)
    table = pd.DataFrame(labels, columns=keys)
    if posterior is not None:
        E = posterior @ L.T
        lo, hi = np.quantile(E, [(1 - level) / 2, (1 + level) / 2], axis=0)
        table["emmean"], table["SE"], table["df"] = E.mean(axis=0), E.std(axis=0, ddof=1), np.nan
        table["lower"], table["upper"] = lo, hi
        return EMMeans(result, table, L, specs, by, method="posterior")
    s = _summarise(result, L, L @ result.fe_params.to_numpy(), level)
    q = stats.t.ppf(0.5 + level / 2, s["df"])
    table["emmean"] = s["estimate"]
    table["SE"], table["df"] = s["SE"], s["df"]
    table["lower"], table["upper"] = s["estimate"] - q * s["SE"], s["estimate"] + q * s["SE"]
    return EMMeans(result, table, L, specs, by)


def contrast(emm: EMMeans, method: str = "pairwise", adjust: str = "tukey") -> pd.DataFrame:
    """Pairwise differences of marginal means (within each ``by`` group), with adjusted p-values."""
    if method != "pairwise":
        raise ValueError(f"method must be 'pairwise', got {method!r}")
    adjust = adjust.lower()
    if adjust not in ("tukey", "holm", "bonferroni", "none"):
        raise ValueError(f"adjust must be 'tukey', 'holm', 'bonferroni' or 'none', got {adjust!r}")
    t = emm.table
    groups = [tuple(r) for r in t[emm.by].itertuples(index=False)] if emm.by else [()] * len(t)
    out = []
    for g in dict.fromkeys(groups):
        idx = [i for i, gi in enumerate(groups) if gi == g]
        pairs = list(itertools.combinations(idx, 2))
        if not pairs:
            continue
        L = np.vstack([emm.L[i] - emm.L[j] for i, j in pairs])
        if emm.method == "posterior":
            out.extend(_posterior_contrasts(emm, g, pairs, L))
            continue
        s = _summarise(emm.result, L, L @ emm.result.fe_params.to_numpy(), 0.95)
        tval = s["estimate"] / s["SE"]
        p = 2 * stats.t.sf(np.abs(tval), s["df"])
        k, m = len(idx), len(pairs)
        if adjust == "tukey":
            p = stats.studentized_range.sf(np.abs(tval) * np.sqrt(2), k, s["df"]) if k > 2 else p
        elif adjust == "bonferroni":
            p = np.minimum(1.0, p * m)
        elif adjust == "holm":
            order = np.argsort(p)
            adj = np.maximum.accumulate((m - np.arange(m)) * p[order])
            p = np.empty(m)
            p[order] = np.minimum(1.0, adj)
        for (i, j), est, se, df, tv, pv in zip(pairs, s["estimate"], s["SE"], s["df"], tval, p, strict=True):
            row = {"contrast": _contrast_name(emm, i, j), **dict(zip(emm.by, g, strict=True))}
            row.update({"estimate": est, "SE": se, "df": df, "t_ratio": tv, "p_value": pv})
            out.append(row)
    table = pd.DataFrame(out)
    table.attrs["method"] = emm.method
    return table


def _contrast_name(emm: EMMeans, i: int, j: int) -> str:
    t = emm.table
    return " - ".join(" ".join(_label(v, t.loc[r, v]) for v in emm.specs) for r in (i, j))


def _posterior_contrasts(emm: EMMeans, g: tuple, pairs, L: np.ndarray, level: float = 0.95) -> list[dict]:
    """Rows of posterior contrasts: mean, SD, equal-tailed interval and pd per pair."""
    E = emm.result.fe_draws.to_numpy() @ L.T
    lo, hi = np.quantile(E, [(1 - level) / 2, (1 + level) / 2], axis=0)
    above = (E > 0).mean(axis=0)
    rows = []
    for c, (i, j) in enumerate(pairs):
        row = {"contrast": _contrast_name(emm, i, j), **dict(zip(emm.by, g, strict=True))}
        row.update({"estimate": E[:, c].mean(), "SE": E[:, c].std(ddof=1), "lower": lo[c],
                    "upper": hi[c], "pd": max(above[c], 1 - above[c])})
        rows.append(row)
    return rows
