"""lme4/lmerTest-style text report of a fitted model."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .base import Report
from .rformat import abbreviate, coef_table, format_fixed, named_vector

__all__ = ["ModelSummary", "GLMMSummary", "short_print"]


class ModelSummary(Report):
    """The report as text (``str()``), shown in full by ``repr`` and ``print``."""

    def __init__(self, result, ddf: str | None = None):
        self.result = result
        self.ddf = ddf
        self.text = self._render()

    def __str__(self) -> str:
        return self.text

    __repr__ = __str__

    def _render(self) -> str:
        """lmerTest's ``summary``: REML criterion (or the AIC table for ML), scaled residuals,
        random effects, fixed effects with df and p (R's ``printCoefmat``, 4 digits) and the
        correlation of the fixed effects (not shown past 12 coefficients, as lme4)."""
        r = self.result
        df_name = self._ddf()
        info = r.optimizer_info
        iterative = info.get("solver") == "iterative"
        tests = "Wald z-tests (df = ∞)" if iterative else f"t-tests use {df_name}'s method"
        lines = [f"Linear mixed model fit by {_kind(r)}. {tests} (backend: {r.backend})",
                 f"Formula: {r.spec.full_formula}", *_data_line(r), ""]
        if iterative:  # what is exact and what is estimated (docs/scalable.md)
            se = ", ".join(f"{g} {v:.1e}" for g, v in info.get("vc_mc_rel_se", {}).items())
            lines[-1:-1] = [f"Solver: iterative. Exact: {info['exact']}.",
                            f"Estimated: {info['estimated']} (Monte-Carlo relative SE of the variances: "
                            f"{se}).", f"Not computed: {info['not_computed']}."]
        lines.extend(self._criterion_to_fixed())
        lines.extend(self._fixed_table())
        corr = _fixef_correlation(r)
        if corr:
            lines.append("")
            lines.extend(corr)
        notes = []
        if r.is_singular:
            notes.append("boundary (singular) fit: see is_singular")
        if not r.converged:
            notes.append(f"model failed to converge ({r.optimizer_info.get('message', '')})")
        if r.design.dropped_columns:
            notes.append(f"fixed-effect columns dropped as rank deficient: {r.design.dropped_columns}")
        if notes:
            lines.append("")
            lines.extend(notes)
        return "\n".join(lines)

    def _criterion_to_fixed(self) -> list[str]:
        """The report's middle, shared by LMM and GLMM: the criterion (or AIC table), scaled
        residuals (not for a lazy fit, which has no rows), random effects, the numbers of
        observations and groups, and the "Fixed effects:" heading."""
        r = self.result
        lines = [*_criterion(r, 1), ""]
        if r.design.gram is None and r.resid is not None:  # a lazy fit has no rows
            lines.append("Scaled residuals: ")
            lines.extend(_scaled_residuals(r))
            lines.append("")
        lines.append("Random effects:")
        lines.extend(self._random_table())
        lines.append(_nobs_line(r))
        if r.n_dropped:
            lines.append(f"  ({r.n_dropped} observation(s) deleted due to missingness)")
        return [*lines, "", "Fixed effects:"]

    def _random_table(self, comp=("Variance", "Std.Dev.")) -> list[str]:
        return self.result.VarCorr().format(digits=4, comp=comp).splitlines()

    def _ddf(self) -> str:
        """The df method of the t-tests: ``ddf=`` (lmerTest's ``summary(m, ddf = )``) or the fit's."""
        if self.ddf is None:
            return "Satterthwaite" if self.result.df_method == "satterthwaite" else "Kenward-Roger"
        from ..inference.contest import ddf_method

        return ddf_method(self.result, self.ddf)

    def _fixed_table(self) -> list[str]:
        r = self.result
        names = list(r.fe_params.index)
        if self.ddf is None:
            est, se, df = r.fe_params.to_numpy(), r.fe_bse.to_numpy(), r.fe_df.to_numpy()
            t, p = r.fe_tvalues.to_numpy(), r.fe_pvalues.to_numpy()
        else:  # each coefficient's t test with that method (Kenward-Roger: adjusted SEs too)
            from ..inference.contest import contest

            tab = contest(r, pd.DataFrame(np.eye(len(names)), index=names, columns=names), joint=False,
                          ddf=self._ddf())
            cols = ("Estimate", "Std. Error", "df", "t value", "Pr(>|t|)")
            est, se, df, t, p = (tab[c].to_numpy() for c in cols)
        return coef_table(names, np.column_stack([est, se, df]), ["Estimate", "Std. Error", "df"],
                          t, "t value", p, "Pr(>|t|)")


def _data_line(r) -> list[str]:
    """lme4's ``Data:`` line: the name the data were passed under (see :func:`.verbs.data_label`);
    none for a refit that has no call (ranova's, anova's ML refits)."""
    name = (getattr(r, "call", None) or {}).get("data_name")
    return [f"   Data: {name}"] if name else []


def _kind(r) -> str:
    return "REML" if r.method == "REML" else "maximum likelihood"


def _criterion(r, digits: int) -> list[str]:
    """lme4's ``.prt.aictab``: the REML criterion, or for ML the AIC/BIC/logLik/deviance/df.resid
    line, rounded to ``digits`` decimals (1 in ``summary``, 4 in ``print``)."""
    if not np.isfinite(r.llf):
        return ["REML criterion / log-likelihood: not computed (iterative solver)"]
    if getattr(r, "family", None) is None and r.method == "REML":
        return [f"REML criterion at convergence: {round(r.deviance, digits):.7g}"]
    vals = [round(v, digits) for v in (r.aic, r.bic, r.llf, r.deviance)]
    cells = [*(v.strip() for v in format_fixed(vals, 7)), str(int(r.nobs - r.n_params))]
    heads = ["AIC", "BIC", "logLik", "deviance", "df.resid"]
    w = max(len(c) for c in heads + cells)
    return ["".join(h.rjust(w) + " " for h in heads), "".join(c.rjust(w) + " " for c in cells)]


def _scaled_residuals(r) -> list[str]:
    """Quantiles of the scaled Pearson residuals √w (y − μ̂) / √(V(μ̂) σ²) (R's type-7 quantiles,
    4 digits): V ≡ 1 for an LMM; σ² = 1 for a GLMM family without a dispersion."""
    w = np.ones(len(r.resid)) if r.design.weights is None else r.design.weights
    family = getattr(r, "family", None)
    var = 1.0 if family is None else family.variance(np.asarray(r.fittedvalues))
    scale = r.scale if family is None or family.has_scale else 1.0
    z = np.sqrt(w) * np.asarray(r.resid) / np.sqrt(var * scale)
    q = np.quantile(z, [0, 0.25, 0.5, 0.75, 1])
    mx = float(np.max(np.abs(q)))
    if mx > 0:  # lme4's zapsmall(q, digits + 1): R 4.2 rounds to 5 − log10(max|q|) decimals,
        q = np.round(q, max(0, int(np.floor(5 - np.log10(mx) + 0.5))))  # round() taking ⌊d + ½⌋
    vals = format_fixed(q, 4)
    names = ["Min", "1Q", "Median", "3Q", "Max"]
    width = max(len(v) for v in vals)
    return ["".join(n.rjust(width) + " " for n in names), "".join(v.rjust(width) + " " for v in vals)]


def _nobs_line(r) -> str:
    groups = "; ".join(f"{g}, {m}" for g, m in r.ngroups.items())
    return f"Number of obs: {r.nobs}, groups:  {groups}"


def _fixef_correlation(r, max_p: int = 12) -> list[str]:
    """lme4's "Correlation of Fixed Effects": lower triangle, 3 decimals, names abbreviated."""
    p = len(r.fe_params)
    if p < 2:
        return []
    if p > max_p:
        return [f"Correlation matrix not shown by default, as p = {p} > {max_p}.",
                "Use fe_cov (the covariance of the fixed effects) if you need it."]
    V = r.fe_cov.to_numpy()
    sd = np.sqrt(np.diag(V))
    C = V / np.outer(sd, sd)
    names = list(r.fe_params.index)
    rows = [abbreviate(n, 11) for n in names][1:]
    cols = [abbreviate(n, 6) for n in names][:-1]
    cells = [f"{v:.3f}" for v in np.round(C[np.tril_indices(p, -1)], 3)]  # format(round(, 3), nsmall = 3)
    cw = max(len(c) for c in cells)
    grid = [["" for _ in range(p - 1)] for _ in range(p - 1)]
    for (i, j), c in zip(zip(*np.tril_indices(p, -1), strict=True), cells, strict=True):
        grid[i - 1][j] = c.rjust(cw)
    widths = [max(len(h), cw) for h in cols]
    wn = max(len(n) for n in rows)
    out = ["Correlation of Fixed Effects:",
           " " * wn + "".join(" " + h.ljust(w) for h, w in zip(cols, widths, strict=True))]
    for name, row in zip(rows, grid, strict=True):
        out.append(name.ljust(wn) + "".join(" " + c.ljust(w) for c, w in zip(row, widths, strict=True)))
    return out


def short_print(r) -> str:
    """lme4's ``print(m)``: criterion, random-effect SDs, number of observations, β̂."""
    if getattr(r, "family", None) is not None:
        lines = [_glmm_title(r), _family_line(r)]
    else:
        lines = [f"Linear mixed model fit by {_kind(r)}"]
    lines.extend([f"Formula: {r.spec.full_formula}", *_data_line(r)])
    lines.extend(_criterion(r, 4))
    lines.append("Random effects:")
    lines.extend(r.VarCorr().format(digits=4, comp=("Std.Dev.",)).splitlines())
    lines.append(_nobs_line(r))
    lines.append("Fixed Effects:")
    names = list(r.fe_params.index)
    lines.extend(named_vector(names, [v.strip() for v in format_fixed(r.fe_params.to_numpy(), 4)]))
    return "\n".join(lines)


def _glmm_title(r) -> str:
    approx = ("Laplace Approximation" if r.nagq <= 1
              else f"Adaptive Gauss-Hermite Quadrature, nAGQ = {r.nagq}")
    return f"Generalized linear mixed model fit by maximum likelihood ({approx})"


def _family_line(r) -> str:
    return f" Family: {r.family.label}  ( {r.family.link.name} )"


class GLMMSummary(ModelSummary):
    """lme4's ``summary`` of a glmer fit: family and link, Laplace or AGQ, the AIC table, scaled
    Pearson residuals, random effects (with the residual row for a family with a dispersion),
    z tests laid out by R's ``printCoefmat`` and the correlation of the fixed effects."""

    def _render(self) -> str:
        r = self.result
        lines = [_glmm_title(r), _family_line(r), f"Formula: {r.spec.full_formula}", *_data_line(r), ""]
        lines.extend(self._criterion_to_fixed())
        cs = np.column_stack([r.fe_params, r.fe_bse])
        tst = "t value" if r.family.has_scale else "z value"  # lme4: t with a dispersion, p from z
        lines.extend(coef_table(list(r.fe_params.index), cs, ["Estimate", "Std. Error"],
                                r.fe_zvalues.to_numpy(), tst, r.fe_pvalues.to_numpy(), "Pr(>|z|)"))
        corr = _fixef_correlation(r)
        if corr:
            lines.append("")
            lines.extend(corr)
        notes = []
        if r.is_singular:
            notes.append("boundary (singular) fit: see is_singular")
        if not r.converged:
            notes.append(f"model failed to converge ({r.optimizer_info.get('message', '')})")
        if notes:
            lines.append("")
            lines.extend(notes)
        return "\n".join(lines)
