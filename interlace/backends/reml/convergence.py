"""lme4's convergence check at the final point, and the remedies tried before giving up.

The check (lme4's ``checkConv``, ``check.conv.grad`` and ``check.conv.hess`` at their default
tolerances) looks at the gradient g and Hessian H of the deviance in the optimizer's
parameters x (θ, then any correlation parameter):

- gradient: with R'R = H (Cholesky), max_i min(|(R⁻¹g)_i|, |g_i|) ≤ 2·10⁻³ — R⁻¹g is the
  gradient in the units of the curvature, so a flat optimum with a large raw gradient passes
  and a sharp one needs a small gradient;
- Hessian: no eigenvalue below −10⁻⁶ (a saddle or maximum) and H numerically non-singular.

Parameters on their lower bound (a diagonal T_jj = 0) are left out of both and judged on
their own: the deviance must not fall away into the interior (no negative derivative; with a
zero derivative — T_jj = 0 is a stationary point when the column has nothing below the
diagonal — no negative curvature), and if the column has a non-zero entry below the diagonal
its derivative must be zero, since turning the column's sign changes neither TT' nor the
deviance but flips that derivative. lme4 skips the whole check for fits with a θ within 10⁻⁴ of
its bound; this check is applied to every fit.

With θ spanning many orders of magnitude (a random slope on calendar years) the statistic in θ
measures rounding, not distance to the optimum; so a point that fails in θ is checked again in
the rescaled θ̃ of :func:`theta_rescaling` (the same model with orthonormal random-effect
columns — lme4's check on the centred and scaled model), and passing there counts.

The verdict never comes from the optimizer's return message: L-BFGS-B's "ABNORMAL" line-search
exit at a point that passes the check is converged, and a "success" that fails it is not.

When the check fails, :func:`minimize_with_remedies` tries, from the best point so far,

1. Newton steps x − H⁻¹g when the predicted decrease ½g'H⁻¹g is already below the deviance's
   rounding (only the check's statistic is off, as when θ spans many orders of magnitude);
   restarts below begin off the point the optimizer stopped at where that is a saddle (along
   the eigenvector of H's negative eigenvalue) or a bound the deviance falls away from;
2. the same optimizer restarted with θ rescaled (:func:`theta_rescaling`: each term's factor
   T = L·T̃ with L chosen so that the term's columns, so transformed, are orthonormal — what
   centring and scaling the covariates would do, without changing the model), from the best
   point and then from lme4's start on that scale (T̃ = I);
3. the other optimizer (L-BFGS-B ↔ BOBYQA) on the same rescaled θ, from the best point and
   from the start,

and reports which it tried. The lowest deviance found is kept; remedies only replace it by a
point that is lower, or equal to within rounding and passing the check.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from ...data.design import DesignMatrices, tril_colwise
from .optimize import GRAD_TOL, OptimResult, minimize_theta

__all__ = [
    "ConvergenceCheck", "check_convergence", "theta_rescaling", "theta_columns", "minimize_with_remedies",
    "convergence_warning", "HESS_TOL",
]

HESS_TOL = 1e-6  # lme4's check.conv.hess tolerance on the Hessian's eigenvalues
NOISE = 1e-9  # deviances equal to within NOISE · max(1, |deviance|) count as equal
BOUND_TOL = 1e-10  # a parameter this close to its lower bound is on it

Derivatives = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass
class ConvergenceCheck:
    """lme4's verdict at one point: ``ok`` and the numbers behind it."""

    ok: bool
    max_grad: float  # lme4's max|grad| statistic (inf when it cannot be evaluated)
    n_negative: int  # eigenvalues of the free Hessian below −HESS_TOL
    messages: list[str] = field(default_factory=list)
    newton_step: np.ndarray | None = None  # −H⁻¹g on the free parameters (0 elsewhere)
    predicted_decrease: float = np.inf  # ½ g'H⁻¹g


