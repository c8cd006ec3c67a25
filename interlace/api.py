"""Public entry points: validate input, build the spec and design, dispatch to a backend."""

from __future__ import annotations

import sys

import numpy as np

from .backends import reml
from .backends.reml.glmer import fit_glmm
from .backends.reml.glmm import LaplaceObjective
from .backends.reml.glmm_engine import make_glmm_result
from .backends.reml.iterative import SOLVERS, choose_solver, refuse_pymc_at_scale
from .backends.reml.iterative_fit import check_iterative_spec, fit_iterative_design
from .backends.reml.lazy_fit import fit_lazy
from .data.build import glmm_model, lmm_model
from .data.lazy import is_lazy
from .linalg.threads import fit_blas_threads
from .model.arguments import choice as _choice
from .model.arguments import default as _d
from .model.arguments import refuse_unused as _refuse_unused
from .model.arguments import sampler_arguments as _sampler_arguments
from .model.correlation import AR1, CompoundSymmetry
from .model.families import get_family
from .model.rargs import r_arguments
from .model.spec import BACKENDS, DF_METHODS, METHODS, OPTIMIZERS
from .results.lmm import CrossedLMEResult
from .results.verbs import data_label

__all__ = ["fit", "glmer", "clmm", "coxme"]


@r_arguments
def fit(
    formula: str,
    data,
    groups: str | list[str] | None = None,
    random: list[str] | None = None,
    method: str = _d("REML"),
    optimizer: str = _d("lbfgsb"),
    weights=None,
    offset=None,
    correlation=None,
    df_method: str = _d("satterthwaite"),
    theta0=None,
    backend: str = "reml",
    *,
    draws: int = _d(1000),
    tune: int = _d(1000),
    chains: int = _d(4),
    cores: int | None = None,
    random_seed: int | None = None,
    progressbar: bool = True,
    sampler: str = _d("nutpie"),
    priors: dict | None = None,
    marginalize: str | bool = _d("auto"),
    target_accept: float = _d(0.8),
    verbose: bool = False,
    solver: str = _d("auto"),
) -> CrossedLMEResult:
    """Fit a linear mixed model y = Xβ + Zb + ε, b ~ N(0, σ²ΛΛ'), ε ~ N(0, σ²W⁻¹).

    ``formula`` is the fixed part (``"y ~ x"``; lme4 random terms written inside it are also
    accepted); ``random`` takes lme4 terms such as ``"(1 + x | g)"`` and ``groups`` is shorthand
    for ``(1 | g)`` per column. ``method`` is ``"REML"`` or ``"ML"``; ``df_method`` picks the
    denominator df of the t-tests. Rows with missing values in used columns are dropped.
    ``backend="pymc"`` samples the same model with NUTS instead (see ``docs/pymc.md``); the
    keyword-only arguments ``draws`` … ``target_accept`` configure that sampler. ``verbose=True``
    reports each REML/ML deviance evaluation on standard error. ``solver`` picks the REML engine:
    ``"exact"`` (blocked Cholesky), ``"iterative"`` (O(nnz) conjugate gradients with Monte-Carlo
    traces, for crossed/nested random intercepts with very many levels) or ``"auto"`` (iterative
    only when the exact factor would exceed a memory budget; ``docs/scalable.md``).
    """
    call = {**locals(), "call_function": fit, "data_name": data_label(data, sys._getframe(1))}  # update()
    backend = _choice("backend", backend, BACKENDS)
    _refuse_unused(backend, method=(method, "REML"), df_method=(df_method, "satterthwaite"),
                   solver=(solver, "auto"), optimizer=(optimizer, "lbfgsb"), theta0=(theta0, None),
                   verbose=(verbose, False),
                   draws=(draws, 1000), tune=(tune, 1000), chains=(chains, 4), cores=(cores, None),
                   random_seed=(random_seed, None), sampler=(sampler, "nutpie"), priors=(priors, None),
                   marginalize=(marginalize, "auto"), target_accept=(target_accept, 0.8),
                   progressbar=(progressbar, True))
    method = _choice("method", method, METHODS, upper=True)
    optimizer = _choice("optimizer", optimizer, OPTIMIZERS)
    df_method = _choice("df_method", df_method, DF_METHODS)
    solver = _choice("solver", solver, SOLVERS)

    def sample(spec, design, n_dropped):  # backend="pymc" on the model fit() built (eager or lazy)
        from .backends import pymc as pymc_backend

        refuse_pymc_at_scale(solver, design)
        return pymc_backend.fit(
            spec, design, n_dropped=n_dropped, draws=draws, tune=tune, chains=chains, cores=cores,
            random_seed=random_seed, progressbar=progressbar, sampler=sampler, priors=priors,
            marginalize=marginalize, target_accept=target_accept,
        )

    if is_lazy(data):
        result = fit_lazy(formula, data, groups, random, method, optimizer, weights, offset, correlation,
                          df_method, theta0, backend, sample=sample if backend == "pymc" else None,
                          solver=solver)
        result.call = call
        return result
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
    chosen = choose_solver(solver, design.terms, design.p)
    if backend == "pymc":
        result = sample(spec, design, mf.n_dropped)
    elif chosen == "iterative":
        check_iterative_spec(spec, correlation)
        with fit_blas_threads():
            result = fit_iterative_design(spec, design, n_dropped=mf.n_dropped)
    else:

        with fit_blas_threads():  # the whole fit, SEs and df included: see linalg.threads
            result = reml.fit(spec, design, n_dropped=mf.n_dropped)
        result.optimizer_info["solver"] = "exact"
    result.call = call
    return result


