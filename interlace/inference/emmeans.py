"""Estimated marginal means and contrasts (R's emmeans, for REML/ML fits).

The reference grid crosses every level of each categorical predictor, with numeric
predictors at their mean. The EMM of a combination of ``specs`` (within ``by``) is ℓ'β̂
with ℓ the equally weighted average of the grid's model-matrix rows for that combination;
SE = √(ℓ'Var(β̂)ℓ) and the df come from the fit's ``df_method`` (Satterthwaite or
Kenward-Roger) for that ℓ. Contrasts are differences of EMMs within each ``by`` group:
``pairwise`` (i − j, i before j), ``revpairwise`` (j − i) or ``trt.vs.ctrl`` (each level − the
first), adjusted by Tukey (studentized range; the default for pairwise), emmeans' ``dunnettx``
(its approximation to Dunnett's test, the default for trt.vs.ctrl), Šidák 1 − (1 − p)^m, Holm,
Bonferroni or none. ``specs`` may be emmeans' formula: ``"~ A"``, ``"~ A + B"``, ``"~ A | B"``,
``"pairwise ~ A"`` (then ``.contrasts`` holds the contrasts, as emmeans' ``$contrasts``).

For a PyMC fit (a result with ``fe_draws``) the same ℓ are applied to every posterior draw of
β: the estimate is the posterior mean of ℓ'β, SE its posterior SD, the interval equal-tailed
(credible), df NaN; contrasts report ``pd``, the posterior probability of the estimate's sign,
instead of p-values, and no multiplicity adjustment applies. ``method`` says which.

For a GLMM (Laplace glmer fit) everything is on the link scale η with Wald z (df = ∞, as
emmeans' asymptotic df), unless ``type="response"``: then each EMM is shown back-transformed,
μ = g⁻¹(η), with the delta-method SE |dμ/dη|·SE(η) and the interval's ends back-transformed;
pairwise contrasts of such EMMs are, for log and logit links, ratios exp(η_i − η_j) (rates or
odds), tested on the link scale. ``EMMeans.regrid()`` (emmeans' ``regrid``) makes the response
scale the one of the estimates: μ with covariance J L Var(β̂) L' J (J = diag dμ/dη), whose
contrasts are differences of μ with delta-method SEs.

Offsets, as emmeans (≥ 1.8, ``recover_data``): the model's whole offset (``offset()`` terms of the
formula plus ``offset=``) is a covariate of the grid held at its mean, so every EMM is
ℓ'β̂ + mean(offset) on the link scale (it cancels in contrasts). For cbpp's
``incidence ~ period + offset(log(size))`` that is mean(log size), not log(mean size).
"""

from __future__ import annotations

import itertools
import re
import warnings

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
        method: str = "frequentist", type: str = "link", level: float = 0.95,
    ):
        self.result, self.table, self.L, self.specs, self.by = result, table, L, specs, by
        self.method, self.type, self.level = method, type, level
        self.regridded = False  # True after regrid(): estimates are μ, contrasts differences of μ
        self.offset = _grid_offset(result)  # added to every ℓ'β (link scale)
        self.contrasts: pd.DataFrame | None = None  # set by a formula spec "pairwise ~ A"
        table.attrs["method"] = method
        table.attrs["type"] = type

    def regrid(self) -> EMMeans:
        """These EMMs on the response scale as the estimates themselves (emmeans' ``regrid``):
        μ = g⁻¹(η), delta-method SEs; their contrasts are differences of μ."""
        _link(self.result, "regrid")
        if self.regridded:
            return self
        out = _build(self.result, self.L, self.table[self.specs + self.by].copy(), self.specs, self.by,
                     self.level, "response")
        out.regridded = True
        out.table.attrs["type"] = "regrid"
        if self.method != "posterior":  # μ is now the estimate: a symmetric interval, as emmeans
            t = out.table
            q = stats.t.ppf(0.5 + self.level / 2, t["df"].to_numpy())
            mu = t[_response_name(self.result)]
            t["lower"], t["upper"] = mu - q * t["SE"], mu + q * t["SE"]
        return out

    def to_frame(self) -> pd.DataFrame:
        return self.table.copy()

    def __repr__(self) -> str:
        text = self.table.to_string(index=False)
        if self.method == "posterior" and self.type == "response" and not self.regridded:
            text = (f"Back-transformed from the {self.result.family.link.name} scale draw by draw "
                    f"(SE: the posterior SD of {_response_name(self.result)})\n{text}")
        elif self.type == "response" and not self.regridded:
            text = (f"Back-transformed from the {self.result.family.link.name} scale (delta-method SEs, "
                    f"interval ends transformed)\n{text}")
        if self.method == "posterior":
            n = len(self.result.fe_draws)
            text = (f"Posterior means and SDs over {n} draws; lower/upper are equal-tailed "
                    f"credible intervals\n{text}")
        if self.contrasts is not None:
            text = f"$emmeans\n{text}\n\n$contrasts\n{self.contrasts.to_string(index=False)}"
        return text


