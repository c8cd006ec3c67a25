"""R's functions for formulas, with R's meaning, as the evaluation context handed to formulaic.

:mod:`interlace.model.rformula` writes R calls as Python calls of the names here. Each function
follows its R documentation (base R, ``stats``, ``splines``); stateful ones (``scale``, ``poly``,
``bs``, ``ns``, ``factor``) keep what they learned on the fitted data so that ``predict`` on new
data uses the same centring, knots and levels (R's ``makepredictcall``).

``ns`` is R's ``splines::ns``: a cubic B-spline basis on knots at quantiles of x, projected
onto the natural-spline subspace (zero second derivative at both boundary knots) by the QR
decomposition of the boundary constraints, linear beyond the boundary knots.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from formulaic.materializers.types import FactorValues
from formulaic.transforms import C, poly, scale
from formulaic.transforms import basis_spline as bs
from formulaic.utils.stateful_transforms import stateful_transform
from scipy.interpolate import BSpline

__all__ = ["R_FUNCTIONS", "R_CONSTANTS", "R_CONTEXT", "FORMULAIC_PASSTHROUGH", "ns_basis"]


def _values(x) -> pd.Series:
    return x if isinstance(x, pd.Series) else pd.Series(np.asarray(x))


def _r_sorted_levels(s: pd.Series) -> list:
    """R's ``factor`` levels: a factor keeps its level order (unused dropped), else sorted values."""
    if isinstance(s.dtype, pd.CategoricalDtype):
        present = set(s.dropna().unique())
        return [c for c in s.cat.categories if c in present]
    vals = pd.unique(s.dropna())
    try:
        return sorted(vals)
    except TypeError:
        return sorted(vals, key=str)


def _as_levels(s: pd.Series, state: dict):
    """A categorical of ``s`` on the levels in ``state``: at fit time exactly those levels; on new
    data the raw values go to formulaic, whose level check names any level not seen in fitting."""
    if state.pop("_new", False):
        cat = pd.Categorical(s, categories=state["levels"])
        return C(pd.Series(cat, index=s.index), levels=state["levels"])
    return C(s.astype(object) if isinstance(s.dtype, pd.CategoricalDtype) else s, levels=state["levels"])


@stateful_transform
def factor(x, levels=None, _state=None):
    """R's ``factor(x, levels)``: categorical with sorted (or given) levels, learned at fit time."""
    s = _values(x)
    if "levels" not in _state:
        _state["levels"] = list(levels) if levels is not None else _r_sorted_levels(s)
        _state["_new"] = True
    return _as_levels(s, _state)


@stateful_transform
def relevel(x, ref, _state=None):
    """R's ``relevel(f, ref)``: the level ``ref`` first, the others in their order."""
    s = _values(x)
    if "levels" not in _state:
        levels = _r_sorted_levels(s)
        match = [lv for lv in levels if lv == ref or str(lv) == str(ref)]
        if not match:
            raise ValueError(f"relevel(): ref={ref!r} is not a level ({levels[:10]})")
        _state["levels"] = [match[0]] + [lv for lv in levels if lv != match[0]]
        _state["_new"] = True
    return _as_levels(s, _state)


def as_numeric(x):
    """R's ``as.numeric``: a factor gives its level codes 1..k (as R does); text is parsed."""
    s = _values(x)
    if isinstance(s.dtype, pd.CategoricalDtype):
        codes = s.cat.codes.to_numpy().astype(float) + 1.0
        codes[s.isna().to_numpy()] = np.nan
        return codes
    if pd.api.types.is_bool_dtype(s) or pd.api.types.is_numeric_dtype(s):
        return s.to_numpy(dtype=float)
    try:
        return pd.to_numeric(s, errors="raise").to_numpy(dtype=float)
    except (TypeError, ValueError) as ex:
        raise ValueError(f"as.numeric(): values such as {s.iloc[0]!r} are not numbers") from ex


def as_integer(x):
    """R's ``as.integer``: truncation toward zero (factors give their codes)."""
    return np.trunc(as_numeric(x))


def as_logical(x):
    """R's ``as.logical``."""
    return _values(x).astype(bool).to_numpy()


def r_log(x, base=np.e):
    """R's ``log(x, base)``."""
    x = np.asarray(x, dtype=float)
    return np.log(x) if base == np.e else np.log(x) / np.log(base)


def r_pow(a, b):
    """R's ``^``: always in doubles (so integer columns take negative and fractional powers)."""
    return np.power(np.asarray(a, dtype=float), np.asarray(b, dtype=float))


