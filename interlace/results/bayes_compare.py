"""Comparing posteriors: ELPD-LOO through arviz, the Bayesian side of ``interlace.anova``.

Frequentist fits are compared by likelihood-ratio tests (:func:`interlace.inference.lrt.anova`);
posteriors have no maximised likelihood, so ``anova(b1, b2, ...)`` on PyMC fits ranks them by
their expected log pointwise predictive density estimated by Pareto-smoothed importance
sampling leave-one-out (Vehtari, Gelman & Gabry 2017, *Statistics and Computing* 27:1413),
computed by ``arviz.compare(..., ic="loo")``: ``elpd_loo``, ``p_loo``, ``elpd_diff`` and its
standard error ``dse`` against the best model, and stacking ``weight``. ``group=`` compares
leave-one-group-out ELPDs instead (the group-level log-likelihood of Gaussian LMMs). A mixture
of posterior and frequentist fits is refused.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["is_posterior", "loo_compare"]


def is_posterior(model) -> bool:
    """Is ``model`` a PyMC (posterior) result?"""
    return getattr(model, "backend", None) == "pymc" and getattr(model, "idata", None) is not None


def loo_compare(*models, names: list[str] | None = None, group: str | None = None, **named) -> pd.DataFrame:
    """ELPD-LOO comparison of posteriors fitted to the same data (see the module docstring).

    One row per model, best first (arviz's columns: ``rank``, ``elpd_loo``, ``p_loo``,
    ``elpd_diff``, ``weight``, ``se``, ``dse``, ``warning``, ``scale``); rows are labelled by
    ``names=``, the keywords the models are passed with, or each model's formula.
    """
    import arviz as az

    if named:
        if models:
            raise TypeError("pass the models either positionally or as name=model, not both")
        names = list(named) if names is None else names
        models = tuple(named.values())
    if len(models) < 2:
        raise ValueError("an ELPD comparison needs at least two posteriors")
    kinds = [is_posterior(m) for m in models]
    if not all(kinds):
        freq = [type(m).__name__ for m, k in zip(models, kinds, strict=True) if not k]
        raise TypeError(
            "anova cannot mix posteriors (backend='pymc') with frequentist fits "
            f"({', '.join(freq)}): frequentist fits are compared by likelihood-ratio tests, posteriors "
            "by ELPD-LOO; fit every model with one backend"
        )
    var = [m.loglik_name(group) for m in models]  # refuses a posterior without one, by name
    first = _observed(models[0], var[0])
    for m, v in zip(models[1:], var[1:], strict=True):
        y = _observed(m, v)
        if len(y) != len(first) or not np.array_equal(y, first):
            raise ValueError(
                "models were not all fitted to the same data (response or rows differ); an ELPD "
                "comparison needs the same observations"
            )
    if names is None:
        names = []
        for i, m in enumerate(models):
            text = m.spec.full_formula if hasattr(m, "spec") else m.formula  # clmm: no spec
            names.append(text if text not in names else f"{text} ({i + 1})")
    names = [str(n) for n in names]
    if len(names) != len(models) or len(set(names)) != len(names):
        raise ValueError(f"names must be {len(models)} distinct labels, got {names!r}")
    idatas = {}
    for n, m, v in zip(names, models, var, strict=True):
        # one variable per InferenceData, under one name, so arviz compares like with like
        ll = m.idata.log_likelihood[[v]].rename({v: "loglik"})
        idatas[n] = az.InferenceData(posterior=m.idata.posterior, log_likelihood=ll)
    return az.compare(idatas, ic="loo", var_name="loglik")


def _observed(model, var: str) -> np.ndarray:
    """The response a posterior was fitted to: the design's y, or (clmm) the observed data."""
    design = getattr(model, "design", None)
    if design is not None:
        return np.asarray(design.y)
    obs = getattr(model.idata, "observed_data", None)
    return np.asarray(obs[var]) if obs is not None and var in obs else np.asarray([])
