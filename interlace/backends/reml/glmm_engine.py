"""What a fitted Laplace GLMM can do after the fit: refit, simulate and profile (lme4's
``refit``, ``simulate`` and ``profile`` for glmer fits).

A :class:`GLMMEngine` is attached to each ``interlace.glmer`` result (``result.engine``), so
that ``confint``, ``bootstrap``, ``anova`` and ``emmeans`` work on it as on an LMM.

The profile deviance of a GLMM is the Laplace (or AGQ) deviance D(θ, β), minimised over all
parameters but the one profiled: β is not profiled out as in an LMM, it is optimised with θ
(lme4's ``profile.merMod`` for glmer, through ``devfun2``). Variance parameters are profiled
on the SD / correlation scale ψ of the random effects (no σ: b = Λu directly).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy.optimize import minimize

from ...data.design import DesignMatrices, tril_colwise
from ...linalg.threads import fit_blas_threads
from ...model.families import Family
from ...model.spec import ModelSpec
from ...results.glmm import GLMMResult
from ...results.lmm import FitInfo
from .engine import _stack_blocks as _stack
from .glmer import fit_glmm
from .glmm import GLMMFit, LaplaceObjective, _agq_deviance

__all__ = ["GLMMEngine", "make_glmm_result"]


def make_glmm_result(spec: ModelSpec, design: DesignMatrices, family: Family, est: GLMMFit, nagq: int,
                     optimizer: str, fast: bool, n_dropped: int = 0) -> GLMMResult:
    """Wrap one glmer fit in its result, with a :class:`GLMMEngine` attached. ``family`` is the
    family as asked for (a negative binomial's θ unset when it is estimated)."""
    info = FitInfo(
        theta=est.theta, beta=est.beta, b=est.b, scale=est.scale, llf=-0.5 * est.deviance,
        cov_beta=est.cov_beta, fe_df=np.full(design.p, np.inf), fitted=est.mu, resid=design.y - est.mu,
        converged=est.converged, is_singular=est.is_singular,
        optimizer_info={"optimizer": optimizer, "n_evals": est.n_evals, "message": est.message,
                        "fast": bool(fast)},
    )
    result = GLMMResult(spec, design, info, est.family, est.eta, int(nagq), n_dropped=n_dropped)
    result.engine = GLMMEngine(spec, design, family, est, int(nagq), optimizer, bool(fast), n_dropped)
    return result


class GLMMEngine:
    """Refit, simulate and profile one glmer fit."""

    def __init__(self, spec: ModelSpec, design: DesignMatrices, family: Family, est: GLMMFit, nagq: int,
                 optimizer: str, fast: bool, n_dropped: int = 0):
        self.spec, self.design, self.family, self.est = spec, design, family, est
        self.nagq, self.optimizer, self.fast, self.n_dropped = nagq, optimizer, fast, n_dropped

    # ---- refitting -------------------------------------------------------------------------
    def refit(self, y: np.ndarray | None = None, method: str | None = None, df_method: str | None = None,
              optimizer: str | None = None) -> GLMMResult:
        """Fit the same GLMM again, to a new response and/or with another optimizer.

        ``method`` ("ML") and ``df_method`` are accepted for the LMM engine's callers: a GLMM
        is always fitted by maximum (Laplace) likelihood and its tests are Wald z (df = ∞)."""
        if method not in (None, "ML"):
            raise ValueError(f"a GLMM is fitted by (Laplace) maximum likelihood only, not {method!r}")
        design = self.design if y is None else dataclasses.replace(self.design, y=np.asarray(y, float))
        opt = optimizer or self.optimizer
        with fit_blas_threads():
            est = fit_glmm(design, self.family, nagq=self.nagq, optimizer=opt, fast=self.fast)
        spec = self.spec if optimizer is None else dataclasses.replace(self.spec, optimizer=opt)
        return make_glmm_result(spec, design, self.family, est, self.nagq, opt, self.fast, self.n_dropped)

    def simulate(self, nsim: int, seed=None, include_re: bool = True) -> np.ndarray:
        """Responses drawn from the fitted model, shape (n, nsim): new b ~ N(0, ΛΛ') per draw
        (or the modes without ``include_re``), then y ~ family(g⁻¹(Xβ + Zb + offset))."""
        rng = np.random.default_rng(seed)
        d, e, fam = self.design, self.est, self.est.family
        w = np.ones(d.n) if d.weights is None else d.weights
        fixed = d.X @ e.beta + d.offset
        out = np.empty((d.n, int(nsim)))
        for s in range(int(nsim)):
            b = d.draw_b(e.theta, rng) if include_re else e.b
            out[:, s] = fam.sample(fam.link.inverse(fixed + d.Z @ b), w, rng, e.scale)
        return out

    def contrast_df(self, L: np.ndarray) -> np.ndarray:
        """Wald z: the df of every contrast is ∞ (emmeans' asymptotic df for glmer)."""
        return np.full(np.atleast_2d(L).shape[0], np.inf)

    def conditional_variances(self, max_q: int = 20000) -> dict[str, np.ndarray]:
        """Var(b | y) per group, (m, k, k) blocks of Λ (Λ'Z'WZΛ + I)⁻¹ Λ' with W the IRLS weights
        at the conditional modes (lme4's ``condVar`` for glmer, the Laplace approximation's
        curvature); for Gamma multiplied by its dispersion σ², as lme4 does."""
        d, e = self.design, self.est
        if d.q > max_q:
            raise ValueError(f"conditional variances need a dense {d.q} × {d.q} inverse; q > max_q={max_q}")
        _, W, _ = self._objective().kernel.weights(e.eta)
        Zw = d.Z.multiply(np.sqrt(W)[:, None]).tocsc()
        Lam = d.lambda_dense(e.theta)
        C = Lam.T @ (Zw.T @ Zw).toarray() @ Lam + np.eye(d.q)
        V = e.scale * Lam @ np.linalg.solve(C, Lam.T)
        out: dict[str, list[np.ndarray]] = {}
        for t in d.terms:
            idx = t.z_start + np.arange(t.q).reshape(t.m, t.k)
            out.setdefault(t.group, []).append(V[idx[:, :, None], idx[:, None, :]])
        return {g: blocks[0] if len(blocks) == 1 else _stack(blocks) for g, blocks in out.items()}

    # ---- the ψ scale ------------------------------------------------------------------------
    def psi_names(self) -> list[str]:
        """SDs and correlations of each term (lme4 ``confint`` names), no ``sigma``."""
        return self.design.variance_names()[:-1]

    def psi_hat(self) -> np.ndarray:
        return self.design.sd_cor(self.est.theta)

    def psi_bounds(self) -> list[tuple[float, float]]:
        bounds = []
        for t in self.design.terms:
            r, c = tril_colwise(t.k)
            bounds.extend((0.0, np.inf) if i == j else (-1 + 1e-8, 1 - 1e-8)
                          for i, j in zip(r, c, strict=True))
        return bounds

    def _psi_to_theta(self, psi: np.ndarray) -> np.ndarray:
        thetas, pos = [], 0
        for t in self.design.terms:
            r, c = tril_colwise(t.k)
            if t.k == 1:
                thetas.append(psi[pos])
            else:
                sd, C = np.zeros(t.k), np.eye(t.k)
                for v, i, j in zip(psi[pos : pos + t.n_theta], r, c, strict=True):
                    if i == j:
                        sd[i] = v
                    else:
                        C[i, j] = C[j, i] = v
                T = np.linalg.cholesky(C * np.outer(sd, sd) + 1e-14 * np.eye(t.k))
                thetas.extend(T[r, c])
            pos += t.n_theta
        return np.array(thetas)

    def _objective(self) -> LaplaceObjective:
        d = self.design
        w = np.ones(d.n) if d.weights is None else d.weights
        return LaplaceObjective(d, self.est.family, d.y, w)

    def _deviance(self, obj: LaplaceObjective, psi: np.ndarray, beta: np.ndarray) -> float:
        try:
            theta = self._psi_to_theta(psi)
            if self.nagq > 1:
                return _agq_deviance(obj, theta, beta, self.nagq)
            return obj.laplace(theta, beta)
        except (np.linalg.LinAlgError, ValueError, FloatingPointError):
            return np.inf

    def psi_deviance(self, psi: np.ndarray) -> float:
        """The deviance at ψ with β at the fit: the profile's reference value D(θ̂, β̂)."""
        return self._deviance(self._objective(), np.asarray(psi, float), self.est.beta)

    def _profile(self, fixed_index: int, value: float) -> float:
        """min over every other element of x = (ψ, β) of D, with x[fixed_index] = value."""
        obj = self._profile_obj = getattr(self, "_profile_obj", None) or self._objective()
        x0 = np.r_[self.psi_hat(), self.est.beta]
        key = (fixed_index, bool(value >= x0[fixed_index]))  # the last optimum on this side
        warm = getattr(self, "_warm", {}).get(key)
        if warm is not None:
            x0 = warm.copy()
        k = x0.size - self.est.beta.size
        free = np.array([i for i in range(x0.size) if i != fixed_index])
        bounds = [*self.psi_bounds(), *[(None, None)] * self.est.beta.size]
        scalar = all(t.k == 1 for t in self.design.terms) and self.nagq <= 1 and obj.has_gradient

        def full(sub):
            x = x0.copy()
            x[free], x[fixed_index] = sub, value
            return x

        def f(sub):
            x = full(sub)
            return self._deviance(obj, x[:k], x[k:])

        def fg(sub):  # ψ = θ for scalar terms: the analytic gradient in (θ, β)
            x = full(sub)
            val, g = obj.laplace_and_grad(x[:k], x[k:])
            return val, (g[free] if np.isfinite(val) else np.zeros(free.size))

        opts = {"ftol": 1e-13, "gtol": 1e-8, "maxiter": 500}
        b = [bounds[i] for i in free]
        with fit_blas_threads():  # tiny dense algebra: spinning BLAS threads only slow it down
            res = (minimize(fg, x0[free], jac=True, method="L-BFGS-B", bounds=b, options=opts) if scalar
                   else minimize(f, x0[free], method="L-BFGS-B", bounds=b, options=opts))
        self._warm = {**getattr(self, "_warm", {}), key: full(res.x)}
        return float(min(res.fun, f(res.x)))

    def profile_psi(self, j: int, value: float, start: np.ndarray | None = None) -> tuple[float, None]:
        """(min over the other ψ and all β of D with ψ_j = value, None)."""
        return self._profile(j, value), None

    def profile_beta(self, j: int, value: float) -> float:
        """min over ψ and the other β of D with β_j = value."""
        return self._profile(len(self.psi_names()) + j, value)
