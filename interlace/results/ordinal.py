"""OrdinalResult: a fitted cumulative link mixed model (``interlace.clmm``)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..data.design import level_keys, rebuild_matrix
from ..data.frames import to_pandas
from ..model.families import get_link
from ..model.rformula import r_labels
from .base import FitResult, Report
from .wald import WaldZ

__all__ = ["OrdinalResult"]


class _OneGroup:
    """The parts of a design TermBlock the result reads, for one grouping column."""

    def __init__(self, group: str, levels: list):
        self.group, self.factors, self.levels = group, (group,), levels
        self.z_start, self.q = 0, len(levels)
        self.keys = level_keys(pd.DataFrame({group: levels}), (group,))


class OrdinalResult(WaldZ, FitResult):
    """Thresholds α, effects β (positive β shifts responses to higher categories), the variance
    of each random intercept, conditional modes per term, log-likelihood (Laplace), and
    predictions."""

    backend = "reml"  # the Laplace fit (a posterior of the same model is a PosteriorModelResult)

    def __init__(
        self,
        *,
        formula,
        response_levels,
        X_names,
        alpha,
        beta,
        cov,
        b,
        loglik,
        nobs,
        n_dropped,
        link,
        fixed_spec,
        converged,
        labels=None,
        sigmas=None,
        terms=None,
        sigma=None,
        group=None,
        group_levels=None,
    ):
        """``sigmas`` and ``terms`` (the design's TermBlocks) for any number of random
        intercepts; a single term may also be given as ``sigma``, ``group`` and ``group_levels``."""
        if terms is None:  # the single-term spelling
            if group is None or sigma is None or group_levels is None:
                raise TypeError("OrdinalResult needs sigmas= and terms=, or sigma=, group= and group_levels=")
            terms, sigmas = [_OneGroup(group, list(group_levels))], [float(sigma)]
        k = len(alpha)
        self.formula, self.link, self.converged = formula, link, converged
        self.response_levels = list(response_levels)
        names = [f"{a}|{b}" for a, b in zip(self.response_levels[:-1], self.response_levels[1:], strict=True)]
        se = np.sqrt(np.diag(cov))
        self.thresholds = pd.Series(alpha, index=names, name="threshold")
        self.threshold_bse = pd.Series(se[:k], index=names, name="std_error")
        self.fe_params = pd.Series(beta, index=X_names, name="estimate")
        self.fe_bse = pd.Series(se[k:], index=X_names, name="std_error")
        # Cov of (thresholds, β) as ordinal's vcov; fe_cov is its β block
        self.vcov = pd.DataFrame(cov, index=names + list(X_names), columns=names + list(X_names))
        self.fe_cov = pd.DataFrame(cov[k:, k:], index=list(X_names), columns=list(X_names))
        # one entry per random term, in the design's order (most levels first), as VarCorr/ranef
        self.group = terms[0].group
        self.groups = [t.group for t in terms]
        self.variance_components = {t.group: float(s**2) for t, s in zip(terms, sigmas, strict=True)}
        self.random_effects = {
            t.group: pd.DataFrame(
                {"(Intercept)": b[t.z_start : t.z_start + t.q]}, index=pd.Index(t.levels, name=t.group)
            )
            for t in terms
        }
        self._re_keys = {t.group: (t.factors, t.keys) for t in terms}
        self.llf, self.nobs, self.n_dropped = float(loglik), int(nobs), int(n_dropped)
        self._fixed_spec = fixed_spec
        self._labels = dict(labels or {})

    @property
    def n_params(self) -> int:
        return len(self.thresholds) + len(self.fe_params) + len(self.variance_components)

    @property
    def sigma(self) -> float:
        """SD of the first random term (the only one in a single-term model)."""
        return float(np.sqrt(self.variance_components[self.group]))

    @property
    def b(self) -> np.ndarray:
        """Conditional modes of the first random term, in its level order."""
        return self.random_effects[self.group]["(Intercept)"].to_numpy()

    @property
    def aic(self) -> float:
        return -2 * self.llf + 2 * self.n_params

    @property
    def bic(self) -> float:
        return -2 * self.llf + np.log(self.nobs) * self.n_params

    def predict(self, newdata, type: str = "prob", include_re: bool = True):
        """Category probabilities (DataFrame, one column per level) or the most likely class."""
        if type not in ("prob", "class"):
            raise ValueError(f"type must be 'prob' or 'class', got {type!r}")
        frame, _ = to_pandas(newdata)
        mm = rebuild_matrix(self._fixed_spec, frame, f"formula {self.formula!r}")
        cols = r_labels([str(c) for c in mm.columns], self._labels)
        X = np.asarray(mm, dtype=float)[:, [cols.index(c) for c in self.fe_params.index]]
        eta = X @ self.fe_params.to_numpy()
        if include_re:  # each term whose grouping columns are given; unseen levels add 0
            for g, (factors, fitted) in self._re_keys.items():
                if not all(f in frame.columns for f in factors):
                    continue
                lookup = dict(zip(fitted, self.random_effects[g]["(Intercept)"].to_numpy(), strict=True))
                keys = level_keys(frame, factors)
                eta = eta + np.array([np.nan if k is None else lookup.get(k, 0.0) for k in keys])
        cuts = np.r_[-np.inf, self.thresholds.to_numpy(), np.inf]
        F = get_link(self.link).cdf_pdf(cuts[None, :] - eta[:, None])[0]
        F[:, 0], F[:, -1] = 0.0, 1.0
        probs = pd.DataFrame(np.diff(F, axis=1), columns=self.response_levels)
        if type == "prob":
            return probs
        return pd.Series(np.asarray(self.response_levels, dtype=object)[probs.to_numpy().argmax(axis=1)])

    def summary(self) -> Report:
        lines = [
            f"Cumulative Link Mixed Model fitted with the Laplace approximation (link: {self.link})",
            f"formula: {self.formula}",
            f" logLik {self.llf:.2f}   AIC {self.aic:.2f}   nobs {self.nobs}",
            "",
            "Random effects:",
        ]
        for g, v in self.variance_components.items():
            n_lev = len(self.random_effects[g])
            lines.append(f" {g} (Intercept): variance {v:.4g}, sd {np.sqrt(v):.4g}   ({n_lev} levels)")
        lines += ["", "Coefficients:"]
        for n in self.fe_params.index:
            lines.append(
                f"  {n:<24} {self.fe_params[n]:10.4f} {self.fe_bse[n]:9.4f} z {self.fe_zvalues[n]:7.3f} "
                f"p {self.fe_pvalues[n]:.3g}"
            )
        lines.append("Threshold coefficients:")
        for n in self.thresholds.index:
            lines.append(f"  {n:<24} {self.thresholds[n]:10.4f} {self.threshold_bse[n]:9.4f}")
        return Report("\n".join(lines))

    def __repr__(self) -> str:
        return f"<OrdinalResult {self.formula!r} link={self.link} nobs={self.nobs} llf={self.llf:.4f}>"
