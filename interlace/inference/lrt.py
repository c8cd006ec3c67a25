"""Likelihood-ratio comparison of nested models (lme4's ``anova``)."""

from __future__ import annotations

import warnings

import numpy as np
from scipy import stats

from .table import AnovaTable

__all__ = ["anova"]


def _same_data(a, b) -> bool:
    da, db = a.design, b.design
    return da.n == db.n and np.array_equal(da.y, db.y) and np.array_equal(da.offset, db.offset)


def _no_lrt_note(m) -> str:
    if hasattr(m, "thresholds"):
        return "; for clmm fits compare logLik by hand: 2·(m1.llf − m0.llf) against χ²(Δ n_params)"
    if hasattr(m, "hazard_ratios"):
        return "; for coxme fits compare logLik by hand: 2·(m1.llf − m0.llf) against χ²(Δ n_params)"
    return ""


def anova(*models, names: list[str] | None = None, type=None, ddf: str | None = None,
          **named) -> AnovaTable:
    """Compare nested models by likelihood ratio: one row per model, ordered by parameter count.

    With one model, its ANOVA table instead: lmerTest's F tests per term (``type`` 3, 2 or 1,
    ``ddf`` Satterthwaite or Kenward-Roger) or, for a GLMM, car's Wald χ² tests
    (:func:`interlace.inference.ftable.single_anova`).

    Chisq = 2·max(0, Δ logLik) against the previous row with Df = Δ npar, p from χ²(Df).
    REML fits are refitted by ML first, as lme4 does; models fitted to different data are
    refused. Rows are labelled by ``names=``, by the keywords the models are passed with
    (``anova(m0=m0, m1=m1)``), or else by each model's formula. Posteriors (``backend="pymc"``)
    are compared by ELPD-LOO instead (:func:`~interlace.results.bayes_compare.loo_compare`);
    mixing the two kinds is refused.
    """
    not_models = [k for k, v in named.items() if not hasattr(v, "fe_params")]
    if not_models:  # tpye=2, refit=False: keywords, not models passed by name
        from ..model.rargs import unexpected_keywords

        raise unexpected_keywords("anova", not_models, ["names", "type", "ddf", "or models as name=model"])
    if named:
        if models:
            raise TypeError("pass the models either positionally or as name=model, not both")
        names = list(named) if names is None else names
        models = tuple(named.values())
    from ..results.bayes_compare import is_posterior, loo_compare

    if any(is_posterior(m) for m in models):  # posteriors: ELPD-LOO (arviz), never an LRT
        if type is not None or ddf is not None or len(models) == 1:
            raise ValueError(
                "a posterior has no F or likelihood-ratio tests: interlace.anova(b1, b2, ...) compares "
                "posteriors by ELPD-LOO; for one posterior see to_frame() and loo()"
            )
        return loo_compare(*models, names=names)
    if len(models) == 1 and names is None:
        from .ftable import single_anova

        return single_anova(models[0], type=type, ddf=ddf)
    if len(models) < 2:
        raise ValueError("anova needs one fitted model (F tables) or at least two to compare (with names=)")
    if type is not None or ddf is not None:
        raise ValueError("type= and ddf= are for the F table of one model, not for a likelihood-ratio test")
    from ..results.refusals import refuse_iterative

    for m in models:
        refuse_iterative(m, "a likelihood-ratio test (anova of several models)", "likelihood")
        if getattr(m, "engine", None) is None:
            raise TypeError(
                "anova's likelihood-ratio test compares fits from interlace.fit (REML/ML) or "
                f"interlace.glmer, got {m.__class__.__name__}" + _no_lrt_note(m))
    for m in models[1:]:
        if not _same_data(models[0], m):
            raise ValueError(
                "models were not all fitted to the same data (response, rows or offset differ); "
                "a likelihood-ratio test needs the same observations"
            )
    names = list(names) if names is not None else _formula_names(models)
    if len(names) != len(models):
        raise ValueError(f"names has {len(names)} entries for {len(models)} models")
    by_npar = sorted(range(len(models)), key=lambda i: models[i].n_params)  # R's row order
    heading = _heading([models[i] for i in by_npar], [names[i] for i in by_npar])
    if any(m.method == "REML" for m in models):
        warnings.warn("refitting model(s) with ML (instead of REML)", stacklevel=2)
        models = tuple(m.engine.refit(method="ML") if m.method == "REML" else m for m in models)
    order = by_npar
    rows = []
    prev = None
    for i in order:
        m = models[i]
        row = {
            "npar": m.n_params,
            "AIC": m.aic,
            "BIC": m.bic,
            "logLik": m.llf,
            "deviance": -2 * m.llf,
            "Chisq": np.nan,
            "Df": np.nan,
            "Pr(>Chisq)": np.nan,
        }
        if prev is not None:
            chisq = 2 * max(0.0, m.llf - prev.llf)
            df = m.n_params - prev.n_params
            row["Chisq"], row["Df"] = chisq, df
            row["Pr(>Chisq)"] = stats.chi2.sf(chisq, df) if df > 0 else np.nan
        rows.append(row)
        prev = m
    return AnovaTable(rows, index=[names[i] for i in order], heading=heading)


def _heading(models, names: list[str]) -> str:
    """R's lines above the table: ``Data:`` (the name the first model's data were passed under)
    and ``Models:``, each row's label and formula (left out when the labels are the formulas)."""
    lines = []
    data_name = next(((getattr(m, "call", None) or {}).get("data_name") for m in models
                      if (getattr(m, "call", None) or {}).get("data_name")), None)
    if data_name:
        lines.append(f"Data: {data_name}")
    formulas = [m.spec.full_formula for m in models]
    if any(str(n) != f for n, f in zip(names, formulas, strict=True)):
        lines.append("Models:")
        lines.extend(f"{n}: {f}" for n, f in zip(names, formulas, strict=True))
    return "\n".join(lines)


def _formula_names(models) -> list[str]:
    """Each model's formula (lme4's spelling), made unique with " (2)", " (3)" … where repeated."""
    out, seen = [], {}
    for m in models:
        text = m.spec.full_formula
        seen[text] = seen.get(text, 0) + 1
        out.append(text if seen[text] == 1 else f"{text} ({seen[text]})")
    return out
