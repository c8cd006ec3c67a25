"""Parametric bootstrap (lme4's ``bootMer``): simulate from the fit, refit, collect statistics."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..linalg.threads import fit_blas_threads
from ..progress import progress

__all__ = ["BootstrapResult", "bootstrap"]


@dataclass
class BootstrapResult:
    """Draws of the statistic (one row per simulation) and the statistic at the fit."""

    draws: pd.DataFrame
    observed: pd.Series
    method: str = "parametric bootstrap"  # or "posterior": draws of a PyMC fit, no refits
    n_failed: int = 0  # refits that raised (their rows are not in draws)
    n_nonconverged: int = 0  # refits kept in draws whose optimizer did not converge

    def __repr__(self) -> str:
        what = (
            "posterior draws (backend='pymc'; no refits: intervals are credible intervals)"
            if self.method == "posterior"
            else "parametric bootstrap refits"
        )
        tail = (f"; {self.n_failed} refit(s) failed, {self.n_nonconverged} did not converge"
                if self.n_failed or self.n_nonconverged else "")
        return f"<BootstrapResult: {len(self.draws)} {what} of {list(self.draws.columns)}{tail}>"

    def ci(self, level: float = 0.95) -> pd.DataFrame:
        """Percentile intervals: columns ``lower`` and ``upper``."""
        a = (1 - level) / 2
        return pd.DataFrame({"lower": self.draws.quantile(a), "upper": self.draws.quantile(1 - a)})

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


def _refit_many(engine, ys: np.ndarray, statistic) -> tuple[list[np.ndarray], int, int]:
    """Refit each column of ``ys``: (statistics of the refits that ran, failed, non-converged).

    A refit's own warnings are not shown one by one; they are counted through its ``converged``
    flag and reported once by :func:`bootstrap`.
    """
    out, failed, nonconverged = [], 0, 0
    for s in range(ys.shape[1]):
        try:
            with warnings.catch_warnings(), fit_blas_threads():  # small dense algebra: one BLAS thread
                warnings.simplefilter("ignore")
                r = engine.refit(y=ys[:, s], df_method="satterthwaite")
            out.append(np.asarray(statistic(r), dtype=float))
        except (np.linalg.LinAlgError, ValueError, FloatingPointError, ArithmeticError):
            failed += 1
            continue
        nonconverged += not bool(getattr(r, "converged", True))
    return out, failed, nonconverged


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
    from ..results.refusals import refuse_iterative

    refuse_iterative(result, "bootstrap", "refit")
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
    failed = nonconverged = 0

    def collect(part):
        nonlocal failed, nonconverged
        draws.extend(part[0])
        failed += part[1]
        nonconverged += part[2]

    if n_jobs == 1:
        for idx in progress(chunks, len(chunks), "bootstrap", progressbar):
            collect(_refit_many(engine, ys[:, idx], stat))
    else:
        with ProcessPoolExecutor(max_workers=n_jobs) as pool:
            futures = [pool.submit(_refit_many, engine, ys[:, idx], stat) for idx in chunks]
            for fut in progress(futures, len(futures), "bootstrap", progressbar):
                collect(fut.result())
    if not draws:
        raise RuntimeError(f"bootstrap: all {nsim} refits failed")
    if failed or nonconverged:
        warnings.warn(
            f"bootstrap: {failed} of {nsim} refits failed (left out) and {nonconverged} did not "
            "converge (kept); see result.n_failed / n_nonconverged",
            stacklevel=2,
        )
    return BootstrapResult(
        draws=pd.DataFrame(np.vstack(draws), columns=names),
        observed=pd.Series(np.asarray(observed, dtype=float), index=names),
        n_failed=failed, n_nonconverged=nonconverged,
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
