"""Confidence intervals for fixed effects and variance parameters (lme4's ``confint``).

- ``wald``: β̂ ± z·SE for fixed effects; variance parameters get none (NaN), as in lme4.
- ``profile``: the likelihood-ratio interval {ψ : D(ψ) − D(ψ̂) ≤ χ²₁(level)} with D the
  ML deviance minimised over all other parameters; a REML fit is refitted by ML first, as
  lme4's ``profile`` does. Variance parameters are profiled on the SD / correlation / σ
  scale; a fixed effect is profiled by moving its column into the offset.
- ``boot``: percentile intervals from a parametric bootstrap (simulate, refit).

A Laplace GLMM (``interlace.glmer``) is handled as lme4's ``confint.merMod`` does for glmer:
Wald for β only; the profile of the Laplace deviance minimised over θ *and* β (β is not
profiled out); the bootstrap refits by Laplace. A PyMC fit has equal-tailed credible
intervals of its posterior draws (``method="quantile"``, its default) instead.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from scipy import stats
from scipy.optimize import brentq

from ..linalg.threads import fit_blas_threads

__all__ = ["confint", "profile_interval", "profile_variances"]


def profile_interval(
    dev: Callable[[float], float],
    center: float,
    d0: float,
    step: float,
    bounds: tuple[float, float],
    level: float = 0.95,
    max_doublings: int = 40,
) -> tuple[float, float]:
    """Where dev(v) − d0 crosses χ²₁(level) on each side of ``center`` (bound if never)."""
    cutoff = stats.chi2.ppf(level, 1)
    ends = []
    for side, bound in ((-1, bounds[0]), (1, bounds[1])):
        h, v_in, end = max(step, 1e-8), center, bound
        for _ in range(max_doublings):
            v = center + side * h
            if (side < 0 and v <= bound) or (side > 0 and v >= bound):
                v = bound
                if not np.isfinite(v) or dev(v) - d0 <= cutoff:
                    end = v
                    break
            if dev(v) - d0 > cutoff:
                end = brentq(lambda x: dev(x) - d0 - cutoff, v_in, v, xtol=1e-8 * max(1.0, abs(v)))
                break
            v_in, h = v, h * 2
        ends.append(end)
    return ends[0], ends[1]


def confint(result, method: str | None = None, level: float = 0.95, nsim: int = 500,
            seed=None) -> pd.DataFrame:
    """Intervals for the variance parameters (SDs, correlations, σ) and the fixed effects.

    ``method`` defaults to ``"profile"`` for REML/ML/Laplace fits and ``"quantile"`` (credible
    intervals) for PyMC fits."""
    if getattr(result, "engine", None) is None and hasattr(result, "variance_draws"):
        return _credible(result, "quantile" if method is None else method, level)
    method = str("profile" if method is None else method).lower()
    if method not in ("wald", "profile", "boot"):
        raise ValueError(f"method must be 'wald', 'profile' or 'boot', got {method!r}")
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1, got {level!r}")
    engine = getattr(result, "engine", None)
    if engine is None and (result.optimizer_info or {}).get("solver") == "iterative":
        return _iterative(result, method, level)
    if engine is None:
        raise TypeError("confint needs a fit from interlace.fit or interlace.glmer "
                        "(backend='reml' or 'pymc')")
    lo_name, hi_name = "lower", "upper"  # the one interval spelling of every interlace table
    psi_names = engine.psi_names()
    beta = result.fe_params
    index = psi_names + list(beta.index)
    out = pd.DataFrame(np.nan, index=index, columns=[lo_name, hi_name])
    if method == "wald":
        z = stats.norm.ppf(0.5 + level / 2)
        out.loc[beta.index, lo_name] = beta - z * result.fe_bse
        out.loc[beta.index, hi_name] = beta + z * result.fe_bse
    elif method == "profile":
        ml = result if result.method == "ML" else engine.refit(method="ML", df_method="satterthwaite")
        with fit_blas_threads():  # small dense algebra in many optimizations: one BLAS thread
            _profile(ml, ml.engine, out, level)
    else:
        with fit_blas_threads():
            _boot(result, engine, out, level, nsim, seed)
    return out


def profile_variances(result, level: float = 0.95) -> pd.DataFrame:
    """Profile intervals of the variance parameters only (no fixed effects): ``compare``'s
    rows, at half the cost of ``confint(method="profile")``."""
    engine = result.engine
    ml = result if result.method == "ML" else engine.refit(method="ML", df_method="satterthwaite")
    names = ml.engine.psi_names()
    out = pd.DataFrame(np.nan, index=names, columns=["lower", "upper"])
    with fit_blas_threads():
        _profile(ml, ml.engine, out, level, fixed=False)
    return out


def _profile(result, engine, out: pd.DataFrame, level: float, fixed: bool = True) -> None:
    psi = engine.psi_hat()
    d0 = engine.psi_deviance(psi)
    bounds = engine.psi_bounds()
    for j, name in enumerate(engine.psi_names()):

        def dev(v, j=j):
            return engine.profile_psi(j, v, psi)[0]

        step = 0.25 * abs(psi[j]) if psi[j] != 0 else 0.1
        if name.startswith("cor_") or name in ("phi", "rho"):
            step = 0.1
        out.iloc[j] = profile_interval(dev, psi[j], d0, step, bounds[j], level)
    if not fixed:
        return
    k = len(psi)
    for j, (b, se) in enumerate(zip(result.fe_params, result.fe_bse, strict=True)):
        base = engine.profile_beta(j, b)

        def dev_b(v, j=j):
            return engine.profile_beta(j, v)

        out.iloc[k + j] = profile_interval(dev_b, b, base, se, (-np.inf, np.inf), level)


def _boot(result, engine, out: pd.DataFrame, level: float, nsim: int, seed) -> None:
    ys = engine.simulate(nsim, seed=seed)
    draws = []
    for s in range(nsim):
        r = engine.refit(y=ys[:, s])
        draws.append(np.r_[r.engine.psi_hat(), r.fe_params.to_numpy()])
    draws = np.asarray(draws)
    alpha = (1 - level) / 2
    out.iloc[:, 0] = np.quantile(draws, alpha, axis=0)
    out.iloc[:, 1] = np.quantile(draws, 1 - alpha, axis=0)


def _iterative(result, method: str, level: float) -> pd.DataFrame:
    """A fit by the iterative solver: Wald intervals β̂ ± z·SE (its Var(β̂) is exact), NaN for the
    variance parameters as lme4's Wald; no profile (no likelihood) and no bootstrap."""
    from ..results.refusals import refuse_iterative

    if method == "profile":
        refuse_iterative(result, "confint(method='profile')", "likelihood",
                         "Wald intervals for the fixed effects are: confint(method='wald'). ")
    if method == "boot":
        refuse_iterative(result, "confint(method='boot')", "refit",
                         "Wald intervals for the fixed effects are: confint(method='wald'). ")
    beta, se = result.fe_params, result.fe_bse
    z = stats.norm.ppf(0.5 + level / 2)
    out = pd.DataFrame(np.nan, index=result.design.variance_names() + list(beta.index),
                       columns=["lower", "upper"])
    out.loc[beta.index, "lower"] = beta - z * se
    out.loc[beta.index, "upper"] = beta + z * se
    return out


def _credible(result, method: str, level: float) -> pd.DataFrame:
    """Equal-tailed posterior intervals of the variance parameters and β (a PyMC fit)."""
    if method not in ("quantile", "credible"):
        raise ValueError(
            f"a PyMC fit has credible intervals: method='quantile' (got {method!r}; Wald, profile "
            "and bootstrap intervals are for fits with backend='reml')"
        )
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1, got {level!r}")
    draws = pd.concat([result.variance_draws, result.fe_draws], axis=1)
    a = (1 - level) / 2
    return pd.DataFrame({"lower": draws.quantile(a), "upper": draws.quantile(1 - a)})
