"""``interlace.clmm``: read an ordinal-response formula as ``ordinal::clmm`` does and fit it.

The response is an ordered factor (pandas Categorical in category order) or sortable values with
at least three levels; the right side is an R formula (:mod:`interlace.model.rformula`) with one
random intercept.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .backends.reml.clmm import fit_clmm
from .data.build import read_formula
from .data.design import formula_matrix, group_levels
from .data.frames import column_names, model_frame
from .model.families import CUMULATIVE_LINKS
from .model.formula import model_terms
from .model.rformula import r_labels
from .results.ordinal import OrdinalResult

__all__ = ["fit_clmm_formula"]


def fit_clmm_formula(formula: str, data, groups=None, random=None, link: str = "logit") -> OrdinalResult:
    """Fit ``interlace.clmm``'s model (see its docstring); raises ValueError/KeyError on bad input."""
    if link not in CUMULATIVE_LINKS:
        raise ValueError(f"link must be one of {list(CUMULATIVE_LINKS)} for clmm, got {link!r}")
    fixed, terms = model_terms(formula, groups, random)
    if len(terms) != 1 or terms[0].expr.replace(" ", "") != "1":
        raise ValueError("clmm supports one random intercept, e.g. groups='judge' or random=['(1 | judge)']")
    columns = column_names(data)
    ff, used = read_formula(fixed, terms, columns, where=f"formula {formula!r}")
    mf = model_frame(data, used)
    frame = mf.data
    if len(frame) == 0:
        raise ValueError("no rows left to fit: the data are empty after dropping missing values")
    lhs = ff.response
    if lhs not in frame.columns:
        raise ValueError(f"clmm needs the response to be a column name, got {lhs!r}")
    resp = frame[lhs]
    if isinstance(resp.dtype, pd.CategoricalDtype):
        levels = list(resp.cat.remove_unused_categories().cat.categories)
        codes = resp.cat.remove_unused_categories().cat.codes.to_numpy()
    else:
        levels = sorted(pd.unique(resp))
        codes = pd.Categorical(resp, categories=levels).codes
    if len(levels) < 3:
        raise ValueError(
            f"response {lhs!r} has {len(levels)} levels; an ordinal model needs at least 3 "
            "(use glmer(family='binomial') for two)"
        )
    if ff.offsets:
        raise ValueError("clmm does not take offset() terms (ordinal::clmm has no offset either)")
    mm = formula_matrix(f"{ff.rhs} + 1", frame, f"formula {formula!r}")
    names = r_labels([str(c) for c in mm.columns], ff.labels)
    keep = [i for i, c in enumerate(names) if c != "Intercept"]
    X = np.asarray(mm, dtype=float)[:, keep]
    glev, gcodes = group_levels(frame, terms[0].factors)
    if len(glev) < 2:
        raise ValueError(f"grouping factor {terms[0].group!r} needs at least two levels")
    est = fit_clmm(X, np.asarray(codes, dtype=np.int64), np.asarray(gcodes), len(levels), len(glev), link)
    return OrdinalResult(
        formula=formula, response_levels=[str(v) for v in levels], X_names=[names[i] for i in keep],
        alpha=est.alpha, beta=est.beta, cov=est.cov, sigma=est.sigma, b=est.b, group=terms[0].group,
        group_levels=glev, loglik=est.loglik, nobs=len(frame), n_dropped=mf.n_dropped, link=link,
        fixed_spec=mm.model_spec, converged=est.converged, labels=ff.labels,
    )
