"""Residuals of a mixed-model fit by type, as lme4's ``residuals.merMod``.

With y the response (a proportion for a binomial with trials as weights), μ̂ the fitted
values (random effects included), w the prior weights and V the family's variance function:

- ``"response"``: y − μ̂ (the default for an LMM, and ``result.resid``);
- ``"pearson"``: √w (y − μ̂) / √V(μ̂) (an LMM: √w (y − μ̂), V = 1);
- ``"working"``: (y − μ̂) / (dμ/dη) at η̂ = g(μ̂), the residual of the last IRLS step;
- ``"deviance"``: sign(y − μ̂) √(w d(y, μ̂)), d the family's unit deviance (the default for a
  GLMM, as R's ``residuals(glmer_fit)``).

``scaled=True`` divides by σ̂ (the residual SD of an LMM, √scale of a GLMM), lme4's ``scaled``.
Source: lme4's ``residuals.merMod``/``residuals.glmResp`` (Bates et al. 2015) and R's
``binomial()$dev.resids`` etc. for the unit deviances (McCullagh & Nelder 1989, §2.3).
"""

from __future__ import annotations

import numpy as np
from scipy import special

__all__ = ["residuals"]

_GLMM_TYPES = ("deviance", "pearson", "response", "working")
_LMM_TYPES = ("response", "pearson")


def unit_deviances(family, y: np.ndarray, mu: np.ndarray, w: np.ndarray) -> np.ndarray:
    """w·d(y, μ) per observation; their sum is the family's deviance."""
    name = family.name
    if name == "binomial":
        d = 2 * (special.xlogy(y, y / mu) + special.xlogy(1 - y, (1 - y) / (1 - mu)))
    elif name == "poisson":
        d = 2 * (special.xlogy(y, y / mu) - (y - mu))
    elif name == "Gamma":
        d = 2 * (-np.log(y / mu) + (y - mu) / mu)
    elif name == "negative_binomial":
        th = float(family.nb_theta)
        d = 2 * (special.xlogy(y, y / mu) - (y + th) * np.log((y + th) / (mu + th)))
    else:
        raise ValueError(f"no deviance residuals for the {name!r} family")
    return w * np.maximum(d, 0.0)


def residuals(result, type: str | None = None, scaled: bool = False) -> np.ndarray:
    """Residuals of ``result`` of the given ``type`` (see the module docstring)."""
    family = getattr(result, "family", None)
    types = _LMM_TYPES if family is None else _GLMM_TYPES
    if type is None:
        type = "response" if family is None else "deviance"
    if type not in types:
        kind = "a linear mixed model" if family is None else "a GLMM"
        raise ValueError(f"type must be one of {list(types)} for {kind}, got {type!r}")
    if not isinstance(scaled, bool | np.bool_):
        raise TypeError(f"scaled must be True or False, got {scaled!r}")
    d = result.design
    if result.fittedvalues is None or d.y is None:
        raise ValueError("this model was fitted from a lazy frame's cross-products: residuals need "
                         "row-level data; collect the frame and fit it eagerly")
    y, mu = np.asarray(d.y, dtype=float), np.asarray(result.fittedvalues, dtype=float)
    w = np.ones_like(y) if d.weights is None else np.asarray(d.weights, dtype=float)
    r = y - mu
    if type == "pearson":
        r = np.sqrt(w) * r if family is None else np.sqrt(w / family.variance(mu)) * r
    elif type == "working":
        r = r / family.link.mu_eta(family.link.link(mu))
    elif type == "deviance":
        r = np.sign(r) * np.sqrt(unit_deviances(family, y, mu, w))
    return r / np.sqrt(result.scale) if scaled else r