Columns = list[tuple[int, tuple[int, ...]]]


def theta_columns(design: DesignMatrices) -> Columns:
    """(index of T_jj, indices of T_ij for i > j) in θ for every column j of every term."""
    out: Columns = []
    for t in design.terms:
        rows, cols = tril_colwise(t.k)
        for j in range(t.k):
            idx = [t.theta_start + a for a, c in enumerate(cols) if c == j]  # diagonal first
            out.append((idx[0], tuple(idx[1:])))
    return out


def check_convergence(
    g: np.ndarray, H: np.ndarray, x: np.ndarray, lower: np.ndarray, rescale: np.ndarray | None = None,
    columns: Columns = (),
) -> ConvergenceCheck:
    """lme4's ``checkConv`` gradient and Hessian checks (see the module docstring) on x and, if
    they fail there and ``rescale`` = P is given, on x̃ = P⁻¹x. g and H are the derivatives in
    x̃ (in x without ``rescale``); in x they are P⁻ᵀg and P⁻ᵀHP⁻¹. ``columns``
    (:func:`theta_columns`) locates the columns of the factors T."""
    g, H, x = np.asarray(g, float), np.asarray(H, float), np.asarray(x, float)
    if rescale is None:
        return _check_one(g, H, x, lower, columns)
    Pinv = np.linalg.inv(np.asarray(rescale, float))
    check = _check_one(Pinv.T @ g, Pinv.T @ H @ Pinv, x, lower, columns)
    if check.ok:
        return check
    other = _check_one(g, H, Pinv @ x, lower, columns)
    if not other.ok:
        return check
    step = None if other.newton_step is None else np.asarray(rescale, float) @ other.newton_step
    return ConvergenceCheck(True, other.max_grad, other.n_negative, [], step, other.predicted_decrease)


def _turnable(x: np.ndarray, on_bound: np.ndarray, columns: Columns) -> np.ndarray:
    """Diagonals T_jj on their bound 0 whose column has a non-zero entry below: turning the
    column's sign leaves TT' unchanged and flips the sign of ∂f/∂T_jj, so such a point is a
    minimum only if that derivative is 0."""
    out = np.zeros(x.size, dtype=bool)
    for d, below in columns:
        out[d] = on_bound[d] and any(x[i] != 0 for i in below)
    return out


def _check_one(
    g: np.ndarray, H: np.ndarray, x: np.ndarray, lower: np.ndarray, columns: Columns
) -> ConvergenceCheck:
    g, H, x = np.asarray(g, float), np.asarray(H, float), np.asarray(x, float)
    messages: list[str] = []
    on_bound = np.isfinite(lower) & (x <= lower + BOUND_TOL)
    turnable = _turnable(x, on_bound, columns)
    if np.any(turnable & (np.abs(g) > GRAD_TOL)):
        messages.append("the deviance falls away from the bound once a column of T turns its sign")
    # the deviance must not fall away from the bound into the interior: a negative derivative,
    # or a zero one (θ's diagonal is a stationary point at 0) with negative curvature
    plain = on_bound & ~turnable
    inward = plain & (g < -GRAD_TOL)
    curving_down = plain & (np.abs(g) <= GRAD_TOL) & (np.diag(H) < -HESS_TOL)
    free = ~on_bound
    n_neg = int(curving_down.sum())
    if inward.any() or curving_down.any():
        messages.append(f"the deviance falls away from the bound in {int((inward | curving_down).sum())} "
                        "parameter(s)")
    if not free.any():
        ok = not messages
        return ConvergenceCheck(ok, 0.0, n_neg, messages, np.zeros_like(x), 0.0)
    gf, Hf = g[free], H[np.ix_(free, free)]
    if not (np.all(np.isfinite(gf)) and np.all(np.isfinite(Hf))):
        return ConvergenceCheck(False, np.inf, n_neg, messages + ["non-finite gradient or Hessian"])
    ev = np.linalg.eigvalsh(0.5 * (Hf + Hf.T))
    n_neg += int(np.sum(ev < -HESS_TOL))
    if np.any(ev < -HESS_TOL):
        messages.append(f"the Hessian has {int(np.sum(ev < -HESS_TOL))} negative eigenvalue(s)")
    try:
        R = np.linalg.cholesky(Hf).T
    except np.linalg.LinAlgError:
        R = None
    if R is None or np.any(np.abs(ev) < HESS_TOL):
        messages.append("the Hessian is numerically singular")
        return ConvergenceCheck(False, np.inf, n_neg, messages)
    scaled = np.linalg.solve(R, gf)
    max_grad = float(np.max(np.minimum(np.abs(scaled), np.abs(gf))))
    if max_grad > GRAD_TOL:
        messages.append(f"max|grad| = {max_grad:.3g} (tol = {GRAD_TOL:g}, lme4's scaled gradient)")
    step = np.zeros_like(x)
    newton = np.linalg.solve(Hf, gf)
    step[free] = -newton
    return ConvergenceCheck(not messages, max_grad, n_neg, messages, step, 0.5 * float(gf @ newton))


