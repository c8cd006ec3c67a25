"""Simulation-based power for a planned design (simr's ``powerSim``).

Responses are drawn from stated parameters — fixed effects β, random-effect covariances and
σ — on the planned design's X and Z; each is refitted and the fixed effect ``test`` is tested
(t-test with the ``df_method`` df). Power is the rejection rate, with a Clopper–Pearson
interval.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pandas as pd
from scipy import stats

from ..backends import reml
from ..data.build import lmm_model
from ..progress import progress

__all__ = ["PowerResult", "power"]


@dataclasses.dataclass
class PowerResult:
    """Rejection rate of the test over the simulations, its Clopper–Pearson 95 % interval, and
    the counts behind it (rejections, failed and non-converged refits)."""

    power: float
    ci: tuple[float, float]
    nsim: int
    rejections: int
    test: str
    alpha: float
    n_failed: int = 0  # simulations whose refit raised (counted as not rejecting)
    n_nonconverged: int = 0  # refits that ran but did not converge (their test is used)

    def __repr__(self) -> str:
        lo, hi = self.ci
        tail = (f"; {self.n_failed} refit(s) failed, {self.n_nonconverged} did not converge"
                if self.n_failed or self.n_nonconverged else "")
        return (
            f"Power for {self.test!r} at alpha={self.alpha}: {100 * self.power:.1f}% "
            f"(95% CI {100 * lo:.1f}–{100 * hi:.1f}%), {self.rejections}/{self.nsim} rejections{tail}"
        )


def _clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    a = 1 - level
    lo = 0.0 if k == 0 else stats.beta.ppf(a / 2, k, n - k + 1)
    hi = 1.0 if k == n else stats.beta.ppf(1 - a / 2, k + 1, n - k)
    return float(lo), float(hi)


def power(
    formula: str,
    design: pd.DataFrame,
    fixed: dict[str, float],
    test: str,
    sigma: float,
    random: list[str] | None = None,
    groups=None,
    covariances: dict | None = None,
    nsim: int = 200,
    alpha: float = 0.05,
    seed=None,
    method: str = "REML",
    progressbar: bool = True,
) -> PowerResult:
    """Power to reject β_test = 0 in the planned ``design``.

    ``fixed`` maps every coefficient name (as interlace names them, e.g. ``"(Intercept)"``,
    ``"condition[T.b]"``) to its assumed value; ``covariances`` maps each random-effect group
    to its variance (scalar term) or covariance matrix (vector term); ``sigma`` is the residual SD.
    """
    if test not in fixed:
        raise KeyError(f"test={test!r} is not among the fixed effects given: {list(fixed)}")
    lhs = formula.split("~", 1)[0].strip()
    frame = design.copy()
    rng = np.random.default_rng(seed)
    frame[lhs] = 0.0  # X and Z do not depend on the response: nothing is fitted to it
    spec, d, _ = lmm_model(formula, frame, groups=groups, random=random, method=method)
    missing = [n for n in d.X_names if n not in fixed]
    if missing:
        raise KeyError(f"fixed= lacks values for coefficient(s) {missing}; the design has {d.X_names}")
    beta = np.array([fixed[n] for n in d.X_names])
    covariances = covariances or {}
    rows = []
    for t in d.terms:
        if t.group not in covariances:
            raise KeyError(f"covariances= lacks the group {t.group!r}")
        S = np.atleast_2d(np.asarray(covariances[t.group], dtype=float))
        if S.shape != (t.k, t.k):
            raise ValueError(f"covariance for {t.group!r} must be {t.k} × {t.k} (columns {t.columns})")
        rows.append((t, np.linalg.cholesky(S + 1e-12 * np.eye(t.k))))
    j = d.X_names.index(test)
    hits = failed = nonconverged = 0
    for _ in progress(range(int(nsim)), int(nsim), "power", progressbar):
        b = np.zeros(d.q)
        for t, C in rows:
            b[t.z_start : t.z_start + t.q] = (rng.standard_normal((t.m, t.k)) @ C.T).ravel()
        y = d.X @ beta + d.Z @ b + sigma * rng.standard_normal(d.n)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                r = reml.fit(spec, dataclasses.replace(d, y=y))
        except (np.linalg.LinAlgError, ValueError, FloatingPointError, ArithmeticError):
            failed += 1
            continue
        nonconverged += not r.converged
        hits += bool(r.fe_pvalues.iloc[j] < alpha)
    if failed or nonconverged:
        warnings.warn(
            f"power: {failed} of {nsim} refits failed (counted as not rejecting) and {nonconverged} "
            "did not converge", stacklevel=2,
        )
    return PowerResult(hits / nsim, _clopper_pearson(hits, int(nsim)), int(nsim), hits, test, alpha,
                       n_failed=failed, n_nonconverged=nonconverged)
