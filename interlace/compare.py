"""Side-by-side estimates of several fitted models: a table and a forest plot.

Any fitted model can be compared: LMMs and GLMMs (REML/ML/Laplace), ``clmm``, ``coxme`` and
posteriors (PyMC). Rows are the parameters — each term's SDs and correlations, the residual SD
``sigma`` (lme4 ``confint`` names), a family parameter, thresholds (clmm) and the fixed effects
— and columns, per fit, the estimate, its standard error (posterior SD for a posterior), an
interval and the interval's kind (``interval``):

- fixed effects: ``"Wald t"`` (an LMM: t quantiles with the fit's denominator df), ``"Wald z"``
  (GLMM, clmm, coxme), ``"credible"`` (equal-tailed posterior interval);
- variance parameters of fits with an engine (interlace.fit / glmer): ``"Wald"`` by default
  (delta method on the SD / correlation scale, :mod:`.inference.varwald`; cheap) or
  ``"profile"`` (``intervals="profile"``: likelihood-profile intervals, slower); ``"credible"``
  for a posterior; ``"none"`` where the fit has no interval for them (clmm, coxme).

A REML fit's estimates are the REML estimates; a posterior's are posterior means.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from .data.design import tril_colwise
from .inference.table import FullWidthFrame

__all__ = ["compare", "plot_compare"]

STATS = ("estimate", "se", "lower", "upper", "interval")
LINESTYLES = {"Wald t": "-", "Wald z": "-", "Wald": "-", "profile": "--", "credible": ":"}
INTERVALS = ("wald", "profile", "none")


def _variance_rows(result) -> tuple[list[str], np.ndarray]:
    """Names and point estimates of the SDs, correlations and σ from θ and σ² (a GLMM: Var(b) =
    ΛΛ', σ only for a family with a dispersion, and the negative binomial's θ)."""
    names, vals = [], []
    sigma = float(np.sqrt(result.scale))
    re_sd = float(np.sqrt(result._re_scale))
    for t in result.design.terms:
        T = t.T(result.theta) * re_sd
        S = T @ T.T
        sd = np.sqrt(np.diag(S))
        rows, cols = tril_colwise(t.k)
        for i, j in zip(rows, cols, strict=True):
            if i == j:
                names.append(f"sd_{t.columns[i]}|{t.group}")
                vals.append(sd[i])
            else:
                names.append(f"cor_{t.columns[j]}.{t.columns[i]}|{t.group}")
                vals.append(S[i, j] / (sd[i] * sd[j]) if sd[i] * sd[j] > 0 else 0.0)
    for name, value in (getattr(result, "correlation_params", None) or {}).items():  # phi, rho
        names, vals = names + [str(name)], vals + [float(value)]
    family = getattr(result, "family", None)
    if family is None or family.has_scale:
        names, vals = names + ["sigma"], vals + [sigma]
    if family is not None and family.nb_theta is not None:
        names, vals = names + ["nb_theta"], vals + [float(family.nb_theta)]
    return names, np.asarray(vals)


def _component_rows(result) -> tuple[list[str], np.ndarray]:
    """SDs and correlations from ``variance_components`` (clmm, coxme: results without θ)."""
    names, vals = [], []
    for name, v in result.variance_components.items():
        if not isinstance(v, pd.DataFrame):
            names.append(f"sd_(Intercept)|{name}")
            vals.append(float(np.sqrt(v)))
            continue
        S, cols = v.to_numpy(), list(v.columns)
        sd = np.sqrt(np.diag(S))
        rows, cc = tril_colwise(len(cols))
        for i, j in zip(rows, cc, strict=True):
            names.append(f"sd_{cols[i]}|{name}" if i == j else f"cor_{cols[j]}.{cols[i]}|{name}")
            vals.append(sd[i] if i == j else (S[i, j] / (sd[i] * sd[j]) if sd[i] * sd[j] > 0 else 0.0))
    return names, np.asarray(vals, dtype=float)


def _frame(est, se, lo, hi, kind: str, index) -> pd.DataFrame:
    return pd.DataFrame({"estimate": np.asarray(est, float), "se": np.asarray(se, float),
                         "lower": np.asarray(lo, float), "upper": np.asarray(hi, float),
                         "interval": kind}, index=list(index))


def _draw_rows(draws: pd.DataFrame, level: float) -> pd.DataFrame:
    a = (1 - level) / 2
    d = draws.to_numpy()
    return _frame(d.mean(axis=0), d.std(axis=0, ddof=1), np.quantile(d, a, axis=0),
                  np.quantile(d, 1 - a, axis=0), "credible", draws.columns)


def _fixed(result, level: float) -> pd.DataFrame:
    fe, se = result.fe_params, result.fe_bse
    if getattr(result, "backend", "reml") == "pymc" and hasattr(result, "fe_draws"):
        return _draw_rows(result.fe_draws, level)
    df = getattr(result, "fe_df", None)
    if df is not None and np.all(np.isfinite(np.asarray(df, float))):
        q, kind = stats.t.ppf(0.5 + level / 2, np.asarray(df, float)), "Wald t"
    else:
        q, kind = stats.norm.ppf(0.5 + level / 2), "Wald z"
    parts = [_frame(fe, se, fe - q * se, fe + q * se, kind, fe.index)]
    thresholds = getattr(result, "thresholds", None)
    if thresholds is not None:  # clmm's cut-points, Wald z
        z, tse = stats.norm.ppf(0.5 + level / 2), result.threshold_bse
        parts.insert(0, _frame(thresholds, tse, thresholds - z * tse, thresholds + z * tse, "Wald z",
                               thresholds.index))
    return pd.concat(parts)


def _variance(result, level: float, intervals: str) -> pd.DataFrame:
    draws = getattr(result, "variance_draws", None)
    if getattr(result, "backend", "reml") == "pymc" and draws is not None:
        return _draw_rows(draws, level)
    if getattr(result, "engine", None) is None or not hasattr(result, "theta"):
        names, est = _component_rows(result)
        return _frame(est, np.nan, np.nan, np.nan, "none", names)
    names, est = _variance_rows(result)
    var = _frame(est, np.nan, np.nan, np.nan, "none", names)
    if intervals == "profile":
        from .inference.confint import profile_variances

        prof = profile_variances(result, level)
        common = [n for n in names if n in prof.index]
        var.loc[common, "lower"] = prof.loc[common].iloc[:, 0].to_numpy()
        var.loc[common, "upper"] = prof.loc[common].iloc[:, 1].to_numpy()
        var.loc[common, "interval"] = "profile"
    elif intervals == "wald":
        from .inference.varwald import variance_wald

        try:
            w = variance_wald(result, level)
        except (AttributeError, np.linalg.LinAlgError, ValueError):  # an engine without the Hessian
            return var
        common = [n for n in names if n in w.index]
        var.loc[common, ["se", "lower", "upper"]] = w.loc[common, ["se", "lower", "upper"]].to_numpy()
        var.loc[common, "interval"] = "Wald"
    return var


def _one(result, level: float, intervals: str) -> pd.DataFrame:
    """The rows of one fit: estimate, se, lower, upper, interval."""
    return pd.concat([_variance(result, level, intervals), _fixed(result, level)])


def _labels(results, names) -> list[str]:
    if names is not None:
        names = [str(n) for n in names]
        if len(names) != len(results):
            raise ValueError(f"names has {len(names)} entries for {len(results)} fits")
        if len(set(names)) != len(names):
            raise ValueError(f"names must be distinct, got {names}")
        return names
    out, seen = [], {}
    for r in results:
        base = getattr(r, "backend", "fit")
        k = seen.get(base, 0)
        out.append(base if k == 0 else f"{base}.{k}")
        seen[base] = k + 1
    return out


def compare(
    *results, names: list[str] | None = None, level: float = 0.95, intervals: str = "wald"
) -> pd.DataFrame:
    """One table of the fits' parameters: a row per parameter, columns (fit, statistic).

    ``statistic`` is ``estimate``, ``se`` (SE, or posterior SD), ``lower`` and ``upper`` (a
    ``level`` interval) and ``interval`` (its kind: Wald t / Wald z / Wald / profile / credible
    / none). Fits are named by backend (``reml``, ``pymc``, ``reml.1`` …) unless ``names`` is
    given. Variance parameters of REML/ML/Laplace fits get Wald intervals (``"wald"``),
    profile intervals (``"profile"``: slower, it refits by ML and profiles) or none (``"none"``).
    """
    from .results.base import FitResult
    from .results.bayes_models import PosteriorModelResult

    if not results:
        raise ValueError("compare needs at least one fitted model")
    for i, r in enumerate(results):
        if not isinstance(r, FitResult | PosteriorModelResult):  # the latter: clmm/coxme posteriors
            raise TypeError(
                f"argument {i + 1} is not a fitted model (interlace.fit, glmer, clmm or coxme), "
                f"got {type(r).__name__}"
            )
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1, got {level!r}")
    if intervals not in INTERVALS:
        raise ValueError(f"intervals must be one of {list(INTERVALS)}, got {intervals!r}")
    labels = _labels(results, names)
    parts = [_one(r, level, intervals) for r in results]
    order: list[str] = []
    for p in parts:
        order.extend(n for n in p.index if n not in order)
    table = pd.concat([p.reindex(order) for p in parts], axis=1, keys=labels, names=["fit", "statistic"])
    table.index.name = "parameter"
    return FullWidthFrame(table)


def plot_compare(
    *results,
    names: list[str] | None = None,
    level: float = 0.95,
    intervals: str = "wald",
    parameters: list[str] | None = None,
):
    """Forest plot of :func:`compare`: one panel per parameter (each on its own scale), a point
    and interval per fit. Returns the matplotlib Figure."""
    from .plots import _pyplot

    plt = _pyplot()

    table = compare(*results, names=names, level=level, intervals=intervals)
    if parameters is not None:
        missing = [p for p in parameters if p not in table.index]
        if missing:
            raise KeyError(f"parameters {missing} are not in the fits; available: {list(table.index)}")
        table = table.loc[parameters]
    fits = list(dict.fromkeys(table.columns.get_level_values(0)))
    n = len(table.index)
    fig, axes = plt.subplots(n, 1, figsize=(6.0, 0.45 * len(fits) * n + 0.6 * n + 0.6), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key().get("color", ["C0", "C1", "C2"])
    kinds: dict[str, str] = {}
    for ax, param in zip(axes[:, 0], table.index, strict=True):
        for k, fit_name in enumerate(fits):
            row = table.loc[param, fit_name]
            y = len(fits) - 1 - k
            c = colors[k % len(colors)]
            kind = row["interval"] if isinstance(row["interval"], str) else "none"
            style = kinds.setdefault(kind, LINESTYLES.get(kind, "-"))
            if np.isfinite(row["lower"]) and np.isfinite(row["upper"]):
                ax.plot([row["lower"], row["upper"]], [y, y], color=c, lw=2, ls=style)
            if np.isfinite(row["estimate"]):
                ax.plot([row["estimate"]], [y], "o", color=c)
        ax.set_yticks(range(len(fits)))
        ax.set_yticklabels(list(reversed(fits)))
        ax.set_ylim(-0.7, len(fits) - 0.3)
        ax.set_title(param, fontsize=9, loc="left")
        ax.tick_params(labelsize=8)
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color="black", lw=2, ls=style, label=f"{kind} ({100 * level:g} %)")
               for kind, style in kinds.items() if kind != "none"]
    handles += [Line2D([], [], color="black", marker="o", lw=0, label="estimate")]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 4), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.6 / fig.get_figheight(), 1, 1))
    return fig
