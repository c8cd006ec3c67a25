"""Posterior results of ``clmm`` and ``coxme`` with ``backend="pymc"``.

A posterior is reported as a posterior: the point estimates are posterior means, ``fe_bse`` the
posterior SDs, intervals equal-tailed posterior quantiles, and the table carries R-hat and
ESS instead of p-values. ``variance_draws`` holds the random-effect SDs (lme4 ``confint``
names), so :func:`interlace.compare` lines these fits up with the Laplace ones.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["PosteriorModelResult", "NoTestsNoLikelihood"]


def _interval(draws: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1, got {level!r}")
    a = (1 - level) / 2
    return np.quantile(draws, a, axis=0), np.quantile(draws, 1 - a, axis=0)


class NoTestsNoLikelihood:
    """A posterior is reported as a posterior: no z/t tests and no maximised likelihood. Each is an
    AttributeError (so ``hasattr`` is False) that says what to use instead."""

    _NO_TESTS = ("a posterior has no {name}: use fe_conf_int() (equal-tailed credible intervals), "
                 "fe_draws (e.g. the posterior probability of a sign), or backend='reml' for tests")
    _NO_LIKELIHOOD = ("a posterior has no {name}: compare posteriors by ELPD with result.loo() "
                      "(az.loo / az.waic on result.idata) or interlace.anova(b1, b2)")
    _PLUGIN = ""  # where a plug-in log-likelihood exists, the sentence that names it

    @property
    def fe_pvalues(self):
        raise AttributeError(self._NO_TESTS.format(name="p-values"))

    @property
    def fe_tvalues(self):
        raise AttributeError(self._NO_TESTS.format(name="t statistics"))

    @property
    def fe_zvalues(self):
        raise AttributeError(self._NO_TESTS.format(name="z statistics"))

    @property
    def llf(self):
        raise AttributeError(self._NO_LIKELIHOOD.format(name="maximised log-likelihood (llf)") + self._PLUGIN)

    @property
    def aic(self):
        raise AttributeError(self._NO_LIKELIHOOD.format(name="AIC") + self._PLUGIN)

    @property
    def bic(self):
        raise AttributeError(self._NO_LIKELIHOOD.format(name="BIC") + self._PLUGIN)

    @property
    def deviance(self):
        raise AttributeError(self._NO_LIKELIHOOD.format(name="deviance") + self._PLUGIN)


class PosteriorModelResult(NoTestsNoLikelihood):
    """The posterior of a cumulative-link (``kind="clmm"``) or Cox (``kind="coxme"``) mixed model.

    ``fe_params``/``fe_bse``/``fe_conf_int`` summarise β (the regression coefficients; a clmm's
    thresholds are in ``thresholds`` and ``threshold_draws``), ``variance_draws`` the SDs of the
    random effects, ``random_effects`` the posterior means of b per group, ``idata`` the arviz
    InferenceData (with the pointwise log-likelihood for ``az.loo``), ``diagnostics`` the R-hat
    and ESS table, ``optimizer_info`` the sampler settings and timings.
    """

    backend = "pymc"

    def __init__(self, kind: str, formula: str, X_names: list[str], beta_draws: np.ndarray,
                 variance_draws: pd.DataFrame, random_effects: dict[str, pd.DataFrame], idata, diagnostics,
                 optimizer_info: dict, nobs: int, n_dropped: int = 0, link: str | None = None,
                 threshold_names: list[str] | None = None, threshold_draws: np.ndarray | None = None):
        self.kind, self.formula, self.link = kind, formula, link
        self._beta = np.asarray(beta_draws, dtype=float).reshape(len(variance_draws), len(X_names))
        self._names = list(X_names)
        self.variance_draws = variance_draws
        self.random_effects = random_effects
        self.idata = idata
        self._diag = diagnostics
        self.optimizer_info = optimizer_info
        self.nobs, self.n_dropped = int(nobs), int(n_dropped)
        self._tnames = threshold_names or []
        self.threshold_draws = threshold_draws

    @property
    def method(self) -> str:
        """``"posterior (NUTS, nutpie 0.16.8)"``: what was done, with the sampler that ran."""
        ran = self.optimizer_info.get("sampler_version") or self.optimizer_info.get("sampler")
        return f"posterior (NUTS, {ran})" if ran else "posterior (NUTS)"

    @property
    def fe_draws(self) -> pd.DataFrame:
        """Posterior draws of the thresholds (clmm) and β, one column per parameter."""
        beta = self.beta_draws
        if self.threshold_draws is None:
            return beta
        alpha = pd.DataFrame(np.asarray(self.threshold_draws), columns=self._tnames)
        return pd.concat([alpha, beta], axis=1)

    @property
    def converged(self) -> bool:
        return not self.optimizer_info.get("message")

    @property
    def beta_draws(self) -> pd.DataFrame:
        """Posterior draws of β, one column per coefficient."""
        return pd.DataFrame(self._beta, columns=self._names)

    @property
    def fe_params(self) -> pd.Series:
        """Posterior means of β."""
        return pd.Series(self._beta.mean(axis=0), index=self._names, name="mean")

    @property
    def fe_bse(self) -> pd.Series:
        """Posterior SDs of β."""
        sd = self._beta.std(axis=0, ddof=1) if self._beta.shape[0] > 1 else np.full(len(self._names), np.nan)
        return pd.Series(sd, index=self._names, name="sd")

    def fe_conf_int(self, level: float = 0.95) -> pd.DataFrame:
        """Equal-tailed ``level`` posterior intervals of β."""
        lo, hi = _interval(self._beta, level)
        return pd.DataFrame({"lower": lo, "upper": hi}, index=self._names)

    @property
    def thresholds(self) -> pd.Series:
        """Posterior means of a clmm's thresholds α₁ < … < α_{J−1} (``"1|2"`` …)."""
        if self.threshold_draws is None:
            raise AttributeError(f"a {self.kind} fit has no thresholds")
        return pd.Series(self.threshold_draws.mean(axis=0), index=self._tnames, name="mean")

    @property
    def diagnostics(self) -> pd.DataFrame:
        """az.summary of the sampled parameters (R-hat, ESS)."""
        return self._diag.table

    def confint(self, level: float = 0.95, method: str = "quantile") -> pd.DataFrame:
        """Equal-tailed posterior intervals of the SDs, the thresholds (clmm) and β."""
        if method != "quantile":
            raise ValueError(f"a PyMC fit has posterior intervals: use method='quantile' (got {method!r})")
        parts = [self.variance_draws.to_numpy()]
        names = list(self.variance_draws.columns)
        if self.threshold_draws is not None:
            parts.append(self.threshold_draws)
            names += self._tnames
        parts.append(self._beta)
        names += self._names
        lo, hi = _interval(np.column_stack(parts), level)
        return pd.DataFrame({"lower": lo, "upper": hi}, index=names)  # as the LMM/GLMM posteriors

    def to_frame(self, level: float = 0.95) -> pd.DataFrame:
        """Posterior table (term, mean, sd, interval, R-hat, bulk ESS) of the thresholds and β."""
        draws = self._beta
        if self.threshold_draws is not None:
            draws = np.column_stack([self.threshold_draws, self._beta])
        names = self._tnames + self._names
        keys = [f"thresholds[{t}]" for t in self._tnames] + [f"beta[{t}]" for t in self._names]
        lo, hi = _interval(draws, level)
        table = pd.DataFrame({"term": names, "mean": draws.mean(axis=0), "sd": draws.std(axis=0, ddof=1),
                              "lower": lo, "upper": hi})
        diag = self._diag.table
        for col in ("r_hat", "ess_bulk"):
            table[col] = [float(diag.loc[k, col]) if k in diag.index else np.nan for k in keys]
        return table

    def loglik_name(self, group: str | None = None) -> str:
        """The pointwise ``idata.log_likelihood`` variable (clmm: one term per observation)."""
        ll = getattr(self.idata, "log_likelihood", None)
        if ll is None or not ll.data_vars:
            raise ValueError(
                f"a {self.kind} posterior stores no pointwise log-likelihood (the Cox partial likelihood "
                "does not split into independent observations), so it has no LOO or ELPD comparison")
        if group is not None:
            raise ValueError(
                f"leave-one-group-out log-likelihoods exist for Gaussian LMMs only; a {self.kind} "
                "posterior has the pointwise one: call loo() without group=")
        return str(next(iter(ll.data_vars)))

    def loo(self, group: str | None = None, pointwise: bool = False):
        """PSIS leave-one-out ELPD over the pointwise log-likelihood (``az.loo``)."""
        import arviz as az

        return az.loo(self.idata, var_name=self.loglik_name(group), pointwise=pointwise)

    def summary(self) -> str:
        """The posterior table and the SDs of the random effects as text."""
        info = self.optimizer_info
        head = (f"{self.kind} posterior ({info.get('sampler')}, {info.get('chains')} chains × "
                f"{info.get('draws')} draws): {self.formula}" + (f", link {self.link}" if self.link else ""))
        sds = self.variance_draws.agg(["mean", "std"]).T.rename(columns={"std": "sd"})
        return f"{head}\n{self.to_frame().to_string(index=False)}\n\nRandom effects:\n{sds.to_string()}"

    def __repr__(self) -> str:
        info = self.optimizer_info
        return (f"<PosteriorModelResult {self.kind} {self.formula!r} backend=pymc "
                f"{info.get('chains')}×{info.get('draws')} draws nobs={self.nobs}>")