def _link(result, what: str):
    family = getattr(result, "family", None)
    if family is None:
        raise ValueError(f"{what} needs a GLMM (interlace.glmer): a linear mixed model has no link")
    return family.link


def _response_name(result) -> str:
    """emmeans' name of a back-transformed column: prob (binomial), rate (log link), response."""
    if result.family.name == "binomial":
        return "prob"
    return "rate" if result.family.link.name == "log" else "response"


def _grid_offset(result) -> float:
    """emmeans' ``.offset.``: the mean of the fitted offset (0 without one)."""
    off = getattr(getattr(result, "design", None), "offset", None)
    return 0.0 if off is None or len(off) == 0 else float(np.mean(off))


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
    engine = getattr(result, "engine", None)  # None: the iterative solver's fit, Wald z (df = ∞)
    df = np.full(len(L), np.inf) if engine is None else engine.contrast_df(L)
    return {"estimate": est, "SE": se, "df": df}


def emmeans(
    result, specs, by=None, level: float = 0.95, type: str = "link", at: dict | None = None
) -> EMMeans:
    """Estimated marginal means of the factor(s) ``specs`` (optionally within ``by``).

    ``at`` (emmeans' ``at``) sets grid values: ``{"x": [1, 2]}`` for a numeric predictor (which
    may then be in ``specs``/``by``), or a subset of a factor's levels.

    ``type="response"`` (a GLMM) shows them back-transformed to the response scale."""
    frame = getattr(result, "model_frame", None)
    posterior = _posterior(result)
    lazy = getattr(getattr(result, "design", None), "gram", None) is not None
    iterative = (getattr(result, "optimizer_info", None) or {}).get("solver") == "iterative"
    if (frame is None and not lazy) or (getattr(result, "engine", None) is None and posterior is None
                                         and not iterative):
        raise TypeError("emmeans needs a fit from interlace.fit or interlace.glmer "
                        "(backend='reml' or 'pymc')")
    if type not in ("link", "response"):
        raise ValueError(f"type must be 'link' or 'response', got {type!r}")
    if type == "response":
        _link(result, "type='response'")
    lhs = None
    if isinstance(specs, str) and "~" in specs:
        specs, by, lhs = _formula_spec(specs, by)
    specs, by = _as_list(specs), _as_list(by)
    if lazy:  # a fit from a lazy frame: ℓ from its cross-products (emmeans_lazy)
        from .emmeans_lazy import crossproduct_rows

        return _build(result, *crossproduct_rows(result, specs, by), specs, by, level, type)
    d = result.design
    variables = model_variables(d.fixed_spec, [str(c) for c in frame.columns])
    as_factor = _factor_variables(d.fixed_spec, variables)
    grid_levels: dict[str, list] = {}
    for v in variables:
        if v not in frame.columns:
            raise KeyError(f"predictor {v!r} is not in the model frame")
        levels = _levels(frame[v], v in as_factor)
        grid_levels[v] = levels if levels is not None else [float(frame[v].mean())]
    at = {} if at is None else at
    if not isinstance(at, dict):
        raise TypeError(f"at must be a dict of predictor -> values, got {at.__class__.__name__}")
    for v, values in at.items():
        if v not in grid_levels:
            raise KeyError(f"at= names {v!r}, not a predictor of the model; predictors: {variables}")
        values = [values] if np.ndim(values) == 0 else list(values)
        levels = _levels(frame[v], v in as_factor)
        if levels is not None and (bad := [x for x in values if x not in levels]):
            raise ValueError(f"at= gives levels {bad} of {v!r} that it does not have; levels: {levels}")
        if levels is None:
            values = [float(x) for x in values]
        if not values:
            raise ValueError(f"at= gives no values for {v!r}")
        grid_levels[v] = values
    for v in specs + by:
        if v not in grid_levels:
            raise KeyError(f"{v!r} is not a predictor of the model; predictors: {variables}")
        if _levels(frame[v], v in as_factor) is None and v not in at:
            raise ValueError(f"{v!r} is numeric: emmeans takes categorical predictors in specs/by "
                             f"(or give its values with at={{{v!r}: [...]}})")
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
    out = _build(result, np.vstack(rows), pd.DataFrame(labels, columns=keys), specs, by, level, type)
    if lhs:
        out.contrasts = contrast(out, method=lhs)
    return out


