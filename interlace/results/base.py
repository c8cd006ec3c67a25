"""The contract every fitted model honours, and the one report type ``summary()`` returns.

Every result — LMM (:class:`~.lmm.CrossedLMEResult`), GLMM, ordinal, survival and the posterior
results of the PyMC backend — derives from :class:`FitResult` and sets in its constructor:

- ``fe_params`` (p,), ``fe_bse`` (p,) and ``fe_cov`` (p × p): the fixed effects, their standard
  errors (posterior SDs for a posterior) and covariance, indexed by coefficient name;
- ``llf`` (the maximised log-likelihood; for a posterior the plug-in value at the posterior
  means, documented there), ``nobs``, ``n_dropped`` (rows dropped for missing values) and
  ``converged`` (None where the engine does not assess it);
- ``n_params``, which ``aic`` and ``bic`` count.

``summary()`` returns a :class:`Report`; ``to_frame()`` the tidy fixed-effects table;
``predict(newdata)`` predictions on the model's scale of interest (coxme's: the linear
predictor or the relative risk).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

__all__ = ["FitResult", "Report"]


class Report:
    """A fitted model's printed report: ``print(r.summary())`` shows it in full, ``.text`` holds it."""

    def __init__(self, text: str = ""):
        self.text = text

    def __str__(self) -> str:
        return self.text

    __repr__ = __str__

    def __contains__(self, part: str) -> bool:
        return part in self.text

    def __getattr__(self, name: str):
        """The text's string methods (``splitlines``, ``startswith`` …) work on the report."""
        if name == "text":
            raise AttributeError(name)
        return getattr(self.text, name)


class FitResult:
    """Base of every result type (see the module docstring for the attributes each one sets)."""

    fe_params: pd.Series
    fe_bse: pd.Series
    fe_cov: pd.DataFrame
    llf: float
    nobs: int
    n_dropped: int
    converged: bool | None
    engine = None  # the REML backend's engine (refit, simulate, profile) where there is one
    model_frame = None  # the complete-case rows fitted, where they were collected

    @property
    def n_params(self) -> int:
        """Parameters counted by AIC/BIC."""
        raise NotImplementedError

    @property
    def aic(self) -> float:
        """−2 llf + 2 n_params."""
        return -2.0 * self.llf + 2.0 * self.n_params

    @property
    def bic(self) -> float:
        """−2 llf + log(nobs) n_params."""
        return -2.0 * self.llf + float(np.log(self.nobs)) * self.n_params

    def summary(self) -> Report:
        """The printed report of the fit."""
        raise NotImplementedError

    def to_frame(self) -> pd.DataFrame:
        """Tidy fixed-effects table: term, estimate, std_error, statistic (z), p_value (Wald, normal)."""
        z = (self.fe_params / self.fe_bse).to_numpy()
        return pd.DataFrame({
            "term": list(self.fe_params.index),
            "estimate": self.fe_params.to_numpy(),
            "std_error": self.fe_bse.to_numpy(),
            "statistic": z,
            "p_value": 2 * stats.norm.sf(np.abs(z)),
        })

    def predict(self, newdata=None, **kwargs):
        """Predictions for ``newdata`` (default: the fitted rows)."""
        raise NotImplementedError(f"{type(self).__name__} does not predict")
