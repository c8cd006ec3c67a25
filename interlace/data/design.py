"""DesignMatrices: y, X (dense), Z (scipy.sparse), per-term blocks and the θ → Λ(θ) map.

Follows lme4's ``lFormula``/``mkReTrms``: random terms are ordered by decreasing number of
levels (stable), each term with ``k`` columns and ``m`` levels contributes ``m·k`` columns to Z,
level-major (all k columns of level 1, then level 2, ...). Λ(θ) is block diagonal with ``m``
copies of a lower-triangular ``k × k`` factor T per term; θ lists each T's lower triangle
column by column, in term order.
"""

from __future__ import annotations

import functools
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from formulaic import Formula, model_matrix
from formulaic.errors import DataMismatchWarning, FormulaicError

from ..model.correlation import correlation_layout
from ..model.formula import RandomTerm
from ..model.rformula import FixedFormula, parse_fixed, parse_rhs, r_labels
from ..model.rfunctions import R_CONTEXT
from ..model.spec import ModelSpec

__all__ = [
    "TermBlock", "DesignMatrices", "build_design", "tril_colwise", "group_levels", "level_keys",
    "formula_matrix", "rebuild_matrix", "evaluate_expr", "model_variables",
]


@functools.lru_cache(maxsize=64)
def tril_colwise(k: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices of a k × k lower triangle, column by column (lme4's θ order);
    cached (read-only arrays): T(θ) is formed at every deviance evaluation."""
    cols, rows = np.triu_indices(k)
    rows.flags.writeable = cols.flags.writeable = False
    return rows, cols


def _rename(col: str) -> str:
    return "(Intercept)" if col == "Intercept" else str(col)


@dataclass
class TermBlock:
    """One random-effects term after sorting: its grouping factor, columns and place in Z and θ."""

    group: str
    factors: tuple[str, ...]
    expr: str
    columns: list[str]
    levels: list[Any]
    codes: np.ndarray  # level index per observation
    z_start: int
    theta_start: int
    model_spec: Any = field(repr=False, default=None)
    keys: list[tuple] = field(repr=False, default_factory=list)  # level_keys of each level

    @property
    def k(self) -> int:
        return len(self.columns)

    @property
    def m(self) -> int:
        return len(self.levels)

    @property
    def q(self) -> int:
        return self.k * self.m

    @property
    def n_theta(self) -> int:
        return self.k * (self.k + 1) // 2

    @property
    def theta_slice(self) -> slice:
        return slice(self.theta_start, self.theta_start + self.n_theta)

    def T(self, theta: np.ndarray) -> np.ndarray:
        """The term's lower-triangular relative covariance factor T(θ)."""
        t = np.zeros((self.k, self.k))
        r, c = tril_colwise(self.k)
        t[r, c] = theta[self.theta_slice]
        return t


@dataclass
class DesignMatrices:
    """Everything a backend needs, as arrays: no REML or PyMC details live here."""

    y: np.ndarray
    X: np.ndarray
    X_names: list[str]
    Z: sp.csc_matrix
    terms: list[TermBlock]
    weights: np.ndarray | None
    offset: np.ndarray
    response: str
    fixed_spec: Any = field(repr=False, default=None)
    dropped_columns: list[str] = field(default_factory=list)
    correlation: Any = None  # an AR1 / CompoundSymmetry structure
    corr_layout: Any = field(repr=False, default=None)
    n_rows: int | None = None  # observations represented, when y/X/Z are a compressed equivalent
    # (Z'WZ, Z'W[X y], [X y]'W[X y]) when only the cross-products are known (lazy frames), Z'WZ
    # as its lower block triangle (Z_a'WZ_b for terms a ≥ b): then y, X and Z have no rows and
    # the engine works from these alone
    gram: Any = field(repr=False, default=None)
    # what predict needs to rebuild the offset for new rows: the offset column (when offset= named
    # one), whether an array was given, and the offset() terms of the formula (Python text, R text)
    offset_column: str | None = None
    offset_array: bool = False
    formula_offsets: tuple[tuple[str, str], ...] = ()
    labels: dict[str, str] = field(default_factory=dict)  # formulaic term text -> R's spelling
    # the complete-case rows the design was built from (lme4's ``frame``; None for lazy fits) and
    # the caller's frame library ("pandas", "polars", …, "lazy"), for tidy output in the same kind
    frame: pd.DataFrame | None = field(repr=False, default=None)
    input_namespace: str = "pandas"

    @property
    def n(self) -> int:
        return self.y.shape[0] if self.n_rows is None else self.n_rows

    @property
    def p(self) -> int:
        return self.X.shape[1]

    @property
    def q(self) -> int:
        return self.Z.shape[1]

    @property
    def n_theta(self) -> int:
        return sum(t.n_theta for t in self.terms)

    def theta_lower(self) -> np.ndarray:
        """lme4's bounds: 0 on every T diagonal, -inf elsewhere."""
        lower = []
        for t in self.terms:
            r, c = tril_colwise(t.k)
            lower.extend(np.where(r == c, 0.0, -np.inf))
        return np.asarray(lower, dtype=float)

    def theta_default(self) -> np.ndarray:
        """lme4's start: identity T for every term."""
        out = []
        for t in self.terms:
            r, c = tril_colwise(t.k)
            out.extend((r == c).astype(float))
        return np.asarray(out, dtype=float)

    def term_columns(self, t: TermBlock) -> np.ndarray:
        """The n × k model matrix of one random-effects term, recovered from Z."""
        coo = self.Z[:, t.z_start : t.z_start + t.q].tocoo()
        out = np.zeros((self.n, t.k))
        out[coo.row, coo.col % t.k] = coo.data
        return out

    def draw_b(self, theta: np.ndarray, rng: np.random.Generator, sd: float = 1.0) -> np.ndarray:
        """New random effects b = sd · Λ(θ)u, u ~ N(0, I): one draw for every level of every term."""
        b = np.zeros(self.q)
        for t in self.terms:
            u = rng.standard_normal((t.m, t.k))
            b[t.z_start : t.z_start + t.q] = (sd * u @ t.T(theta).T).ravel()
        return b

    def is_singular(self, theta: np.ndarray, tol: float = 1e-4) -> bool:
        """lme4's ``isSingular``: is any θ with a lower bound of 0 within ``tol`` of it?"""
        lower = self.theta_lower()
        return bool(np.any(np.isfinite(lower) & (np.asarray(theta) < lower + tol)))

    def variance_names(self) -> list[str]:
        """lme4 ``confint`` names of the variance parameters: per term its SDs and correlations
        (``sd_x|g``, ``cor_1.x|g``), then the correlation structure's parameter, then ``sigma``."""
        names = []
        for t in self.terms:
            r, c = tril_colwise(t.k)
            for i, j in zip(r, c, strict=True):
                cols = t.columns
                names.append(f"sd_{cols[i]}|{t.group}" if i == j else f"cor_{cols[j]}.{cols[i]}|{t.group}")
        if self.correlation is not None:
            names.append(self.correlation.name)
        return names + ["sigma"]

    def sd_cor(self, theta: np.ndarray, sigma: float = 1.0) -> np.ndarray:
        """Per term the SDs and correlations of b = σΛu in :meth:`variance_names`' order (the
        terms' part: correlation parameter and σ excluded); a zero SD gives correlation 0."""
        vals = []
        for t in self.terms:
            T = t.T(theta) * sigma
            S = T @ T.T
            sd = np.sqrt(np.diag(S))
            r, c = tril_colwise(t.k)
            for i, j in zip(r, c, strict=True):
                vals.append(sd[i] if i == j else (S[i, j] / (sd[i] * sd[j]) if sd[i] * sd[j] > 0 else 0.0))
        return np.array(vals)

    def lambda_dense(self, theta: np.ndarray) -> np.ndarray:
        """Λ(θ) as a dense q × q array (for the q-sized algebra of KR, condVar and influence)."""
        lam = np.zeros((self.q, self.q))
        for t in self.terms:
            T = t.T(theta)
            for lv in range(t.m):
                s0 = t.z_start + lv * t.k
                lam[s0 : s0 + t.k, s0 : s0 + t.k] = T
        return lam


def group_levels(frame: pd.DataFrame, factors: tuple[str, ...]) -> tuple[list[Any], np.ndarray]:
    """Levels (in order) and integer codes of the grouping factor formed by ``factors``.

    A single categorical column keeps its category order (unused levels dropped); other
    columns sort their distinct values. Interactions are labelled ``"a:b"``.
    """
    codes_list, levels_list = [], []
    for name in factors:
        col = frame[name]
        if isinstance(col.dtype, pd.CategoricalDtype):
            cat = col.cat.remove_unused_categories()
            levels = list(cat.cat.categories)
            codes = cat.cat.codes.to_numpy()
        else:
            values = col.to_numpy()
            try:  # sorted distinct values and each row's position among them, in one pass
                codes, uniq = pd.factorize(values, sort=True)
                levels = list(uniq)
            except TypeError:
                levels = sorted(pd.unique(values), key=str)
                codes = pd.Categorical(values, categories=levels).codes
        codes_list.append(np.asarray(codes, dtype=np.int64))
        levels_list.append(levels)
    if len(factors) == 1:
        return levels_list[0], codes_list[0]
    combined = np.zeros(len(frame), dtype=np.int64)
    for codes, levels in zip(codes_list, levels_list, strict=True):
        combined = combined * len(levels) + codes
    used, codes = np.unique(combined, return_inverse=True)
    labels = []
    for u in used:
        parts = []
        for levels in reversed(levels_list):
            parts.append(str(levels[u % len(levels)]))
            u //= len(levels)
        labels.append(":".join(reversed(parts)))
    return labels, codes.astype(np.int64)


def _full_rank_columns(X: np.ndarray, tol: float = 1e-7) -> list[int]:
    """Indices of columns kept in order, dropping each column that earlier ones already span."""
    kept: list[int] = []
    Q = np.zeros((X.shape[0], 0))
    for j in range(X.shape[1]):
        x = X[:, j]
        norm = np.linalg.norm(x)
        if norm == 0:
            continue
        r = x - Q @ (Q.T @ x)
        r = r - Q @ (Q.T @ r)
        rn = np.linalg.norm(r)
        if rn > tol * norm:
            kept.append(j)
            Q = np.column_stack([Q, r / rn])
    return kept


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _why(ex: Exception) -> str:
    """formulaic's message without its terminal colour codes."""
    return _ANSI.sub("", str(ex)).strip()


@functools.lru_cache(maxsize=256)
def _parsed(text: str, columns: tuple[str, ...]) -> Formula:
    """formulaic's parse of ``text`` for a frame with ``columns`` (the terms depend on nothing
    else: ``.`` reads the column names), kept across fits: parsing is a third of formulaic's time
    on a small model."""
    return Formula(text, _context={"__formulaic_variables_available__": list(columns)})


def formula_matrix(text: str, frame: pd.DataFrame, where: str, na_action: str = "raise"):
    """formulaic's model matrix of ``text`` (already in formulaic's spelling) with R's functions.

    Raises ``ValueError`` naming ``where`` (the user's formula or term) when it cannot be built.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            formula = _parsed(text, tuple(frame.columns))
            return model_matrix(formula, frame, na_action=na_action, context=R_CONTEXT)
    except (FormulaicError, ValueError, TypeError, NameError, KeyError, AttributeError, SyntaxError) as ex:
        raise ValueError(f"{where}: cannot build the model matrix: {_why(ex)}") from ex


def rebuild_matrix(model_spec, frame: pd.DataFrame, where: str):
    """The fitted model's ``model_spec`` evaluated on new rows (same levels, knots, centring).

    A categorical level not seen in fitting raises ``ValueError`` naming the term and the levels.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            mm = model_spec.get_model_matrix(frame, na_action="raise", context=R_CONTEXT)
        except (FormulaicError, ValueError, TypeError, NameError, KeyError, AttributeError) as ex:
            raise ValueError(f"{where}: cannot build the model matrix for newdata: {_why(ex)}") from ex
    for w in caught:
        if issubclass(w.category, DataMismatchWarning):
            m = re.search(r"dataset\):\s*(\{.*?\})\.", str(w.message))
            levels = re.sub(r"np\.\w+\((.*?)\)", r"\1", m.group(1)) if m else "some levels"
            terms = [e for e, (kind, _) in model_spec.encoder_state.items()
                     if str(kind.value) == "categorical"]
            raise ValueError(
                f"{where}: newdata has level(s) {levels} not seen in fitting in the categorical "
                f"predictor(s) {terms}; the fitted model has no coefficient for them "
                "(drop those rows, or map them to a fitted level)"
            )
    return mm


def model_variables(model_spec, columns) -> list[str]:
    """The data columns a formulaic model spec reads, among ``columns`` (the fitted model frame's).

    formulaic reports a backticked name with a dot (R's ``my.var``) as its part before the dot;
    such a name is mapped back to the columns it abbreviates.
    """
    out = []
    for v in sorted(model_spec.required_variables):
        if v in columns:
            out.append(v)
            continue
        dotted = [c for c in columns if c.startswith(v + ".")]
        out.extend(dotted if dotted else [v])
    return list(dict.fromkeys(out))


def evaluate_expr(py_expr: str, frame: pd.DataFrame, where: str, na_action: str = "raise") -> np.ndarray:
    """One R expression (translated to Python) evaluated on the rows of ``frame``, shape (n,)."""
    mm = formula_matrix(f"0 + I({py_expr})", frame, where, na_action)
    return np.asarray(mm, dtype=float)[:, 0]


@functools.lru_cache(maxsize=1)
def _intercept_spec():
    """formulaic's model spec of ``1`` (it holds no data: it rebuilds a column of ones anywhere)."""
    return formula_matrix("1", pd.DataFrame(index=range(1)), "1").model_spec


def _term_matrix(expr: str, frame: pd.DataFrame, source: str) -> tuple[np.ndarray, list[str], Any]:
    where = f"random term {source!r}"
    text, labels = parse_rhs(expr, where, list(frame.columns))
    if text.strip() == "1" and not labels:  # (1 | g): the ones column without formulaic's pass
        return np.ones((len(frame), 1)), ["(Intercept)"], _intercept_spec()
    mm = formula_matrix(text, frame, where)
    names = r_labels([_rename(c) for c in mm.columns], labels)
    if not names:
        raise ValueError(f"random term {source!r} has no columns (did you write '(0 | g)'?)")
    return np.asarray(mm, dtype=float), names, mm.model_spec


def level_keys(frame: pd.DataFrame, factors: tuple[str, ...]) -> list[tuple | None]:
    """A value key per row for matching grouping levels across spellings (None where missing).

    Integral numbers, their float spellings and numeric text (308, 308.0, "308") share one key;
    categorical columns use their values. lme4 matches levels by value the same way after R
    turns every spelling into a factor of the same labels.
    """
    return _row_keys([frame[f].astype(object).to_numpy() for f in factors])


def _row_keys(cols: list[np.ndarray]) -> list[tuple | None]:
    return [None if any(_missing(v) for v in row) else tuple(_key(v) for v in row)
            for row in zip(*cols, strict=True)]


def _keys_per_level(frame: pd.DataFrame, factors: tuple[str, ...], codes: np.ndarray, m: int) -> Sequence:
    """level_keys of each level, read from its first row (O(levels), not O(rows))."""
    first = np.full(m, -1)
    first[codes[::-1]] = np.arange(len(codes))[::-1]
    return _LazyKeys([frame[f].to_numpy()[first].astype(object) for f in factors])


class _LazyKeys(Sequence):
    """level_keys of the levels' first-row values, formed on first use (only new-data
    predictions match levels by key, so a fit does not pay for them)."""

    def __init__(self, cols: list[np.ndarray]):
        self._cols: list[np.ndarray] | None = cols
        self._keys: list[tuple | None] = []

    def _all(self) -> list[tuple | None]:
        if self._cols is not None:
            self._keys, self._cols = _row_keys(self._cols), None
        return self._keys

    def __getitem__(self, i):
        return self._all()[i]

    def __len__(self) -> int:
        return len(self._all())

    def __eq__(self, other) -> bool:
        return list(self._all()) == list(other)


def _missing(v) -> bool:
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def _key(v):
    if isinstance(v, bool | np.bool_):
        return ("b", bool(v))
    if isinstance(v, str):
        t = v.strip()
        try:
            v = float(t)
        except ValueError:
            return ("s", t)
    if isinstance(v, int | np.integer):
        return ("n", int(v))
    if isinstance(v, float | np.floating):
        f = float(v)
        return ("n", int(f)) if f.is_integer() else ("n", f)
    return ("s", str(v))


def _z_block(codes: np.ndarray, Xt: np.ndarray, z_start: int, q_total: int) -> sp.coo_matrix:
    n, k = Xt.shape
    rows = np.repeat(np.arange(n), k)
    cols = z_start + (codes[:, None] * k + np.arange(k)[None, :]).ravel()
    return sp.coo_matrix((Xt.ravel(), (rows, cols)), shape=(n, q_total))


def build_design(
    spec: ModelSpec,
    frame: pd.DataFrame,
    weights: np.ndarray | None = None,
    offset: np.ndarray | None = None,
    input_namespace: str = "pandas",
) -> DesignMatrices:
    """Compile a :class:`ModelSpec` on a complete-case pandas frame into :class:`DesignMatrices`.

    ``input_namespace`` records the caller's frame library for the result's tidy output.
    """
    if len(frame) == 0:
        raise ValueError("no rows left to fit: the data are empty after dropping missing values")
    ff = spec.fixed_formula or parse_fixed(spec.fixed, list(frame.columns))
    where = f"formula {spec.formula!r}"
    y, rhs = _fixed_matrices(ff, frame, where)
    response = ff.response
    if ff.cbind is not None:
        y, trials = _cbind_response(ff, frame, where)
        if weights is not None:
            raise ValueError(
                f"{where}: cbind(successes, failures) already gives the trials; drop weights= "
                "(or give proportions with weights= as the trials)"
            )
        weights = trials
    if not np.all(np.isfinite(y)):
        raise ValueError(f"response {response!r} has infinite values; remove or fix those rows")
    X_full = np.asarray(rhs, dtype=float)
    names_full = r_labels([_rename(c) for c in rhs.columns], ff.labels)
    if not np.all(np.isfinite(X_full)):
        bad = [names_full[j] for j in range(X_full.shape[1]) if not np.all(np.isfinite(X_full[:, j]))]
        raise ValueError(
            f"{where}: fixed-effect column(s) {bad} have infinite or undefined values (e.g. log of 0 "
            "or of a negative number); transform or drop those rows"
        )
    if X_full.shape[1] == 0:
        raise ValueError(f"formula {spec.fixed!r} has no fixed-effect columns; use 'y ~ 1' at least")
    kept = _full_rank_columns(X_full)
    dropped = [names_full[j] for j in range(len(names_full)) if j not in kept]
    if dropped:
        warnings.warn(
            f"fixed-effect model matrix is rank deficient so dropping {len(dropped)} column(s): "
            f"{dropped}",
            stacklevel=3,
        )
    X = X_full[:, kept]
    X_names = [names_full[j] for j in kept]
    n = len(y)

    built = []
    for term in spec.random:
        Xt, cols, tspec = _term_matrix(term.expr, frame, term.source)
        levels, codes = group_levels(frame, term.factors)
        built.append((term, Xt, cols, tspec, levels, codes))
    _check_levels(built, n, glmm=spec.family != "gaussian")
    # lme4 order: decreasing number of levels, stable
    order = sorted(range(len(built)), key=lambda i: -len(built[i][4]))
    terms: list[TermBlock] = []
    z_start = theta_start = 0
    for i in order:
        term, Xt, cols, tspec, levels, codes = built[i]
        tb = TermBlock(
            group=term.group, factors=term.factors, expr=term.expr, columns=cols, levels=levels,
            codes=codes, z_start=z_start, theta_start=theta_start, model_spec=tspec,
            keys=_keys_per_level(frame, term.factors, codes, len(levels)),
        )
        terms.append(tb)
        z_start += tb.q
        theta_start += tb.n_theta
    q = z_start
    blocks = [_z_block(tb.codes, built[i][1], tb.z_start, q) for tb, i in zip(terms, order, strict=True)]
    Z = (sp.csc_matrix((n, 0)) if not blocks else sum(blocks[1:], blocks[0])).tocsc()
    if weights is not None:
        weights = np.asarray(weights, dtype=float)
        if not np.all(np.isfinite(weights)) or np.any(weights <= 0):
            raise ValueError("weights must be finite and positive; drop rows with zero weight")
    given_offset = offset is not None
    off = np.zeros(n) if offset is None else np.asarray(offset, dtype=float)
    for py_expr, r_text in ff.offsets:
        off = off + evaluate_expr(py_expr, frame, f"{where}, {r_text}")
    if not np.all(np.isfinite(off)):
        raise ValueError(
            "offset must be finite: it has infinite or undefined values (e.g. log of 0)"
            + (f" in {[r for _, r in ff.offsets]}" if ff.offsets else "")
        )
    layout = None
    if spec.correlation is not None:
        group = correlation_group(spec.correlation, spec.random)
        layout = correlation_layout(spec.correlation, frame, group)
    return DesignMatrices(
        y=y, X=X, X_names=X_names, Z=Z, terms=terms, weights=weights, offset=off,
        response=response, fixed_spec=rhs.model_spec, dropped_columns=dropped,
        correlation=spec.correlation, corr_layout=layout, offset_column=spec.offset_column,
        offset_array=given_offset and spec.offset_column is None, formula_offsets=ff.offsets,
        labels=dict(ff.labels), frame=frame, input_namespace=input_namespace,
    )


def _fixed_matrices(ff: FixedFormula, frame: pd.DataFrame, where: str):
    """(y, formulaic's fixed-effects model matrix). A response that is a numeric column is read
    directly and formulaic builds the right side only (its model spec is the same either way):
    a second materialization for the left side is a quarter of the design's time on small data."""
    lhs_text = ff.formulaic.split("~", 1)[0].strip()
    col = frame[lhs_text] if lhs_text == ff.response and lhs_text in frame.columns else None
    if col is not None and pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
        return col.to_numpy(dtype=float), formula_matrix(ff.rhs, frame, where)
    mm = formula_matrix(ff.formulaic, frame, where)
    if mm.lhs is None or mm.lhs.shape[1] != 1:
        raise ValueError(f"{where} must have exactly one numeric response column")
    return np.asarray(mm.lhs, dtype=float).ravel(), mm.rhs


def _cbind_response(ff: FixedFormula, frame: pd.DataFrame, where: str) -> tuple[np.ndarray, np.ndarray]:
    """``cbind(successes, failures)``: proportions y = s / (s + f) and trials s + f, as R's binomial."""
    s = evaluate_expr(ff.cbind[0], frame, where)
    f = evaluate_expr(ff.cbind[1], frame, where)
    if np.any(s < 0) or np.any(f < 0) or not np.all(np.isfinite(s + f)):
        raise ValueError(f"{where}: cbind(successes, failures) needs finite counts >= 0")
    trials = s + f
    if np.any(trials == 0):
        raise ValueError(
            f"{where}: {int(np.sum(trials == 0))} row(s) have successes + failures = 0 (no trials); "
            "drop those rows"
        )
    return s / trials, trials


def correlation_group(structure, random: tuple[RandomTerm, ...]) -> str | None:
    """The structure's group, defaulting to the model's single grouping factor."""
    if structure.group is not None:
        return structure.group
    factors = {t.factors for t in random}
    if not factors:
        return None
    if len(factors) == 1 and len(next(iter(factors))) == 1:
        return next(iter(factors))[0]
    raise ValueError(
        f"{type(structure).__name__} needs group=...: the model has several grouping factors "
        f"{sorted(':'.join(f) for f in factors)}"
    )


def _check_levels(built: list, n: int, glmm: bool = False) -> None:
    """lme4's ``checkNlevels`` and ``checkZdims`` with their default actions (all "stop").

    Every grouping factor needs at least two levels (``check.nlev.gtr.1``). A linear mixed model
    needs fewer levels than observations (``check.nobs.vs.nlev``) and fewer random effects per
    term than observations (``check.nobs.vs.nRE``): otherwise the term's variance cannot be told
    apart from the residual variance. ``glmer`` has no residual variance to confuse it with and
    allows equality in both (lme4's ``allow.n = TRUE``), so observation-level random effects such
    as ``(1 | obs)``, the usual model of over-dispersed counts, are accepted there.
    """
    for term, _Xt, cols, _tspec, levels, _codes in built:
        name = term.group
        if len(levels) < 2:
            raise ValueError(
                f"grouping factor {name!r} in {term.source!r} has only {len(levels)} level; "
                "a random effect needs at least two groups"
            )
        n_re = len(levels) * len(cols)
        if glmm:  # a factor cannot have more levels than rows, so only nRE can exceed n
            if n_re > n:
                raise ValueError(
                    f"term {term.source!r} has {n_re} random effects for {n} observations; a "
                    "generalized linear mixed model allows at most one per observation (as "
                    "lme4's glmer): simplify the term"
                )
            continue
        if len(levels) >= n:
            raise ValueError(
                f"grouping factor {name!r} in {term.source!r} has {len(levels)} levels for {n} "
                "observations; in a linear mixed model each level needs several observations, "
                "or its variance cannot be told from the residual variance (lme4's lmer refuses "
                "this too; glmer accepts one level per observation)"
            )
        if n_re >= n:
            raise ValueError(
                f"term {term.source!r} has {n_re} random effects for {n} "
                "observations: the variance parameters are unidentifiable; simplify the term"
            )
