"""GLMM by the Laplace approximation with penalized IRLS (lme4's glmer, nAGQ = 0 and 1).

With η = Xβ + ZΛu + offset, u ~ N(0, I) and the conditional mode û of u,

    −2 log L(θ, β) ≈ −2 Σ log f(yᵢ | μᵢ(û)) + ‖û‖² + log|Λ'Z'WZΛ + I|,

W the IRLS weights wᵢ (dμ/dη)²/V(μ) at û. PIRLS finds û by iterating the weighted PLS
solve on the working response with step halving on the penalized deviance.

- Stage 1 (nAGQ = 0): β is updated inside PIRLS with u; θ is optimized.
- Stage 2 (nAGQ = 1): (θ, β) are optimized jointly from stage 1, û by PIRLS for each.
- Var(β̂) is the β block of 2 H⁻¹, H the finite-difference Hessian of the stage-2 objective in
  (θ, β), as lme4 reports by default.
- nAGQ > 1 (one scalar random-effects term): adaptive Gauss–Hermite quadrature per group
  replaces the Laplace term, around the same modes.

The linear algebra is a sparse LU of the (q [+ p]) system (SuperLU, symmetric pivoting):
never a dense q × q factor.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import splu

from ...data.design import DesignMatrices
from ...inference.derivatives import hessian
from ...model.families import Family
from .optimize import GRAD_TOL, minimize_theta, scaled_grad_norm

__all__ = ["GLMMFit", "fit_glmm"]


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


def _lambda(design: DesignMatrices, theta: np.ndarray) -> sp.csc_matrix:
    blocks = []
    for t in design.terms:
        T = t.T(theta)
        blocks.append(sp.kron(sp.identity(t.m, format="csr"), sp.csr_matrix(T)))
    return sp.block_diag(blocks, format="csc")


def _logdet_lu(lu) -> float:
    return float(np.sum(np.log(np.abs(lu.U.diagonal()))))


class LaplaceObjective:
    """PIRLS and the Laplace deviance for one GLMM, with warm starts across evaluations."""

    def __init__(self, design: DesignMatrices, family: Family, y: np.ndarray, prior_w: np.ndarray):
        self.d, self.family, self.y, self.w = design, family, y, prior_w
        self.Z = design.Z.tocsc()
        self.X = design.X
        mu0 = family.start_mu(y)
        eta0 = family.link.link(mu0)
        # starting β from a weighted least-squares fit of the linked start
        sw = np.sqrt(prior_w)
        self.beta0 = np.linalg.lstsq(self.X * sw[:, None], (eta0 - design.offset) * sw, rcond=None)[0]
        self.u = np.zeros(design.q)
        self.beta = self.beta0.copy()

    # ---- pieces -----------------------------------------------------------------------------
    def _eta(self, L: sp.csc_matrix, u: np.ndarray, beta: np.ndarray) -> np.ndarray:
        return self.X @ beta + self.Z @ (L @ u) + self.d.offset

    def _pdev(self, eta: np.ndarray, u: np.ndarray) -> float:
        mu = self.family.link.inverse(eta)
        return self.family.pirls_deviance(self.y, mu, self.w) + float(u @ u)

    def _weights(self, eta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        mu = self.family.link.inverse(eta)
        dmu = self.family.link.mu_eta(eta)
        W = self.w * dmu**2 / self.family.variance(mu)
        z = eta - self.d.offset + (self.y - mu) / dmu  # working response without offset
        return mu, W, z

    def pirls(self, theta: np.ndarray, beta: np.ndarray | None, max_iter: int = 100):
        """Conditional modes (and β when ``beta`` is None): returns (u, β, Laplace deviance)."""
        L = _lambda(self.d, theta)
        ZL = (self.Z @ L).tocsc()
        joint = beta is None
        u = self.u.copy()
        b = self.beta.copy() if joint else np.asarray(beta, dtype=float)
        eta = self._eta(L, u, b)
        pdev = self._pdev(eta, u)
        q = self.d.q
        for _ in range(max_iter):
            mu, W, z = self._weights(eta)
            WZL = ZL.multiply(W[:, None]).tocsc()
            A = (ZL.T @ WZL).tocsc() + sp.identity(q, format="csc")
            if joint:
                AX = np.asarray(WZL.T @ self.X)
                XWX = self.X.T @ (self.X * W[:, None])
                M = sp.bmat([[A, sp.csc_matrix(AX)], [sp.csc_matrix(AX.T), sp.csc_matrix(XWX)]], format="csc")
                rhs = np.r_[WZL.T @ z, self.X.T @ (W * z)]
            else:
                M = A
                rhs = WZL.T @ (z - self.X @ b)
            sol = splu(M, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0).solve(rhs)
            u_new = sol[:q]
            b_new = sol[q:] if joint else b
            # step halving on the penalized deviance
            step, accepted = 1.0, False
            for _h in range(30):
                u_try = u + step * (u_new - u)
                b_try = b + step * (b_new - b) if joint else b
                eta_try = self._eta(L, u_try, b_try)
                pd_try = self._pdev(eta_try, u_try)
                if np.isfinite(pd_try) and pd_try <= pdev + 1e-10 * abs(pdev):
                    accepted = True
                    break
                step /= 2
            if not accepted:
                break
            change = pdev - pd_try
            moved = max(np.max(np.abs(u_try - u), initial=0.0), np.max(np.abs(b_try - b), initial=0.0))
            u, b, eta, pdev = u_try, b_try, eta_try, pd_try
            # Gamma's Laplace criterion is not stationary at the PIRLS mode (its dispersion scales
            # the deviance, not ‖u‖²), so the mode itself must converge, not just its criterion.
            if change < 1e-10 * (1 + abs(pdev)) and moved < 1e-9 * (1 + np.max(np.abs(u), initial=0.0)):
                break
        mu, W, _ = self._weights(eta)
        WZL = ZL.multiply(W[:, None]).tocsc()
        A = (ZL.T @ WZL).tocsc() + sp.identity(q, format="csc")
        logdet = _logdet_lu(splu(A, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0))
        self.u = u
        if joint:
            self.beta = b
        crit = self.family.laplace_deviance(self.y, mu, self.w) + float(u @ u) + logdet
        return u, b, crit, A, eta

    def laplace(self, theta: np.ndarray, beta: np.ndarray | None = None) -> float:
        """The Laplace deviance at (θ, β); +inf where it is undefined (e.g. an inverse link
        giving negative means), so that optimizers step back."""
        try:
            with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
                value = self.pirls(theta, beta)[2]
        except (RuntimeError, ValueError, FloatingPointError):
            return np.inf
        return value if np.isfinite(value) else np.inf


def _agq_deviance(obj: LaplaceObjective, theta: np.ndarray, beta: np.ndarray, nagq: int) -> float:
    """Adaptive Gauss–Hermite −2 log L for one scalar random-effects term."""
    u, _, _, A, eta = obj.pirls(theta, beta)
    t = obj.d.terms[0]
    lam = float(theta[0])
    codes = t.codes
    zcol = np.asarray(obj.Z.sum(axis=1)).ravel()  # the term's single covariate value per row
    sd = 1.0 / np.sqrt(A.diagonal())  # curvature of −log integrand per group, at the mode
    nodes, weights = np.polynomial.hermite.hermgauss(nagq)
    fixed = obj.X @ beta + obj.d.offset
    total = 0.0
    for j in range(t.m):
        rows = codes == j
        vals = []
        for x, wq in zip(nodes, weights, strict=True):
            uj = u[j] + np.sqrt(2.0) * sd[j] * x
            mu = obj.family.link.inverse(fixed[rows] + zcol[rows] * lam * uj)
            ll = obj.family.loglik(obj.y[rows], mu, obj.w[rows]) - 0.5 * uj**2 - 0.5 * np.log(2 * np.pi)
            vals.append(np.log(wq) + x**2 + ll)
        vals = np.array(vals)
        m = vals.max()
        total += m + np.log(np.sum(np.exp(vals - m))) + np.log(np.sqrt(2.0) * sd[j])
    return -2.0 * total


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


def fit_glmm(design: DesignMatrices, family: Family, nagq: int = 1, optimizer: str = "bobyqa") -> GLMMFit:
    """Fit a GLMM: stage 1 (θ with β in PIRLS), then stage 2 ((θ, β) jointly) unless nAGQ = 0.

    A negative binomial without θ gets θ by maximising the profiled Laplace likelihood (as
    lme4's ``glmer.nb``, see :func:`fit_negative_binomial`). If a gradient-based optimizer ends
    where the deviance is undefined (an inverse or identity link stepping to negative means),
    the fit is redone with the derivative-free BOBYQA, with a warning.
    """
    if family.name == "negative_binomial" and family.nb_theta is None:
        from .negbin import fit_negative_binomial

        return fit_negative_binomial(design, family, nagq, optimizer)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fit = fit_given_family(design, family, nagq, optimizer)
        if np.isfinite(fit.deviance) or optimizer == "bobyqa":
            for w in caught:
                warnings.warn(w.message, w.category, stacklevel=3)
        else:
            warnings.warn(
                f"optimizer={optimizer!r} ended where the {family.name}({family.link.name}) deviance is "
                "undefined; refitting with optimizer='bobyqa'",
                stacklevel=3,
            )
            fit = fit_given_family(design, family, nagq, "bobyqa")
    return fit


def fit_given_family(
    design: DesignMatrices,
    family: Family,
    nagq: int = 1,
    optimizer: str = "bobyqa",
    start: GLMMFit | None = None,
    with_cov: bool = True,
) -> GLMMFit:
    """One GLMM fit with every family parameter fixed; ``start`` warm-starts θ, β and u."""
    y = design.y
    prior_w = np.ones(design.n) if design.weights is None else design.weights
    obj = LaplaceObjective(design, family, y, prior_w)
    lower = design.theta_lower()
    theta0 = design.theta_default()
    if start is not None:
        theta0 = np.maximum(start.theta, lower)
        obj.u, obj.beta = start.u.copy(), start.beta.copy()
    opt1 = minimize_theta(lambda th: obj.laplace(th), theta0, lower, optimizer)
    theta = opt1.x
    obj.pirls(theta, None)
    beta = obj.beta.copy()
    n_evals = opt1.n_evals
    nt = theta.size
    ok, msg = opt1.converged, opt1.message
    if nagq >= 1:
        if nagq > 1:

            def dev2(x):
                try:
                    return _agq_deviance(obj, x[:nt], x[nt:], nagq)
                except (RuntimeError, ValueError, FloatingPointError):
                    return np.inf
        else:

            def dev2(x):
                return obj.laplace(x[:nt], x[nt:])

        lower2 = np.r_[lower, np.full(beta.size, -np.inf)]
        opt2 = minimize_theta(dev2, np.r_[theta, beta], lower2, optimizer)
        theta, beta = opt2.x[:nt], opt2.x[nt:]
        n_evals += opt2.n_evals
        ok, msg = opt2.converged, opt2.message
        dev = dev2(opt2.x)
        cov = np.full((beta.size, beta.size), np.nan)
        if with_cov:
            H = hessian(dev2, opt2.x, d=1e-3)
            # lme4's convergence check: the gradient in units of the estimates' SEs
            ok = opt2.optimizer_ok and scaled_grad_norm(opt2.grad, opt2.x, lower2, H) <= GRAD_TOL
            try:
                cov = 2.0 * np.linalg.inv(H)[nt:, nt:]
            except np.linalg.LinAlgError:
                pass
        if with_cov and (not np.all(np.isfinite(np.diag(cov))) or np.any(np.diag(cov) <= 0)):
            warnings.warn(
                "the Hessian of the GLMM deviance is not positive definite; SEs unreliable", stacklevel=3
            )
    else:
        dev = obj.laplace(theta, None)
        cov = None
    u, beta_fin, _, A, eta = obj.pirls(theta, beta)
    if nagq < 1:
        beta = beta_fin
        mu, W, _ = obj._weights(eta)
        XtWX = design.X.T @ (design.X * W[:, None])
        ZL = (obj.Z @ _lambda(design, theta)).tocsc()
        AX = np.asarray(ZL.multiply(W[:, None]).tocsc().T @ design.X)
        schur = XtWX - AX.T @ splu(A.tocsc(), permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0).solve(AX)
        cov = np.linalg.inv(schur)
    b = _lambda(design, theta) @ u
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
