"""GLMM by the Laplace approximation with penalized IRLS (lme4's glmer, nAGQ = 0 and 1).

With η = Xβ + ZΛu + offset, u ~ N(0, I) and the conditional mode û of u,

    −2 log L(θ, β) ≈ −2 Σ log f(yᵢ | μᵢ(û)) + ‖û‖² + log|Λ'Z'WZΛ + I|,

W the IRLS weights wᵢ (dμ/dη)²/V(μ) at û. PIRLS finds û by Fisher scoring on the penalized
deviance with step halving (lme4's ``pwrssUpdate``), each step a solve with the blocked factor of
:mod:`.pirls` (the LMM's blocks, reweighted: MixedModels.jl's GLMM design).

- Stage 1 (nAGQ = 0, or ``fast``): β is updated inside PIRLS with u; θ is optimized, by
  L-BFGS-B on the analytic gradient (:mod:`.laplace_grad`) where there is one, else BOBYQA.
- Stage 2 (nAGQ = 1): (θ, β) jointly from stage 1 by Newton's method with finite-difference
  Hessians (:mod:`.newton`), û by PIRLS for each.
- Var(β̂) is the β block of 2 H⁻¹, H the finite-difference Hessian of the stage-2 objective in
  (θ, β) at the optimum, as lme4 reports by default; after stage 1 only, (R_X'R_X)⁻¹.
- nAGQ > 1 (one scalar random-effects term): adaptive Gauss–Hermite quadrature per group
  replaces the Laplace term, around the same modes.

No sparse LU and no dense q × q matrix: the first term is factored level by level and the rest
is a dense Schur complement (:mod:`.pirls`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla

from ...data.design import DesignMatrices
from ...model.families import Family
from .glm_kernel import GLMKernel
from .laplace_grad import LaplaceGradient, has_gradient
from .lmm import blas_threads
from .newton import H_SE, fd_derivatives, fd_hessian_from_grad, newton_minimize
from .optimize import GRAD_TOL, REL_GTOL, minimize_theta, scaled_grad_norm
from .pirls import GLMMBlocks, WeightedFactor

__all__ = ["GLMMFit", "LaplaceObjective", "fit_given_family"]

STEP_TOL = 1e-9  # PIRLS stops once the error left in u (and relative in β) is below this
STAGE1_RHOEND = 1e-3  # BOBYQA's final radius in stage 1 when stage 2 follows (only a start)
STAGE1_REL_GTOL = 1e-5  # L-BFGS-B's relative gradient stop in stage 1 when stage 2 follows


@dataclass
class GLMMFit:
    theta: np.ndarray
    beta: np.ndarray
    u: np.ndarray
    b: np.ndarray
    deviance: float
    cov_beta: np.ndarray
    mu: np.ndarray
    eta: np.ndarray
    converged: bool
    n_evals: int
    message: str
    is_singular: bool
    family: Family | None = None
    scale: float = 1.0  # σ² of a family with a dispersion (Gamma), else 1


class LaplaceObjective:
    """PIRLS and the Laplace deviance for one GLMM, on the blocked factor of :mod:`.pirls`.

    Each PIRLS step solves the system at the current weights for the Fisher-scoring step
    (δu[, δβ]) = A⁻¹(Λ'Z'r − u[, X'r]) and halves it until the penalized deviance decreases. The
    factor is refreshed only when that is cheaper than continuing without: a step starts from the
    factor of the last evaluation (the chord method — its weights and θ are close to the new
    ones when the optimizer moves little), which contracts the error by a rate ρ per step; a new
    factor is formed when a step had to be halved, ρ ≥ ½, or the steps still needed at rate ρ
    cost more than a factorization (``GLMMBlocks.factor_to_step_cost``). PIRLS stops when the
    error left, ρ·step/(1 − ρ), or the step itself is below :data:`STEP_TOL`; then the system is
    factored once at û for log|A|, and that factor starts the next evaluation. The modes warm-
    start the next evaluation (with b = Λu kept for moderate changes of θ).
    """

    def __init__(self, design: DesignMatrices, family: Family, y: np.ndarray, prior_w: np.ndarray):
        self.d, self.family, self.y, self.w = design, family, y, prior_w
        self.X = design.X
        self.kernel = GLMKernel(family, y, prior_w)
        self.blocks = GLMMBlocks(design)
        mu0 = family.start_mu(y)
        eta0 = family.link.link(mu0)
        # starting β from a weighted least-squares fit of the linked start
        sw = np.sqrt(prior_w)
        self.beta0 = np.linalg.lstsq(self.X * sw[:, None], (eta0 - design.offset) * sw, rcond=None)[0]
        self.u = np.zeros(design.q)
        self._u_theta: np.ndarray | None = None
        self._theta_of_term = np.array([t.theta_start for t in design.terms], dtype=np.int64)
        self._q_of_term = np.array([t.q for t in design.terms], dtype=np.int64)
        self.beta = self.beta0.copy()
        self.factor: WeightedFactor | None = None
        self.n_factor = 0
        self._grad: LaplaceGradient | None = None
        self._anchor: tuple | None = None  # (θ, β), û and dû/d(θ, β) there: see anchor()
        self._anchor_rate = np.inf  # the chord's contraction rate in the last anchored evaluation
        self.last: tuple | None = None
        self._cached: tuple | None = None  # the last call's arguments and result

    def _warm_u(self, theta: np.ndarray) -> np.ndarray:
        """The last modes, as a start at θ: with b = Λu kept (u ← Λ(θ)⁻¹Λ(θ_last)u), which moves
        less than u for levels with many observations; u itself where a T(θ) is singular or
        changed by more than a factor 2 (towards θ = 0 the modes of u shrink, not grow)."""
        u = self.u.copy()
        old = self._u_theta
        if old is None or np.array_equal(old, theta):
            return u
        lam = self.blocks.lam
        if lam.all_scalar:  # Λ diagonal: one ratio per term
            ratio = np.abs(theta[self._theta_of_term]) / np.maximum(np.abs(old[self._theta_of_term]), 1e-300)
            keep = (np.abs(old[self._theta_of_term]) > 0) & (ratio >= 0.5) & (ratio <= 2.0)
            scale = np.where(keep, 1.0 / np.where(keep, ratio, 1.0), 1.0)
            return u * np.repeat(scale, self._q_of_term)
        for t, T_new in zip(self.d.terms, lam.Ts(theta), strict=True):
            T_old = t.T(old)
            d_new, d_old = np.diag(T_new), np.diag(T_old)
            if np.any(d_new <= 0) or np.any(d_old <= 0) or np.any(np.abs(np.log(d_new / d_old)) > np.log(2)):
                continue
            blk = u[t.z_start : t.z_start + t.q].reshape(t.m, t.k)
            u[t.z_start : t.z_start + t.q] = sla.solve_triangular(T_new, T_old @ blk.T, lower=True).T.ravel()
        return u

    def anchor(self, x: np.ndarray | None, n_theta: int = 0) -> None:
        """Start PIRLS at (θ, β) near x = (θ, β) (``n_theta`` θ's) on the tangent of the modes,
        û(x) + (dû/dx)(x' − x), until ``anchor(None)``: for the evaluations of a finite-
        difference Hessian around x, whose modes are then off by O(h²) instead of O(h).

        With F(u) = Λ'Z'r − u = 0 at û and A = Λ'Z'WZΛ + I (W = −∂r/∂η for a canonical link),
        dû/dβ_j = −A⁻¹Λ'Z'W X_j and dû/dθ_k = A⁻¹(Λ_k'Z'r − Λ'Z'WZΛ_k û), Λ_k = ∂Λ/∂θ_k = Λ(e_k)
        (Λ is linear in θ): one solve with the factor at û per parameter."""
        self._anchor_rate = np.inf
        if x is None:
            self._anchor = None
            return
        theta, beta = np.asarray(x[:n_theta], dtype=float), np.asarray(x[n_theta:], dtype=float)
        self._anchor = None
        if not np.isfinite(self.laplace(theta, beta)):
            return
        th, u, _, _, W, r, f, joint = self.last
        if joint:
            return
        B, X = self.blocks, self.X
        J = np.empty((u.size, x.size))
        zr = B.Z.tmul(r)
        for k in range(n_theta):
            e = np.zeros(n_theta)
            e[k] = 1.0
            rhs = B.lam.apply(e, zr, transpose=True) - B.lam_t_zt(th, W * B.Z.mul(B.lam.apply(e, u)))
            J[:, k] = B.solve(f, rhs)[0]
        for j in range(beta.size):
            J[:, n_theta + j] = -B.solve(f, B.lam_t_zt(th, W * X[:, j]))[0]
        self._anchor = (np.r_[th, beta], u.copy(), J)

    def _factor(self, theta: np.ndarray, W: np.ndarray, joint: bool) -> WeightedFactor:
        self.n_factor += 1
        return self.blocks.factor(theta, W, joint)

    def pirls(
        self, theta: np.ndarray, beta: np.ndarray | None, max_iter: int = 200, joint_factor: bool = False
    ):
        """Conditional modes (and β when ``beta`` is None): returns (u, β, Laplace deviance,
        factor at the mode, η). ``joint_factor`` asks for the factor of the joint system."""
        theta = np.asarray(theta, dtype=float)
        key = (theta.tobytes(), None if beta is None else np.asarray(beta, dtype=float).tobytes())
        if self._cached is not None and self._cached[0] == key and (self._cached[2] or not joint_factor):
            return self._cached[1]
        B, k, X = self.blocks, self.kernel, self.X
        joint = beta is None
        rate0 = np.nan  # the chord's contraction rate, where the last evaluations show it
        if self._anchor is not None and not joint:
            xa, ua, J = self._anchor
            u = ua + J @ (np.r_[theta, beta] - xa)
            # around one anchor the chord factor is the last evaluation's, at a point as far
            # away as the last one's was: its rate (with a margin) judges the first step too
            rate0 = 10.0 * self._anchor_rate
        else:
            u = self._warm_u(theta)
        b = self.beta.copy() if joint else np.asarray(beta, dtype=float)
        fixed = X @ b + self.d.offset
        eta = fixed + B.z_lam(theta, u)
        mu, W, r = k.weights(eta)
        pdev = k.pdev(mu) + float(u @ u)
        if not np.isfinite(pdev):
            raise FloatingPointError("the deviance is undefined at the start of PIRLS")
        f = self.factor if self.factor is not None and (self.factor.joint or not joint) else None
        fresh = False
        prev = np.inf
        last_rho = np.nan
        ratio = self.blocks.factor_to_step_cost
        for _ in range(max_iter):
            if f is None:
                f = self._factor(theta, W, joint)
                fresh = True
            g = B.lam_t_zt(theta, r) - u
            du, db = B.solve(f, g, X.T @ r if joint else None)
            step, accepted = 1.0, False
            for _h in range(40):
                u_t = u + step * du
                if joint:
                    b_t = b + step * db
                    fixed = X @ b_t + self.d.offset
                eta_t = fixed + B.z_lam(theta, u_t)
                mu_t, W_t, r_t = k.weights(eta_t)
                pd_t = k.pdev(mu_t) + float(u_t @ u_t)
                if np.isfinite(pd_t) and pd_t <= pdev + 1e-12 * abs(pdev):
                    accepted = True
                    break
                step /= 2
            if not accepted:
                if fresh:
                    break  # no descent even with a fresh factor: at the rounding floor
                f = None
                continue
            size = float(np.max(np.abs(step * du), initial=0.0))
            if joint:
                size = max(size, float(np.max(np.abs(step * db) / (1.0 + np.abs(b)), initial=0.0)))
                b = b_t
            u, eta, mu, W, r, pdev = u_t, eta_t, mu_t, W_t, r_t, pd_t
            rho = size / prev if np.isfinite(prev) and prev > 0 else np.nan  # contraction rate
            rho_c = rho  # for the stopping test: the first chord step of an anchored evaluation
            if np.isfinite(rho):
                last_rho = rho
            elif not fresh and not np.isfinite(prev):
                rho_c = rate0
            prev = size
            # error left after this step ≈ ρ·size/(1 − ρ) (linear convergence at rate ρ)
            if size < STEP_TOL or (rho_c < 0.5 and rho_c * size < 0.5 * STEP_TOL * (1 - rho_c)):
                break
            if fresh:  # a new factor's own contraction shows from the next step on
                fresh, prev = False, np.inf
                continue
            if step < 1.0 or rho >= 0.5:
                f = None
            elif rho > 0:
                chord_steps = np.log(STEP_TOL / size) / np.log(rho)  # to converge without a new factor
                if chord_steps > ratio + 2:
                    f = None
        f = self._factor(theta, W, joint or joint_factor)
        if self._anchor is not None and not joint:
            self._anchor_rate = last_rho if np.isfinite(last_rho) else np.inf
        self.factor = f
        self.u, self._u_theta = u, theta.copy()
        if joint:
            self.beta = b
        self.last = (theta, u, b, mu, W, r, f, joint)
        crit = k.laplace_data(mu) + float(u @ u) + f.logdet
        self._cached = (key, (u, b, crit, f, eta), f.joint)
        return u, b, crit, f, eta

    @property
    def has_gradient(self) -> bool:
        return has_gradient(self.family, self.blocks)

    def laplace_and_grad(self, theta: np.ndarray, beta: np.ndarray | None = None):
        """(D, ∂D/∂(θ, β)) at (θ, β), or (D, dD/dθ) with β in PIRLS (``beta`` None); see
        :mod:`.laplace_grad`."""
        value = self.laplace(theta, beta)
        n = theta.size + (0 if beta is None else beta.size)
        if not np.isfinite(value):
            return np.inf, np.zeros(n)
        if self._grad is None:
            self._grad = LaplaceGradient(self.d, self.blocks)
        th, u, _, mu, W, r, f, joint = self.last
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            g = self._grad(th, u, r, W, self.kernel.dweights(mu, W), f, joint)
        return value, g

    def laplace(self, theta: np.ndarray, beta: np.ndarray | None = None) -> float:
        """The Laplace deviance at (θ, β); +inf where it is undefined (e.g. an inverse link
        giving negative means), so that optimizers step back."""
        try:
            with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
                value = self.pirls(theta, beta)[2]
        except (RuntimeError, ValueError, FloatingPointError, np.linalg.LinAlgError):
            self.factor = None
            return np.inf
        return value if np.isfinite(value) else np.inf


def _agq_deviance(obj: LaplaceObjective, theta: np.ndarray, beta: np.ndarray, nagq: int) -> float:
    """Adaptive Gauss–Hermite −2 log L for one scalar random-effects term: per group j, the
    integral over u_j is taken on the nodes û_j + √2 s_j x_k (s_j = C_j^(-1/2), the curvature of
    the penalized deviance at the mode) with weights w_k e^(x_k²) √2 s_j (Pinheiro & Bates 1995)."""
    u, _, _, f, _ = obj.pirls(theta, beta)
    B = obj.blocks
    codes, m = B.codes1, B.m1
    sd = 1.0 / np.sqrt(f.c_diag[:, 0, 0])
    nodes, weights = np.polynomial.hermite.hermgauss(nagq)
    U = u[None, :] + np.sqrt(2.0) * sd[None, :] * nodes[:, None]  # (nodes, groups)
    fixed = obj.X @ beta + obj.d.offset
    eta = fixed[None, :] + (B.x1[:, 0] * float(theta[0]))[None, :] * U[:, codes]
    ll = obj.kernel.ll_terms(obj.kernel.mu(eta)[0])
    per_group = np.stack([np.bincount(codes, weights=row, minlength=m) for row in ll])
    vals = np.log(weights)[:, None] + nodes[:, None] ** 2 + per_group - 0.5 * U**2 - 0.5 * np.log(2 * np.pi)
    top = vals.max(axis=0)
    total = top + np.log(np.sum(np.exp(vals - top[None, :]), axis=0)) + np.log(np.sqrt(2.0) * sd)
    return -2.0 * float(np.sum(total))


def _warn_separation(family: Family, mu: np.ndarray) -> None:
    """R's glm check: fitted probabilities (or rates) numerically 0 or 1 mean some linear
    combination of the predictors separates the outcomes, and the estimates diverge."""
    tiny = 10 * np.finfo(float).eps
    if family.name == "binomial":
        hit = int(np.sum((mu <= tiny) | (mu >= 1 - tiny)))
        what = "fitted probabilities numerically 0 or 1"
    elif family.name in ("poisson", "negative_binomial"):
        hit, what = int(np.sum(mu <= tiny)), "fitted means numerically 0"
    else:
        return
    if hit:
        warnings.warn(
            f"{what} for {hit} observation(s): the outcomes are (quasi-)separated by the fixed effects, "
            "whose estimates and SEs are then meaningless; drop or merge the separating predictor, or "
            "use priors (backend='pymc')",
            stacklevel=4,
        )


def _stage2_steps(obj: LaplaceObjective, theta: np.ndarray, f1: WeightedFactor) -> np.ndarray:
    """First finite-difference steps for stage 2: 10⁻³ of θ (at least 10⁻⁴) and H_SE standard
    errors of β from the first stage's Fisher information (R_X'R_X)⁻¹."""
    se_beta = np.sqrt(np.maximum(np.diag(obj.blocks.beta_cov(f1)), 0.0))
    return np.r_[1e-3 * np.maximum(np.abs(theta), 0.1), H_SE * np.where(se_beta > 0, se_beta, 1.0)]


def _two_stages(obj: LaplaceObjective, theta0: np.ndarray, lower: np.ndarray, nagq: int, optimizer: str,
                fast: bool):
    """Stage 1 (θ by ``optimizer``, β and u by PIRLS) and, unless ``nagq`` is 0 or ``fast``,
    stage 2: Newton on (θ, β) with finite-difference derivatives from stage 1 (``optimizer``
    as the fallback), whose last Hessian H gives Var(β̂) = the β block of 2H⁻¹.

    Returns (θ, β, deviance, Var(β̂) or None for the stage-1 covariance, converged, message,
    evaluations)."""
    final1 = nagq < 1 or fast
    analytic = obj.has_gradient and nagq <= 1
    vg1 = None
    if fast and nagq > 1:

        def dev1(th):
            try:
                b = obj.pirls(th, None)[1]
                return _agq_deviance(obj, th, b, nagq)
            except (RuntimeError, ValueError, FloatingPointError, np.linalg.LinAlgError):
                return np.inf
    else:

        def dev1(th):
            return obj.laplace(th)

        if analytic and optimizer == "lbfgsb":

            def vg1(th):
                return obj.laplace_and_grad(th)

    # L-BFGS-B on central differences is slow and, on large data, noisy: derivative-free instead
    method = optimizer if (optimizer != "lbfgsb" or vg1 is not None) else "bobyqa"

    levels = np.array([t.m for t in obj.d.terms for _ in range(t.n_theta)], dtype=float)
    opt1 = minimize_theta(
        dev1, theta0, lower, method, value_and_grad=vg1, scale=np.sqrt(levels / levels.max()),
        rhoend=1e-9 if final1 else STAGE1_RHOEND, final_gradient=final1,
        rel_gtol=REL_GTOL if final1 else STAGE1_REL_GTOL,
    )
    theta = opt1.x
    _, beta, _, f1, _ = obj.pirls(theta, None, joint_factor=True)
    beta = beta.copy()
    n_evals = opt1.n_evals
    if final1:
        return theta, beta, dev1(theta), None, opt1.converged, opt1.message, n_evals
    nt = theta.size
    fg2 = None
    if nagq > 1:

        def dev2(x):
            try:
                return _agq_deviance(obj, x[:nt], x[nt:], nagq)
            except (RuntimeError, ValueError, FloatingPointError, np.linalg.LinAlgError):
                return np.inf
    else:

        def dev2(x):
            return obj.laplace(x[:nt], x[nt:])

        if analytic:

            def fg2(x):
                return obj.laplace_and_grad(x[:nt], x[nt:])

    lower2 = np.r_[lower, np.full(beta.size, -np.inf)]
    h_tail = None
    if fg2 is not None:  # β's block of the first Hessian: 2 R_X'R_X at the stage-1 modes
        try:
            h_tail = 2.0 * np.linalg.inv(obj.blocks.beta_cov(f1))
        except np.linalg.LinAlgError:
            h_tail = None
    res = newton_minimize(dev2, np.r_[theta, beta], lower2, _stage2_steps(obj, theta, f1), fg=fg2,
                          h_tail=h_tail, anchor=None if fg2 is None else lambda x: obj.anchor(x, nt))
    n_evals += res.n_evals
    x, H, g, msg = res.x, res.hess, res.grad, res.message
    optimizer_ok = res.converged
    if not res.converged:
        with_grad = fg2 is not None and method == "lbfgsb"
        opt2 = minimize_theta(
            dev2, res.x, lower2, method if with_grad else "bobyqa", value_and_grad=fg2 if with_grad else None
        )
        n_evals += opt2.n_evals
        x, msg, optimizer_ok = opt2.x, opt2.message, opt2.optimizer_ok
        h = np.r_[1e-3 * np.maximum(np.abs(x[:nt]), 0.1), 1e-3 * np.maximum(np.abs(x[nt:]), 0.1)]
        if fg2 is None:
            _, g, H, n = fd_derivatives(dev2, x, h)
        else:
            _, g, H, n = fd_hessian_from_grad(fg2, x, h)
        n_evals += n
    # a variance parameter within rounding of its bound is on it (D is even in θ there)
    x[:nt] = np.where(np.isfinite(lower) & (x[:nt] - lower < 1e-10), lower, x[:nt])
    # lme4's convergence check: the gradient in units of the estimates' SEs
    ok = optimizer_ok and scaled_grad_norm(g, x, lower2, H) <= GRAD_TOL
    cov = np.full((beta.size, beta.size), np.nan)
    try:
        cov = 2.0 * np.linalg.inv(H)[nt:, nt:]
    except np.linalg.LinAlgError:
        pass
    if not np.all(np.isfinite(np.diag(cov))) or np.any(np.diag(cov) <= 0):
        cov = np.full_like(cov, np.nan)
        warnings.warn(
            "the Hessian of the GLMM deviance is not positive definite; SEs unreliable", stacklevel=4
        )
    return x[:nt], x[nt:], dev2(x), cov, ok, msg, n_evals


def fit_given_family(
    design: DesignMatrices,
    family: Family,
    nagq: int = 1,
    optimizer: str = "lbfgsb",
    start: GLMMFit | None = None,
    with_cov: bool = True,
    fast: bool = False,
) -> GLMMFit:
    """One GLMM fit with every family parameter fixed; ``start`` warm-starts θ, β and u.
    ``with_cov=False`` (the negative binomial's profile fits) skips the separation check."""
    y = design.y
    prior_w = np.ones(design.n) if design.weights is None else design.weights
    lower = design.theta_lower()
    theta0 = design.theta_default()
    with blas_threads():
        obj = LaplaceObjective(design, family, y, prior_w)
        if start is not None:
            theta0 = np.maximum(start.theta, lower)
            obj.u, obj.beta, obj._u_theta = start.u.copy(), start.beta.copy(), start.theta.copy()
        theta, beta, dev, cov, ok, msg, n_evals = _two_stages(obj, theta0, lower, nagq, optimizer, fast)
        u, beta_fin, _, f, eta = obj.pirls(theta, beta, joint_factor=cov is None)
        if cov is None:  # the first stage's estimates: Var(β̂) = (R_X'R_X)⁻¹ at the joint modes
            beta = beta_fin
            cov = obj.blocks.beta_cov(f)
    b = obj.blocks.lam.apply(theta, u)
    if not ok:
        warnings.warn(
            f"GLMM fit failed to converge ({msg}); try optimizer='bobyqa' or rescale predictors", stacklevel=3
        )
    singular = design.is_singular(theta)
    mu = family.link.inverse(eta)
    if with_cov:
        _warn_separation(family, mu)
    scale = 1.0
    if family.has_scale:  # lme4's sigmaML: (Σ Pearson residuals² + ‖u‖²) / n
        pearson2 = prior_w * (y - mu) ** 2 / family.variance(mu)
        scale = float((np.sum(pearson2) + u @ u) / design.n)
    return GLMMFit(
        theta=theta,
        beta=beta,
        u=u,
        b=b,
        deviance=float(dev),
        cov_beta=cov,
        mu=mu,
        eta=eta,
        converged=ok,
        n_evals=n_evals,
        message=msg,
        is_singular=singular,
        family=family,
        scale=scale,
    )