def _formula_spec(text: str, by) -> tuple[list[str], list[str], str]:
    """emmeans' formula specs: ``[method] ~ A [+ B ...] [| C ...]``."""
    lhs, rhs = (part.strip() for part in text.split("~", 1))
    if lhs not in ("", *_METHODS):
        raise ValueError(f"the left side of specs={text!r} must be empty or one of {list(_METHODS)}")
    rhs, bar, by_text = rhs.partition("|")
    if bar and by is not None:
        raise ValueError(f"give the by-variables either after '|' in specs={text!r} or as by=, not both")
    names = [v.strip() for v in re.split(r"[+*:]", rhs)]
    by_names = [v.strip() for v in re.split(r"[+*:]", by_text)] if bar else _as_list(by)
    if not all(names) or not all(by_names):
        raise ValueError(f"specs={text!r} must name factors such as '~ A', '~ A | B' or 'pairwise ~ A'")
    return names, by_names, lhs


def _build(result, L: np.ndarray, table: pd.DataFrame, specs: list[str], by: list[str], level: float,
           type: str) -> EMMeans:
    """The EMM table of the rows L: link scale, or back-transformed (``type="response"``)."""
    col = "emmean" if type == "link" else _response_name(result)
    posterior = _posterior(result)
    off = _grid_offset(result)
    if posterior is not None:
        E = posterior @ L.T + off
        if type == "response":
            E = result.family.link.inverse(E)
        lo, hi = np.quantile(E, [(1 - level) / 2, (1 + level) / 2], axis=0)
        table[col], table["SE"], table["df"] = E.mean(axis=0), E.std(axis=0, ddof=1), np.nan
        table["lower"], table["upper"] = lo, hi
        return EMMeans(result, table, L, specs, by, method="posterior", type=type, level=level)
    s = _summarise(result, L, L @ result.fe_params.to_numpy() + off, level)
    q = stats.t.ppf(0.5 + level / 2, s["df"])
    est, se = s["estimate"], s["SE"]
    lo, hi = est - q * se, est + q * se
    if type == "response":  # delta method; the interval's ends back-transformed (emmeans)
        link = result.family.link
        est, se = link.inverse(est), np.abs(link.mu_eta(est)) * se
        lo, hi = link.inverse(lo), link.inverse(hi)
        lo, hi = np.minimum(lo, hi), np.maximum(lo, hi)
    table[col] = est
    table["SE"], table["df"] = se, s["df"]
    table["lower"], table["upper"] = lo, hi
    return EMMeans(result, table, L, specs, by, type=type, level=level)




