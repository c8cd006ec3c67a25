"""Side-by-side estimates of several fits of one model: a table and a forest plot.

Rows are the parameters — each term's SDs and correlations, the residual SD ``sigma`` (lme4
``confint`` names) and the fixed effects — and columns, per fit, the estimate, its standard
error (a REML fit) or posterior SD (a PyMC fit), and an interval: t-based with the fit's
denominator df for REML fixed effects, and, for variance parameters, none (``"wald"``, as
lme4) or the profile-likelihood interval (``intervals="profile"``); equal-tailed posterior
intervals for a PyMC fit. A REML fit's estimates are the REML estimates; a PyMC fit's are
posterior means.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .data.design import tril_colwise

__all__ = ["compare", "plot_compare"]

STATS = ("estimate", "se", "lower", "upper")


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
    family = getattr(result, "family", None)
    if family is None or family.has_scale:
        names, vals = names + ["sigma"], vals + [sigma]
    if family is not None and family.nb_theta is not None:
        names, vals = names + ["nb_theta"], vals + [float(family.nb_theta)]
    return names, np.asarray(vals)


def _one(result, level: float, intervals: str) -> pd.DataFrame:
    """The rows of one fit: estimate, se, lower, upper."""
    fe = result.fe_params
    ci = result.fe_conf_int(level)
    fixed = pd.DataFrame(
        {
            "estimate": fe.to_numpy(),
            "se": result.fe_bse.to_numpy(),
            "lower": ci.iloc[:, 0].to_numpy(),
            "upper": ci.iloc[:, 1].to_numpy(),
        },
        index=fe.index,
    )
    draws = getattr(result, "variance_draws", None)
    if result.backend == "pymc" and draws is not None:
        d = draws.to_numpy()
        a = (1 - level) / 2
        var = pd.DataFrame(
            {
                "estimate": d.mean(axis=0),
                "se": d.std(axis=0, ddof=1),
                "lower": np.quantile(d, a, axis=0),
                "upper": np.quantile(d, 1 - a, axis=0),
            },
            index=list(draws.columns),
        )
    else:
        names, est = _variance_rows(result)
        var = pd.DataFrame({"estimate": est, "se": np.nan, "lower": np.nan, "upper": np.nan}, index=names)
        if intervals == "profile":
            prof = result.confint(method="profile", level=level)
            common = [n for n in names if n in prof.index]
            var.loc[common, "lower"] = prof.loc[common].iloc[:, 0].to_numpy()
            var.loc[common, "upper"] = prof.loc[common].iloc[:, 1].to_numpy()
    return pd.concat([var, fixed])


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
    ``level`` interval). Fits are named by backend (``reml``, ``pymc``, ``reml.1`` …) unless
    ``names`` is given. ``intervals="profile"`` adds profile intervals for the variance
    parameters of REML fits (slower: it refits by ML and profiles).
    """
    from .results.bayes_models import PosteriorModelResult
    from .results.lmm import CrossedLMEResult

    if not results:
        raise ValueError("compare needs at least one fitted model")
    for i, r in enumerate(results):
        if not isinstance(r, CrossedLMEResult | PosteriorModelResult):  # the latter: clmm/coxme posteriors
            raise TypeError(
                f"argument {i + 1} is not a fitted model from interlace.fit, got {type(r).__name__}"
            )
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1, got {level!r}")
    if intervals not in ("wald", "profile"):
        raise ValueError(f"intervals must be 'wald' or 'profile', got {intervals!r}")
    labels = _labels(results, names)
    parts = [_one(r, level, intervals) for r in results]
    order: list[str] = []
    for p in parts:
        order.extend(n for n in p.index if n not in order)
    table = pd.concat([p.reindex(order) for p in parts], axis=1, keys=labels, names=["fit", "statistic"])
    table.index.name = "parameter"
    return table


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
    fig, axes = plt.subplots(n, 1, figsize=(6.0, 0.45 * len(fits) * n + 0.6 * n), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key().get("color", ["C0", "C1", "C2"])
    for ax, param in zip(axes[:, 0], table.index, strict=True):
        for k, fit_name in enumerate(fits):
            row = table.loc[param, fit_name]
            y = len(fits) - 1 - k
            c = colors[k % len(colors)]
            if np.isfinite(row["lower"]) and np.isfinite(row["upper"]):
                ax.plot([row["lower"], row["upper"]], [y, y], color=c, lw=2)
            ax.plot([row["estimate"]], [y], "o", color=c)
        ax.set_yticks(range(len(fits)))
        ax.set_yticklabels(list(reversed(fits)))
        ax.set_ylim(-0.7, len(fits) - 0.3)
        ax.set_title(param, fontsize=9, loc="left")
        ax.tick_params(labelsize=8)
    fig.tight_layout()
    return fig
