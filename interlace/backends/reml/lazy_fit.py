"""REML/ML from cross-products alone (lazy frames).

Everything the blocked-Cholesky engine forms from the rows — the diagonal blocks D_j of the
first term's Z₁'WZ₁, B = [Z_r X y]'WZ₁ and M = [Z_r X y]'W[Z_r X y] — is a block of
C = [Z X y]'W[Z X y] (Z'WZ as its lower block triangle: Z_a'WZ_b for terms a ≥ b).
:func:`crossproduct_design` hands C to the engine as
``DesignMatrices.gram`` with row-less y, X and Z, and n set to the number of observations the
aggregates came from, so the deviance, its gradient and the Satterthwaite df are exactly those
of the row-level fit. What needs rows (fitted values, residuals, conditional variances) is not
available.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ...data.design import DesignMatrices

__all__ = ["crossproduct_design"]


def crossproduct_design(
    ZtZ: sp.spmatrix, ZtXy: np.ndarray, XytXy: np.ndarray, terms, X_names, response, n: int
) -> DesignMatrices:
    """A DesignMatrices carrying only the cross-products (see the module docstring)."""
    ZtZ = sp.csc_matrix(ZtZ)
    q, p = ZtZ.shape[0], XytXy.shape[0] - 1
    if ZtXy.shape != (q, p + 1):
        raise ValueError(f"Z'[X y] has shape {ZtXy.shape}, expected {(q, p + 1)}")
    return DesignMatrices(
        y=np.zeros(0),
        X=np.zeros((0, p)),
        X_names=list(X_names),
        Z=sp.csc_matrix((0, q)),
        terms=list(terms),
        weights=None,
        offset=np.zeros(0),
        response=response,
        n_rows=int(n),
        gram=(ZtZ, np.asarray(ZtXy, dtype=float), np.asarray(XytXy, dtype=float)),
    )
