"""SurvivalResult: a fitted Cox model with Gaussian random effects (``interlace.coxme``)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..data.frames import to_pandas
from .base import FitResult, Report
from .lmm import fitted_random_part, new_linear_predictor
from .verbs import RE_FORM_DEFAULT, resolve_re_form
from .wald import WaldZ

__all__ = ["SurvivalResult"]


class SurvivalResult(WaldZ, FitResult):
    """Log hazard ratios β, their SEs and Wald tests, the random-effect variances (covariance
    matrices for vector terms), the random effects (conditional modes), and the integrated /
    null log partial likelihoods."""

    backend = "reml"  # the Laplace fit (a posterior of the same model is a PosteriorModelResult)

    def __init__(self, *, formula, X_names, beta, cov, terms, loglik, loglik_null, loglik_penalized,
                 nobs, n_events, n_dropped, strata=(), n_strata=0, ties="efron", n_sparse=0,
                 converged: bool | None = None, optimizer_info: dict | None = None, design=None, b=None,
                 x_columns: list[int] | None = None):
        self.formula = formula
        self.fe_params = pd.Series(beta, index=X_names, name="estimate", dtype=float)
        self.fe_cov = pd.DataFrame(cov, index=X_names, columns=X_names)
        self.fe_bse = pd.Series(np.sqrt(np.diag(cov)), index=X_names, name="std_error", dtype=float)
        self._terms = terms
        self.llf, self.llf_null, self.llf_penalized = (
            float(loglik),
            float(loglik_null),
            float(loglik_penalized),
        )
        self.nobs, self.n_events, self.n_dropped = int(nobs), int(n_events), int(n_dropped)
        self.strata, self.n_strata = tuple(strata), int(n_strata)
        self.ties, self.n_sparse = ties, int(n_sparse)
        # the variance search's verdict (backends/reml/coxme.py: _maximize_theta)
        self.converged = None if converged is None else bool(converged)
        self.optimizer_info = dict(optimizer_info or {})
        self.design = design
        self._b = None if b is None else np.asarray(b, dtype=float)
        self._x_columns = x_columns  # the design's X columns that are coefficients (no intercept)

    def term_names(self) -> list[str]:
        """lme4's ``VarCorr`` names: the group, then ``group.1`` … for further terms of a group."""
        seen: dict[str, int] = {}
        names = []
        for t in self._terms:
            k = seen.get(t["group"], 0)
            names.append(t["group"] if k == 0 else f"{t['group']}.{k}")
            seen[t["group"]] = k + 1
        return names

    @property
    def group(self) -> str:
        """The first random term's grouping factor."""
        return self._terms[0]["group"]

    @property
    def variance_components(self) -> dict[str, float | pd.DataFrame]:
        """Term → its variance (random intercept) or the covariance DataFrame of its columns."""
        out: dict[str, float | pd.DataFrame] = {}
        for name, t in zip(self.term_names(), self._terms, strict=True):
            S = t["covariance"]
            cols = t["columns"]
            out[name] = float(S[0, 0]) if S.shape[0] == 1 else pd.DataFrame(S, index=cols, columns=cols)
        return out

    @property
    def random_effects(self) -> dict[str, pd.DataFrame]:
        """Group → conditional modes, one row per level, one column per term column."""
        out: dict[str, list[pd.DataFrame]] = {}
        for t in self._terms:
            frame = pd.DataFrame(t["b"], index=pd.Index(t["levels"], name=t["group"]), columns=t["columns"])
            out.setdefault(t["group"], []).append(frame)
        return {g: f[0] if len(f) == 1 else pd.concat(f, axis=1) for g, f in out.items()}

    def predict(self, newdata=None, type: str = "lp", include_re: bool = True, re_form=RE_FORM_DEFAULT,
                offset=None) -> np.ndarray:
        """The linear predictor η = Xβ + Zb + offset (``type="lp"``) or the relative risk
        exp(η) (``"risk"``), as coxme's ``predict(fit, type=)``: not centred (coxph centres
        its predictions, coxme does not), random effects included.

        ``include_re=False`` or ``re_form`` (lme4's ``re.form``: ``NA``/``"~0"`` none,
        ``"~(1 | g)"`` some terms) leave random effects out. ``newdata`` (which coxme refuses)
        takes the predictors, grouping columns and offset from new rows; levels not seen in
        fitting get b = 0. Strata do not enter η (they change only the baseline hazard).
        """
        if type not in ("lp", "risk"):
            raise ValueError(f"type must be 'lp' (linear predictor) or 'risk' (exp(lp)), got {type!r}")
        d = self.design
        if d is None or self._b is None:
            raise ValueError("this result was built without its design, so it cannot predict")
        terms = resolve_re_form(d, re_form, include_re)
        beta = np.zeros(d.p)
        beta[self._x_columns] = self.fe_params.to_numpy()
        if newdata is None:
            if offset is not None:
                raise ValueError("offset= applies to newdata; the fitted rows use the fitted offset")
            eta = d.X @ beta + d.offset
            eta = eta + fitted_random_part(d, self._b, d.terms if terms is None else terms)
        else:
            frame, _ = to_pandas(newdata)
            eta = new_linear_predictor(d, frame, beta, self._b, offset=offset, terms=terms)
        return eta if type == "lp" else np.exp(eta)

    @property
    def hazard_ratios(self) -> pd.Series:
        return np.exp(self.fe_params).rename("hazard_ratio")

    @property
    def n_params(self) -> int:
        """β's plus the variance parameters (k(k+1)/2 per term of k columns)."""
        k = [len(t["columns"]) for t in self._terms]
        return len(self.fe_params) + sum(j * (j + 1) // 2 for j in k)

    @property
    def aic(self) -> float:
        """−2 (integrated log partial likelihood) + 2 (β's and variance parameters)."""
        return -2 * self.llf + 2 * self.n_params

    def summary(self) -> Report:
        lines = [
            "Cox mixed-effects model fit by maximum (integrated partial) likelihood",
            f"  Formula: {self.formula}",
            f"  Events / n: {self.n_events} / {self.nobs}"
            + (f"; {self.n_strata} strata ({', '.join(self.strata)})" if self.strata else "")
            + f"; ties: {self.ties}",
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
        lines += ["", "Random effects:"]
        for name, t in zip(self.term_names(), self._terms, strict=True):
            S = t["covariance"]
            sd = np.sqrt(np.diag(S))
            for i, c in enumerate(t["columns"]):
                corr = " ".join(f"{S[i, j] / (sd[i] * sd[j]):6.3f}" for j in range(i))
                lines.append(f"  {name if i == 0 else '':<14} {c:<14} variance {S[i, i]:.4g}, "
                             f"std dev {sd[i]:.4g}" + (f"  corr {corr}" if corr else ""))
        if self.n_sparse:
            lines.append(f"  ({self.n_sparse} levels under coxme's sparse approximation of the information)")
        return Report("\n".join(lines))

    def __repr__(self) -> str:
        return f"<SurvivalResult {self.formula!r} nobs={self.nobs} llf={self.llf:.4f}>"