@r_arguments
def glmer(
    formula: str,
    data,
    family="binomial",
    groups: str | list[str] | None = None,
    random: list[str] | None = None,
    weights=None,
    offset=None,
    nAGQ: int = 1,  # noqa: N803 - lme4's spelling
    optimizer: str = _d("lbfgsb"),
    backend: str = "reml",
    link: str | None = None,
    *,
    fast: bool = False,
    draws: int = _d(1000),
    tune: int = _d(1000),
    chains: int = _d(4),
    cores: int | None = None,
    random_seed: int | None = None,
    progressbar: bool = True,
    sampler: str = _d("nutpie"),
    priors: dict | None = None,
    target_accept: float = _d(0.8),
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
    call = {**locals(), "call_function": glmer, "data_name": data_label(data, sys._getframe(1))}  # update()
    fam = get_family(family, link)
    backend = _choice("backend", backend, BACKENDS)
    _refuse_unused(backend, optimizer=(optimizer, "lbfgsb"), draws=(draws, 1000), tune=(tune, 1000),
                   chains=(chains, 4), cores=(cores, None), random_seed=(random_seed, None),
                   sampler=(sampler, "nutpie"), priors=(priors, None), target_accept=(target_accept, 0.8),
                   progressbar=(progressbar, True))
    optimizer = _choice("optimizer", optimizer, OPTIMIZERS)
    if not isinstance(nAGQ, int | np.integer) or nAGQ < 0:
        raise ValueError(f"nAGQ must be a non-negative integer, got {nAGQ!r}")
    if not isinstance(fast, bool | np.bool_):
        raise TypeError(f"fast must be True or False, got {fast!r}")
    with fit_blas_threads():  # one BLAS thread for the design's small products too, as for the fit
        spec, design, mf = glmm_model(formula, data, fam, groups, random, weights, offset, optimizer,
                                      int(nAGQ))
    if backend == "pymc":
        if nAGQ != 1:
            raise ValueError("nAGQ applies to backend='reml'; the PyMC backend samples b exactly")
        if fast:
            raise ValueError("fast applies to backend='reml'; the PyMC backend samples b exactly")
        from .backends.pymc import fit_glmm as sample_glmm

        w = np.ones(design.n) if design.weights is None else design.weights

        def laplace_loglik(theta, beta, family):  # the plug-in log-likelihood at the posterior means
            return -0.5 * LaplaceObjective(design, family, design.y, w).laplace(theta, beta)

        result = sample_glmm(
            spec, design, fam, n_dropped=mf.n_dropped, draws=draws, tune=tune, chains=chains, cores=cores,
            random_seed=random_seed, progressbar=progressbar, sampler=sampler, priors=priors,
            target_accept=target_accept, plugin_loglik=laplace_loglik,
        )
        result.call = call
        return result
    with fit_blas_threads():
        est = fit_glmm(design, fam, nagq=int(nAGQ), optimizer=optimizer, fast=bool(fast))
    result = make_glmm_result(spec, design, fam, est, int(nAGQ), optimizer, bool(fast),
                              n_dropped=mf.n_dropped)
    result.call = call
    return result


@r_arguments
def clmm(
    formula: str,
    data,
    groups: str | list[str] | None = None,
    random: list[str] | None = None,
    link: str = "logit",
    backend: str = "reml",
    *,
    draws: int = _d(1000),
    tune: int = _d(1000),
    chains: int = _d(4),
    cores: int | None = None,
    random_seed: int | None = None,
    progressbar: bool = True,
    sampler: str = _d("nutpie"),
    priors: dict | None = None,
    target_accept: float = _d(0.8),
):
    """Cumulative link mixed model with random intercepts (R's ``ordinal::clmm``, Laplace).

    P(y ≤ j | b) = F(α_j − x'β − z'b), F the logistic, normal, complementary log-log or log-log
    cdf; one or more ``(1 | g)`` terms, crossed or nested (docs/clmm.md).
    The response is an ordered factor (pandas Categorical, in category order) or sortable
    values with at least three levels. ``backend="pymc"`` samples the same model with NUTS
    (docs/pymc.md); the keyword-only arguments configure the sampler as in :func:`fit`.
    """
    from .ordinal import fit_clmm_formula

    kw = _sampler_arguments(backend, draws=draws, tune=tune, chains=chains, cores=cores,
                            random_seed=random_seed, progressbar=progressbar, sampler=sampler,
                            priors=priors, target_accept=target_accept)
    if kw is None:
        return fit_clmm_formula(formula, data, groups=groups, random=random, link=link)
    return fit_clmm_formula(formula, data, groups=groups, random=random, link=link, sampler=kw)


@r_arguments
def coxme(formula: str, data, groups: str | list[str] | None = None, random: list[str] | None = None,
          ties: str = "efron", sparse: tuple[int, float] | None = (50, 0.02), backend: str = "reml", *,
          draws: int = _d(1000), tune: int = _d(1000), chains: int = _d(4), cores: int | None = None,
          random_seed: int | None = None, progressbar: bool = True, sampler: str = _d("nutpie"),
          priors: dict | None = None, target_accept: float = _d(0.8)):
    """Cox proportional hazards model with Gaussian random effects (Therneau's ``coxme``).

    ``formula`` is ``"Surv(time, status) ~ x + strata(s) + (1 | g)"``; ``status`` is 1 (or 2, or
    TRUE) for an event. Random terms: ``(1 | g)``, ``(1 | a/b)``, several terms, ``(1 + x | g)``.
    β and the random effects maximise the penalized partial likelihood; the variances maximise
    its Laplace approximation. ``ties`` and ``sparse`` are coxme's ``ties`` and
    ``coxme.control(sparse=)`` (None: the exact Hessian). See docs/coxme.md.
    ``backend="pymc"`` samples the same model with NUTS, the partial likelihood as its data
    term (docs/pymc.md); ``sparse`` is then refused and the keyword-only arguments configure the
    sampler as in :func:`fit`.
    """
    from .survival import fit_coxme_formula

    kw = _sampler_arguments(backend, draws=draws, tune=tune, chains=chains, cores=cores,
                            random_seed=random_seed, progressbar=progressbar, sampler=sampler,
                            priors=priors, target_accept=target_accept)
    if kw is not None and sparse != (50, 0.02):
        raise ValueError("sparse= tunes the Laplace fit's Hessian and has no meaning for backend='pymc'; "
                         "drop it, or use backend='reml'")
    return fit_coxme_formula(formula, data, groups=groups, random=random, ties=ties, sparse=sparse,
                             sampler=kw)
