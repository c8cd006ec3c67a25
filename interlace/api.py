"""Public entry points: validate input, build the spec and design, dispatch to a backend."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .data.design import DesignMatrices, build_design
from .data.frames import ModelFrame, column_names, model_frame
from .linalg.threads import fit_blas_threads
from .model.correlation import AR1, CompoundSymmetry
from .model.families import CUMULATIVE_LINKS
from .model.formula import groups_to_terms, parse_random, split_formula
from .model.rformula import FixedFormula, names_in, parse, parse_fixed
from .model.rfunctions import R_CONSTANTS
from .model.spec import BACKENDS, DF_METHODS, METHODS, OPTIMIZERS, ModelSpec
from .results.lmm import CrossedLMEResult

__all__ = ["fit"]



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


def _read_formula(fixed: str, terms, columns: list[str], exclude: tuple[str, ...] = (),
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


def _check_response(ff: FixedFormula, frame: pd.DataFrame, family: str = "gaussian") -> None:
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


def _binary_response(ff: FixedFormula, frame: pd.DataFrame) -> pd.DataFrame:
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


def _prepare_rows(data, fixed: str, terms, weights, offset, correlation=None, family: str = "gaussian",
                  where: str | None = None):
    """Check the columns, drop incomplete rows, and align weights/offset with the kept rows.

    Returns the model frame, ``{"weights": array | None, "offset": array | None}`` and the
    fixed part as R reads it.
    """
    columns = column_names(data)
    named = tuple(v for v in (weights, offset) if isinstance(v, str))
    ff, used = _read_formula(fixed, terms, columns, exclude=named, where=where)
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
    if family == "binomial":
        _binary_response(ff, mf.data)
    else:
        _check_response(ff, mf.data, family)
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
    mf, row_values, ff = _prepare_rows(data, fixed, terms, weights, offset, correlation,
                                       where=f"formula {formula!r}")
    spec = ModelSpec(
        formula=formula, fixed=fixed, random=tuple(terms), method=method, optimizer=optimizer,
        df_method=df_method, has_weights=weights is not None,
        has_offset=offset is not None or bool(ff.offsets),
        fixed_formula=ff, offset_column=offset if isinstance(offset, str) else None,
        theta0=None if theta0 is None else tuple(np.asarray(theta0, dtype=float).ravel()),
        correlation=correlation, options={"verbose": bool(verbose)},
    )
    return spec, build_design(spec, mf.data, row_values["weights"], row_values["offset"]), mf


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
    from .data.lazy import is_lazy

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

    spec, design, mf = lmm_model(formula, data, groups, random, method, optimizer, weights, offset,
                                 correlation, df_method, theta0, verbose)
    frame = mf.data
    if backend == "pymc":
        from .backends import pymc as pymc_backend

        result = pymc_backend.fit(
            spec, design, n_dropped=mf.n_dropped, draws=draws, tune=tune, chains=chains, cores=cores,
            random_seed=random_seed, progressbar=progressbar, sampler=sampler, priors=priors,
            marginalize=marginalize, target_accept=target_accept,
        )
    else:
        from .backends import reml

        with fit_blas_threads():  # the whole fit, SEs and df included: see linalg.threads
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
    optimizer: str = "bobyqa",
    backend: str = "reml",
    link: str | None = None,
    *,
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
    ``backend="pymc"`` samples the same model with NUTS (docs/glmer.md); the keyword-only
    arguments ``draws`` … ``target_accept`` configure the sampler as in :func:`fit`.
    """
    from .backends.reml.glmm import fit_glmm
    from .model.families import get_family
    from .results.glmm import GLMMResult
    from .results.lmm import FitInfo

    fam = get_family(family, link)
    optimizer = _choice("optimizer", optimizer, OPTIMIZERS)
    backend = _choice("backend", backend, BACKENDS)
    if not isinstance(nAGQ, int | np.integer) or nAGQ < 0:
        raise ValueError(f"nAGQ must be a non-negative integer, got {nAGQ!r}")
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
    mf, rows, ff = _prepare_rows(data, fixed, terms, weights, offset, family=fam.name,
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
    design = build_design(spec, frame, rows["weights"], rows["offset"])
    fam.validate(design.y, np.ones(design.n) if design.weights is None else design.weights, design.response)
    if backend == "pymc":
        if nAGQ != 1:
            raise ValueError("nAGQ applies to backend='reml'; the PyMC backend samples b exactly")
        from .backends.pymc import fit_glmm as sample_glmm
        from .backends.reml.glmm import LaplaceObjective

        w = np.ones(design.n) if design.weights is None else design.weights

        def laplace_loglik(theta, beta):  # the plug-in log-likelihood at the posterior means
            return -0.5 * LaplaceObjective(design, fam, design.y, w).laplace(theta, beta)

        result = sample_glmm(
            spec, design, fam, n_dropped=mf.n_dropped, draws=draws, tune=tune, chains=chains, cores=cores,
            random_seed=random_seed, progressbar=progressbar, sampler=sampler, priors=priors,
            target_accept=target_accept, plugin_loglik=laplace_loglik,
        )
        result.input_namespace = mf.native_namespace
        result.model_frame = frame
        return result
    with fit_blas_threads():
        est = fit_glmm(design, fam, nagq=int(nAGQ), optimizer=optimizer)
    info = FitInfo(
        theta=est.theta, beta=est.beta, b=est.b, scale=est.scale, llf=-0.5 * est.deviance,
        cov_beta=est.cov_beta,
        fe_df=np.full(design.p, np.inf), fitted=est.mu, resid=design.y - est.mu, converged=est.converged,
        is_singular=est.is_singular,
        optimizer_info={"optimizer": optimizer, "n_evals": est.n_evals, "message": est.message},
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
    from .backends.reml.clmm import fit_clmm
    from .data.design import formula_matrix, group_levels
    from .model.rformula import r_labels
    from .results.ordinal import OrdinalResult

    if link not in CUMULATIVE_LINKS:
        raise ValueError(f"link must be one of {list(CUMULATIVE_LINKS)} for clmm, got {link!r}")
    fixed, inline = split_formula(formula)
    random_specs = [random] if isinstance(random, str) else list(random or [])
    terms = parse_random(groups_to_terms(groups) + random_specs + inline)
    if len(terms) != 1 or terms[0].expr.replace(" ", "") != "1":
        raise ValueError("clmm supports one random intercept, e.g. groups='judge' or random=['(1 | judge)']")
    columns = column_names(data)
    ff, used = _read_formula(fixed, terms, columns, where=f"formula {formula!r}")
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


def coxme(formula: str, data, groups: str | list[str] | None = None, random: list[str] | None = None,
          ties: str = "efron", sparse: tuple[int, float] | None = (50, 0.02)):
    """Cox proportional hazards model with Gaussian random effects (Therneau's ``coxme``).

    ``formula`` is ``"Surv(time, status) ~ x + strata(s) + (1 | g)"``; ``status`` is 1 (or 2, or
    TRUE) for an event. Random terms: ``(1 | g)``, ``(1 | a/b)``, several terms, ``(1 + x | g)``.
    β and the random effects maximise the penalized partial likelihood; the variances maximise
    its Laplace approximation. ``ties`` and ``sparse`` are coxme's ``ties`` and
    ``coxme.control(sparse=)`` (None: the exact Hessian). See docs/coxme.md.
    """
    from .survival import fit_coxme_formula

    return fit_coxme_formula(formula, data, groups=groups, random=random, ties=ties, sparse=sparse)


def _fit_lazy(formula, data, groups, random, method, optimizer, weights, offset, correlation, df_method,
              theta0, backend) -> CrossedLMEResult:
    """fit() on a lazy frame: aggregate the cross-products where the data live, then fit."""
    from .backends.reml.engine import make_result
    from .backends.reml.lazy_fit import crossproduct_design
    from .backends.reml.lmm import fit_lmm
    from .data.lazy import lazy_crossproducts

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
    import narwhals as nw

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
    cp = lazy_crossproducts(data, ff.formulaic, terms, weights=weights)
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
