"""Numerical derivatives by central differences with Richardson extrapolation.

With step sizes h, h/2, h/4, h/8 the O(h²), O(h⁴), … error terms of the central differences
are eliminated in turn (numDeriv's scheme, which lmerTest uses); on smooth deviance functions
this gives derivatives accurate to roughly 1e-9 relative.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["jacobian", "hessian"]


def _steps(x: np.ndarray, d: float, eps: float) -> np.ndarray:
    h = d * np.abs(x)
    return np.where(np.abs(x) < 1e-5, eps, h)


def _richardson(estimates: list[np.ndarray], v: float = 2.0) -> np.ndarray:
    """Combine estimates at steps h/v^k whose errors are series in h²."""
    table = [np.asarray(e, dtype=float) for e in estimates]
    for m in range(1, len(table)):
        f = v ** (2 * m)
        table = [(f * table[i + 1] - table[i]) / (f - 1) for i in range(len(table) - 1)]
    return table[0]


def jacobian(
    fun: Callable[[np.ndarray], np.ndarray], x: np.ndarray, d: float = 1e-4, eps: float = 1e-4,
    r: int = 4,
) -> np.ndarray:
    """∂fun/∂x as an array of shape ``fun(x).shape + (len(x),)``."""
    x = np.asarray(x, dtype=float)
    h0 = _steps(x, d, eps)
    cols = []
    for i in range(x.size):
        ests = []
        for k in range(r):
            h = h0[i] / 2**k
            e = np.zeros_like(x)
            e[i] = h
            ests.append((np.asarray(fun(x + e)) - np.asarray(fun(x - e))) / (2 * h))
        cols.append(_richardson(ests))
    return np.stack(cols, axis=-1)


def hessian(
    fun: Callable[[np.ndarray], float], x: np.ndarray, d: float = 0.1, eps: float = 1e-4,
    r: int = 4,
) -> np.ndarray:
    """The symmetric matrix of second derivatives of a scalar ``fun`` at ``x``."""
    x = np.asarray(x, dtype=float)
    nx = x.size
    h0 = _steps(x, d, eps)
    f0 = float(fun(x))
    H = np.zeros((nx, nx))
    for i in range(nx):
        for j in range(i + 1):
            ests = []
            for k in range(r):
                hi, hj = h0[i] / 2**k, h0[j] / 2**k
                ei = np.zeros(nx)
                ei[i] = hi
                if i == j:
                    ests.append((fun(x + ei) - 2 * f0 + fun(x - ei)) / hi**2)
                else:
                    ej = np.zeros(nx)
                    ej[j] = hj
                    ests.append(
                        (fun(x + ei + ej) - fun(x + ei - ej) - fun(x - ei + ej) + fun(x - ei - ej))
                        / (4 * hi * hj)
                    )
            H[i, j] = H[j, i] = _richardson(ests)
    return H
