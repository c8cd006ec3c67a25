"""The fixed-effect terms of a fit and the hypothesis matrices of lmerTest's ANOVA tables.

Each model term (``A``, ``B``, ``A:B``, ``x``) owns a block of columns of X; the ANOVA tables
test, per term, a hypothesis Lβ = 0 whose rows L are built as lmerTest builds them
(Kuznetsova, Brockhoff & Christensen 2017, *J. Stat. Softw.* 82(13); SAS's "four types of
estimable functions"):

- **type I** (sequential): the rows of the term's columns in the normalised Doolittle
  (LU) factor Uᵀ of X'X — each term adjusted for the terms before it;
- **type II**: a term contained in no other term is tested on its own columns (marginal);
  a term contained in others gets the Doolittle rows of X'X with its columns ordered
  [unrelated terms, the term, the terms containing it];
- **type III**: the contrasts of the term in the full (over-parameterised, all-levels) cell
  coding, orthogonalised against the terms containing it, expressed in treatment coding and
  mapped onto the coding the model uses — so the hypotheses do not depend on the contrasts.

*Containment* (SAS's definition, as lmerTest): F1 is contained in F2 when F2 has every
variable of F1 and more, and both have the same continuous covariates. car's type II Wald
tests use the looser *relatives*: every variable of F1 is in F2.

Variables are formulaic's factors of the fitted model spec; a categorical variable's values
are its level codes, a numeric one's its model-matrix column(s). As R, a variable counts as a
continuous covariate only when it is numeric with a single column (``poly(x, 2)`` is not).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product

import numpy as np

from ..data.design import formula_matrix
from ..model.rformula import r_labels

__all__ = ["FixedTerms", "fixed_terms", "doolittle_rows", "zapsmall"]


@dataclass
class _Variable:
    expr: str
    categorical: bool
    values: np.ndarray  # level codes (n,) for a factor, columns (n, c) otherwise

    @property
    def size(self) -> int:
        return int(self.values.max()) + 1 if self.categorical else self.values.shape[1]

    @property
    def covariate(self) -> bool:
        """R's dataClass "numeric": a numeric variable of one column."""
        return not self.categorical and self.values.shape[1] == 1

    def column(self, j: int) -> np.ndarray:
        return (self.values == j).astype(float) if self.categorical else self.values[:, j]


@dataclass
class _Term:
    label: str  # R's spelling
    variables: tuple[str, ...]  # formulaic expressions, in the term's order
    columns: np.ndarray  # indices into X


