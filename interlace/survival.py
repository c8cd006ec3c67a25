"""``interlace.coxme``: read a ``Surv(time, status) ~ …`` formula as coxme does and fit it.

The left side is ``Surv(time, status)`` (right-censored data; the arguments may be R
expressions such as ``Surv(days / 365.25, status == 2)``). ``status`` follows R's ``Surv``: 0/1,
``FALSE``/``TRUE``, or 1/2 with 2 the event. The right side is an R formula (read by
:mod:`interlace.model.rformula`) plus

- ``strata(a)``, ``strata(a, b)``, several ``strata()`` terms, ``strata(a):strata(b)``: one
  baseline hazard per combination of their values (survival::coxph's meaning; coxme 2.2-22 gives
  another answer for ``strata(a):strata(b)``, with a warning). ``x:strata(s)`` is a covariate
  effect per stratum (the stratum read as a factor), as in coxph;
- random terms in lme4's syntax with coxme's meaning: ``(1 | g)``, ``(1 | a/b)``, several terms,
  correlated random slopes ``(1 + x | g)`` or ``(0 + x | g)`` on numeric x. coxme reads
  ``(x | g)`` as a slope *without* intercept where lme4 adds one, so that spelling is refused;
- ``offset(expr)``.

coxph's other specials (``cluster``, ``frailty``, ``pspline``, ``ridge``, ``tt``) are refused by
name, as is anything R itself would not evaluate.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from .backends.reml.coxme import CoxTerm, fit_coxme, sparse_levels
from .data.build import read_formula
from .data.design import build_design, evaluate_expr, group_levels
from .data.frames import column_names, model_frame
from .linalg.threads import fit_blas_threads
from .model.formula import RandomTerm, model_terms
from .model.rformula import FormulaError, Node, deparse, names_in, parse, translate_expr
from .model.spec import ModelSpec
from .results.survival import SurvivalResult

__all__ = ["fit_coxme_formula"]

_REFUSED = {
    "cluster": "coxme has no cluster() term; model the clustering with a random term, e.g. (1 | g)",
    "frailty": "write the frailty as a random term, e.g. (1 | g) (coxme's frailties are Gaussian)",
    "frailty.gamma": "write the frailty as a random term, e.g. (1 | g) (coxme's frailties are Gaussian)",
    "frailty.gaussian": "write the frailty as a random term, e.g. (1 | g)",
    "frailty.t": "write the frailty as a random term, e.g. (1 | g) (coxme's frailties are Gaussian)",
    "pspline": "penalized terms are not allowed in coxme (R refuses them too)",
    "ridge": "penalized terms are not allowed in coxme (R refuses them too)",
    "tt": "time-transform tt() terms are not supported",
    "Surv": "Surv() belongs on the left of '~'",
}


def _summands(node: Node) -> list[Node]:
    if node.kind == "bin" and node.value == "+":
        return _summands(node.args[0]) + _summands(node.args[1])
    if node.kind == "un" and node.value == "+":
        return _summands(node.args[0])
    return [node]


def _calls(node: Node) -> list[Node]:
    out = [node] if node.kind == "call" else []
    for a in node.args:
        out += _calls(a)
    for _, a in node.kwargs:
        out += _calls(a)
    return out


def _strata_columns(node: Node, where: str) -> list[str] | None:
    """Columns of a term made only of strata() calls joined by ':', else None."""
    if node.kind == "paren":
        return _strata_columns(node.args[0], where)
    if node.kind == "bin" and node.value == ":":
        a, b = _strata_columns(node.args[0], where), _strata_columns(node.args[1], where)
        return None if a is None or b is None else a + b
    if node.kind == "call" and node.value == "strata":
        if node.kwargs:
            raise FormulaError(
                f"{where}: strata() takes column names only; {[k for k, _ in node.kwargs]} are not supported"
            )
        if not node.args or any(a.kind != "name" for a in node.args):
            raise FormulaError(f"{where}: strata() takes column names, e.g. strata(sex) or strata(a, b); "
                               f"got {deparse(node)!r} (compute the column before fitting)")
        return [a.value for a in node.args]
    return None


def _as_factor(node: Node, where: str) -> Node:
    """``x:strata(s)``: the stratum inside an interaction is the factor s, as in coxph."""
    if node.kind == "call" and node.value == "strata":
        if len(node.args) != 1 or node.kwargs or node.args[0].kind != "name":
            raise FormulaError(
                f"{where}: inside an interaction strata() takes one column, e.g. x:strata(s); "
                f"got {deparse(node)!r}"
            )
        return replace(node, value="factor")
    return replace(node, args=tuple(_as_factor(a, where) for a in node.args),
                   kwargs=tuple((k, _as_factor(a, where)) for k, a in node.kwargs))


def _surv(lhs_text: str, formula: str) -> tuple[Node, Node]:
    where = f"formula {formula!r}"
    msg = f"coxme formulas look like 'Surv(time, status) ~ x + (1 | g)', got {formula!r}"
    try:
        lhs = parse(lhs_text, where)
    except FormulaError:
        raise ValueError(msg) from None
    if lhs.kind != "call" or lhs.value != "Surv":
        raise ValueError(msg)
    named = dict(lhs.kwargs)
    extra = sorted(set(named) - {"time", "event"})
    if extra:
        raise ValueError(f"{where}: Surv() arguments {extra} are not supported; write Surv(time, status)")
    args = list(lhs.args)
    if len(args) + len(named) == 3:
        raise ValueError(f"{where}: counting-process data Surv(start, stop, event) are not supported; "
                         "coxme here fits right-censored data Surv(time, status)")
    time = named.get("time") or (args.pop(0) if args else None)
    event = named.get("event") or (args.pop(0) if args else None)
    if time is None or event is None or args:
        raise ValueError(f"{where}: Surv() needs a time and a status: Surv(time, status)")
    return time, event


def _check_random(terms: list[RandomTerm]) -> None:
    """coxme's reading of random terms: refuse what it reads differently from lme4."""
    if not terms:
        raise ValueError(
            "coxme needs a random term: groups='g', random=['(1 | g)'] or '+ (1 | g)' in the formula"
        )
    seen = set()
    for t in terms:
        if "||" in t.source:
            raise ValueError(f"random term {t.source!r}: coxme has no '||'; write (1 | g) + (0 + x | g)")
        key = (t.factors, t.expr.replace(" ", ""))
        if key in seen:
            raise ValueError(f"random term {t.source!r} is given twice")
        seen.add(key)
        parts = _summands(parse(t.expr, f"random term {t.source!r}"))
        explicit = any(p.kind == "num" for p in parts) or any(
            p.kind == "bin" and p.value == "-" or p.kind == "un" and p.value == "-" for p in parts)
        if not explicit:
            raise ValueError(
                f"random term {t.source!r}: coxme reads ({t.expr} | {t.group}) as a slope without a "
                f"random intercept (lme4 adds one); write (1 + {t.expr} | {t.group}) or "
                f"(0 + {t.expr} | {t.group})"
            )


