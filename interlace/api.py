"""Public entry points: validate input, build the spec and design, dispatch to a backend."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
from formulaic import Formula

from .correlation import AR1, CompoundSymmetry
from .design import build_design
from .formula import groups_to_terms, parse_random, split_formula
from .frames import column_names, model_frame
from .result import CrossedLMEResult
from .spec import BACKENDS, DF_METHODS, METHODS, OPTIMIZERS, ModelSpec

__all__ = ["fit"]

_IDENT = re.compile(r"`([^`]+)`|([A-Za-z_.][A-Za-z0-9_.]*)")
_CONTEXT_NAMES = {"np", "numpy", "pd", "math", "C", "I", "Q"}


def _choice(name: str, value, allowed: tuple[str, ...], upper: bool = False) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be one of {list(allowed)}, got {value!r}")
    v = value.upper() if upper else value.lower().replace("_", "-")
    if v not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")
    return v


def _row_array(name: str, value, data, columns: list[str]) -> np.ndarray | None:
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


def _used_columns(texts: list[str], columns: list[str]) -> list[str]:
    """Data columns named anywhere in the formula texts, in data order."""
    names: set[str] = set()
    for text in texts:
        for m in _IDENT.finditer(text):
            names.add(m.group(1) or m.group(2))
    return [c for c in columns if c in names]


def _check_variables(fixed: str, random_terms, columns: list[str]) -> None:
    try:
        required = set(Formula(fixed).required_variables)
    except Exception as ex:
        raise ValueError(f"cannot parse formula {fixed!r}: {ex}") from ex
    for t in random_terms:
        required |= set(Formula(t.expr).required_variables)
        required |= set(t.factors)
    missing = sorted(v for v in required - _CONTEXT_NAMES if v not in columns)
    if missing:
        raise KeyError(f"column(s) {missing} used in the model are not in data; available: {columns[:20]}")


def _check_response(fixed: str, frame: pd.DataFrame) -> None:
    lhs = fixed.split("~", 1)[0].strip().strip("`")
    if lhs in frame.columns:
        col = frame[lhs]
        if not (pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col)):
            raise TypeError(
                f"response {lhs!r} is not numeric (dtype {col.dtype}); a linear mixed model "
                "needs a numeric response — convert it, or use glmer/clmm for other outcomes"
            )


def _prepare_rows(data, fixed: str, terms, weights, offset, correlation=None):
    """Check the columns, drop incomplete rows, and align weights/offset with the kept rows.

    Returns the model frame and ``{"weights": array | None, "offset": array | None}``.
    """
    columns = column_names(data)
    _check_variables(fixed, terms, columns)
    used = _used_columns([fixed] + [t.expr for t in terms] + [t.group for t in terms], columns)
    if correlation is not None:
        missing = [c for c in correlation.columns() if c not in columns]
        if missing:
            raise KeyError(f"correlation column(s) {missing} are not in data; available: {columns[:20]}")
        used += correlation.columns()
    arrays = {}
    for name, value in (("weights", weights), ("offset", offset)):
        if isinstance(value, str):
            _row_array(name, value, data, columns)
            used.append(value)
        else:
            arrays[name] = _row_array(name, value, data, columns)
    mf = model_frame(data, list(dict.fromkeys(used)), arrays)
    _check_response(fixed, mf.data)
    rows = {
        name: (mf.data[value].to_numpy(dtype=float) if isinstance(value, str) else
               (None if arrays.get(name) is None else arrays[name][mf.keep]))
        for name, value in (("weights", weights), ("offset", offset))
    }
    return mf, rows


def fit(
    formula: str,
    data,
    groups: str | list[str] | None = None,
    random: list[str] | None = None,
    method: str = "REML",
    optimizer: str = "lbfgsb",
    weights=None,
    offset=None,
    correlation=None,
    df_method: str = "satterthwaite",
    theta0=None,
    backend: str = "reml",
    *,
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 4,
    cores: int | None = None,
    random_seed: int | None = None,
    progressbar: bool = True,
    sampler: str = "auto",
    priors: dict | None = None,
    marginalize="auto",
    target_accept: float = 0.8,
    verbose: bool = False,
) -> CrossedLMEResult:
    """Fit a linear mixed model y = Xβ + Zb + ε, b ~ N(0, σ²ΛΛ'), ε ~ N(0, σ²W⁻¹).

    ``formula`` is the fixed part (``"y ~ x"``; lme4 random terms written inside it are also
    accepted); ``random`` takes lme4 terms such as ``"(1 + x | g)"`` and ``groups`` is shorthand
    for ``(1 | g)`` per column. ``method`` is ``"REML"`` or ``"ML"``; ``df_method`` picks the
    denominator df of the t-tests. Rows with missing values in used columns are dropped.
    ``backend="pymc"`` samples the same model with NUTS instead (see ``docs/pymc.md``); the
    keyword-only arguments ``draws`` … ``target_accept`` configure that sampler. ``verbose=True``
    reports each REML/ML deviance evaluation on standard error.
    """
    method = _choice("method", method, METHODS, upper=True)
    optimizer = _choice("optimizer", optimizer, OPTIMIZERS)
    df_method = _choice("df_method", df_method, DF_METHODS)
    backend = _choice("backend", backend, BACKENDS)
    from .lazy import is_lazy

    if is_lazy(data):
        return _fit_lazy(formula, data, groups, random, method, optimizer, weights, offset, correlation,
                         df_method, theta0, backend)
    if df_method == "kenward-roger" and method != "REML":
        raise ValueError(
            "df_method='kenward-roger' needs a REML fit (as pbkrtest): use method='REML', "
            "or df_method='satterthwaite' with ML"
        )
    if correlation is not None and not isinstance(correlation, AR1 | CompoundSymmetry):
        raise TypeError(
            f"correlation must be interlace.AR1(...) or interlace.CompoundSymmetry(...), got {correlation!r}"
        )
    if correlation is not None and df_method == "kenward-roger":
        raise ValueError("df_method='kenward-roger' is not available with correlation=; use 'satterthwaite'")

    fixed, inline = split_formula(formula)
    if random is not None and not isinstance(random, str | list | tuple):
        raise TypeError(f"random= must be a list of strings like ['(1 + x | g)'], got {random!r}")
    random_specs = [random] if isinstance(random, str) else list(random or [])
    terms = parse_random(groups_to_terms(groups) + random_specs + inline)
    if not terms and correlation is None:
        raise ValueError(
            "no random-effects terms: give groups='g' or random=['(1 | g)'] (for a model "
            "without random effects use ordinary least squares)"
        )
    mf, row_values = _prepare_rows(data, fixed, terms, weights, offset, correlation)
    frame = mf.data
    spec = ModelSpec(
        formula=formula, fixed=fixed, random=tuple(terms), method=method, optimizer=optimizer,
        df_method=df_method, has_weights=weights is not None, has_offset=offset is not None,
        theta0=None if theta0 is None else tuple(np.asarray(theta0, dtype=float).ravel()),
        correlation=correlation, options={"verbose": bool(verbose)},
    )
    design = build_design(spec, frame, row_values["weights"], row_values["offset"])
    if backend == "pymc":
        from .backends import pymc as pymc_backend

        result = pymc_backend.fit(
            spec, design, n_dropped=mf.n_dropped, draws=draws, tune=tune, chains=chains, cores=cores,
            random_seed=random_seed, progressbar=progressbar, sampler=sampler, priors=priors,
            marginalize=marginalize, target_accept=target_accept,
        )
    else:
        from .backends import reml

        result = reml.fit(spec, design, n_dropped=mf.n_dropped)
    result.input_namespace = mf.native_namespace
    result.model_frame = frame
    return result


def glmer(
    formula: str,
    data,
    family="binomial",
    groups: str | list[str] | None = None,
    random: list[str] | None = None,
    weights=None,
    offset=None,
    nAGQ: int = 1,  # noqa: N803 - lme4's spelling
    optimizer: str = "lbfgsb",
    backend: str = "reml",
    link: str | None = None,
    *,
    fast: bool = False,
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 4,
    cores: int | None = None,
    random_seed: int | None = None,
    progressbar: bool = True,
    sampler: str = "auto",
    priors: dict | None = None,
    target_accept: float = 0.8,
):
    """Fit a generalized linear mixed model by the Laplace approximation (lme4's ``glmer``).

    g(E[y | b]) = Xβ + Zb + offset, b ~ N(0, ΛΛ'). ``family`` is ``"binomial"`` (0/1, or
    proportions with ``weights`` = trials), ``"poisson"``, ``"Gamma"`` or ``"negative_binomial"``
    (NB2, θ estimated as lme4's ``glmer.nb``), with its canonical link unless ``link=`` says
    otherwise. ``nAGQ=1`` is the Laplace approximation, ``nAGQ=0`` the faster first stage only,
    ``nAGQ>1`` adaptive Gauss–Hermite (one scalar random-effects term; not for Gamma).
    ``fast=True`` (MixedModels.jl's option) keeps β inside PIRLS and optimizes θ only: with
    ``nAGQ=1`` the same fit as ``nAGQ=0``, with ``nAGQ>1`` quadrature at those modes.
    ``optimizer`` ("lbfgsb", with the analytic gradient where there is one, or lme4's "bobyqa")
    runs the first stage; the second is Newton's method (docs/glmer.md).
    ``backend="pymc"`` samples the same model with NUTS (docs/glmer.md); the keyword-only
    arguments ``draws`` … ``target_accept`` configure the sampler as in :func:`fit`.
    """
    from .backends.reml.glmm import fit_glmm
    from .backends.reml.lmm import blas_threads
    from .families import get_family
    from .glmm_result import GLMMResult
    from .result import FitInfo

    fam = get_family(family, link)
    optimizer = _choice("optimizer", optimizer, OPTIMIZERS)
    backend = _choice("backend", backend, BACKENDS)
    if not isinstance(nAGQ, int | np.integer) or nAGQ < 0:
        raise ValueError(f"nAGQ must be a non-negative integer, got {nAGQ!r}")
    if not isinstance(fast, bool | np.bool_):
        raise TypeError(f"fast must be True or False, got {fast!r}")
    fixed, inline = split_formula(formula)
    if random is not None and not isinstance(random, str | list | tuple):
        raise TypeError(f"random= must be a list of strings like ['(1 + x | g)'], got {random!r}")
    random_specs = [random] if isinstance(random, str) else list(random or [])
    terms = parse_random(groups_to_terms(groups) + random_specs + inline)
    if not terms:
        raise ValueError("no random-effects terms: give groups='g' or random=['(1 | g)']")
    if nAGQ > 1 and fam.has_scale:
        raise ValueError("nAGQ > 1 is not available for the Gamma family; use nAGQ=1 (Laplace)")
    if nAGQ > 1 and (len(terms) != 1 or terms[0].expr.replace(" ", "") not in ("1",)):
        raise ValueError("nAGQ > 1 needs a single scalar random-effects term such as (1 | g)")
    mf, rows = _prepare_rows(data, fixed, terms, weights, offset)
    frame = mf.data
    spec = ModelSpec(
        formula=formula, fixed=fixed, random=tuple(terms), method="ML", family=fam.name, optimizer=optimizer,
        has_weights=weights is not None, has_offset=offset is not None,
    )
    with blas_threads():  # one BLAS thread: the design's small products, like the fit (lmm.py)
        design = build_design(spec, frame, rows["weights"], rows["offset"])
    fam.validate(design.y, np.ones(design.n) if design.weights is None else design.weights, design.response)
    if backend == "pymc":
        if nAGQ != 1:
            raise ValueError("nAGQ applies to backend='reml'; the PyMC backend samples b exactly")
        if fast:
            raise ValueError("fast applies to backend='reml'; the PyMC backend samples b exactly")
        from .backends.pymc.glmm import fit_glmm as sample_glmm

        result = sample_glmm(
            spec, design, fam, n_dropped=mf.n_dropped, draws=draws, tune=tune, chains=chains, cores=cores,
            random_seed=random_seed, progressbar=progressbar, sampler=sampler, priors=priors,
            target_accept=target_accept,
        )
        result.input_namespace = mf.native_namespace
        result.model_frame = frame
        return result
    est = fit_glmm(design, fam, nagq=int(nAGQ), optimizer=optimizer, fast=bool(fast))
    info = FitInfo(
        theta=est.theta, beta=est.beta, b=est.b, scale=est.scale, llf=-0.5 * est.deviance,
        cov_beta=est.cov_beta,
        fe_df=np.full(design.p, np.inf), fitted=est.mu, resid=design.y - est.mu, converged=est.converged,
        is_singular=est.is_singular,
        optimizer_info={"optimizer": optimizer, "n_evals": est.n_evals, "message": est.message,
                        "fast": bool(fast)},
    )
    result = GLMMResult(spec, design, info, est.family, est.eta, int(nAGQ), n_dropped=mf.n_dropped)
    result.input_namespace = mf.native_namespace
    result.model_frame = frame
    return result


def clmm(
    formula: str,
    data,
    groups: str | list[str] | None = None,
    random: list[str] | None = None,
    link: str = "logit",
):
    """Cumulative link mixed model with a random intercept (R's ``ordinal::clmm``, Laplace).

    P(y ≤ j | b) = F(α_j − x'β − b), F the logistic, normal or complementary log-log cdf.
    The response is an ordered factor (pandas Categorical, in category order) or sortable
    values with at least three levels.
    """
    from formulaic import model_matrix

    from .backends.reml.clmm import fit_clmm
    from .design import group_levels
    from .ordinal_result import OrdinalResult

    if link not in ("logit", "probit", "cloglog", "loglog"):
        raise ValueError(f"link must be 'logit', 'probit', 'cloglog' or 'loglog', got {link!r}")
    fixed, inline = split_formula(formula)
    random_specs = [random] if isinstance(random, str) else list(random or [])
    terms = parse_random(groups_to_terms(groups) + random_specs + inline)
    if len(terms) != 1 or terms[0].expr.replace(" ", "") != "1":
        raise ValueError("clmm supports one random intercept, e.g. groups='judge' or random=['(1 | judge)']")
    columns = column_names(data)
    _check_variables(fixed, terms, columns)
    used = _used_columns([fixed, terms[0].group], columns)
    mf = model_frame(data, used)
    frame = mf.data
    if len(frame) == 0:
        raise ValueError("no rows left to fit: the data are empty after dropping missing values")
    lhs = fixed.split("~", 1)[0].strip()
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
    rhs = fixed.split("~", 1)[1]
    mm = model_matrix(f"{rhs} + 1", frame, na_action="raise")
    names = [str(c) for c in mm.columns]
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
        fixed_spec=mm.model_spec, converged=est.converged,
    )


def coxme(formula: str, data, groups: str | list[str] | None = None, random: list[str] | None = None):
    """Cox proportional hazards model with a Gaussian random intercept (Therneau's ``coxme``).

    ``formula`` is ``"Surv(time, status) ~ x + ..."``; ``status`` is 1 for an event and 0 for
    censoring. The frailty variance maximises the Laplace-approximated integrated partial
    likelihood (Efron ties); β and the frailties maximise the penalized partial likelihood.
    """
    from formulaic import model_matrix

    from .backends.reml.coxme import fit_coxme
    from .design import group_levels
    from .survival_result import SurvivalResult

    surv = r"^\s*Surv\(\s*([A-Za-z_.][\w.]*)\s*,\s*([A-Za-z_.][\w.]*)\s*\)\s*~(.*)$"
    m = re.match(surv, str(formula), re.S)
    if m is None:
        raise ValueError(f"coxme formulas look like 'Surv(time, status) ~ x', got {formula!r}")
    tcol, scol, rhs_all = m.group(1), m.group(2), m.group(3)
    fixed, inline = split_formula(f"{tcol} ~ {rhs_all}")
    random_specs = [random] if isinstance(random, str) else list(random or [])
    terms = parse_random(groups_to_terms(groups) + random_specs + inline)
    if len(terms) != 1 or terms[0].expr.replace(" ", "") != "1":
        raise ValueError(
            "coxme supports one random intercept, e.g. groups='litter' or random=['(1 | litter)']"
        )
    columns = column_names(data)
    _check_variables(fixed, terms, columns)
    if scol not in columns:
        raise KeyError(f"status column {scol!r} is not in data; available: {columns[:20]}")
    used = list(dict.fromkeys(_used_columns([fixed, terms[0].group], columns) + [scol]))
    mf = model_frame(data, used)
    frame = mf.data
    if len(frame) == 0:
        raise ValueError("no rows left to fit: the data are empty after dropping missing values")
    for c in (tcol, scol):
        if not pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c]):
            raise TypeError(f"column {c!r} must be numeric")
    time = frame[tcol].to_numpy(dtype=float)
    status = frame[scol].to_numpy(dtype=float)
    if np.any(time < 0):
        raise ValueError(f"time column {tcol!r} has negative values; survival times must be >= 0")
    if not np.all(np.isin(status, (0.0, 1.0))):
        raise ValueError(f"status column {scol!r} must be 0 (censored) or 1 (event)")
    if status.sum() == 0:
        raise ValueError(f"status column {scol!r} has no events")
    mm = model_matrix(f"{fixed.split('~', 1)[1]} + 1", frame, na_action="raise")
    names = [str(c) for c in mm.columns]
    keep = [i for i, c in enumerate(names) if c != "Intercept"]
    if not keep:
        raise ValueError("coxme needs at least one covariate on the right of '~'")
    X = np.asarray(mm, dtype=float)[:, keep]
    glev, gcodes = group_levels(frame, terms[0].factors)
    if len(glev) < 2:
        raise ValueError(f"grouping factor {terms[0].group!r} needs at least two levels")
    Z = np.zeros((len(frame), len(glev)))
    Z[np.arange(len(frame)), gcodes] = 1.0
    est = fit_coxme(X, Z, time, status.astype(int))
    return SurvivalResult(
        formula=formula, X_names=[names[i] for i in keep], beta=est.beta, cov=est.cov_beta,
        variance=est.variance, b=est.b, group=terms[0].group, group_levels=glev,
        loglik=est.loglik_integrated, loglik_null=est.loglik_null, loglik_penalized=est.loglik_penalized,
        nobs=len(frame), n_events=int(status.sum()), n_dropped=mf.n_dropped,
    )


def _fit_lazy(formula, data, groups, random, method, optimizer, weights, offset, correlation, df_method,
              theta0, backend) -> CrossedLMEResult:
    """fit() on a lazy frame: aggregate the cross-products where the data live, then fit."""
    from .backends.reml.engine import make_result
    from .backends.reml.lazy_fit import crossproduct_design
    from .backends.reml.lmm import fit_lmm
    from .lazy import lazy_crossproducts

    if backend != "reml":
        raise ValueError("lazy frames are fitted by backend='reml' only; collect the frame for 'pymc'")
    if correlation is not None:
        raise ValueError("correlation= needs row-level data; collect the lazy frame first")
    if df_method == "kenward-roger":
        raise ValueError("df_method='kenward-roger' needs row-level data; use 'satterthwaite' or collect")
    if offset is not None:
        raise ValueError("offset= is not supported for lazy frames; subtract it from the response column")
    if weights is not None and not isinstance(weights, str):
        raise TypeError("with a lazy frame, weights= must name a column of it")
    fixed, inline = split_formula(formula)
    random_specs = [random] if isinstance(random, str) else list(random or [])
    terms = parse_random(groups_to_terms(groups) + random_specs + inline)
    if not terms:
        raise ValueError("no random-effects terms: give groups='g' or random=['(1 | g)']")
    cp = lazy_crossproducts(data, fixed, terms, weights=weights)
    spec = ModelSpec(
        formula=formula, fixed=fixed, random=tuple(terms), method=method, optimizer=optimizer,
        df_method=df_method, has_weights=weights is not None,
        theta0=None if theta0 is None else tuple(np.asarray(theta0, dtype=float).ravel()),
    )
    design = crossproduct_design(cp.ZtZ, cp.ZtXy, cp.XytXy, cp.terms, cp.X_names, cp.response, cp.n)
    est = fit_lmm(design, spec)
    est.objective -= cp.sum_log_w  # prior weights: −Σ log wᵢ, which the compressed rows do not carry
    est.fitted = est.resid = None  # no row-level data were collected
    result = make_result(spec, design, est, n_dropped=cp.n_dropped)
    result.input_namespace = "lazy"
    return result
