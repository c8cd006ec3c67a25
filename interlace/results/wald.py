"""Wald z tests for results whose fixed effects are judged on the normal scale (GLMM, CLMM, Cox)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

__all__ = ["WaldZ"]


class WaldZ:
    """z = β̂ / SE(β̂) and two-sided p = 2 Φ(−|z|), for a class with ``fe_params`` and ``fe_bse``."""

    @property
    def fe_zvalues(self) -> pd.Series:
        return (self.fe_params / self.fe_bse).rename("z_value")

    @property
    def fe_pvalues(self) -> pd.Series:
        z = np.abs(self.fe_zvalues.to_numpy())
        return pd.Series(2 * stats.norm.sf(z), index=self.fe_params.index, name="p_value")