def fit_coxme_formula(formula: str, data, groups=None, random=None, ties: str = "efron",
                      sparse: tuple[int, float] | None = (50, 0.02), sampler: dict | None = None):
    """The work of :func:`interlace.coxme` (see there), with BLAS on one thread; ``sampler``
    (the PyMC sampler's arguments) samples the posterior on the same design instead."""
    if sampler is not None:
        return _fit(formula, data, groups, random, ties, sparse, sampler)
    with fit_blas_threads():
        return _fit(formula, data, groups, random, ties, sparse)


def _fit(formula, data, groups, random, ties, sparse, sampler=None) -> SurvivalResult:

    if ties not in ("efron", "breslow"):
        raise ValueError(f"ties must be 'efron' or 'breslow' (coxme's choices), got {ties!r}")
    if sparse is not None:
        ok = isinstance(sparse, tuple | list) and len(sparse) == 2
        if not ok or not (float(sparse[0]) >= 1 and 0 <= float(sparse[1]) <= 1):
            raise ValueError(
                f"sparse must be (levels, fraction) such as coxme's (50, 0.02), or None; got {sparse!r}"
            )
        sparse = (int(sparse[0]), float(sparse[1]))
    fixed, terms = model_terms(formula, groups, random)
    where = f"formula {formula!r}"
    lhs_text, rhs_text = fixed.split("~", 1)
    time_node, event_node = _surv(lhs_text, formula)
    kept, strata = [], []
    for term in _summands(parse(rhs_text if rhs_text.strip() else "1", where)):
        for call in _calls(term):
            if call.value in _REFUSED:
                raise ValueError(f"{where}: {deparse(call)!r}: {_REFUSED[call.value]}")
        cols = _strata_columns(term, where)
        if cols is not None:
            strata += [c for c in cols if c not in strata]
        else:
            kept.append(_as_factor(term, where))
    fixed_text = f"{deparse(time_node)} ~ {' + '.join(deparse(k) for k in kept) or '1'} + 1"
    columns = column_names(data)
    status_vars = sorted(names_in(event_node))
    ff, used = read_formula(fixed_text, terms, columns, exclude=tuple(status_vars + strata), where=where)
    missing = [c for c in status_vars + strata if c not in columns]
    if missing:
        raise KeyError(f"column(s) {missing} used in the model are not in data; available: {columns[:20]}")
    _check_random(terms)
    used = [c for c in columns if c in set(used) | set(status_vars) | set(strata)]
    mf = model_frame(data, used)
    frame = mf.data
    if len(frame) == 0:
        raise ValueError("no rows left to fit: the data are empty after dropping missing values")
    for t in terms:
        for v in names_in(parse(t.expr)):
            if v in frame.columns and not (pd.api.types.is_numeric_dtype(frame[v]) or
                                           pd.api.types.is_bool_dtype(frame[v])):
                raise ValueError(f"random term {t.source!r}: coxme random slopes need a numeric column; "
                                 f"{v!r} is {frame[v].dtype} (code it as 0/1 columns)")
    status = _status(event_node, frame, columns, where)
    spec = ModelSpec(formula=formula, fixed=fixed_text, random=tuple(terms), family="cox",
                     fixed_formula=ff)
    design = build_design(spec, frame)
    time = design.y
    if np.any(time < 0):
        raise ValueError(f"{where}: survival times {deparse(time_node)!r} must be >= 0; some are negative")
    keep = [j for j, c in enumerate(design.X_names) if c != "(Intercept)"]
    X, X_names = design.X[:, keep], [design.X_names[j] for j in keep]
    cterms = [CoxTerm(k=t.k, m=t.m, z_start=t.z_start) for t in design.terms]
    sparse_cols = _sparse_columns(design, terms, sparse, len(frame))
    strata_codes = group_levels(frame, tuple(strata))[1] if strata else None
    if sampler is not None:
        from .backends.pymc import require_pymc

        require_pymc('coxme(backend="pymc")')
        from .backends.pymc.cox import fit_coxme_pymc

        return fit_coxme_pymc(formula, design, keep, time, status, strata_codes, ties, mf.n_dropped,
                              **sampler)
    offset = design.offset if np.any(design.offset != 0) else None
    est = fit_coxme(X, design.Z, cterms, time, status, strata=strata_codes, offset=offset, ties=ties,
                    sparse_cols=sparse_cols)
    out_terms = []
    for t, cov in zip(design.terms, est.covariances, strict=True):
        out_terms.append({"group": t.group, "columns": list(t.columns), "levels": list(t.levels),
                          "covariance": cov, "b": est.b[t.z_start : t.z_start + t.q].reshape(t.m, t.k)})
    return SurvivalResult(
        formula=formula, X_names=X_names, beta=est.beta, cov=est.cov_beta, terms=out_terms,
        loglik=est.loglik_integrated, loglik_null=est.loglik_null, loglik_penalized=est.loglik_penalized,
        nobs=len(frame), n_events=int(status.sum()), n_dropped=mf.n_dropped, strata=tuple(strata),
        n_strata=0 if strata_codes is None else int(strata_codes.max()) + 1, ties=ties,
        n_sparse=0 if sparse_cols is None else int(sparse_cols.size),
        converged=est.converged, optimizer_info={"n_evals": est.n_evaluations, "n_newton": est.n_newton,
                                                 "message": est.message},
        design=design, b=est.b, x_columns=keep,
    )