def r_not(x):
    """R's ``!``: element-wise logical not."""
    return np.logical_not(x)


def r_in(a, b):
    """R's ``%in%``."""
    return np.isin(np.asarray(a), np.asarray(b))


def r_c(*args):
    """R's ``c(...)``."""
    return np.concatenate([np.atleast_1d(np.asarray(a)) for a in args]) if args else np.array([])


def ifelse(test, yes, no):
    """R's ``ifelse(test, yes, no)``."""
    return np.where(np.asarray(test, dtype=bool), yes, no)


def r_round(x, digits=0):
    """R's ``round(x, digits)`` (halves to even, as IEC 60559 and R)."""
    return np.round(np.asarray(x, dtype=float), int(digits))


@stateful_transform
def r_scale(x, center=True, scale_=True, _state=None):
    """R's ``scale(x, center, scale)`` (sd with n − 1); the fitted centre and scale are kept."""
    return scale(x, center=center, scale=scale_, _state=_state)


@stateful_transform
def r_poly(x, degree=1, raw=False, _state=None):
    """R's ``poly(x, degree, raw)``: orthogonal polynomials on the fitted x (or raw powers)."""
    return poly(x, degree=int(degree), raw=bool(raw), _state=_state)


@stateful_transform
def r_bs(x, df=None, knots=None, degree=3, intercept=False, boundary_knots=None, _state=None):
    """R's ``splines::bs`` (formulaic's implementation of the same basis); knots kept from the fit."""
    lower, upper = (None, None) if boundary_knots is None else (float(boundary_knots[0]),
                                                                 float(boundary_knots[1]))
    return bs(x, df=None if df is None else int(df),
              knots=None if knots is None else list(np.atleast_1d(knots)), degree=int(degree),
              include_intercept=bool(intercept), lower_bound=lower, upper_bound=upper, _state=_state)


def _quantile7(x: np.ndarray, probs: np.ndarray) -> np.ndarray:
    return np.quantile(x, probs)  # numpy's default "linear" is R's type 7


def ns_basis(x: np.ndarray, knots: np.ndarray, boundary: tuple[float, float], intercept: bool) -> np.ndarray:
    """R's ``splines::ns`` basis of ``x`` (n,) for interior ``knots`` and ``boundary`` knots.

    Returns an (n, len(knots) + 1 + intercept) array; NaN rows stay NaN.
    """
    x = np.asarray(x, dtype=float)
    lo, hi = boundary
    t = np.sort(np.concatenate([[lo] * 4, np.asarray(knots, dtype=float), [hi] * 4]))
    nb = len(t) - 4
    eye = np.eye(nb)

    def design(v: np.ndarray, deriv: int = 0) -> np.ndarray:
        spl = BSpline(t, eye, 3, extrapolate=True)
        out = spl.derivative(deriv)(v) if deriv else spl(v)
        return np.atleast_2d(out)

    basis = np.full((len(x), nb), np.nan)
    ok = np.isfinite(x)
    inside = ok & (x >= lo) & (x <= hi)
    basis[inside] = design(x[inside])
    for side, pivot in ((ok & (x < lo), lo), (ok & (x > hi), hi)):
        if np.any(side):  # linear beyond the boundary knots, as R does
            v0 = design(np.array([pivot]))[0]
            v1 = design(np.array([pivot]), 1)[0]
            basis[side] = v0[None, :] + (x[side] - pivot)[:, None] * v1[None, :]
    const = design(np.array([lo, hi]), 2)
    if not intercept:
        const = const[:, 1:]
        basis = basis[:, 1:]
    q, _ = np.linalg.qr(const.T, mode="complete")
    return (basis @ q)[:, 2:]


@stateful_transform
def ns(x, df=None, knots=None, intercept=False, boundary_knots=None, _state=None):
    """R's ``splines::ns(x, df, knots, intercept, Boundary.knots)``; knots learned at fit time."""
    v = np.asarray(x, dtype=float)
    if "knots" not in _state:
        finite = v[np.isfinite(v)]
        bk = (float(finite.min()), float(finite.max())) if boundary_knots is None else \
            (float(boundary_knots[0]), float(boundary_knots[1]))
        if knots is None:
            if df is None:
                raise ValueError("ns() needs df= or knots=")
            n_inner = max(int(df) - 1 - int(bool(intercept)), 0)
            inside = finite[(finite >= bk[0]) & (finite <= bk[1])]
            probs = np.linspace(0, 1, n_inner + 2)[1:-1]
            kn = _quantile7(inside, probs) if n_inner else np.array([])
        else:
            kn = np.atleast_1d(np.asarray(knots, dtype=float))
        _state["knots"] = [float(k) for k in kn]
        _state["boundary"] = list(bk)
    basis = ns_basis(v, np.asarray(_state["knots"]), tuple(_state["boundary"]), bool(intercept))
    return FactorValues(basis, column_names=tuple(str(j + 1) for j in range(basis.shape[1])))