_METHODS = ("pairwise", "revpairwise", "trt.vs.ctrl")
_ADJUST = ("tukey", "dunnettx", "sidak", "holm", "bonferroni", "none")


def _pairs(idx: list[int], method: str) -> list[tuple[int, int]]:
    """(i, j) for the contrasts i − j, in emmeans' order."""
    if method == "pairwise":
        return list(itertools.combinations(idx, 2))
    if method == "revpairwise":
        return [(idx[b], idx[a]) for b in range(len(idx)) for a in range(b)]
    return [(i, idx[0]) for i in idx[1:]]


def _adjust_p(p: np.ndarray, tval: np.ndarray, df: np.ndarray, adjust: str, k: int) -> np.ndarray:
    """Adjusted p-values of m contrasts among k means (one family)."""
    m = len(p)
    if m == 1 or adjust == "none":
        return p
    if adjust == "tukey":
        return stats.studentized_range.sf(np.abs(tval) * np.sqrt(2), k, df)
    if adjust == "sidak":
        return 1 - (1 - p) ** m
    if adjust == "dunnettx":  # emmeans' .pdunnx: a Tukey/Šidák blend approximating Dunnett
        w = (m - 1) / m
        tukey = 1 - stats.studentized_range.sf(np.sqrt(2) * np.abs(tval), (1 + np.sqrt(1 + 8 * m)) / 2, df)
        return 1 - (w * tukey + (1 - w) * (1 - p) ** m)
    if adjust == "bonferroni":
        return np.minimum(1.0, p * m)
    order = np.argsort(p)  # holm
    out = np.empty(m)
    out[order] = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    return out


def contrast(emm: EMMeans, method: str = "pairwise", adjust: str | None = None) -> pd.DataFrame:
    """Differences of marginal means (within each ``by`` group), with adjusted p-values.

    ``method``: ``"pairwise"``, ``"revpairwise"`` or ``"trt.vs.ctrl"`` (vs the first level);
    ``adjust``: ``"tukey"`` (default for pairwise), ``"dunnettx"`` (default for trt.vs.ctrl),
    ``"sidak"``, ``"holm"``, ``"bonferroni"`` or ``"none"``; Tukey on non-pairwise contrasts
    becomes Šidák, as emmeans.

    GLMM: z ratios (df = ∞); of ``type="response"`` EMMs with a log or logit link, ratios
    (``ratio`` / ``odds_ratio``, emmeans' "a / b", tested on the link scale); of regridded EMMs,
    differences of μ with delta-method SEs."""
    if method not in _METHODS:
        raise ValueError(f"method must be one of {list(_METHODS)}, got {method!r}")
    if adjust is None:
        adjust = "dunnettx" if method == "trt.vs.ctrl" else "tukey"
    adjust = str(adjust).lower()
    if adjust not in _ADJUST:
        raise ValueError(f"adjust must be one of {list(_ADJUST)}, got {adjust!r}")
    if adjust == "tukey" and method == "trt.vs.ctrl":
        warnings.warn("adjust='tukey' is only for pairwise comparisons: 'sidak' used instead (as emmeans)",
                      UserWarning, stacklevel=2)
        adjust = "sidak"
    ratio = _ratio_name(emm)
    t = emm.table
    groups = [tuple(r) for r in t[emm.by].itertuples(index=False)] if emm.by else [()] * len(t)
    out = []
    for g in dict.fromkeys(groups):
        idx = [i for i, gi in enumerate(groups) if gi == g]
        pairs = _pairs(idx, method)
        if not pairs:
            continue
        L = np.vstack([_row(emm, i) - _row(emm, j) for i, j in pairs])
        if emm.method == "posterior":
            out.extend(_posterior_contrasts(emm, g, pairs, ratio))
            continue
        s = _summarise(emm.result, L, L @ emm.result.fe_params.to_numpy(), 0.95)
        if emm.regridded:  # the differences of μ themselves (L holds their gradients in β)
            mu = emm.table[_response_name(emm.result)].to_numpy()
            s["estimate"] = np.array([mu[i] - mu[j] for i, j in pairs])
        tval = s["estimate"] / s["SE"]
        p = 2 * stats.t.sf(np.abs(tval), s["df"])
        p = _adjust_p(p, tval, s["df"], adjust, len(idx))
        stat = "z_ratio" if np.all(np.isinf(s["df"])) else "t_ratio"
        for (i, j), est, se, df, tv, pv in zip(pairs, s["estimate"], s["SE"], s["df"], tval, p, strict=True):
            row = {"contrast": _contrast_name(emm, i, j, " / " if ratio else " - "),
                   **dict(zip(emm.by, g, strict=True))}
            if ratio:  # exp of the link-scale difference, delta-method SE
                row.update({ratio: np.exp(est), "SE": np.exp(est) * se, "df": df, "null": 1.0})
            else:
                row.update({"estimate": est, "SE": se, "df": df})
            row.update({stat: tv, "p_value": pv})
            out.append(row)
    table = pd.DataFrame(out)
    table.attrs["method"] = emm.method
    table.attrs["adjust"] = "none" if emm.method == "posterior" else adjust
    table.attrs["type"] = "regrid" if emm.regridded else emm.type
    return table


