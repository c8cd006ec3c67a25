"""Bounded minimisation of a profiled deviance over θ: L-BFGS-B (default) or BOBYQA."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import minimize

__all__ = ["OptimResult", "minimize_theta", "scaled_grad_norm", "GRAD_TOL"]

GRAD_TOL = 2e-3  # lme4's check.conv.grad tolerance on the deviance gradient
LOG_FLOOR = float(np.log(1e-10))  # smallest diagonal θ of the log-scale phase
POLISH_BELOW = 1e-2  # a diagonal θ below this after the log-scale phase is polished on θ's scale
REL_GTOL = 1e-8  # analytic-gradient stop: projected |gradient| <= REL_GTOL · max(1, |deviance|)


@dataclass
class OptimResult:
    x: np.ndarray
    fun: float
    n_evals: int
    converged: bool
    message: str
    grad_norm: float
    grad: np.ndarray | None = None  # gradient at x
    grad_scaled: np.ndarray | None = None  # gradient and Hessian in the rescaled parameters,
    hess_scaled: np.ndarray | None = None  # set by the convergence check
    optimizer_ok: bool = True  # the optimizer's own verdict, before the gradient check
    check: Any = None  # the ConvergenceCheck at x (convergence.minimize_with_remedies)
    tried: list[str] = field(default_factory=list)  # what was run, in order


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


def scaled_grad_norm(g: np.ndarray, x: np.ndarray, lower: np.ndarray, hess: np.ndarray) -> float:
    """lme4's ``check.conv.grad`` statistic: max over the free parameters of min(|g|, |R⁻¹g|)
    with R'R the Hessian (R⁻¹g is the gradient in units of the estimates' standard errors).

    Parameters at an active lower bound are left out; if the free Hessian is not positive
    definite the absolute projected gradient is used.
    """
    free = ~((x <= lower + 1e-10) & (g > 0))
    if not free.any():
        return 0.0
    gf = g[free]
    try:
        R = np.linalg.cholesky(hess[np.ix_(free, free)]).T
    except np.linalg.LinAlgError:
        return _projected_grad_norm(g, x, lower)
    sc = np.linalg.solve(R, gf)
    return float(np.max(np.minimum(np.abs(gf), np.abs(sc))))


class _GradientStop:
    """Stops L-BFGS-B (through its callback) once the projected gradient at the current
    iterate is below REL_GTOL · max(1, |f|): the deviance is a sum of n terms, so rounding
    puts a floor under its gradient proportional to its size, and an absolute tolerance
    either stops too early on small data or lets the line search churn at the optimum on
    large data."""

    def __init__(self, fg, lower: np.ndarray, rel_gtol: float = REL_GTOL):
        self.fg, self.lower, self.rel_gtol = fg, lower, rel_gtol
        self.last: tuple | None = None
        self.stopped = False

    def __call__(self, x):
        v, g = self.fg(x)
        self.last = (np.array(x, dtype=float), v, np.asarray(g, dtype=float))
        return v, g

    def callback(self, intermediate_result) -> None:
        if self.last is None or not np.array_equal(self.last[0], intermediate_result.x):
            return
        x, v, g = self.last
        if _projected_grad_norm(g, x, self.lower) <= self.rel_gtol * max(1.0, abs(v)):
            self.stopped = True
            raise StopIteration


def _run(
    f, x0: np.ndarray, lower: np.ndarray, method: str, maxiter: int, fg=None, rhoend: float = 1e-9
) -> tuple[np.ndarray, float, str, bool]:
    if method == "lbfgsb":
        stop = None
        if fg is None:

            def fg(x):
                f0 = f(x)
                return f0, _central_gradient(f, x, f0)
        else:
            stop = _GradientStop(fg, lower)
            fg = stop

        bounds = [(lo if np.isfinite(lo) else None, None) for lo in lower]
        res = minimize(
            fg,
            x0,
            jac=True,
            method="L-BFGS-B",
            bounds=bounds,
            callback=None if stop is None else stop.callback,
            options={"maxiter": maxiter, "ftol": 1e-15, "gtol": 1e-8, "maxcor": 20},
        )
        x, fx, msg = res.x, float(res.fun), str(res.message)
        ok = bool(res.success) or "ABNORMAL" in msg.upper() or (stop is not None and stop.stopped)
        if stop is not None and stop.stopped:
            msg = "CONVERGENCE: PROJECTED GRADIENT AT ROUNDING LEVEL"
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
            rhoend=rhoend,
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


def _run_log(
    fg, x0: np.ndarray, lower: np.ndarray, maxiter: int, scale: np.ndarray, rel_gtol: float = REL_GTOL
) -> tuple[np.ndarray, float, str, bool]:
    """L-BFGS-B on u = s·z, z = log θ for the entries bounded below by 0 (T's diagonal) and
    z = θ elsewhere, s a per-parameter scale.

    The deviance grows like log θ² for large θ (each level contributes log(1 + n θ²)), so on
    the log scale it is much closer to quadratic; its curvature there grows with the term's
    number of levels, which ``scale`` (√(m/m_max) per term) evens out.
    """
    pos = np.isfinite(lower) & (lower == 0)

    def to_x(u):
        x = u / scale
        x[pos] = np.exp(x[pos])
        return x

    def fgu(u):
        x = to_x(u)
        v, g = fg(x)
        g = np.array(g, dtype=float)
        g[pos] *= x[pos]
        return v, g / scale

    u0 = x0.copy()
    u0[pos] = np.log(np.maximum(x0[pos], 1e-4))
    u0 *= scale
    bounds = [(LOG_FLOOR * s, None) if p else (None, None) for p, s in zip(pos, scale, strict=True)]
    u_lower = np.array([b[0] if b[0] is not None else -np.inf for b in bounds])
    stop = _GradientStop(fgu, u_lower, rel_gtol)
    res = minimize(
        stop, u0, jac=True, method="L-BFGS-B", bounds=bounds, callback=stop.callback,
        options={"maxiter": maxiter, "ftol": 1e-12, "gtol": 1e-7, "maxcor": 20},
    )
    if stop.stopped:
        return to_x(res.x), float(res.fun), "CONVERGENCE: PROJECTED GRADIENT AT ROUNDING LEVEL", True
    return to_x(res.x), float(res.fun), str(res.message), bool(res.success)


def minimize_theta(
    fun: Callable[[np.ndarray], float],
    x0: np.ndarray,
    lower: np.ndarray,
    method: str = "lbfgsb",
    maxiter: int = 2000,
    value_and_grad: Callable[[np.ndarray], tuple[float, np.ndarray]] | None = None,
    scale: np.ndarray | None = None,
    rhoend: float = 1e-9,
    final_gradient: bool = True,
    rel_gtol: float = REL_GTOL,
) -> OptimResult:
    """Minimise ``fun`` subject to ``x >= lower``.

    With ``value_and_grad`` (an analytic gradient) L-BFGS-B uses it, first on a log scale
    (see :func:`_run_log`; ``scale`` per parameter), then, near a bound, on θ's own scale;
    otherwise central differences. The deviance depends on θ only through ΛΛ', so it is
    symmetric about 0 in each diagonal element: central differences may step below a bound of 0
    safely. ``rhoend`` is BOBYQA's final trust-region radius; without ``final_gradient`` the
    gradient at the optimum (central differences when there is no ``value_and_grad``) is not
    formed, and ``converged`` is the optimizer's own verdict. ``rel_gtol``: the log-scale phase
    stops once the projected gradient is below ``rel_gtol`` · max(1, |f|).
    """
    count = [0]

    def f(x):
        count[0] += 1
        return fun(x)

    fg = None
    if value_and_grad is not None:
        last: list = [None, None]

        def fg(x):
            if last[0] is not None and np.array_equal(x, last[0]):
                return last[1]
            count[0] += 1
            last[0], last[1] = np.array(x, dtype=float), value_and_grad(x)
            return last[1]

    x0 = np.maximum(np.asarray(x0, dtype=float), lower)
    if method == "lbfgsb" and fg is not None:
        # log-scale phase, then (near a bound or if it failed) a polish on θ's own scale
        s = np.ones_like(x0) if scale is None else np.asarray(scale, dtype=float)
        x, fx, msg, ok = _run_log(fg, x0, lower, maxiter, s, rel_gtol)
        if not ok or np.any(np.isfinite(lower) & (x < lower + POLISH_BELOW)):
            x2, fx2, msg2, ok2 = _run(f, x, lower, method, maxiter, fg)
            if fx2 <= fx:
                x, fx, msg, ok = x2, fx2, msg2, ok2
    else:
        x, fx, msg, ok = _run(f, x0, lower, method, maxiter, fg, rhoend)
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
        x2, fx2, msg2, ok2 = _run(f, best[0], lower, method, maxiter, fg, rhoend)
        if fx2 >= fx:
            break
        x, fx, msg, ok = x2, fx2, msg2, ok2
    if fg is not None:
        g = fg(x)[1]
    elif final_gradient:
        g = _central_gradient(fun, x, fx)
    else:
        g = np.zeros_like(x)
    gnorm = _projected_grad_norm(g, x, lower)
    return OptimResult(
        x=x, fun=fx, n_evals=count[0], converged=ok and gnorm <= GRAD_TOL, message=msg, grad_norm=gnorm,
        grad=np.asarray(g, dtype=float), optimizer_ok=ok,
    )
