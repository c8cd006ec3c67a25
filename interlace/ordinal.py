"""``interlace.clmm``: read an ordinal-response formula as ``ordinal::clmm`` does and fit it.

The response is an ordered factor (pandas Categorical in category order) or sortable values with
at least three levels; the right side is an R formula (:mod:`interlace.model.rformula`) with one or
more random intercepts — crossed ``(1 | judge) + (1 | bottle)`` or nested ``(1 | RESP/DAY)`` —
built into the design object (``design.terms``, sparse Z) like any other model.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .backends.reml.clmm import fit_clmm
from .data.build import read_formula
from .data.design import build_design
from .data.frames import column_names, model_frame
from .linalg.threads import fit_blas_threads
from .model.families import CUMULATIVE_LINKS
from .model.formula import model_terms
from .model.spec import ModelSpec
from .results.ordinal import OrdinalResult

__all__ = ["fit_clmm_formula"]

#: more distinct values than this in a numeric (not categorical) response: refused as continuous
MAX_NUMERIC_LEVELS = 20


def fit_clmm_formula(formula: str, data, groups=None, random=None, link: str = "logit",
                     sampler: dict | None = None) -> OrdinalResult:
    """Fit ``interlace.clmm``'s model (see its docstring); raises ValueError/KeyError on bad input.
    ``sampler`` (the PyMC sampler's arguments) samples the posterior on the same design instead."""
    if link not in CUMULATIVE_LINKS:
        raise ValueError(f"link must be one of {list(CUMULATIVE_LINKS)} for clmm, got {link!r}")
    fixed, terms = model_terms(formula, groups, random)
    if not terms:
        raise ValueError("clmm needs at least one random intercept, e.g. groups='judge' or "
                         "random=['(1 | judge)']")
    for t in terms:
        if t.expr.replace(" ", "") != "1":
            raise ValueError(
                f"clmm fits random intercepts only: the term {t.source!r} has random slopes "
                f"({t.expr!r} varies by {t.group!r}); use (1 | {t.group}) terms (ordinal::clmm "
                "also fits vector-valued terms; interlace does not yet)"
            )
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
        if len(levels) > MAX_NUMERIC_LEVELS and pd.api.types.is_numeric_dtype(resp):
            raise ValueError(
                f"response {lhs!r} has {len(levels)} distinct numeric values and looks continuous: clmm "
                f"would estimate {len(levels) - 1} thresholds. Use interlace.fit() for a continuous "
                "response, or, if it is ordinal, make it an ordered factor first "
                f"(data[{lhs!r}] = pd.Categorical(data[{lhs!r}], ordered=True))"
            )
    if len(levels) < 3:
        raise ValueError(
            f"response {lhs!r} has {len(levels)} levels; an ordinal model needs at least 3 "
            "(use glmer(family='binomial') for two)"
        )
    if ff.offsets:
        raise ValueError("clmm does not take offset() terms (ordinal::clmm has no offset either)")
    # the design of the ordinal model: the response as its category codes (our copy of the rows),
    # X without the intercept (the thresholds take its place), Z from the random term
    coded = frame.copy()
    coded[lhs] = np.asarray(codes, dtype=float)
    spec = ModelSpec(formula=formula, fixed=fixed, random=tuple(terms), method="ML", family="ordinal",
                     fixed_formula=ff)
    design = build_design(spec, coded, input_namespace=mf.native_namespace)
    keep = [j for j, c in enumerate(design.X_names) if c != "(Intercept)"]
    y = np.asarray(codes, dtype=np.int64)
    if sampler is not None:
        from .backends.pymc import require_pymc

        require_pymc('clmm(backend="pymc")')
        from .backends.pymc.ordinal import fit_clmm_pymc

        return fit_clmm_pymc(formula, design, keep, y, levels, link, mf.n_dropped, **sampler)
    with fit_blas_threads():  # one BLAS thread for the small dense blocks (see linalg.threads)
        est = fit_clmm(design.X[:, keep], y, design, len(levels), link)
    return OrdinalResult(
        formula=formula, response_levels=[str(v) for v in levels], X_names=[design.X_names[j] for j in keep],
        alpha=est.alpha, beta=est.beta, cov=est.cov, sigmas=est.sigmas, b=est.b, terms=design.terms,
        loglik=est.loglik, nobs=len(frame), n_dropped=mf.n_dropped, link=link,
        fixed_spec=design.fixed_spec, converged=est.converged, labels=ff.labels,
    )