def _term_gram(design: DesignMatrices, t) -> np.ndarray:
    """Σ over levels of the term's k × k diagonal blocks of Z'WZ, divided by n."""
    sl = slice(t.z_start, t.z_start + t.q)
    if design.gram is not None:
        G = sp.csc_matrix(design.gram[0])[sl, sl]
    else:
        Zt = design.Z[:, sl]
        if design.weights is not None:
            Zt = sp.diags(np.sqrt(design.weights)) @ Zt
        G = Zt.T @ Zt
    G = sp.coo_matrix(G)
    same = G.row // t.k == G.col // t.k
    out = np.zeros((t.k, t.k))
    np.add.at(out, (G.row[same] % t.k, G.col[same] % t.k), G.data[same])
    return out / max(design.n, 1)


def theta_rescaling(design: DesignMatrices, n_extra: int = 0) -> np.ndarray | None:
    """The matrix P with θ = P θ̃ that makes each term's columns orthonormal (None: P = I).

    For a term with columns X_t and Gram G = X_t'WX_t / n, take L lower triangular with
    L'GL = I (G = UU' with U = L⁻ᵀ upper triangular: Cholesky of G with rows and columns
    reversed). T = L T̃ keeps T lower triangular with diagonal L_ii T̃_ii, so the bounds on θ
    and θ̃ are the same, and X_t T = (X_t L) T̃: in θ̃ the term acts through orthonormal
    columns. ``n_extra`` parameters after θ (e.g. a correlation parameter) are left alone.
    """
    n = design.n_theta + n_extra
    P = np.eye(n)
    for t in design.terms:
        G = _term_gram(design, t)
        rev = np.eye(t.k)[::-1]
        try:
            C = np.linalg.cholesky(rev @ G @ rev)
        except np.linalg.LinAlgError:
            continue  # collinear columns: leave this term as it is
        L = np.linalg.inv(rev @ C @ rev).T
        rows, cols = tril_colwise(t.k)
        for a, (i, j) in enumerate(zip(rows, cols, strict=True)):
            for b, (i2, j2) in enumerate(zip(rows, cols, strict=True)):
                if j2 == j:  # (L T̃)_ij = Σ_i2 L[i, i2] T̃[i2, j]
                    P[t.theta_start + a, t.theta_start + b] = L[i, i2]
    if np.allclose(P, np.eye(n), rtol=0, atol=1e-12):
        return None
    return P


def _describe(method: str, rescaled: bool, where: str) -> str:
    scale = " with θ rescaled to orthonormal random-effect columns" if rescaled else ""
    return f"optimizer {method!r} {where}{scale}"


