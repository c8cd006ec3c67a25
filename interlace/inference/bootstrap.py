"""Parametric bootstrap (lme4's ``bootMer``): simulate from the fit, refit, collect statistics."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..progress import progress

__all__ = ["BootstrapResult", "bootstrap"]


@dataclass
class BootstrapResult:
    """Draws of the statistic (one row per simulation) and the statistic at the fit."""

    draws: pd.DataFrame
    observed: pd.Series
    method: str = "parametric bootstrap"  # or "posterior": draws of a PyMC fit, no refits

    def __repr__(self) -> str:
        what = (
            "posterior draws (backend='pymc'; no refits: intervals are credible intervals)"
            if self.method == "posterior"
            else "parametric bootstrap refits"
        )
        return f"<BootstrapResult: {len(self.draws)} {what} of {list(self.draws.columns)}>"

    def ci(self, level: float = 0.95) -> pd.DataFrame:
        """Percentile intervals."""
        a = (1 - level) / 2
        return pd.DataFrame(
            {f"{100 * a:g} %": self.draws.quantile(a), f"{100 * (1 - a):g} %": self.draws.quantile(1 - a)}
        )

    @property
    def bias(self) -> pd.Series:
        return self.draws.mean() - self.observed

    @property
    def std_error(self) -> pd.Series:
        return self.draws.std(ddof=1)


def default_statistic(result) -> pd.Series:
    """Fixed effects and the variance parameters on the SD / correlation / σ scale."""
    e = result.engine
    return pd.concat([result.fe_params, pd.Series(e.psi_hat(), index=e.psi_names())])


def _refit_many(engine, ys: np.ndarray, statistic) -> list[np.ndarray]:
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for s in range(ys.shape[1]):
            out.append(
                np.asarray(statistic(engine.refit(y=ys[:, s], df_method="satterthwaite")), dtype=float)
            )
    return out


def bootstrap(
    result,
    nsim: int = 500,
    seed=None,
    statistic: Callable | None = None,
    n_jobs: int = 1,
    progressbar: bool = True,
) -> BootstrapResult:
    """Refit on ``nsim`` responses simulated from the fitted model (new random effects each time).

    ``statistic(result) -> array-like`` defaults to the fixed effects and variance parameters.
    All responses are simulated up front from ``seed``, so the draws do not depend on ``n_jobs``.
    For a PyMC fit nothing is refitted: the result holds ``nsim`` posterior draws (chosen with
    ``seed``; all of them if there are fewer) of the same quantities, ``method="posterior"``,
    and ``ci()`` gives equal-tailed credible intervals.
    """
    if int(nsim) < 1:
        raise ValueError(f"nsim must be a positive integer, got {nsim!r}")
    engine = getattr(result, "engine", None)
    if engine is None and hasattr(result, "variance_draws"):
        return _posterior_draws(result, int(nsim), seed, statistic)
    if engine is None:
        raise TypeError(
            "bootstrap needs a fit from interlace.fit (backend='reml'; or 'pymc' for posterior draws)"
        )
    stat = statistic or default_statistic
    observed = stat(result)
    names = (
        list(observed.index) if hasattr(observed, "index") else [f"t{i}" for i in range(np.size(observed))]
    )
    ys = engine.simulate(int(nsim), seed=seed)
    chunks = np.array_split(np.arange(nsim), max(1, int(nsim) // 10))
    draws: list[np.ndarray] = []
    if n_jobs == 1:
        for idx in progress(chunks, len(chunks), "bootstrap", progressbar):
            draws.extend(_refit_many(engine, ys[:, idx], stat))
    else:
        with ProcessPoolExecutor(max_workers=n_jobs) as pool:
            futures = [pool.submit(_refit_many, engine, ys[:, idx], stat) for idx in chunks]
            for fut in progress(futures, len(futures), "bootstrap", progressbar):
                draws.extend(fut.result())
    return BootstrapResult(
        draws=pd.DataFrame(np.vstack(draws), columns=names),
        observed=pd.Series(np.asarray(observed, dtype=float), index=names),
    )


def _posterior_draws(result, nsim: int, seed, statistic) -> BootstrapResult:
    """The bootstrap's table from a posterior: β and the variance parameters per draw."""
    if statistic is not None:
        raise ValueError(
            "statistic= needs refits; for a PyMC fit compute it from result.fe_draws and "
            "result.variance_draws (one row per posterior draw)"
        )
    draws = pd.concat([result.fe_draws, result.variance_draws], axis=1)
    observed = draws.mean()
    if nsim < len(draws):
        keep = np.sort(np.random.default_rng(seed).choice(len(draws), size=nsim, replace=False))
        draws = draws.iloc[keep].reset_index(drop=True)
    return BootstrapResult(draws=draws, observed=observed, method="posterior")
