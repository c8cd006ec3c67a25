"""Running NUTS: nutpie's sampler (the default) or PyMC's, and the convergence diagnostics.

Reproducibility: ``random_seed`` seeds one :class:`numpy.random.SeedSequence`; it spawns one
child per chain (and one more for the exact conditional draws made after sampling), and each
chain is sampled from its own child's seed by either sampler. A chain's draws therefore depend
on the seed and the chain's index only — not on ``cores``, on how the chains are split across
processes, or on the machine. Without a seed, fresh entropy is drawn and recorded in the
result (``optimizer_info["seed_entropy"]``), so that run can be repeated too.

The default sampler is nutpie, whatever else is installed (it comes with the ``pymc`` extra);
``sampler="pymc"`` picks PyMC's own NUTS, and ``"auto"`` nutpie when it can be imported, else
PyMC's. The result records the sampler that ran and its version.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import numpy as np

from ...extras import MissingExtraError, require

__all__ = ["SAMPLERS", "SamplerOptions", "choose_sampler", "run_sampler", "diagnostics", "Diagnostics"]

SAMPLERS = ("nutpie", "pymc", "auto")
DEFAULT_SAMPLER = "nutpie"
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
    sampler: str = DEFAULT_SAMPLER
    target_accept: float = 0.8


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
    choose_sampler(opts.sampler)  # a missing nutpie is reported before the model is built
    return opts


def _require_nutpie() -> None:
    try:
        require("sampler='nutpie'", "nutpie", "nutpie")
    except MissingExtraError as ex:
        raise MissingExtraError(
            f"{ex}; nutpie is the default sampler (it comes with interlace[pymc]) — or pass "
            "sampler='pymc' for PyMC's own NUTS"
        ) from None


def choose_sampler(requested: str) -> str:
    """``"nutpie"`` (the default) requires nutpie; ``"auto"`` → nutpie when importable, else PyMC's."""
    if requested == "auto":
        try:
            require("sampler='nutpie'", "nutpie", "nutpie")
        except MissingExtraError:
            return "pymc"
        return "nutpie"
    if requested == "nutpie":
        _require_nutpie()
    return requested


def sampler_version(sampler: str) -> str:
    """``"nutpie 0.16.8"`` / ``"pymc 5.28.5"``: the sampler's package and version."""
    import importlib.metadata

    return f"{sampler} {importlib.metadata.version(sampler)}"


@dataclass
class Seeds:
    """One seed per chain and a generator for the draws made after sampling, from one SeedSequence."""

    chains: list[int]
    after: np.random.Generator
    entropy: int


def spawn_seeds(random_seed: int | None, chains: int) -> Seeds:
    """Spawn ``chains + 1`` children of ``SeedSequence(random_seed)``: with nutpie chain c samples
    with the first 32-bit word of child c (whichever process or core runs it); PyMC's sampler,
    handed a generator on the same SeedSequence, spawns the same child c for chain c. The last
    child seeds the exact conditional draws made afterwards."""
    root = np.random.SeedSequence(random_seed)
    kids = root.spawn(chains + 1)
    return Seeds(
        chains=[int(k.generate_state(1, dtype=np.uint32)[0]) for k in kids[:chains]],
        after=np.random.default_rng(kids[chains]),
        entropy=int(root.entropy),
    )


def default_cores(chains: int) -> int:
    """Chains run in parallel on up to this many cores: min(chains, available CPUs). The draws
    do not depend on it (one seed per chain), only the wall time does."""
    return min(chains, _cpu_count())


def run_sampler(model, opts: SamplerOptions, direct=None) -> tuple[object, dict, float]:
    """Sample ``model``; returns (InferenceData with posterior and sample_stats, what ran, seconds).

    What ran: ``sampler``, ``sampler_version``, ``cores``, ``seed_entropy`` (the SeedSequence
    entropy: ``random_seed``, or the fresh entropy used without one), ``chain_seeds`` (nutpie's
    per-chain seeds; None for PyMC, which derives its own from the same children) and the
    generator ``after`` for the draws made after sampling (not for the result's record), and
    ``log_density``: how nutpie evaluated the model — ``"direct"`` when ``direct()`` returned a
    :class:`~.flat.FlatModel` (:mod:`.direct`), else ``"compiled"`` (pytensor, :mod:`.flat`);
    ``mass_matrix``: the adapted metric, ``"low-rank modified"`` (nutpie's diagonal plus low-rank
    update from draws and gradients, used for the integrated marginal model) or ``"diagonal"``.
    """
    sampler = choose_sampler(opts.sampler)
    cores = opts.cores if opts.cores is not None else default_cores(opts.chains)
    seeds = spawn_seeds(opts.random_seed, opts.chains)
    t0 = time.perf_counter()
    workers = max(1, min(cores, opts.chains))
    with _blas_threads(max(1, _cpu_count() // workers)), warnings.catch_warnings(), _quiet(opts.progressbar):
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

            flat = direct() if direct is not None else None
            how = "direct" if flat is not None else "compiled"
            flat = flat or flatten_model(model)
            mass = "low-rank modified" if flat.low_rank_mass_matrix else "diagonal"
            idata = sample_nutpie(flat, opts, cores, seeds.chains)
        else:
            import pymc as pm

            how, mass = "pymc", "diagonal"
            idata = pm.sample(
                model=model,
                draws=opts.draws,
                tune=opts.tune,
                chains=opts.chains,
                cores=cores,
                # PyMC spawns chain c's generator as child c of this SeedSequence, as above
                random_seed=np.random.default_rng(np.random.SeedSequence(seeds.entropy)),
                progressbar=opts.progressbar,
                compute_convergence_checks=False,
                target_accept=opts.target_accept,
            )
    ran = {
        "sampler": sampler,
        "sampler_version": sampler_version(sampler),
        "cores": cores,
        "log_density": how,
        "mass_matrix": mass,
        "seed_entropy": seeds.entropy,
        "chain_seeds": list(seeds.chains) if sampler == "nutpie" else None,
        "after": seeds.after,
    }
    return idata, ran, time.perf_counter() - t0


class _quiet:
    """With ``progressbar=False`` nothing is printed: PyMC's informational log lines ("Sampling
    2 chains …") are held back for the duration (warnings and errors still show)."""

    def __init__(self, progressbar: bool):
        self.active = not progressbar
        self.saved: list[tuple[object, int]] = []

    def __enter__(self):
        if self.active:
            import logging

            for name in ("pymc", "pymc.sampling.mcmc", "pymc.stats.convergence"):
                lg = logging.getLogger(name)
                self.saved.append((lg, lg.level))
                lg.setLevel(max(lg.getEffectiveLevel(), logging.WARNING))
        return self

    def __exit__(self, *exc):
        for lg, level in self.saved:
            lg.setLevel(level)
        return False


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
    from arviz.utils import Numba

    # arviz's numba path compiles its ESS kernels in every new process (about a second, more
    # than the numpy path takes on these few parameters): use numpy here, and restore the flag
    flag = Numba.numba_flag
    Numba.numba_flag = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            table = az.summary(idata, var_names=var_names, kind="diagnostics")
    finally:
        Numba.numba_flag = flag
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
