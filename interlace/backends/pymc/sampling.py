"""Running NUTS: PyMC's own sampler or nutpie's, and the convergence diagnostics of the draws."""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from ...extras import MissingExtraError, require

__all__ = ["SAMPLERS", "SamplerOptions", "choose_sampler", "run_sampler", "diagnostics", "Diagnostics"]

SAMPLERS = ("auto", "pymc", "nutpie")
RHAT_WARN = 1.01


@dataclass
class SamplerOptions:
    """What ``fit(..., backend="pymc")`` passes on to NUTS."""

    draws: int = 1000
    tune: int = 1000
    chains: int = 4
    cores: int | None = None
    random_seed: int | None = None
    progressbar: bool = True
    sampler: str = "auto"
    target_accept: float = 0.8
    extra: dict = field(default_factory=dict)


def _positive_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_options(opts: SamplerOptions) -> SamplerOptions:
    """Validate the sampling options with errors that name the argument."""
    opts.draws = _positive_int("draws", opts.draws)
    opts.tune = _positive_int("tune", opts.tune, minimum=0)
    opts.chains = _positive_int("chains", opts.chains)
    if opts.cores is not None:
        opts.cores = _positive_int("cores", opts.cores)
    if opts.random_seed is not None:
        opts.random_seed = _positive_int("random_seed", opts.random_seed, minimum=0)
    if not isinstance(opts.progressbar, bool):
        raise TypeError(f"progressbar must be True or False, got {opts.progressbar!r}")
    if not isinstance(opts.sampler, str) or opts.sampler.lower() not in SAMPLERS:
        raise ValueError(f"sampler must be one of {list(SAMPLERS)}, got {opts.sampler!r}")
    opts.sampler = opts.sampler.lower()
    if opts.sampler == "nutpie":
        require("sampler='nutpie'", "nutpie", "nutpie")
    return opts


def choose_sampler(requested: str) -> str:
    """``"auto"`` → nutpie when importable, else PyMC's NUTS; ``"nutpie"`` requires nutpie."""
    if requested == "auto":
        try:
            require("sampler='nutpie'", "nutpie", "nutpie")
        except MissingExtraError:
            return "pymc"
        return "nutpie"
    if requested == "nutpie":
        require("sampler='nutpie'", "nutpie", "nutpie")
    return requested


def run_sampler(model, opts: SamplerOptions) -> tuple[object, str, float]:
    """Sample ``model``; returns (InferenceData with posterior and sample_stats, sampler, seconds)."""
    sampler = choose_sampler(opts.sampler)
    cores = opts.cores if opts.cores is not None else min(opts.chains, _cpu_count())
    t0 = time.perf_counter()
    workers = max(1, min(cores, opts.chains))
    with _blas_threads(max(1, _cpu_count() // workers)), warnings.catch_warnings():
        # pytensor's note that it found no BLAS (irrelevant for these small graphs), and numpy's
        # floating-point notes for proposals NUTS rejects anyway (divergences are counted and
        # reported by the result); every other warning is shown
        warnings.filterwarnings("ignore", message="PyTensor could not link to a BLAS")
        warnings.filterwarnings(
            "ignore", category=RuntimeWarning,
            message=r"(overflow|invalid value|divide by zero) encountered",
        )
        if sampler == "nutpie":
            from .flat import flatten_model
            from .parallel import sample_nutpie

            idata = sample_nutpie(flatten_model(model), opts, cores)
        else:
            import pymc as pm

            idata = pm.sample(
                model=model,
                draws=opts.draws,
                tune=opts.tune,
                chains=opts.chains,
                cores=cores,
                random_seed=opts.random_seed,
                progressbar=opts.progressbar,
                compute_convergence_checks=False,
                target_accept=opts.target_accept,
            )
    return idata, sampler, time.perf_counter() - t0


def _blas_threads(n: int):
    """Limit BLAS to ``n`` threads while chains run in parallel (the matrices are small; threads
    competing with the chains for the cores only slow each chain down); scoped as every fit's
    limit is (:func:`interlace.linalg.threads.blas_limit`)."""
    from ...linalg.threads import blas_limit

    return blas_limit(n)


def _cpu_count() -> int:
    import os

    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


@dataclass
class Diagnostics:
    """R-hat, bulk and tail ESS per parameter, divergences, and the worst of each."""

    table: object  # pandas DataFrame from az.summary
    max_rhat: float
    min_ess_bulk: float
    min_ess_tail: float
    divergences: int


def diagnostics(idata, var_names: list[str]) -> Diagnostics:
    """Convergence summary over ``var_names`` (constant entries such as a correlation matrix's
    diagonal are skipped)."""
    import arviz as az

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = az.summary(idata, var_names=var_names, kind="diagnostics")
    rhat = table["r_hat"].to_numpy(dtype=float)
    ok = np.isfinite(rhat)
    stats = idata.sample_stats
    div = 0
    for name in ("diverging", "divergences"):
        if name in stats:
            div = int(np.asarray(stats[name]).sum())
            break
    return Diagnostics(
        table=table,
        max_rhat=float(np.max(rhat[ok])) if ok.any() else float("nan"),
        min_ess_bulk=float(np.nanmin(table["ess_bulk"].to_numpy(dtype=float)[ok]))
        if ok.any()
        else float("nan"),
        min_ess_tail=float(np.nanmin(table["ess_tail"].to_numpy(dtype=float)[ok]))
        if ok.any()
        else float("nan"),
        divergences=div,
    )


def warn_if_unconverged(d: Diagnostics, chains: int) -> bool:
    """Warn when R-hat > 1.01 or there were divergences; returns whether the draws look converged."""
    converged = True
    if chains > 1 and np.isfinite(d.max_rhat) and d.max_rhat > RHAT_WARN:
        worst = d.table["r_hat"].astype(float).idxmax()
        warnings.warn(
            f"R-hat = {d.max_rhat:.3f} > {RHAT_WARN} (worst: {worst}); the chains have not mixed — "
            "increase tune= and draws=, or check the model",
            stacklevel=4,
        )
        converged = False
    if d.divergences:
        warnings.warn(
            f"{d.divergences} divergent transition(s) after tuning; the posterior may be biased — "
            "raise target_accept or reparameterise",
            stacklevel=4,
        )
        converged = False
    return converged