@dataclass
class FixedTerms:
    """X, its terms (R labels, variables, columns) and the variables' values on the fitted rows."""

    X: np.ndarray
    intercept: bool
    terms: list[_Term]
    variables: dict[str, _Variable]

    @property
    def labels(self) -> list[str]:
        return [t.label for t in self.terms]

    def term(self, label: str) -> _Term:
        return next(t for t in self.terms if t.label == label)

    def _varsets(self) -> list[set[str]]:
        return [set(t.variables) for t in self.terms]

    def containment(self) -> dict[str, list[str]]:
        """Term → the terms that contain it (lmerTest's ``containment``)."""
        sets = self._varsets()
        cov = [{v for v in s if self.variables[v].covariate} for s in sets]
        return {
            t.label: [u.label for j, u in enumerate(self.terms) if sets[i] < sets[j] and cov[i] == cov[j]]
            for i, t in enumerate(self.terms)
        }

    def relatives(self) -> dict[str, list[str]]:
        """Term → the other terms having all its variables (car's ``relatives``)."""
        sets = self._varsets()
        return {
            t.label: [u.label for j, u in enumerate(self.terms) if j != i and sets[i] <= sets[j]]
            for i, t in enumerate(self.terms)
        }

    def drop_scope(self) -> list[str]:
        """Terms whose variables no other term has all of (R's ``drop.scope``): the droppable ones."""
        sets = self._varsets()
        return [t.label for i, t in enumerate(self.terms)
                if not any(j != i and sets[i] <= sets[j] for j in range(len(sets)))]

    # ---- hypothesis matrices ---------------------------------------------------------------
    def contrasts(self, type: int) -> dict[str, np.ndarray]:
        """Term → L (rows: the hypothesis on β) for a type I, II or III table."""
        p = self.X.shape[1]
        if type == 1 or p <= 1 or len(self.terms) <= 1:
            return self._type1()
        if type == 2:
            return self._type2()
        return self._type3()

    def marginal(self) -> dict[str, np.ndarray]:
        """Term → the identity rows of its own columns: are all its coefficients zero?"""
        eye = np.eye(self.X.shape[1])
        return {t.label: eye[t.columns] for t in self.terms}

    def _type1(self) -> dict[str, np.ndarray]:
        U = doolittle_rows(self.X.T @ self.X)
        return {t.label: U[t.columns] for t in self.terms}

    def _type2(self) -> dict[str, np.ndarray]:
        contained = self.containment()
        eye = np.eye(self.X.shape[1])
        out = {}
        for t in self.terms:
            if not contained[t.label]:
                out[t.label] = eye[t.columns]
                continue
            mine = list(t.columns)
            above = [c for u in contained[t.label] for c in self.term(u).columns]
            rest = [c for c in range(self.X.shape[1]) if c not in set(mine) | set(above)]
            order = rest + mine + above
            Xo = self.X[:, order]
            U = doolittle_rows(Xo.T @ Xo)
            L = np.zeros((len(mine), self.X.shape[1]))
            L[:, order] = U[len(rest) : len(rest) + len(mine)]
            out[t.label] = L
        return out

    def _type3(self) -> dict[str, np.ndarray]:
        full, full_keys, treat_keys, treat_cols = self._cell_codings()
        index = {k: i for i, k in enumerate(full_keys)}
        rows = [index[k] for k in treat_keys]
        X_treat = full[:, rows]
        # full coding in terms of the treatment coding: rdX = X_treat G
        G = zapsmall(np.linalg.lstsq(X_treat, full, rcond=None)[0])
        Lfull = G.T  # one row per full-coding column, one column per treatment coefficient
        contained = self.containment()
        by_degree = sorted(self.terms, key=lambda t: -len(t.variables))  # stable, as R's order()
        for t in by_degree:
            if contained[t.label]:
                mine = treat_cols[t.label]
                above = [c for u in contained[t.label] for c in treat_cols[u]]
                A, Y = Lfull[:, above], Lfull[:, mine]
                coef = np.linalg.lstsq(A, Y, rcond=None)[0]
                Lfull[:, mine] = zapsmall(Y - A @ coef)
        Lt = Lfull[rows]  # rows: the treatment coefficients
        # treatment coefficients in terms of the model's own: X_treat M = X
        M = zapsmall(np.linalg.lstsq(X_treat, self.X, rcond=None)[0])
        out = {}
        for t in self.terms:
            L = Lt[:, treat_cols[t.label]].T
            L = L[np.abs(L).sum(axis=1) > 1e-8]
            out[t.label] = L @ M
        return out

    def _cell_codings(self):
        """The all-levels cell coding (lmerTest's ``get_rdX``) and, as a subset of its columns,
        the treatment coding R would build: in each term a factor drops its first level when the
        term without it is also in the model (the intercept for a main effect)."""
        n = self.X.shape[0]
        cols, keys, treat_keys = [], [], []
        treat_cols: dict[str, list[int]] = {}
        present = {frozenset(t.variables) for t in self.terms}
        if self.intercept:
            cols.append(np.ones(n))
            keys.append(("(Intercept)",))
            treat_keys.append(("(Intercept)",))
            present.add(frozenset())
        for t in self.terms:
            vs = [self.variables[v] for v in t.variables]
            reduced = [v.categorical and frozenset(t.variables) - {v.expr} in present for v in vs]
            treat_cols[t.label] = []
            # first variable varies fastest, as R's model.matrix
            for combo in product(*[range(v.size) for v in reversed(vs)]):
                combo = combo[::-1]
                col = np.ones(n)
                for v, j in zip(vs, combo, strict=True):
                    col = col * v.column(j)
                cols.append(col)
                keys.append((t.label, combo))
                if not any(r and j == 0 for r, j in zip(reduced, combo, strict=True)):
                    treat_cols[t.label].append(len(treat_keys))
                    treat_keys.append((t.label, combo))
        full = np.column_stack(cols) if cols else np.zeros((n, 0))
        X_treat = full[:, [keys.index(k) for k in treat_keys]]
        if np.linalg.matrix_rank(X_treat) != self.X.shape[1] or X_treat.shape[1] != self.X.shape[1]:
            raise ValueError(
                "type III contrasts: the model's terms do not give a full-rank treatment coding of "
                "the same size as X (a term without its margins?); use type=1 or type=2"
            )
        return full, keys, treat_keys, treat_cols