def _status(event: Node, frame: pd.DataFrame, columns: list[str], where: str) -> np.ndarray:
    """R's Surv status: logical, 0/1, or 1/2 with 2 the event."""
    label = deparse(event)
    if event.kind == "name" and event.value in frame.columns:
        col = frame[event.value]
        if not (pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col)):
            raise TypeError(f"{where}: status column {label!r} must be numeric or boolean, not {col.dtype}")
        s = col.to_numpy(dtype=float)
    else:
        s = evaluate_expr(translate_expr(label, where, columns), frame, f"{where}, status {label!r}")
    if s.size and np.nanmax(s) == 2:
        s = s - 1.0  # R's Surv: 1 = censored, 2 = event
    if not np.all(np.isin(s, (0.0, 1.0))):
        raise ValueError(
            f"{where}: status {label!r} must be 0 (censored) or 1 (event) — or R's 1/2 coding, or "
            "TRUE/FALSE; other values are not allowed"
        )
    if s.sum() == 0:
        raise ValueError(f"{where}: status {label!r} has no events")
    return s


def _sparse_columns(design, terms: list[RandomTerm], sparse, n: int) -> np.ndarray | None:
    """Z columns under coxme's sparse approximation: intercepts of the first written term (the
    innermost factor of a nested a/b term) whose factor passes :func:`sparse_levels`."""
    if sparse is None:
        return None
    first = [t for t in terms if t.source == terms[0].source]
    nested = len({t.factors for t in first}) > 1
    cand = max(first, key=lambda t: len(t.factors))
    for tb in design.terms:
        if tb.factors == cand.factors and tb.expr == cand.expr and "(Intercept)" in tb.columns:
            j = tb.columns.index("(Intercept)")
            mask = sparse_levels(np.bincount(tb.codes, minlength=tb.m), n, sparse, strict=nested)
            return tb.z_start + np.flatnonzero(mask) * tb.k + j
    return None
