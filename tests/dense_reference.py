"""Dense reference pieces shared by tests that check the PyMC evaluators against plain numpy."""

from __future__ import annotations

import numpy as np


def group_lambda(d, group: str, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mask of Z's columns of ``group``'s terms, dense Λ restricted to them) for design ``d``."""
    cols = np.zeros(d.q, dtype=bool)
    Lam = np.zeros((d.q, d.q))
    for t in d.terms:
        if t.group == group:
            cols[t.z_start : t.z_start + t.q] = True
            T = t.T(theta)
            for lv in range(t.m):
                j = t.z_start + lv * t.k
                Lam[j : j + t.k, j : j + t.k] = T
    return cols, Lam[np.ix_(cols, cols)]