def fixed_terms(result) -> FixedTerms:
    """The :class:`FixedTerms` of a fitted model (needs its row-level data)."""
    d = result.design
    if d.gram is not None:
        return _crossproduct_terms(result)
    if d.n_rows is not None or getattr(result, "model_frame", None) is None:
        raise ValueError(
            "F tables need the row-level data of the fit; this model was fitted from a lazy "
            "frame's cross-products: collect the frame and fit it eagerly"
        )
    if d.dropped_columns:
        raise ValueError(
            f"the fixed-effects design is rank deficient (columns {d.dropped_columns} were dropped), "
            "so the terms' hypotheses are not well defined: remove the aliased term(s) from the formula"
        )
    spec = d.fixed_spec
    frame = result.model_frame
    state = spec.encoder_state
    variables: dict[str, _Variable] = {}
    terms: list[_Term] = []
    intercept = False
    for term, sl in spec.term_slices.items():
        names = [str(f.expr) for f in term.factors]
        if names == ["1"]:
            intercept = True
            continue
        for v in names:
            if v not in variables:
                variables[v] = _evaluate(v, frame, state.get(v))
        label = r_labels([str(term)], d.labels)[0]
        terms.append(_Term(label, tuple(names), np.arange(sl.start, sl.stop)))
    return FixedTerms(np.asarray(d.X, dtype=float), intercept, terms, variables)


@dataclass
class _CrossProductTerms(FixedTerms):
    """The terms of a fit from a lazy frame, read from its cross-products (module docstring)."""

    weighted: bool = False

    def contrasts(self, type: int) -> dict[str, np.ndarray]:
        if type == 1 and len(self.terms) > 1 and self.weighted:
            raise ValueError(
                "the type I table of a weighted fit from a lazy frame needs the unweighted X'X, which "
                "was not collected (only X'WX): use type=2 or 3 (here equal), or collect the lazy frame"
            )
        if type == 1 or len(self.terms) <= 1:
            return self._type1()
        return self.marginal()  # no term contains another: types II and III test its coefficients


def _crossproduct_terms(result) -> FixedTerms:
    """A lazy fit's fixed terms: each is a plain column, numeric or a factor in treatment coding
    (``c[T.level]`` columns), so no term contains another and the type II and III hypotheses are
    each term's own coefficients; type I's Doolittle rows need X'X, which the cross-products hold
    (as X'WX: unweighted fits only). X is stood in for by a p × p R with R'R = X'X."""
    d = result.design
    cols: dict[str, list[int]] = {}
    categorical: dict[str, bool] = {}
    intercept = False
    for j, name in enumerate(d.X_names):
        if name == "(Intercept)":
            intercept = True
            continue
        var = name.split("[T.", 1)[0] if name.endswith("]") and "[T." in name else name
        cols.setdefault(var, []).append(j)
        categorical[var] = var != name
    terms = [_Term(v, (v,), np.asarray(c)) for v, c in cols.items()]
    variables = {v: _Variable(v, categorical[v], np.zeros(0, dtype=np.int64) if categorical[v]
                              else np.zeros((0, 1))) for v in cols}
    p = d.p
    w, V = np.linalg.eigh(np.asarray(d.gram[2], dtype=float)[:p, :p])
    R = (V * np.sqrt(np.clip(w, 0.0, None))).T
    return _CrossProductTerms(R, intercept, terms, variables, weighted=d.weights is not None
                              or bool(result.spec.has_weights))


def _evaluate(expr: str, frame, state) -> _Variable:
    mm = np.asarray(formula_matrix(f"0 + {expr}", frame, f"term {expr!r}"), dtype=float)
    kind = getattr(state[0], "value", None) if state is not None else None
    if kind == "categorical":
        if not np.allclose(mm.sum(axis=1), 1.0):
            raise ValueError(f"cannot read the levels of the factor {expr!r}")
        return _Variable(expr, True, mm.argmax(axis=1))
    return _Variable(expr, False, mm)


def doolittle_rows(A: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Uᵀ-normalised rows of the Doolittle factorisation A = L U: the unit-diagonal upper factor
    D⁻¹U, with entries below ``eps`` in magnitude set to 0 (lmerTest's ``doolittle``)."""
    n = A.shape[0]
    L = np.eye(n)
    U = np.zeros((n, n))
    for i in range(n):
        U[i, :] = A[i, :] - L[i, :i] @ U[:i, :]
        if i + 1 < n:
            below = A[i + 1 :, i] - L[i + 1 :, :i] @ U[:i, i]
            L[i + 1 :, i] = 0.0 if abs(U[i, i]) < eps else below / U[i, i]
    L[np.abs(L) < eps] = 0.0
    return L.T


def zapsmall(x: np.ndarray, digits: int = 7) -> np.ndarray:
    """R's ``zapsmall``: round to ``digits`` significant digits of the largest entry."""
    x = np.asarray(x, dtype=float)
    mx = np.max(np.abs(x)) if x.size else 0.0
    if mx == 0 or not np.isfinite(mx):
        return x
    return np.round(x, max(0, digits - int(np.ceil(np.log10(mx)))))
