"""Model reduction for linear mixed models: lmerTest's ``ranova`` and ``step``.

``ranova(m)`` refits the model once per random-effects term, without it — or, for a term with
slopes such as ``(1 + x | g)``, with the slope removed (``(1 | g)``; each droppable part of its
left-hand side in turn, R's ``drop.scope``) — with the same estimator (REML or ML), and reports
likelihood-ratio tests against the full model: LRT = 2(ℓ_full − ℓ_reduced) on Δnpar df. When no
random term is left the reduced model is a linear model, whose (REML) log-likelihood is R's
``logLik.lm``: ½[Σ log wᵢ − N(log 2π + 1 − log N + log Σ wᵢrᵢ²)] − [REML] log|det R_X|,
N = n − p for REML.

``step(m)`` is lmerTest's backward elimination: random terms go first, the one with the largest
p-value above ``alpha_random`` at a time (ranova), then fixed terms, the marginal one with the
largest p above ``alpha_fixed`` at a time (:func:`interlace.inference.ftable.drop1`).
"""

from __future__ import annotations

import dataclasses
import re
import warnings

import numpy as np
from scipy import stats

from ..data.design import build_design, evaluate_expr
from ..model.formula import RandomTerm
from ..model.rformula import parse_fixed
from .contest import backend_note
from .table import AnovaTable

__all__ = ["ranova", "step", "refit", "StepResult"]

_COLUMNS = ["npar", "logLik", "AIC", "LRT", "Df", "Pr(>Chisq)"]


def _check(result, what: str) -> None:
    from ..results.refusals import refuse_iterative

    refuse_iterative(result, f"{what} (likelihood-ratio tests)", "likelihood")
    if getattr(result, "engine", None) is None or hasattr(result, "family"):
        raise TypeError(
            f"{what} is for linear mixed models fitted by interlace.fit (REML/ML), got "
            f"{type(result).__name__}{backend_note(result)}"
        )
    if getattr(result, "model_frame", None) is None or result.design.n_rows is not None:
        raise ValueError(f"{what} refits the model and needs its row-level data; fit an eager frame")
    if result.spec.correlation is not None:
        raise ValueError(f"{what} is not available for models with correlation=")


def refit(result, fixed: str | None = None, random: list[RandomTerm] | None = None):
    """The same model refitted on the same rows with a new fixed formula and/or random terms."""
    from ..backends import reml
    from ..linalg.threads import fit_blas_threads

    spec, d, frame = result.spec, result.design, result.model_frame
    fixed_text = spec.fixed if fixed is None else fixed
    ff = spec.fixed_formula if fixed is None else parse_fixed(fixed, list(frame.columns))
    terms = tuple(spec.random if random is None else random)
    formula = " + ".join([fixed_text] + [f"({_deparse(t)})" for t in terms])
    new = dataclasses.replace(spec, formula=formula, fixed=fixed_text, random=terms, fixed_formula=ff,
                              theta0=None)
    offset = None
    if spec.has_offset:  # the offset given as an argument: the fitted one less the formula's offset()s
        offset = d.offset.copy()
        for py_expr, r_text in d.formula_offsets:
            offset = offset - evaluate_expr(py_expr, frame, r_text)
    design = build_design(new, frame, d.weights, offset, d.input_namespace)
    with fit_blas_threads():
        out = reml.fit(new, design, n_dropped=result.n_dropped)
    return out


# ---- random-effects terms as R reads them -----------------------------------------------------
def _normalise(text: str) -> str:
    """R's deparse spacing: ``1+x`` → ``1 + x``, ``a : b`` → ``a:b``."""
    text = re.sub(r"\s*([+|])\s*", r" \1 ", text.strip())
    text = re.sub(r"\s*:\s*", ":", text)
    return re.sub(r"\s+", " ", text)


def _deparse(term: RandomTerm) -> str:
    return f"{_normalise(term.expr)} | {term.group}"


def _lhs_terms(term: RandomTerm) -> tuple[bool, list[str]]:
    """(has an intercept, the other terms of the left-hand side), as formulaic reads it."""
    from ..model.formula import _formula_terms

    parts = _formula_terms(term.expr, term.source)
    return "1" in parts, [p for p in parts if p != "1"]


