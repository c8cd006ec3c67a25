"""Newton's method with finite-difference derivatives, for the GLMM's second stage.

The Laplace deviance D(θ, β) is smooth and, from the first stage's estimates, close to quadratic;
its Hessian is needed anyway for the standard errors (lme4 reports the β block of 2H⁻¹). So
the second stage takes Newton steps x ← x − H⁻¹g with g and H by central differences,

    gᵢ   = (D(x + hᵢeᵢ) − D(x − hᵢeᵢ)) / 2hᵢ,
    Hᵢᵢ  = (D(x + hᵢeᵢ) − 2D(x) + D(x − hᵢeᵢ)) / hᵢ²,
    Hᵢⱼ  = (D(x + hᵢeᵢ + hⱼeⱼ) + D(x − hᵢeᵢ − hⱼeⱼ) − D(x ± hᵢeᵢ) − D(x ± hⱼeⱼ) + 2D(x)) / 2hᵢhⱼ,

1 + 2d + d(d − 1) evaluations with O(h²) errors (or, with an analytic gradient, central
differences of gradients: 2d evaluations), the steps hᵢ a fixed fraction of each parameter's
standard error (from the previous Hessian); the first Hessian, far from the optimum, is
one-sided (fewer evaluations; its O(h) errors only slow the first step's convergence).

With an analytic gradient, the one-sided first Hessian (its β block may be given: 2R_X'R_X from
the first stage) only starts BFGS, one gradient per step, which reaches the optimum in a few
steps; one Hessian there confirms it (the Newton step it gives is below :data:`STEP_SE` standard
errors) and gives the SEs — where Newton with a Hessian at every iterate spent 2d + 1 gradients
per iterate. That Hessian is one-sided (d gradients, not 2d) with steps of :data:`FWD_SE`
standard errors: its O(h) error (h/2 times the third derivative) is then ~10⁻⁵ of the SEs, near
the central differences' own O(h²) error at H_SE (measured on cbpp, grouseticks and VerbAgg:
2–4 × 10⁻⁶ relative to the central Hessian's SEs); the analytic gradients, at modes warm-started
on their tangent, are smooth at that scale.

Newton converges quadratically, so from the first stage it takes a few iterations. It stops once
the step is below :data:`STEP_SE` standard errors, or once two Hessians show how fast the SEs
change along the path (κ, relative change per standard error moved) and the step δ (in SEs) is
small enough that κδ < :data:`SE_TOL` and the remaining error of the location, about κδ², is
negligible; the last Hessian (that close to the optimum) gives the standard errors. Steps are
halved until the deviance decreases and projected onto the bounds (a variance parameter at 0).
If the Hessian is not positive definite or no step decreases the deviance the caller falls back
to another optimizer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["NewtonResult", "fd_derivatives", "fd_hessian_from_grad", "newton_minimize", "quasi_newton"]

STEP_SE = 1e-5  # converged once every step component is below this many standard errors
SE_TOL = 1e-5  # ... or once the SEs at the next iterate are predicted within this of the current
H_SE = 5e-3  # finite-difference step as a fraction of the standard error
FWD_SE = 1.5e-5  # ... of the one-sided Hessian that confirms the quasi-Newton optimum
BFGS_SE = 1e-6  # BFGS (before the confirming Hessian) stops once its step is below this many SEs


@dataclass
class NewtonResult:
    x: np.ndarray
    fun: float
    grad: np.ndarray  # at x: the quadratic model's when converged, else where ``hess`` was taken
    hess: np.ndarray
    n_evals: int
    converged: bool
    message: str


def fd_derivatives(
    f: Callable[[np.ndarray], float], x: np.ndarray, h: np.ndarray, f0: float | None = None,
    forward: bool = False,
):
    """(D(x), g, H, evaluations) by central differences with steps h; ``forward``: one-sided
    (1 + 2d + d(d − 1)/2 evaluations, H with O(h) errors, g corrected to O(h²) by H)."""
    d = x.size
    n = 0
    if f0 is None:
        f0 = f(x)
        n += 1
    fp, fm = np.empty(d), np.empty(d)
    for i in range(d):
        e = np.zeros(d)
        e[i] = h[i]
        fp[i], fm[i] = f(x + e), f(x + 2 * e if forward else x - e)
        n += 2
    if forward:  # fm holds f(x + 2hᵢeᵢ)
        H = np.diag((fm - 2 * fp + f0) / h**2)
        g = (fp - f0) / h - 0.5 * h * np.diag(H)
    else:
        g = (fp - fm) / (2 * h)
        H = np.diag((fp - 2 * f0 + fm) / h**2)
    for i in range(d):
        for j in range(i):
            e = np.zeros(d)
            e[i], e[j] = h[i], h[j]
            if forward:
                H[i, j] = H[j, i] = (f(x + e) - fp[i] - fp[j] + f0) / (h[i] * h[j])
                n += 1
                continue
            fpp, fmm = f(x + e), f(x - e)
            n += 2
            H[i, j] = H[j, i] = (fpp + fmm - fp[i] - fm[i] - fp[j] - fm[j] + 2 * f0) / (2 * h[i] * h[j])
    return f0, g, H, n


def fd_hessian_from_grad(
    fg: Callable[[np.ndarray], tuple[float, np.ndarray]], x: np.ndarray, h: np.ndarray, forward: bool = False,
    at_x: tuple[float, np.ndarray] | None = None, h_tail: np.ndarray | None = None,
    anchor: Callable[[np.ndarray | None], None] | None = None,
):
    """(D(x), g, H, evaluations) with an analytic gradient: H's columns are central differences
    of the gradient (2d gradient evaluations; ``forward``: one-sided, d), symmetrized. ``at_x``:
    (D(x), g(x)) when already known. ``h_tail`` (forward only): the trailing block of H,
    given, so that only the leading d − len(h_tail) columns are differenced and the rest of
    the cross block is taken from them by symmetry. ``anchor(x)`` is called once the value at
    x is known and ``anchor(None)`` at the end (the caller may warm-start around x)."""
    n = 0
    if at_x is None:
        at_x = fg(x)
        n = 1
    f0, g = at_x[0], np.asarray(at_x[1], dtype=float)
    d = x.size
    lead = d if h_tail is None else d - h_tail.shape[0]
    H = np.empty((d, d))
    if anchor is not None:
        anchor(x)
    try:
        for i in range(lead):
            e = np.zeros(d)
            e[i] = h[i]
            if forward:
                H[:, i] = (fg(x + e)[1] - g) / h[i]
                n += 1
            else:
                H[:, i] = (fg(x + e)[1] - fg(x - e)[1]) / (2 * h[i])
                n += 2
    finally:
        if anchor is not None:
            anchor(None)
    if h_tail is not None:
        H[:lead, :lead] = 0.5 * (H[:lead, :lead] + H[:lead, :lead].T)
        H[:lead, lead:] = H[lead:, :lead].T
        H[lead:, lead:] = h_tail
        return f0, g, H, n
    return f0, g, 0.5 * (H + H.T), n


def _se_units(H: np.ndarray, free: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
    """(Cholesky factor of H's free block or None if it is not positive definite, the SEs
    √(2 diag H⁻¹) of the free parameters)."""
    try:
        Lf = np.linalg.cholesky(H[np.ix_(free, free)])
    except np.linalg.LinAlgError:
        return None, np.empty(0)
    Li = np.linalg.inv(Lf)
    return Lf, np.sqrt(np.maximum(2.0 * np.sum(Li * Li, axis=0), 0.0))


def quasi_newton(
    fg: Callable[[np.ndarray], tuple[float, np.ndarray]], x: np.ndarray, f0: float, g: np.ndarray,
    B: np.ndarray, lower: np.ndarray, tol: float = BFGS_SE, max_iter: int = 40,
):
    """BFGS from x with the Hessian approximation B (Nocedal & Wright 2006, §6.1) and a
    backtracking (Armijo) line search, projected onto x ≥ lower, until the step is below ``tol``
    standard errors (from B). Returns (x, D(x), g, evaluations, converged)."""
    n = 0
    for _ in range(max_iter):
        free = ~((x <= lower) & (g > 0))
        Lf, se = _se_units(B, free)
        if Lf is None:
            return x, f0, g, n, False
        step = np.zeros_like(x)
        step[free] = -np.linalg.solve(Lf.T, np.linalg.solve(Lf, g[free]))
        if float(np.max(np.abs(step[free]) / se, initial=0.0)) < tol:
            return x, f0, g, n, True
        alpha = 1.0
        for _h in range(30):
            x_t = np.maximum(x + alpha * step, lower)
            f_t, g_t = fg(x_t)
            n += 1
            if np.isfinite(f_t) and f_t <= f0 + 1e-4 * float(g @ (x_t - x)) + 1e-13 * abs(f0):
                break
            alpha /= 2
        else:
            return x, f0, g, n, False
        g_t = np.asarray(g_t, dtype=float)
        if not np.all(np.isfinite(g_t)):
            return x, f0, g, n, False
        s, y = x_t - x, g_t - g
        sy = float(s @ y)
        Bs = B @ s
        sBs = float(s @ Bs)
        if sy > 1e-12 * np.sqrt(float(s @ s) * float(y @ y)) and sBs > 0:  # keeps B positive definite
            B = B - np.outer(Bs, Bs) / sBs + np.outer(y, y) / sy
        x, f0, g = x_t, f_t, g_t
    return x, f0, g, n, False


def newton_minimize(
    f: Callable[[np.ndarray], float],
    x0: np.ndarray,
    lower: np.ndarray,
    h0: np.ndarray,
    max_iter: int = 25,
    fg: Callable[[np.ndarray], tuple[float, np.ndarray]] | None = None,
    h_tail: np.ndarray | None = None,
    anchor: Callable[[np.ndarray | None], None] | None = None,
) -> NewtonResult:
    """Minimise f from x0 subject to x ≥ lower by Newton steps with finite-difference derivatives
    (steps ``h0`` for the first Hessian, then :data:`H_SE` standard errors); with ``fg`` (value
    and analytic gradient) the Hessian is the central difference of the gradients, and the
    one-sided first Hessian (its trailing block ``h_tail`` if given, see
    :func:`fd_hessian_from_grad`) starts BFGS (:func:`quasi_newton`, one gradient per step) to
    the optimum, where one (one-sided) Hessian confirms it and gives the SEs."""
    x = np.maximum(np.asarray(x0, dtype=float), lower)
    h = np.asarray(h0, dtype=float).copy()
    n_evals = 0
    f0 = None
    g = H = None
    prev = None  # (x, SEs) at the previous Hessian
    quasi = fg is not None
    known = None  # (D, g) at x when the quasi-Newton phase has them
    confirm = False  # the next Hessian confirms the quasi-Newton optimum (one-sided, tiny steps)
    for _ in range(max_iter):
        first = prev is None and not (quasi and n_evals)  # far from the optimum: one-sided will do
        if fg is None:
            f0, g, H, n = fd_derivatives(f, x, h, f0, forward=first)
        else:
            f0, g, H, n = fd_hessian_from_grad(fg, x, h, forward=first or confirm, at_x=known,
                                               h_tail=h_tail if quasi and first else None, anchor=anchor)
            known = None
        confirm = False
        n_evals += n
        if not (np.isfinite(f0) and np.all(np.isfinite(g)) and np.all(np.isfinite(H))):
            return NewtonResult(x, f0, g, H, n_evals, False, "deviance undefined near the iterate")
        if quasi and first:
            x_q, f_q, g_q, n, ok = quasi_newton(fg, x, f0, g, H, lower)
            n_evals += n
            if ok:  # at the optimum: the next (one-sided) Hessian gives the SEs, with steps in SEs
                _, se_q = _se_units(H, np.ones(x.size, dtype=bool))
                if se_q.size:
                    h = np.where(se_q > 0, FWD_SE * se_q, h)
                    confirm = True
                x, f0, known = x_q, f_q, (f_q, g_q)
                continue
            if np.isfinite(f_q) and f_q < f0:
                x, f0, known = x_q, f_q, (f_q, g_q)
            quasi = False
            continue
        at_bound = (x <= lower) & (g > 0)  # pushing against a bound: held there
        free = ~at_bound
        try:
            Lf = np.linalg.cholesky(H[np.ix_(free, free)])
        except np.linalg.LinAlgError:
            return NewtonResult(x, f0, g, H, n_evals, False, "Hessian not positive definite")
        step = np.zeros_like(x)
        step[free] = -np.linalg.solve(Lf.T, np.linalg.solve(Lf, g[free]))
        se = np.full(x.size, np.inf)
        Hinv = np.linalg.inv(H[np.ix_(free, free)])
        se[free] = np.sqrt(np.maximum(2.0 * np.diag(Hinv), 0.0))
        h = np.where(np.isfinite(se) & (se > 0), H_SE * se, h)
        size = float(np.max(np.abs(step[free]) / se[free], initial=0.0))
        kappa = np.inf
        if prev is not None:
            both = free & np.isfinite(prev[1])
            moved = float(np.max(np.abs(x - prev[0])[both] / se[both], initial=0.0))
            change = float(np.max(np.abs(se[both] / prev[1][both] - 1.0), initial=0.0))
            kappa = change / max(moved, 1e-12)
        if size < STEP_SE or (size < 0.05 and kappa * size < SE_TOL and kappa * size**2 < 1e-7):
            x_new = np.maximum(x + step, lower)
            # the gradient at x_new by the quadratic model (zero but for a bound)
            return NewtonResult(x_new, f0, g + H @ (x_new - x), H, n_evals, True, "Newton step converged")
        prev = (x.copy(), se)
        alpha = 1.0
        for _h in range(30):
            x_t = np.maximum(x + alpha * step, lower)
            f_t = f(x_t)
            n_evals += 1
            if np.isfinite(f_t) and f_t <= f0 + 1e-12 * abs(f0):
                break
            alpha /= 2
        else:
            return NewtonResult(x, f0, g, H, n_evals, False, "no Newton step decreases the deviance")
        x, f0 = x_t, f_t
    return NewtonResult(x, f0, g, H, n_evals, False, "Newton iteration limit reached")
