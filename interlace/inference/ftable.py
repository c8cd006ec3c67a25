"""ANOVA tables of one fitted model: lmerTest's F tables and car's Wald χ² tables.

``single_anova(m)`` (what ``interlace.anova(m)`` and ``m.anova()`` call):

- a linear mixed model gets lmerTest's ``anova``: per term, the F test of its type I, II or III
  hypothesis (:mod:`interlace.inference.anova_terms`) with Satterthwaite's or Kenward–Roger's
  denominator df (:mod:`interlace.inference.contest`); type III is the default, as lmerTest;
- a GLMM gets car's ``Anova``: per term, the Wald χ² test of its type II hypothesis (the term's
  columns, made V-orthogonal to the columns of the terms containing it) or type III hypothesis
  (its own columns, with the intercept as a row); type II is the default, as car.

``drop1(m)`` is lmerTest's ``drop1``: the F test of each term that can be dropped without
breaking marginality (no other term has all its variables), i.e. of its own coefficients.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.linalg as sla

from .anova_terms import fixed_terms
from .contest import _F_COLUMNS, AnovaTable, _is_glmm, ddf_method, ftest, wald_chisq

__all__ = ["single_anova", "drop1"]

_TYPES = {1: 1, 2: 2, 3: 3, "1": 1, "2": 2, "3": 3, "I": 1, "II": 2, "III": 3}


def _type(type, default: int) -> int:
    if type is None:
        return default
    key = type.strip().upper() if isinstance(type, str) else type
    if isinstance(key, bool) or key not in _TYPES:
        raise ValueError(f"type must be 1, 2 or 3 (or 'I', 'II', 'III'), got {type!r}")
    return _TYPES[key]


def single_anova(result, type=None, ddf: str | None = None) -> AnovaTable:
    """The ANOVA table of one fit: F tests per term (LMM) or Wald χ² tests per term (GLMM)."""
    if _is_glmm(result):
        return _glmm_anova(result, type, ddf)
    t = _type(type, 3)
    method = ddf_method(result, ddf)
    ft = fixed_terms(result)
    Ls = ft.contrasts(t)
    rows = [ftest(result, L, method) for L in Ls.values()]
    roman = {1: "I", 2: "II", 3: "III"}[t]
    return AnovaTable(rows, columns=_F_COLUMNS, index=list(Ls), hypotheses=_named(result, Ls),
                      heading=f"Type {roman} Analysis of Variance Table with {method}'s method")


def _named(result, Ls: dict[str, np.ndarray]) -> dict[str, pd.DataFrame]:
    names = list(result.fe_params.index)
    return {k: pd.DataFrame(np.atleast_2d(L), columns=names) for k, L in Ls.items()}


def _glmm_anova(result, type, ddf) -> AnovaTable:
    if ddf is not None:
        raise ValueError("ddf= applies to linear mixed models; a GLMM's table has Wald chi-square tests")
    t = _type(type, 2)
    if t == 1:
        raise ValueError("a GLMM's ANOVA table is car's type II or III Wald chi-square table: type=2 or 3")
    ft = fixed_terms(result)
    p = ft.X.shape[1]
    eye = np.eye(p)
    V = result.fe_cov.to_numpy()
    Ls: dict[str, np.ndarray] = {}
    if t == 3:
        if ft.intercept:
            Ls["(Intercept)"] = eye[[i for i in range(p) if i not in _term_columns(ft)]]
        Ls.update(ft.marginal())
    else:
        relatives = ft.relatives()
        for term in ft.terms:
            rel = [c for r in relatives[term.label] for c in ft.term(r).columns]
            M2 = eye[rel + list(term.columns)]
            if not rel:
                Ls[term.label] = M2
                continue
            M1 = eye[rel]
            # rows of span(M2) V-orthogonal to span(M1) (car's ConjComp)
            c = sla.null_space((M2 @ V @ M1.T).T)
            L = c.T @ M2
            Ls[term.label] = L[np.abs(L).sum(axis=1) > 0]
    roman = {2: "II", 3: "III"}[t]
    heading = (f"Analysis of Deviance Table (Type {roman} Wald chisquare tests)\n\n"
               f"Response: {result.design.response}")
    table = wald_chisq(result, Ls, heading=heading)
    table.hypotheses = _named(result, Ls)
    return table


def _term_columns(ft) -> set[int]:
    return {int(c) for t in ft.terms for c in t.columns}


def drop1(result, scope: list[str] | None = None, ddf: str | None = None) -> AnovaTable:
    """F tests for dropping each marginal fixed term (lmerTest's ``drop1``).

    ``scope`` names the terms to test (R's spelling, as the table's rows), each of which must be
    droppable: no other term may have all its variables (``A`` cannot go while ``A:B`` stays).
    """
    if _is_glmm(result):
        raise TypeError(
            "drop1 F tests are for linear mixed models; for a GLMM compare the fits with and without "
            "the term by likelihood ratio, interlace.anova(smaller, larger), or see interlace.anova(m)"
        )
    method = ddf_method(result, ddf)
    ft = fixed_terms(result)
    droppable = ft.drop_scope()
    if scope is None:
        scope = droppable
    else:
        if isinstance(scope, str):
            scope = [scope]
        if not isinstance(scope, list | tuple) or not scope:
            raise TypeError("scope must be a non-empty list of term names, e.g. ['A:B']")
        bad = [s for s in scope if s not in droppable]
        if bad:
            raise ValueError(
                f"scope term(s) {bad} cannot be dropped: only marginal terms can ({droppable}); "
                "a term inside an interaction goes only after the interaction"
            )
    marginal = ft.marginal()
    rows = [ftest(result, marginal[s], method) for s in scope]
    heading = (f"Single term deletions using {method}'s method:\n\nModel:\n"
               f"{result.spec.full_formula}")
    return AnovaTable(rows, columns=_F_COLUMNS, index=list(scope), heading=heading,
                      hypotheses=_named(result, {s: marginal[s] for s in scope}))
