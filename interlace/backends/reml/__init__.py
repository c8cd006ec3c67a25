"""The frequentist backend: REML/ML on a blocked Cholesky (lme4's PLS formulation)."""

from __future__ import annotations

from ...data.design import DesignMatrices
from ...model.spec import ModelSpec
from ...results.lmm import CrossedLMEResult
from .engine import REMLEngine, make_result
from .lmm import LMMFit, fit_lmm

__all__ = ["fit", "LMMFit", "fit_lmm", "REMLEngine"]


def fit(spec: ModelSpec, design: DesignMatrices, n_dropped: int = 0) -> CrossedLMEResult:
    """Fit ``spec`` on ``design``; the result carries a :class:`REMLEngine` for refits."""
    return make_result(spec, design, fit_lmm(design, spec), n_dropped)