@dataclass
class _Checker:
    derivatives: Derivatives  # x ↦ (g̃, H̃), the derivatives in x̃ = P⁻¹x
    lower: np.ndarray
    rescale: np.ndarray | None
    columns: Columns

    def __call__(self, res: OptimResult) -> ConvergenceCheck:
        g, H = self.derivatives(res.x)
        res.grad_scaled, res.hess_scaled = np.asarray(g, float), np.asarray(H, float)
        P = np.eye(res.x.size) if self.rescale is None else self.rescale
        res.grad = np.linalg.solve(P.T, res.grad_scaled)
        return check_convergence(g, H, res.x, self.lower, self.rescale, self.columns)


def minimize_with_remedies(
    fun: Callable[[np.ndarray], float],
    x0: np.ndarray,
    lower: np.ndarray,
    method: str,
    derivatives: Derivatives,
    value_and_grad: Callable[[np.ndarray], tuple[float, np.ndarray]] | None = None,
    scale: np.ndarray | None = None,
    rescale: np.ndarray | None = None,
    rescaled_start: np.ndarray | None = None,
    columns: Columns = (),
    maxiter: int = 2000,
) -> OptimResult:
    """:func:`~.optimize.minimize_theta`, then lme4's check at the best point and, if it fails,
    the remedies of the module docstring. ``derivatives(x)`` gives (g̃, H̃), the gradient and
    Hessian of ``fun`` in x̃ = P⁻¹x, with P = ``rescale`` of :func:`theta_rescaling` (or I when
    None): computed on the well-scaled x̃, not mapped there from x, where rounding would be
    amplified by cond(P)². ``rescaled_start`` is a start in x̃ (lme4's T̃ = I), tried when the
    restart from the best point fails, and ``columns`` the layout of θ (:func:`theta_columns`).

    Returns the best point with ``converged`` from the check, ``check`` and ``tried``. Floating
    point warnings from trial points (overflow far out on a line search) are silenced: such
    points return a non-finite deviance and are rejected, and the final point is checked.
    """
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return _remedies(fun, x0, lower, method, derivatives, value_and_grad, scale, rescale, rescaled_start,
                         columns, maxiter)


def _remedies(fun, x0, lower, method, derivatives, value_and_grad, scale, rescale, rescaled_start, columns,
              maxiter) -> OptimResult:
    lower = np.asarray(lower, float)
    checker = _Checker(derivatives, lower, rescale, list(columns))
    other = "bobyqa" if method == "lbfgsb" else "lbfgsb"
    P = np.eye(lower.size) if rescale is None else np.asarray(rescale, float)
    Pinv = np.linalg.inv(P)

    def f_run(u):
        return fun(P @ u)

    vg_run = None
    if value_and_grad is not None:

        def vg_run(u):
            v, g = value_and_grad(P @ u)
            return v, P.T @ np.asarray(g, float)

    best = minimize_theta(fun, x0, lower, method, maxiter, value_and_grad, scale)
    tried = [_describe(method, False, "from the start")]
    check, n_evals = checker(best), best.n_evals
    best, check = _polish(best, check, fun, checker, tried)
    runs = [(method, "restarted from the best point", None)]
    if rescaled_start is not None:
        runs.append((method, "restarted from the start", np.asarray(rescaled_start, float)))
    runs.append((other, "from the best point", None))
    if rescaled_start is not None:
        runs.append((other, "from the start", np.asarray(rescaled_start, float)))
    for run_method, where, start in runs:
        if check.ok:
            break
        tried.append(_describe(run_method, rescale is not None, where))
        if start is None:
            start = _unstick(Pinv @ best.x, best.grad_scaled, lower, checker.columns)
            start = _escape(start, f_run, best.hess_scaled, lower)
        cand = minimize_theta(f_run, start, lower, run_method, maxiter, vg_run, scale)
        n_evals += cand.n_evals
        cand.x = P @ cand.x
        cand_check = checker(cand)
        cand, cand_check = _polish(cand, cand_check, fun, checker, tried)
        if _better(cand, cand_check, best, check):
            best, check = cand, cand_check
    best.n_evals, best.tried = n_evals, tried
    best.check, best.converged, best.grad_norm = check, check.ok, check.max_grad
    return best


