"""Diagnostic plots (matplotlib): caterpillar plot of random effects, residuals, QQ plot."""

from __future__ import annotations

import numpy as np
from scipy import stats

from .extras import require

__all__ = ["caterpillar", "residuals_vs_fitted", "qq"]


def _pyplot():
    require("plotting", "plot", "matplotlib")
    import matplotlib.pyplot as plt

    return plt


def _intervals(result, group: str, level: float) -> tuple[np.ndarray, np.ndarray, str]:
    """(lower, upper) of each level × column of ``group``'s effects, and what they are: the
    conditional modes ± z·√condVar (REML/ML and Laplace fits) or equal-tailed posterior
    intervals of b (a PyMC fit, whose points are the posterior means)."""
    engine = getattr(result, "engine", None)
    if engine is not None and hasattr(engine, "conditional_variances"):
        re = result.random_effects[group].to_numpy()
        cv = engine.conditional_variances()[group]
        half = stats.norm.ppf(0.5 + level / 2) * np.sqrt(np.einsum("ijj->ij", cv))
        return re - half, re + half, "conditional mode ± z·√condVar"
    if getattr(result, "idata", None) is not None and getattr(result, "layout", None) is not None:
        from .results.bayes_after_fit import posterior_b

        draws = posterior_b(result.design, result.layout, result.idata)
        parts = [draws[:, t.z_start : t.z_start + t.q].reshape(len(draws), t.m, t.k)
                 for t in result.design.terms if t.group == group]
        B = np.concatenate(parts, axis=2)
        lo, hi = np.quantile(B, [(1 - level) / 2, (1 + level) / 2], axis=0)
        return lo, hi, "posterior mean, equal-tailed credible interval"
    post = getattr(getattr(result, "idata", None), "posterior", None)
    if post is not None and f"b_{group}" in post:  # clmm / coxme posteriors: b_<group> drawn as is
        arr = post[f"b_{group}"].to_numpy()
        B = arr.reshape((-1,) + arr.shape[2:])
        lo, hi = np.quantile(B, [(1 - level) / 2, (1 + level) / 2], axis=0)
        return lo, hi, "posterior mean, equal-tailed credible interval"
    raise TypeError(f"caterpillar needs conditional variances or posterior draws; {type(result).__name__} "
                    "has neither")


def caterpillar(result, group: str, level: float = 0.95, ax=None):
    """Random effects of ``group``, sorted, with ``level`` intervals: conditional modes with
    ±z·√condVar (REML/ML, Laplace GLMM) or posterior means with equal-tailed credible intervals
    (a PyMC fit). One panel per column of the group's terms. Returns the matplotlib Figure.
    """
    plt = _pyplot()
    if group not in result.random_effects:
        raise KeyError(f"no random effects for group {group!r}; groups: {list(result.random_effects)}")
    re = result.random_effects[group]
    lo, hi, what = _intervals(result, group, level)
    k = re.shape[1]
    if ax is None:
        fig, axes = plt.subplots(1, k, figsize=(4 * k, max(3.0, 0.18 * len(re) + 1)), squeeze=False)
        axes = axes[0]
    else:
        axes, fig = np.atleast_1d(ax), np.atleast_1d(ax)[0].figure
    for j, col in enumerate(re.columns):
        vals = re[col].to_numpy()
        order = np.argsort(vals)
        y = np.arange(len(vals))
        a = axes[j]
        err = np.vstack([vals - lo[:, j], hi[:, j] - vals])[:, order]
        a.errorbar(vals[order], y, xerr=np.maximum(err, 0), fmt="o", ms=3, capsize=0)
        a.axvline(0, color="grey", lw=0.8)
        a.set_yticks(y)
        a.set_yticklabels([str(i) for i in re.index[order]], fontsize=7)
        a.set_title(f"{group}: {col}")
        a.set_xlabel(f"{what} ({100 * level:g} %)", fontsize=7)
    fig.tight_layout()
    return fig


def residuals_vs_fitted(result, ax=None):
    """Residuals against fitted values, with a zero line. Returns the Figure."""
    plt = _pyplot()
    if ax is None:
        fig, ax = plt.subplots(figsize=(5, 4))
    fig = ax.figure
    ax.scatter(result.fittedvalues, result.resid, s=8, alpha=0.7)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xlabel("fitted")
    ax.set_ylabel("residual")
    ax.set_title("Residuals vs fitted")
    return fig


def qq(result, ax=None):
    """Normal QQ plot of the standardized residuals. Returns the Figure."""
    plt = _pyplot()
    if ax is None:
        fig, ax = plt.subplots(figsize=(4.5, 4.5))
    fig = ax.figure
    r = np.sort(result.resid / np.sqrt(result.scale))
    n = r.size
    q = stats.norm.ppf((np.arange(1, n + 1) - 0.5) / n)
    ax.scatter(q, r, s=8)
    lim = [min(q[0], r[0]), max(q[-1], r[-1])]
    ax.plot(lim, lim, color="grey", lw=0.8)
    ax.set_xlabel("normal quantile")
    ax.set_ylabel("standardized residual")
    ax.set_title("Normal QQ")
    return fig