def _key(term: RandomTerm) -> tuple:
    icpt, rest = _lhs_terms(term)
    return icpt, frozenset(rest), term.factors


def _reductions(term: RandomTerm, reduce_terms: bool) -> list[tuple[str, RandomTerm | None]]:
    """(row label, replacement term or None) for each reduction of ``term`` (lmerTest's
    ``get_newforms``): the whole term goes when its left-hand side is only an intercept."""
    whole = [(f"({_deparse(term)})", None)]
    icpt, rest = _lhs_terms(term)
    if not reduce_terms or not rest:
        return whole
    sets = [set(r.split(":")) for r in rest]
    scope = [r for i, r in enumerate(rest)
             if not any(j != i and sets[i] <= sets[j] for j in range(len(rest)))]
    if not scope:
        return whole
    out = []
    for s in scope:
        left = [r for r in rest if r != s]
        expr = "1" if not left else (" + ".join(left) if icpt else "0 + " + " + ".join(left))
        new = RandomTerm(expr=expr, factors=term.factors, source=f"({expr} | {term.group})")
        out.append((f"{s} in ({_deparse(term)})", new))
    return out


def _candidates(result, reduce_terms: bool) -> list[tuple[str, list[RandomTerm]]]:
    terms = list(result.spec.random)
    out = []
    for i, t in enumerate(terms):
        others = terms[:i] + terms[i + 1 :]
        for label, new in _reductions(t, reduce_terms):
            keep = list(others)
            if new is not None and _key(new) not in {_key(o) for o in others}:
                keep.append(new)  # R's formula update merges a duplicate term
            out.append((label, keep))
    return out


def _lm_loglik(result) -> tuple[float, int]:
    """logLik and df (p + 1) of the linear model without random effects (R's ``logLik.lm``)."""
    d = result.design
    w = np.ones(d.n) if d.weights is None else d.weights
    sw = np.sqrt(w)
    Q, R = np.linalg.qr(d.X * sw[:, None])
    yw = (d.y - d.offset) * sw
    rss = float(np.sum((yw - Q @ (Q.T @ yw)) ** 2))
    p = d.p
    N = d.n - p if result.method == "REML" else d.n
    val = 0.5 * (np.sum(np.log(w)) - N * (np.log(2 * np.pi) + 1 - np.log(N) + np.log(rss)))
    if result.method == "REML":
        val -= np.sum(np.log(np.abs(np.diag(R))))
    return float(val), p + 1


def _lr_row(full_ll: float, full_np: int, ll: float, npar: int) -> list[float]:
    lrt = 2 * (full_ll - ll)
    df = full_np - npar
    return [npar, ll, -2 * ll + 2 * npar, lrt, df, float(stats.chi2.sf(lrt, df)) if df > 0 else np.nan]


def _ranova(result, reduce_terms: bool):
    rows = [[result.n_params, result.llf, result.aic, np.nan, np.nan, np.nan]]
    labels, models = ["<none>"], [None]
    for label, terms in _candidates(result, reduce_terms):
        if terms:
            m = refit(result, random=terms)
            ll, npar = m.llf, m.n_params
        else:
            m = None
            ll, npar = _lm_loglik(result)
        rows.append(_lr_row(result.llf, result.n_params, ll, npar))
        labels.append(label)
        models.append((terms, m))
    heading = ("ANOVA-like table for random-effects: Single term deletions\n\nModel:\n"
               f"{result.spec.full_formula}")
    return AnovaTable(rows, columns=_COLUMNS, index=labels, heading=heading), models


def ranova(result, reduce_terms: bool = True) -> AnovaTable:
    """Likelihood-ratio tests of each random-effects term (lmerTest's ``ranova``).

    One row per reduced model: a term dropped, or with ``reduce_terms=True`` (the default) a
    term with slopes reduced by one part of its left-hand side (``x in (1 + x | g)`` is the model
    with ``(1 | g)`` instead). Refits use the model's own estimator (REML or ML).
    """
    _check(result, "ranova")
    return _ranova(result, bool(reduce_terms))[0]


# ---- step --------------------------------------------------------------------------------------
@dataclasses.dataclass
class StepResult:
    """Backward elimination: the random- and fixed-effect reduction tables and the final model."""

    random: AnovaTable
    fixed: AnovaTable
    model: object

    @property
    def formula(self) -> str:
        return self.model.spec.full_formula

    def __repr__(self) -> str:
        return f"{self.random.to_text()}\n\n{self.fixed.to_text()}\n\nModel found:\n{self.formula}"