def _unstick(
    u: np.ndarray, g: np.ndarray, lower: np.ndarray, columns: Columns, nudge: float = 1e-2
) -> np.ndarray:
    """A restart point off the bounds the optimizer stopped on: a column with T_jj = 0 whose
    derivative pushes outward is turned (its entries below the diagonal change sign, TT' does
    not) so that the derivative points inward, and every such T_jj moves ``nudge`` inside."""
    u = np.array(u, dtype=float)
    on_bound = np.isfinite(lower) & (u <= lower + BOUND_TOL)
    for d, below in columns:
        if not on_bound[d]:
            continue
        if g[d] > 0 and any(u[i] != 0 for i in below):
            u[list(below)] *= -1
        u[d] = lower[d] + nudge
    return u


def _escape(u: np.ndarray, f, H: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """Off a saddle: the lowest of f at u ± s·v (v the eigenvector of H's most negative
    eigenvalue, s = 0.03 … 1 on the rescaled, O(1) parameters), if lower than f(u)."""
    free = ~(np.isfinite(lower) & (u <= lower + BOUND_TOL))
    if not free.any():
        return u
    ev, vecs = np.linalg.eigh(0.5 * (H + H.T)[np.ix_(free, free)])
    if ev[0] >= -HESS_TOL:
        return u
    v = np.zeros_like(u)
    v[free] = vecs[:, 0]
    best, f_best = u, float(f(u))
    for step in (0.03, 0.1, 0.3, 1.0):
        for sign in (1.0, -1.0):
            cand = np.maximum(u + sign * step * v, lower)
            fc = float(f(cand))
            if np.isfinite(fc) and fc < f_best:
                best, f_best = cand, fc
    return best


def _better(a: OptimResult, a_check: ConvergenceCheck, b: OptimResult, b_check: ConvergenceCheck) -> bool:
    """a replaces b: lower deviance, or the same to within rounding and a passes the check."""
    tol = NOISE * max(1.0, abs(b.fun))
    return a.fun < b.fun - tol or (a.fun <= b.fun + tol and a_check.ok and not b_check.ok)


def _polish(
    res: OptimResult, check: ConvergenceCheck, fun, checker: _Checker, tried: list[str], steps: int = 3,
) -> tuple[OptimResult, ConvergenceCheck]:
    """Newton steps while only the check's statistic is off: the Hessian is positive definite
    and the predicted decrease is below the deviance's rounding."""
    for _ in range(steps):
        if check.ok or check.newton_step is None:
            break
        if check.predicted_decrease > NOISE * max(1.0, abs(res.fun)):
            break
        x = np.maximum(res.x + check.newton_step, checker.lower)
        fx = float(fun(x))
        if not np.isfinite(fx) or fx > res.fun + NOISE * max(1.0, abs(res.fun)):
            break
        if "Newton steps from the best point" not in tried:
            tried.append("Newton steps from the best point")
        res = OptimResult(x=x, fun=fx, n_evals=res.n_evals + 1, converged=False, message=res.message,
                          grad_norm=res.grad_norm, optimizer_ok=res.optimizer_ok)
        check = checker(res)
    return res, check


def convergence_warning(res: OptimResult) -> str:
    """The warning for a fit that failed the check: what failed and everything tried."""
    check = res.check
    what = "; ".join(check.messages) if check is not None and check.messages else "the check failed"
    tried = "; ".join(res.tried) if res.tried else "the optimizer once"
    return (
        f"model failed to converge: {what}. Tried: {tried}. The estimates are at the best point "
        f"found (deviance {res.fun:.6f})"
    )
