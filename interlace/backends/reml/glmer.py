"""glmer's engine entry: the negative binomial's θ search or the fit of a given family.

A gradient-based first stage that ends where the deviance is undefined (an inverse or identity
link stepping to negative means) is redone with the derivative-free BOBYQA, with a warning.
"""

from __future__ import annotations

import warnings

import numpy as np

from ...data.design import DesignMatrices
from ...model.families import Family
from .glmm import GLMMFit, fit_given_family
from .negbin import fit_negative_binomial

__all__ = ["fit_glmm"]


def fit_glmm(
    design: DesignMatrices, family: Family, nagq: int = 1, optimizer: str = "lbfgsb", fast: bool = False
) -> GLMMFit:
    """Fit a GLMM: stage 1 (θ with β in PIRLS), then stage 2 ((θ, β) jointly) unless nAGQ = 0.

    A negative binomial without θ gets θ by maximising the profiled Laplace likelihood (as
    lme4's ``glmer.nb``, see :func:`fit_negative_binomial`). If a gradient-based optimizer ends
    where the deviance is undefined (an inverse or identity link stepping to negative means),
    the fit is redone with the derivative-free BOBYQA, with a warning.
    """
    if family.name == "negative_binomial" and family.nb_theta is None:
        return fit_negative_binomial(design, family, nagq, optimizer, fast)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fit = fit_given_family(design, family, nagq, optimizer, fast=fast)
        if np.isfinite(fit.deviance) or optimizer == "bobyqa":
            for w in caught:
                warnings.warn(w.message, w.category, stacklevel=3)
        else:
            warnings.warn(
                f"optimizer={optimizer!r} ended where the {family.name}({family.link.name}) deviance is "
                "undefined; refitting with optimizer='bobyqa'",
                stacklevel=3,
            )
            fit = fit_given_family(design, family, nagq, "bobyqa", fast=fast)
    return fit
