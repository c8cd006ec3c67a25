"""REML/ML from cross-products alone (lazy frames).

Everything the blocked-Cholesky engine forms from the rows — the diagonal blocks D_j of the
first term's Z₁'WZ₁, B = [Z_r X y]'WZ₁ and M = [Z_r X y]'W[Z_r X y] — is a block of
C = [Z X y]'W[Z X y] (Z'WZ as its lower block triangle: Z_a'WZ_b for terms a ≥ b).
:func:`crossproduct_design` hands C to the engine as
``DesignMatrices.gram`` with row-less y, X and Z, and n set to the number of observations the
aggregates came from, so the deviance, its gradient and the Satterthwaite df are exactly those
of the row-level fit. What needs rows (fitted values, residuals, conditional variances) is not
available.
"""

from __future__ import annotations

import narwhals as nw
import numpy as np
import scipy.sparse as sp

from ...data.design import DesignMatrices
from ...data.lazy import lazy_crossproducts
from ...model.formula import model_terms
from ...model.rformula import parse_fixed
from ...model.spec import ModelSpec
from ...results.lmm import CrossedLMEResult
from .engine import gram_result
from .iterative import choose_solver, symmetric_from_lower
from .iterative_fit import check_iterative_spec, iterative_result
from .lmm import fit_lmm

__all__ = ["crossproduct_design", "fit_lazy"]


def crossproduct_design(
    ZtZ: sp.spmatrix, ZtXy: np.ndarray, XytXy: np.ndarray, terms, X_names, response, n: int
) -> DesignMatrices:
    """A DesignMatrices carrying only the cross-products (see the module docstring)."""
    ZtZ = sp.csc_matrix(ZtZ)
    q, p = ZtZ.shape[0], XytXy.shape[0] - 1
    if ZtXy.shape != (q, p + 1):
        raise ValueError(f"Z'[X y] has shape {ZtXy.shape}, expected {(q, p + 1)}")
    return DesignMatrices(
        y=np.zeros(0),
        X=np.zeros((0, p)),
        X_names=list(X_names),
        Z=sp.csc_matrix((0, q)),
        terms=list(terms),
        weights=None,
        offset=np.zeros(0),
        response=response,
        n_rows=int(n),
        input_namespace="lazy",
        gram=(ZtZ, np.asarray(ZtXy, dtype=float), np.asarray(XytXy, dtype=float)),
    )


def fit_lazy(formula, data, groups, random, method, optimizer, weights, offset, correlation, df_method,
              theta0, backend, sample=None, solver: str = "auto") -> CrossedLMEResult:
    """fit() on a lazy frame: aggregate the cross-products where the data live, then fit — or,
    with ``sample(spec, design, n_dropped)`` (backend='pymc'), sample from them."""
    if backend != "reml" and sample is None:
        raise ValueError("lazy frames are fitted by backend='reml' only; collect the frame for 'pymc'")
    if sample is not None and weights is not None:
        raise ValueError("weights= with a lazy frame is fitted by backend='reml' only (the PyMC priors are "
                         "scaled by unweighted moments); collect the frame, or use backend='reml'")
    if correlation is not None:
        raise ValueError("correlation= needs row-level data; collect the lazy frame first")
    if df_method == "kenward-roger":
        raise ValueError("df_method='kenward-roger' needs row-level data; use 'satterthwaite' or collect")
    if offset is not None:
        raise ValueError("offset= is not supported for lazy frames; subtract it from the response column")
    if weights is not None and not isinstance(weights, str):
        raise TypeError("with a lazy frame, weights= must name a column of it")
    fixed, terms = model_terms(formula, groups, random)
    if not terms:
        raise ValueError("no random-effects terms: give groups='g' or random=['(1 | g)']")
    columns = list(nw.from_native(data).collect_schema())
    groups = tuple(f for t in terms for f in t.factors)
    ff = parse_fixed(fixed, columns, exclude_from_dot=groups + ((weights,) if weights else ()),
                     where=f"formula {formula!r}")
    if ff.offsets or ff.cbind is not None:
        raise ValueError("offset() and cbind() need row-level data; collect the lazy frame first")
    if ff.labels:
        raise ValueError(
            f"lazy fits support plain column names as fixed effects; {list(ff.labels.values())} "
            "are not (compute them as columns of the lazy frame first, or collect the frame)"
        )
    # a posterior is sampled from order-free sums: the eager fit's draws, whatever polars' order
    cp = lazy_crossproducts(data, ff.formulaic, terms, weights=weights, canonical=sample is not None)
    spec = ModelSpec(
        formula=formula, fixed=fixed, random=tuple(terms), method=method, optimizer=optimizer,
        df_method=df_method, has_weights=weights is not None,
        theta0=None if theta0 is None else tuple(np.asarray(theta0, dtype=float).ravel()),
    )
    design = crossproduct_design(cp.ZtZ, cp.ZtXy, cp.XytXy, cp.terms, cp.X_names, cp.response, cp.n)
    if sample is not None:
        return sample(spec, design, cp.n_dropped)
    if choose_solver(solver, cp.terms, len(cp.X_names)) == "iterative":
        check_iterative_spec(spec)
        result = iterative_result(spec, design, symmetric_from_lower(cp.ZtZ), cp.ZtXy, cp.XytXy, cp.n,
                                  cp.n_dropped, rows=False)
        result.fixed_levels = cp.fixed_levels  # for emmeans
        return result
    # prior weights: −Σ log wᵢ, which the compressed rows do not carry; no fitted values or residuals
    result = gram_result(spec, design, fit_lmm(design, spec), cp.n_dropped, cp.sum_log_w)
    result.fixed_levels = cp.fixed_levels  # the factors' levels, for emmeans (no rows to read them from)
    return result