_MATH = {name: (f"np.{py}", {}) for name, py in {
    "exp": "exp", "sqrt": "sqrt", "abs": "abs", "log10": "log10", "log2": "log2", "log1p": "log1p",
    "expm1": "expm1", "sin": "sin", "cos": "cos", "tan": "tan", "asin": "arcsin", "acos": "arccos",
    "atan": "arctan", "sinh": "sinh", "cosh": "cosh", "tanh": "tanh", "floor": "floor",
    "ceiling": "ceil", "trunc": "trunc", "sign": "sign", "pmin": "minimum", "pmax": "maximum",
}.items()}

#: R name -> (Python name in R_CONTEXT, R keyword -> Python keyword)
R_FUNCTIONS: dict[str, tuple[str, dict[str, str]]] = {
    **_MATH,
    "I": ("I", {}),
    "log": ("r_log", {"x": "x", "base": "base"}),
    "round": ("r_round", {"x": "x", "digits": "digits"}),
    "factor": ("factor", {"x": "x", "levels": "levels"}),
    "as.factor": ("factor", {"x": "x"}),
    "as.character": ("factor", {"x": "x"}),
    "relevel": ("relevel", {"x": "x", "ref": "ref"}),
    "as.numeric": ("as_numeric", {"x": "x"}),
    "as.double": ("as_numeric", {"x": "x"}),
    "as.integer": ("as_integer", {"x": "x"}),
    "as.logical": ("as_logical", {"x": "x"}),
    "ifelse": ("ifelse", {"test": "test", "yes": "yes", "no": "no"}),
    "c": ("r_c", {}),
    "scale": ("r_scale", {"x": "x", "center": "center", "scale": "scale_"}),
    "poly": ("r_poly", {"x": "x", "degree": "degree", "raw": "raw"}),
    "bs": ("r_bs", {"x": "x", "df": "df", "knots": "knots", "degree": "degree", "intercept": "intercept",
                    "Boundary.knots": "boundary_knots"}),
    "ns": ("ns", {"x": "x", "df": "df", "knots": "knots", "intercept": "intercept",
                  "Boundary.knots": "boundary_knots"}),
    "C": ("C", {"object": "data", "contr": "contrasts", "levels": "levels"}),
}

#: formulaic's own transforms that keep working as they always have in interlace
FORMULAIC_PASSTHROUGH = {"center", "standardize", "Q", "Treatment", "Sum", "Helmert", "Poly", "Diff",
                         "cr", "cs", "cc"}

#: R names of constants -> Python text
R_CONSTANTS = {
    "TRUE": "True", "T": "True", "FALSE": "False", "F": "False", "pi": "r_pi", "Inf": "r_inf",
    "NA": "r_nan", "NaN": "r_nan",
    "contr.treatment": "contr.treatment", "contr.sum": "contr.sum", "contr.helmert": "contr.helmert",
    "contr.poly": "contr.poly", "treatment": "contr.treatment", "sum": "contr.sum",
    "helmert": "contr.helmert", "poly": "contr.poly",
}


def _context() -> dict:
    from formulaic.transforms import TRANSFORMS

    ctx = {k: TRANSFORMS[k] for k in ("I", "C", "contr", "center", "standardize", "Q", "Treatment", "Sum",
                                        "Helmert", "Poly", "Diff", "cr", "cs", "cc") if k in TRANSFORMS}
    ctx.update({
        "np": np, "numpy": np, "factor": factor, "relevel": relevel, "as_numeric": as_numeric,
        "as_integer": as_integer, "as_logical": as_logical, "r_log": r_log, "r_pow": r_pow, "r_not": r_not,
        "r_in": r_in, "r_c": r_c, "ifelse": ifelse, "r_round": r_round, "r_scale": r_scale,
        "r_poly": r_poly, "r_bs": r_bs, "ns": ns, "r_pi": np.pi, "r_inf": np.inf, "r_nan": np.nan,
    })
    return ctx


#: the evaluation context handed to formulaic for every model matrix interlace builds
R_CONTEXT = _context()
