"""From the user's arguments to a model: (ModelSpec, DesignMatrices, ModelFrame), nothing fitted.

The formula is read as R reads it (:mod:`interlace.model.rformula`), the used columns are
selected and incomplete rows dropped as R's ``na.omit`` does (:mod:`.frames`), ``weights=`` /
``offset=`` are aligned with the kept rows, responses are coded (R's binomial factor rule), and the
design matrices are built (:mod:`.design`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..model.formula import model_terms
from ..model.rformula import FixedFormula, names_in, parse, parse_fixed
from ..model.rfunctions import R_CONSTANTS
from ..model.spec import ModelSpec
from .design import DesignMatrices, build_design
from .frames import ModelFrame, column_names, model_frame

__all__ = ["row_array", "read_formula", "check_response", "binary_response", "prepare_rows", "lmm_model",
           "glmm_model"]


def row_array(name: str, value, data, columns: list[str]) -> np.ndarray | None:
    """``weights=``/``offset=`` as an array of one value per row, or the name of a column."""
    if value is None:
        return None
    if isinstance(value, str):
        if value not in columns:
            raise KeyError(f"{name}={value!r} is not a column of data; available: {columns[:20]}")
        return None  # read with the model frame
    arr = np.asarray(value.to_numpy() if hasattr(value, "to_numpy") else value)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional with one value per row, got shape {arr.shape}")
    try:
        return arr.astype(float)
    except (TypeError, ValueError) as ex:
        raise TypeError(f"{name} must be numeric") from ex


def read_formula(fixed: str, terms, columns: list[str], exclude: tuple[str, ...] = (),
                  where: str | None = None) -> tuple[FixedFormula, list[str]]:
    """Read the fixed part as R does and list the data columns the model uses, in data order.

    ``.`` stands for every column not named elsewhere except the grouping factors and
    ``exclude`` (weights/offset columns). Raises ``KeyError`` naming missing columns.
    """
    groups = tuple(f for t in terms for f in t.factors)
    ff = parse_fixed(fixed, columns, exclude_from_dot=groups + tuple(exclude), where=where)
    needed = set(ff.variables) | set(groups)
    for t in terms:
        needed |= names_in(parse(t.expr, f"random term {t.source!r}"))
    missing = sorted(v for v in needed if v not in columns and v not in R_CONSTANTS)
    if missing:
        raise KeyError(f"column(s) {missing} used in the model are not in data; available: {columns[:20]}")
    return ff, [c for c in columns if c in needed]


def check_response(ff: FixedFormula, frame: pd.DataFrame, family: str = "gaussian") -> None:
    lhs = ff.response
    if ff.cbind is not None and family == "gaussian":
        raise ValueError(
            f"cbind(successes, failures) ~ ... is a binomial response: use interlace.glmer(..., "
            f"family='binomial'), not fit(), for {lhs!r}"
        )
    if lhs in frame.columns:
        col = frame[lhs]
        if not (pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col)):
            raise TypeError(
                f"response {lhs!r} is not numeric (dtype {col.dtype}); a linear mixed model "
                "needs a numeric response — convert it, or use glmer/clmm for other outcomes"
                if family == "gaussian" else
                f"response {lhs!r} is not numeric (dtype {col.dtype}); family {family!r} needs numbers "
                "(a two-level response is family='binomial'; ordered categories are interlace.clmm)"
            )


def binary_response(ff: FixedFormula, frame: pd.DataFrame) -> pd.DataFrame:
    """R's binomial factor response: the first level is failure (0), every other level success (1).

    Text is a factor with sorted levels (R's ``factor``), booleans are FALSE = 0 / TRUE = 1; the
    model frame (our copy) gets the 0/1 column, the caller's data are untouched.
    """
    lhs = ff.response
    if lhs not in frame.columns:
        return frame
    col = frame[lhs]
    if pd.api.types.is_bool_dtype(col):
        frame[lhs] = col.astype(float)
    elif isinstance(col.dtype, pd.CategoricalDtype) or not pd.api.types.is_numeric_dtype(col):
        if isinstance(col.dtype, pd.CategoricalDtype):
            first = col.cat.remove_unused_categories().cat.categories[0]
        else:
            first = sorted(pd.unique(col), key=str)[0]
        frame[lhs] = (col != first).astype(float)
    return frame


def prepare_rows(data, fixed: str, terms, weights, offset, correlation=None, family: str = "gaussian",
                  where: str | None = None):
    """Check the columns, drop incomplete rows, and align weights/offset with the kept rows.

    Returns the model frame, ``{"weights": array | None, "offset": array | None}`` and the
    fixed part as R reads it.
    """
    columns = column_names(data)
    named = tuple(v for v in (weights, offset) if isinstance(v, str))
    ff, used = read_formula(fixed, terms, columns, exclude=named, where=where)
    if correlation is not None:
        missing = [c for c in correlation.columns() if c not in columns]
        if missing:
            raise KeyError(f"correlation column(s) {missing} are not in data; available: {columns[:20]}")
        used += correlation.columns()
    arrays = {}
    for name, value in (("weights", weights), ("offset", offset)):
        if isinstance(value, str):
            row_array(name, value, data, columns)
            used.append(value)
        else:
            arrays[name] = row_array(name, value, data, columns)
    mf = model_frame(data, list(dict.fromkeys(used)), arrays)
    if family == "binomial":
        binary_response(ff, mf.data)
    else:
        check_response(ff, mf.data, family)
    rows = {
        name: (mf.data[value].to_numpy(dtype=float) if isinstance(value, str) else
               (None if arrays.get(name) is None else arrays[name][mf.keep]))
        for name, value in (("weights", weights), ("offset", offset))
    }
    return mf, rows, ff


def lmm_model(formula: str, data, groups=None, random=None, method: str = "REML", optimizer: str = "lbfgsb",
              weights=None, offset=None, correlation=None, df_method: str = "satterthwaite", theta0=None,
              verbose: bool = False) -> tuple[ModelSpec, DesignMatrices, ModelFrame]:
    """The linear mixed model of :func:`fit` as (spec, design, model frame), nothing fitted.

    Raises what :func:`fit` raises for bad input (``KeyError``/``ValueError``/``TypeError``).
    """
    fixed, terms = model_terms(formula, groups, random)
    if not terms and correlation is None:
        raise ValueError(
            "no random-effects terms: give groups='g' or random=['(1 | g)'] (for a model "
            "without random effects use ordinary least squares)"
        )
    mf, row_values, ff = prepare_rows(data, fixed, terms, weights, offset, correlation,
                                       where=f"formula {formula!r}")
    spec = ModelSpec(
        formula=formula, fixed=fixed, random=tuple(terms), method=method, optimizer=optimizer,
        df_method=df_method, has_weights=weights is not None,
        has_offset=offset is not None or bool(ff.offsets),
        fixed_formula=ff, offset_column=offset if isinstance(offset, str) else None,
        theta0=None if theta0 is None else tuple(np.asarray(theta0, dtype=float).ravel()),
        correlation=correlation, options={"verbose": bool(verbose)},
    )
    design = build_design(spec, mf.data, row_values["weights"], row_values["offset"], mf.native_namespace)
    return spec, design, mf


def glmm_model(formula: str, data, fam, groups=None, random=None, weights=None, offset=None,
               optimizer: str = "lbfgsb", nagq: int = 1) -> tuple[ModelSpec, DesignMatrices, ModelFrame]:
    """The generalized linear mixed model of ``glmer`` as (spec, design, model frame), nothing fitted.

    ``fam`` is a :class:`~interlace.model.families.Family`. Raises ``ValueError`` for a response
    the family cannot take, a missing random term, or ``nAGQ > 1`` where quadrature does not apply.
    """
    fixed, terms = model_terms(formula, groups, random)
    if not terms:
        raise ValueError("no random-effects terms: give groups='g' or random=['(1 | g)']")
    if nagq > 1 and fam.has_scale:
        raise ValueError("nAGQ > 1 is not available for the Gamma family; use nAGQ=1 (Laplace)")
    if nagq > 1 and (len(terms) != 1 or terms[0].expr.replace(" ", "") not in ("1",)):
        raise ValueError("nAGQ > 1 needs a single scalar random-effects term such as (1 | g)")
    mf, rows, ff = prepare_rows(data, fixed, terms, weights, offset, family=fam.name,
                                 where=f"formula {formula!r}")
    if ff.cbind is not None and fam.name != "binomial":
        raise ValueError(f"cbind(successes, failures) is a binomial response; family is {fam.name!r}")
    frame = mf.data
    spec = ModelSpec(
        formula=formula, fixed=fixed, random=tuple(terms), method="ML", family=fam.name, optimizer=optimizer,
        has_weights=weights is not None or ff.cbind is not None,
        has_offset=offset is not None or bool(ff.offsets),
        fixed_formula=ff, offset_column=offset if isinstance(offset, str) else None,
    )
    design = build_design(spec, frame, rows["weights"], rows["offset"], mf.native_namespace)
    fam.validate(design.y, np.ones(design.n) if design.weights is None else design.weights, design.response)
    return spec, design, mf
