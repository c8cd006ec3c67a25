"""SurvivalResult: a fitted Cox model with Gaussian frailties (``interlace.coxme``)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .wald import WaldZ

__all__ = ["SurvivalResult"]


class SurvivalResult(WaldZ):
    """Log hazard ratios β, their SEs and Wald tests, the frailty variance, the frailties
    (conditional modes), and the integrated / null log partial likelihoods."""

    def __init__(
        self,
        *,
        formula,
        X_names,
        beta,
        cov,
        variance,
        b,
        group,
        group_levels,
        loglik,
        loglik_null,
        loglik_penalized,
        nobs,
        n_events,
        n_dropped,
    ):
        self.formula = formula
        self.fe_params = pd.Series(beta, index=X_names, name="estimate")
        self.fe_cov = pd.DataFrame(cov, index=X_names, columns=X_names)
        self.fe_bse = pd.Series(np.sqrt(np.diag(cov)), index=X_names, name="std_error")
        self.group = group
        self.variance_components = {group: float(variance)}
        self.random_effects = {
            group: pd.DataFrame({"(Intercept)": b}, index=pd.Index(group_levels, name=group))
        }
        self.llf, self.llf_null, self.llf_penalized = (
            float(loglik),
            float(loglik_null),
            float(loglik_penalized),
        )
        self.nobs, self.n_events, self.n_dropped = int(nobs), int(n_events), int(n_dropped)

    @property
    def hazard_ratios(self) -> pd.Series:
        return np.exp(self.fe_params).rename("hazard_ratio")

    @property
    def n_params(self) -> int:
        return len(self.fe_params) + 1

    @property
    def aic(self) -> float:
        """−2 (integrated log partial likelihood) + 2 (β's and the variance)."""
        return -2 * self.llf + 2 * self.n_params

    def summary(self) -> str:
        lines = [
            "Cox mixed-effects model fit by maximum (integrated partial) likelihood",
            f"  Formula: {self.formula}",
            f"  Events / n: {self.n_events} / {self.nobs}",
            f"  log-likelihood: null {self.llf_null:.2f}, integrated {self.llf:.2f}, "
            f"penalized {self.llf_penalized:.2f}",
            "",
            "Fixed coefficients:",
        ]
        for n in self.fe_params.index:
            lines.append(
                f"  {n:<20} coef {self.fe_params[n]:9.4f}  exp(coef) {self.hazard_ratios[n]:8.4f}  "
                f"se {self.fe_bse[n]:8.4f}  z {self.fe_zvalues[n]:7.2f}  p {self.fe_pvalues[n]:.3g}"
            )
        v = self.variance_components[self.group]
        lines += ["", f"Random effects: {self.group} (Intercept) variance {v:.4g}, std dev {np.sqrt(v):.4g}"]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<SurvivalResult {self.formula!r} nobs={self.nobs} llf={self.llf:.4f}>"