def _ratio_name(emm: EMMeans) -> str | None:
    """``odds_ratio`` / ``ratio`` for response-scale EMMs of a logit / log link, else None."""
    if emm.type != "response" or emm.regridded:
        return None
    name = emm.result.family.link.name
    return {"logit": "odds_ratio", "log": "ratio"}.get(name)


def _row(emm: EMMeans, i: int) -> np.ndarray:
    """The gradient in β of EMM i on its scale: ℓ_i, or dμ/dη(ℓ_i'β) ℓ_i once regridded."""
    if not emm.regridded:
        return emm.L[i]
    eta = float(emm.L[i] @ emm.result.fe_params.to_numpy()) + emm.offset
    return float(emm.result.family.link.mu_eta(np.array([eta]))[0]) * emm.L[i]


def _contrast_name(emm: EMMeans, i: int, j: int, sep: str = " - ") -> str:
    t = emm.table
    return sep.join(" ".join(_label(v, t.loc[r, v]) for v in emm.specs) for r in (i, j))


def _posterior_contrasts(emm: EMMeans, g: tuple, pairs, ratio: str | None,
                         level: float = 0.95) -> list[dict]:
    """Rows of posterior contrasts: mean, SD, equal-tailed interval and pd per pair (pd of a
    ratio: the probability that it is on the side of 1 it is on)."""
    grid = emm.result.fe_draws.to_numpy() @ emm.L.T + emm.offset
    if emm.regridded:
        grid = emm.result.family.link.inverse(grid)
    E = np.column_stack([grid[:, i] - grid[:, j] for i, j in pairs])
    above = (E > 0).mean(axis=0)
    if ratio:
        E = np.exp(E)
    lo, hi = np.quantile(E, [(1 - level) / 2, (1 + level) / 2], axis=0)
    rows = []
    for c, (i, j) in enumerate(pairs):
        row = {"contrast": _contrast_name(emm, i, j, " / " if ratio else " - "),
               **dict(zip(emm.by, g, strict=True))}
        row.update({ratio or "estimate": E[:, c].mean(), "SE": E[:, c].std(ddof=1), "lower": lo[c],
                    "upper": hi[c], "pd": max(above[c], 1 - above[c])})
        rows.append(row)
    return rows
