"""Bounded minimisation of a profiled deviance over θ: L-BFGS-B (default) or BOBYQA."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

__all__ = ["OptimResult", "minimize_theta", "GRAD_TOL"]

GRAD_TOL = 2e-3  # lme4's check.conv.grad tolerance on the deviance gradient


@dataclass
class OptimResult:
    x: np.ndarray
    fun: float
    n_evals: int
    converged: bool
    message: str
    grad_norm: float


def _central_gradient(f: Callable[[np.ndarray], float], x: np.ndarray, f0: float) -> np.ndarray:
    g = np.empty_like(x)
    for i in range(x.size):
        h = 1e-6 * max(1.0, abs(x[i]))
        e = np.zeros_like(x)
        e[i] = h
        g[i] = (f(x + e) - f(x - e)) / (2 * h)
    return g


def _projected_grad_norm(g: np.ndarray, x: np.ndarray, lower: np.ndarray) -> float:
    """Largest gradient component, ignoring those that push against an active lower bound."""
    active = (x <= lower + 1e-10) & (g > 0)
    return float(np.max(np.abs(np.where(active, 0.0, g)), initial=0.0))


def _run(
    f, x0: np.ndarray, lower: np.ndarray, method: str, maxiter: int
) -> tuple[np.ndarray, float, str, bool]:
    if method == "lbfgsb":

        def fg(x):
            f0 = f(x)
            return f0, _central_gradient(f, x, f0)

        bounds = [(lo if np.isfinite(lo) else None, None) for lo in lower]
        res = minimize(
            fg,
            x0,
            jac=True,
            method="L-BFGS-B",
            bounds=bounds,
            options={"maxiter": maxiter, "ftol": 1e-15, "gtol": 1e-8, "maxcor": 20},
        )
        x, fx, msg = res.x, float(res.fun), str(res.message)
        ok = bool(res.success) or "ABNORMAL" in msg.upper()
    elif method == "bobyqa":
        import pybobyqa

        upper = np.full_like(x0, 1e8)
        lo = np.where(np.isfinite(lower), lower, -1e8)
        rhobeg = min(0.95, 0.2 * max(1.0, float(np.max(np.abs(x0)))))
        res = pybobyqa.solve(
            f,
            x0,
            bounds=(lo, upper),
            rhobeg=rhobeg,
            rhoend=1e-9,
            maxfun=maxiter * 10,
            seek_global_minimum=False,
            objfun_has_noise=False,
            scaling_within_bounds=False,
        )
        x, fx, msg = np.asarray(res.x, dtype=float), float(res.f), str(res.msg)
        ok = res.flag in (res.EXIT_SUCCESS, res.EXIT_SLOW_WARNING)
    else:
        raise ValueError(f"optimizer must be 'lbfgsb' or 'bobyqa', got {method!r}")
    return x, fx, msg, ok


def minimize_theta(
    fun: Callable[[np.ndarray], float],
    x0: np.ndarray,
    lower: np.ndarray,
    method: str = "lbfgsb",
    maxiter: int = 2000,
) -> OptimResult:
    """Minimise ``fun`` subject to ``x >= lower``.

    The deviance depends on θ only through ΛΛ', so it is symmetric about 0 in each diagonal
    element: central differences may step below a bound of 0 safely.
    """
    count = [0]

    def f(x):
        count[0] += 1
        return fun(x)

    x0 = np.maximum(np.asarray(x0, dtype=float), lower)
    x, fx, msg, ok = _run(f, x0, lower, method, maxiter)
    # A diagonal element of T at its bound 0 is always a stationary point (the deviance is
    # symmetric about 0 there), so a line search that lands on the bound stops even when the
    # deviance falls away from it. Probe inside the bound and restart if it does.
    for _ in range(3):
        at_bound = np.isfinite(lower) & (x <= lower + 1e-8)
        if not at_bound.any():
            break
        best = None
        for delta in (1e-3, 1e-2, 1e-1):
            probe = np.where(at_bound, lower + delta, x)
            fp = f(probe)
            if fp < fx - 1e-10 and (best is None or fp < best[1]):
                best = (probe, fp)
        if best is None:
            break
        x2, fx2, msg2, ok2 = _run(f, best[0], lower, method, maxiter)
        if fx2 >= fx:
            break
        x, fx, msg, ok = x2, fx2, msg2, ok2
    g = _central_gradient(fun, x, fx)
    gnorm = _projected_grad_norm(g, x, lower)
    if gnorm > GRAD_TOL:
        ok = False
    return OptimResult(x=x, fun=fx, n_evals=count[0], converged=ok, message=msg, grad_norm=gnorm)
