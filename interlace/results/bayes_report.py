"""Text report of a PyMC fit: posterior means, SDs, intervals, R-hat and ESS."""

from __future__ import annotations

import numpy as np

from ..data.design import tril_colwise
from .base import Report

__all__ = ["BayesSummary"]


def _num(x: float) -> str:
    if not np.isfinite(x):
        return "NA"
    return f"{x:.4g}"


class BayesSummary(Report):
    """The report as text (``str()``), shown in full by ``repr`` and ``print``."""

    def __init__(self, result, level: float = 0.95):
        self.result = result
        self.level = level
        self.text = self._render()

    def __str__(self) -> str:
        return self.text

    __repr__ = __str__

    def _table(self, names, draws, diag) -> list[str]:
        a = (1 - self.level) / 2
        lo_name, hi_name = f"{100 * a:g}%", f"{100 * (1 - a):g}%"
        w = max(12, *(len(n) for n in names))
        out = [f"{'':<{w}} {'Mean':>10} {'SD':>10} {lo_name:>10} {hi_name:>10} {'R-hat':>6} {'ESS':>6}"]
        for j, name in enumerate(names):
            d = draws[:, j]
            rh, ess = diag.get(name, (np.nan, np.nan))
            rh_s = "NA" if not np.isfinite(rh) else f"{rh:.3f}"
            ess_s = "NA" if not np.isfinite(ess) else f"{ess:.0f}"
            out.append(
                f"{name:<{w}} {_num(d.mean()):>10} {_num(d.std(ddof=1)):>10} "
                f"{_num(np.quantile(d, a)):>10} {_num(np.quantile(d, 1 - a)):>10} "
                f"{rh_s:>6} {ess_s:>6}"
            )
        return out

    def _diag_lookup(self) -> dict[str, tuple[float, float]]:
        """R-hat and bulk ESS by parameter name, where the draws were summarised."""
        r = self.result
        table = r.diagnostics
        out: dict[str, tuple[float, float]] = {}
        if table is None:
            return out
        for name in r.fe_params.index:
            key = f"beta[{name}]"
            if key in table.index:
                out[name] = (float(table.loc[key, "r_hat"]), float(table.loc[key, "ess_bulk"]))
        for vname, key in zip(r.variance_draws.columns, _variance_keys(r), strict=True):
            if key in table.index:
                out[vname] = (float(table.loc[key, "r_hat"]), float(table.loc[key, "ess_bulk"]))
        return out

    def _render(self) -> str:
        r = self.result
        info = r.optimizer_info
        diag = self._diag_lookup()
        family = getattr(r, "family", None)
        kind = (
            "Linear mixed model"
            if family is None
            else f"Generalized linear mixed model ({family.name}, {family.link.name} link)"
        )
        seed = info.get("random_seed")
        seed_text = (f"random_seed={seed}" if seed is not None
                     else f"random_seed={info.get('seed_entropy')} (drawn: none was given)")
        re_text = "" if family is not None else (
            "; random effects integrated out" if info.get("marginalized") else "; non-centred")
        lines = [
            f"{kind} fit by MCMC (backend: pymc; sampler: NUTS, "
            f"{info.get('sampler_version') or info.get('sampler')}{re_text})",
            f"Reproduce: {seed_text}, {info.get('chains')} chains (the draws do not depend on cores)",
            f"Formula: {r.spec.full_formula}",
            f"Draws: {info.get('chains')} chains × {info.get('draws')} after {info.get('tune')} tuning; "
            f"{info.get('seconds', float('nan')):.1f} s; divergences: {info.get('divergences')}; "
            f"max R-hat {info.get('max_rhat', float('nan')):.3f}; "
            f"min bulk ESS {info.get('min_ess_bulk', float('nan')):.0f}",
            "",
            "Random effects (standard deviations, correlations) and "
            + ("residual SD:" if family is None else "the family's parameter, if any:"),
        ]
        lines += self._table(list(r.variance_draws.columns), r.variance_draws.to_numpy(), diag)
        groups = ", ".join(f"{g}, {m}" for g, m in r.ngroups.items())
        lines.append(f"Number of obs: {r.nobs}, groups:  {groups}")
        if r.n_dropped:
            lines.append(f"  ({r.n_dropped} observation(s) deleted due to missingness)")
        lines += ["", "Fixed effects:"]
        lines += self._table(list(r.fe_params.index), r.fe_draws.to_numpy(), diag)
        if not r.converged:
            lines += ["", "warning: the draws have not converged (R-hat > 1.01 or divergences)"]
        return "\n".join(lines)


def _variance_keys(r) -> list[str]:
    """az.summary row names of the variance parameters, in ``variance_names`` order."""
    keys = []
    layout = r.layout
    for t, tl in zip(r.design.terms, layout.terms, strict=True):
        rows, cols = tril_colwise(t.k)
        for i, j in zip(rows, cols, strict=True):
            if t.k == 1:
                keys.append(tl.sd_name)
            elif i == j:
                keys.append(f"{tl.sd_name}[{t.columns[i]}]")
            else:
                keys.append(f"{tl.corr_name}[{t.columns[i]}, {t.columns[j]}]")
    if getattr(r, "family", None) is not None:  # a GLMM: its family parameter, if it has one
        return keys + [name for name in ("sigma", "nb_theta") if name in r.variance_draws.columns]
    # an LMM: a residual correlation parameter (phi, rho) if any, then sigma — as in variance_draws
    return keys + [str(c) for c in r.variance_draws.columns[len(keys):]]
