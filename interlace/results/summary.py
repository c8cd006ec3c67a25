"""lme4/lmerTest-style text report of a fitted model."""

from __future__ import annotations

import numpy as np

from .base import Report

__all__ = ["ModelSummary", "GLMMSummary"]


def _fmt(x: float, digits: int = 4) -> str:
    return f"{x:.{digits}g}" if abs(x) < 1e-3 or abs(x) >= 1e6 else f"{x:.{digits}f}".rstrip("0").rstrip(".")


def _pfmt(p: float) -> str:
    return "< 2e-16" if p < 2e-16 else f"{p:.3g}"


def _stars(p: float) -> str:
    return "***" if p < 0.001 else "**" if p < 0.01 else "*" if p < 0.05 else "." if p < 0.1 else ""


class ModelSummary(Report):
    """The report as text (``str()``), shown in full by ``repr`` and ``print``."""

    def __init__(self, result):
        self.result = result
        self.text = self._render()

    def __str__(self) -> str:
        return self.text

    __repr__ = __str__

    def _render(self) -> str:
        r = self.result
        lines = []
        kind = "REML" if r.method == "REML" else "maximum likelihood"
        df_name = "Satterthwaite" if r.df_method == "satterthwaite" else "Kenward-Roger"
        lines.append(
            f"Linear mixed model fit by {kind} (backend: {r.backend}; t-tests use {df_name}'s method)"
        )
        lines.append(f"Formula: {r.spec.full_formula}")
        if r.method == "REML":
            lines.append(f"REML criterion at convergence: {r.deviance:.4f}")
        lines.append(
            f"     AIC      BIC   logLik deviance\n {r.aic:8.2f} {r.bic:8.2f} {r.llf:8.2f} {r.deviance:8.2f}"
        )
        lines.append("")
        lines.append("Random effects:")
        lines.extend(self._random_table())
        groups = ", ".join(f"{g}, {m}" for g, m in r.ngroups.items())
        lines.append(f"Number of obs: {r.nobs}, groups:  {groups}")
        if r.n_dropped:
            lines.append(f"  ({r.n_dropped} observation(s) deleted due to missingness)")
        lines.append("")
        lines.append("Fixed effects:")
        lines.extend(self._fixed_table())
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

    def _random_table(self) -> list[str]:
        r = self.result
        rows = []
        for (name, vc), term in zip(r.variance_components.items(), r.design.terms, strict=True):
            if isinstance(vc, float):
                rows.append((name, term.columns[0], vc, ""))
                continue
            v = vc.to_numpy()
            sd = np.sqrt(np.diag(v))
            for i, col in enumerate(vc.columns):
                corr = ""
                if i > 0:
                    with np.errstate(invalid="ignore", divide="ignore"):
                        c = v[i, :i] / (sd[i] * sd[:i])
                    corr = " ".join(f"{x:5.2f}" for x in np.nan_to_num(c))
                rows.append((name if i == 0 else "", col, float(v[i, i]), corr))
        rows.append(("Residual", "", r.scale, ""))
        w_g = max(8, *(len(x[0]) for x in rows))
        w_n = max(4, *(len(str(x[1])) for x in rows))
        out = [f" {'Groups':<{w_g}} {'Name':<{w_n}} {'Variance':>10} {'Std.Dev.':>10} Corr"]
        for g, name, var, corr in rows:
            out.append(f" {g:<{w_g}} {str(name):<{w_n}} {var:10.4g} {np.sqrt(var):10.4g} {corr}".rstrip())
        return out

    def _fixed_table(self) -> list[str]:
        r = self.result
        names = list(r.fe_params.index)
        w = max(11, *(len(n) for n in names))
        out = [f"{'':<{w}} {'Estimate':>10} {'Std. Error':>10} {'df':>8} {'t value':>8} {'Pr(>|t|)':>9}"]
        for n, est, se, df, t, p in zip(
            names, r.fe_params, r.fe_bse, r.fe_df, r.fe_tvalues, r.fe_pvalues, strict=True
        ):
            out.append(
                f"{n:<{w}} {est:10.4g} {se:10.4g} {df:8.2f} {t:8.3f} {_pfmt(p):>9} {_stars(p)}".rstrip()
            )
        out.append("---\nSignif. codes:  0 '***' 0.001 '**' 0.01 '*' 0.05 '.' 0.1 ' ' 1")
        return out


class GLMMSummary(ModelSummary):
    """lme4's glmer report: family and link, Laplace or AGQ, z tests."""

    def _render(self) -> str:
        r = self.result
        approx = (
            "Laplace Approximation" if r.nagq <= 1 else f"Adaptive Gauss-Hermite Quadrature (nAGQ = {r.nagq})"
        )
        lines = [
            f"Generalized linear mixed model fit by maximum likelihood ({approx})",
            f" Family: {r.family.label}  ( {r.family.link.name} )",
            f"Formula: {r.spec.full_formula}",
            f"     AIC      BIC   logLik deviance\n {r.aic:8.2f} {r.bic:8.2f} {r.llf:8.2f} {r.deviance:8.2f}",
            "",
            "Random effects:",
        ]
        rand = self._random_table()
        lines.extend(line for line in rand if not line.lstrip().startswith("Residual"))
        if r.family.has_scale:
            lines.append(f"Dispersion (sigma): {np.sqrt(r.scale):.4g}")
        groups = ", ".join(f"{g}, {m}" for g, m in r.ngroups.items())
        lines.append(f"Number of obs: {r.nobs}, groups:  {groups}")
        lines.append("")
        lines.append("Fixed effects:")
        names = list(r.fe_params.index)
        w = max(11, *(len(n) for n in names))
        lines.append(f"{'':<{w}} {'Estimate':>10} {'Std. Error':>10} {'z value':>8} {'Pr(>|z|)':>9}")
        for n, est, se, z, p in zip(names, r.fe_params, r.fe_bse, r.fe_zvalues, r.fe_pvalues, strict=True):
            lines.append(f"{n:<{w}} {est:10.4g} {se:10.4g} {z:8.3f} {_pfmt(p):>9} {_stars(p)}".rstrip())
        if r.is_singular:
            lines.append("boundary (singular) fit: see is_singular")
        return "\n".join(lines)