def _alpha(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ValueError(f"{name} must be a number between 0 and 1, got {value!r}")
    return float(value)


def step(result, ddf: str | None = None, alpha_random: float = 0.1, alpha_fixed: float = 0.05,
         reduce_fixed: bool = True, reduce_random: bool = True, keep=()) -> StepResult:
    """Backward elimination of random, then fixed terms (lmerTest's ``step``).

    Each round drops the term with the largest p-value above its alpha — random terms by
    :func:`ranova`, then marginal fixed terms by :func:`interlace.inference.ftable.drop1` — and
    refits. ``keep`` names fixed terms never to drop. A model needs one random term in
    interlace: when the last one would go, it is kept with a warning.
    """
    from .ftable import drop1

    _check(result, "step")
    a_ran = _alpha("alpha_random", alpha_random) if reduce_random else 1.0
    a_fix = _alpha("alpha_fixed", alpha_fixed) if reduce_fixed else 1.0
    keep = [keep] if isinstance(keep, str) else list(keep)
    from .anova_terms import fixed_terms

    known = fixed_terms(result).labels
    bad = [k for k in keep if k not in known]
    if bad:
        raise KeyError(f"keep names term(s) {bad} that the model does not have; its fixed terms are {known}")
    model = result
    table, models = _ranova(model, True)
    eliminated = [table.iloc[[0]]]
    while True:
        p = table["Pr(>Chisq)"].to_numpy()[1:]
        above = np.isfinite(p) & (p > a_ran)
        if not above.any():
            break
        i = int(np.nanargmax(np.where(above, p, -np.inf)))
        terms, fitted = models[i + 1]
        if not terms:
            warnings.warn(
                f"step: the last random-effects term has p = {p[i]:.4g} > alpha_random, but interlace "
                "fits mixed models only; it is kept (a model without random effects is an ordinary "
                "linear model)", stacklevel=2)
            break
        eliminated.append(table.iloc[[i + 1]])
        model = fitted
        table, models = _ranova(model, True)
    random_tab = _stack(eliminated, table.iloc[1:], first_blank=True,
                        heading="Backward reduced random-effect table:")
    aov = drop1(model, ddf=ddf)
    method = aov.heading.split(" using ")[1].split("'s")[0]
    removed = []
    while True:
        consider = [r for r in aov.index if r not in keep]
        p = aov.loc[consider, "Pr(>F)"].to_numpy() if consider else np.array([])
        above = np.isfinite(p) & (p > a_fix)
        if not above.any():
            break
        term = consider[int(np.nanargmax(np.where(above, p, -np.inf)))]
        removed.append(aov.loc[[term]])
        model = refit(model, fixed=_without(model, term))
        aov = drop1(model, ddf=ddf)
    fixed_tab = _stack(removed, aov, first_blank=False,
                       heading=f"Backward reduced fixed-effect table:\nDegrees of freedom method: {method}")
    return StepResult(random_tab, fixed_tab, model)


def _stack(eliminated: list, final, first_blank: bool, heading: str) -> AnovaTable:
    import pandas as pd

    parts = []
    for k, row in enumerate(eliminated):
        row = pd.DataFrame(row).copy()
        number = k if first_blank else k + 1
        row.insert(0, "Eliminated", np.nan if (first_blank and k == 0) else float(number))
        parts.append(row)
    rest = pd.DataFrame(final).copy()
    rest.insert(0, "Eliminated", 0.0)
    parts.append(rest)
    return AnovaTable(pd.concat(parts), heading=heading)


def _without(model, term: str) -> str:
    """The fixed formula of ``model`` without ``term`` (R's ``update(f, . ~ . - term)``)."""
    from .anova_terms import fixed_terms

    ft = fixed_terms(model)
    lhs = model.spec.fixed.split("~", 1)[0].strip()
    parts = [t for t in ft.labels if t != term]
    parts += [r for _, r in model.spec.fixed_formula.offsets]
    if not ft.intercept:
        parts = ["0", *parts]
    return f"{lhs} ~ {' + '.join(parts) if parts else '1'}"
