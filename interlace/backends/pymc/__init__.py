"""The Bayesian backend: the same model as the REML backend, as a PyMC model sampled with NUTS.

``fit`` builds the model from the very same :class:`~interlace.data.design.DesignMatrices` (see
:mod:`.model`), samples it with nutpie or PyMC (:mod:`.sampling`), completes the InferenceData
(:mod:`.posterior`) and returns the unified result (:mod:`.result`). For Gaussian models the
random effects are integrated out by default (:mod:`.marginal`): NUTS moves only in (θ, σ, β)
and b is drawn exactly afterwards.
"""

from __future__ import annotations

import time

from ...data.design import DesignMatrices
from ...extras import require
from ...model.spec import ModelSpec
from .priors import Prior, PriorSet, default_priors, resolve_priors
from .sampling import DEFAULT_SAMPLER, SamplerOptions

__all__ = [
    "fit", "fit_glmm", "require_pymc", "Prior", "PriorSet", "default_priors", "SamplerOptions", "MARGINALIZE",
]

MARGINALIZE = ("auto", True, False)


def require_pymc(feature: str = 'backend="pymc"') -> None:
    """ImportError with the install command when PyMC or ArviZ is missing."""
    require(feature, "pymc", "pymc", "arviz")


def fit_glmm(*args, **kwargs):
    """:func:`.glmm.fit_glmm` (glmer with ``backend="pymc"``), after checking PyMC is installed."""
    require_pymc()
    from .glmm import fit_glmm as sample_glmm

    return sample_glmm(*args, **kwargs)


def _check_marginalize(value) -> bool:
    if value == "auto" or value is None:
        return True  # every model fit() builds is Gaussian
    if isinstance(value, bool):
        return value
    raise ValueError(f"marginalize must be 'auto', True or False, got {value!r}")


def fit(
    spec: ModelSpec,
    design: DesignMatrices,
    n_dropped: int = 0,
    *,
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 4,
    cores: int | None = None,
    random_seed: int | None = None,
    progressbar: bool = True,
    sampler: str = DEFAULT_SAMPLER,
    priors: dict | None = None,
    marginalize="auto",
    target_accept: float = 0.8,
):
    """Sample the posterior of ``spec`` on ``design`` and summarise it as a CrossedLMEResult.

    y = Xβ + Zb + ε, b_t ~ N(0, Σ_t), ε ~ N(0, σ²W⁻¹), with the priors of :mod:`.priors`.
    ``marginalize`` ("auto" = True for these Gaussian models) integrates b out analytically.
    """
    require_pymc()
    from .direct import direct_model
    from .model import build_model
    from .posterior import complete_idata
    from .result import make_result
    from .sampling import check_options, diagnostics, run_sampler, warn_if_unconverged

    if design.correlation is not None:
        raise ValueError("correlation= is not available with backend='pymc'; use backend='reml'")
    if spec.family != "gaussian":
        raise ValueError(
            f"fit(backend='pymc') fits Gaussian models; got family {spec.family!r} (use interlace.glmer)"
        )
    marginal = _check_marginalize(marginalize)
    if (
        isinstance(target_accept, bool)
        or not isinstance(target_accept, int | float)
        or not 0 < target_accept < 1
    ):
        raise ValueError(f"target_accept must be between 0 and 1, got {target_accept!r}")
    opts = check_options(
        SamplerOptions(
            draws=draws,
            tune=tune,
            chains=chains,
            cores=cores,
            random_seed=random_seed,
            progressbar=progressbar,
            sampler=sampler,
            target_accept=float(target_accept),
        )
    )
    t0 = time.perf_counter()
    prior_set = resolve_priors(design, priors)
    model, layout = build_model(design, prior_set, marginal)
    idata, ran, seconds = run_sampler(
        model, opts, direct=lambda: direct_model(model, design, layout, prior_set)
    )
    response = layout.response
    complete_idata(design, layout, idata, response, rng=ran.pop("after"))
    names = ["beta", "sigma"] + [tl.sd_name for tl in layout.terms]
    names += [tl.corr_name for tl in layout.terms if tl.corr_name is not None]
    diag = diagnostics(idata, names)
    converged = warn_if_unconverged(diag, opts.chains)
    info = {
        **ran,
        "random_seed": opts.random_seed,
        "marginalized": marginal,
        "beta_integrated": layout.beta_prior is not None,
        "draws": opts.draws,
        "tune": opts.tune,
        "chains": opts.chains,
        "sampling_seconds": seconds,
        "divergences": diag.divergences,
        "max_rhat": diag.max_rhat,
        "min_ess_bulk": diag.min_ess_bulk,
        "min_ess_tail": diag.min_ess_tail,
        "priors": prior_set,
        "message": "R-hat > 1.01 or divergences" if not converged else "",
    }
    info["seconds"] = time.perf_counter() - t0
    return make_result(spec, design, layout, idata, diag, converged, info, n_dropped=n_dropped)
