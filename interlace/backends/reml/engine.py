"""What a fitted REML/ML model can do after the fit: refit, simulate and profile.

A :class:`REMLEngine` is attached to each result of this backend (``result.engine``); the
inference modules (anova, confint) use it through these methods only.

Variance parameters are profiled on lme4's reporting scale ψ: for each term the standard
deviations and correlations of its columns, then any correlation-structure parameter, then
σ. ψ ↦ (θ, z, σ): T = chol(S C S)/σ with S the SDs and C the correlations.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.sparse as sp
from scipy.optimize import minimize

from ...data.design import DesignMatrices, tril_colwise
from ...model.spec import ModelSpec
from ...results.lmm import CrossedLMEResult, FitInfo, needs_rows_error
from .lmm import LMMFit, LMMObjective, fit_lmm

__all__ = ["REMLEngine", "make_result"]


def make_result(spec: ModelSpec, design: DesignMatrices, est: LMMFit, n_dropped: int = 0) -> CrossedLMEResult:
    """Wrap the numbers of a fit in the unified result, with its engine attached."""
    info = FitInfo(
        theta=est.theta,
        beta=est.beta,
        b=est.b,
        scale=est.scale,
        llf=est.llf,
        cov_beta=est.cov_beta,
        fe_df=est.fe_df,
        fitted=est.fitted,
        resid=est.resid,
        converged=est.converged,
        is_singular=est.is_singular,
        correlation_params=est.correlation_params,
        optimizer_info={
            "optimizer": spec.optimizer,
            "n_evals": est.n_evals,
            "grad_norm": est.grad_norm,
            "message": est.message,
            "tried": list(est.tried),
        },
    )
    return CrossedLMEResult(spec, design, info, backend="reml", n_dropped=n_dropped,
                            engine=REMLEngine(spec, design, est, n_dropped))


class REMLEngine:
    """Refit, simulate and profile one fitted model."""

    def __init__(self, spec: ModelSpec, design: DesignMatrices, est: LMMFit, n_dropped: int = 0,
                 sum_log_w: float = 0.0):
        self.spec, self.design, self.est, self.n_dropped = spec, design, est, n_dropped
        # Σ log wᵢ of a fit from cross-products (lazy frames), which the criterion must subtract
        self.sum_log_w = sum_log_w

    # ---- refitting -------------------------------------------------------------------------
    def refit(self, y: np.ndarray | None = None, **spec_changes) -> CrossedLMEResult:
        """Fit the same design again, with a new response and/or changed spec fields."""
        spec = dataclasses.replace(self.spec, **spec_changes)
        if y is not None and self.design.gram is not None:
            raise needs_rows_error("refitting to a new response")
        design = self.design if y is None else dataclasses.replace(self.design, y=np.asarray(y, float))
        return gram_result(spec, design, fit_lmm(design, spec), self.n_dropped, self.sum_log_w)

    def simulate(self, nsim: int, seed=None, include_re: bool = True) -> np.ndarray:
        """Responses drawn from the fitted model: shape (n, nsim) (lme4's ``simulate``).

        With ``include_re`` new random effects b ~ N(0, σ²ΛΛ') are drawn for each
        simulation; otherwise the conditional modes are kept.
        """
        d, e = self.design, self.est
        if d.gram is not None:
            raise needs_rows_error("simulating responses (simulate, bootstrap, confint(method='boot'))")
        rng = np.random.default_rng(seed)
        sigma = np.sqrt(e.scale)
        mean = d.X @ e.beta + d.offset
        w = np.ones(d.n) if d.weights is None else d.weights
        out = np.empty((d.n, nsim))
        for s in range(nsim):
            b = d.draw_b(e.theta, rng, sigma) if include_re else e.b
            eps = rng.standard_normal(d.n) * sigma
            if d.correlation is not None:
                eps = _correlated_noise(d, e, eps)
            out[:, s] = mean + d.Z @ b + eps / np.sqrt(w)
        return out

    def conditional_variances(self, max_q: int = 20000) -> dict[str, np.ndarray]:
        """Var(b | y) per term: σ² [Λ (Λ'Z'WZΛ + I)⁻¹ Λ']'s k × k diagonal blocks, (m, k, k) each.

        lme4's ``condVar``: conditional on θ̂ and β̂. Keyed by group (terms sharing a group,
        as in ``(x || g)``, are stacked column-wise in term order).
        """
        d, e = self.design, self.est
        if d.q > max_q:
            raise ValueError(f"conditional variances need a dense {d.q} × {d.q} inverse; q > max_q={max_q}")
        if d.gram is not None:  # a lazy fit: Z'WZ from the collected cross-products
            ZtWZ = _full_ztz(d)
        else:
            w = np.ones(d.n) if d.weights is None else d.weights
            Zw = d.Z.multiply(np.sqrt(w)[:, None]).tocsc()
            if d.correlation is not None:
                z = next(self._corr_z())
                Zw = (d.correlation.whitener(z, d.corr_layout)[0] @ Zw).tocsc()
            ZtWZ = (Zw.T @ Zw).toarray()
        Lam = d.lambda_dense(e.theta)
        C = Lam.T @ ZtWZ @ Lam + np.eye(d.q)
        V = e.scale * Lam @ np.linalg.solve(C, Lam.T)
        out: dict[str, list[np.ndarray]] = {}
        for t in d.terms:
            idx = t.z_start + np.arange(t.q).reshape(t.m, t.k)
            out.setdefault(t.group, []).append(V[idx[:, :, None], idx[:, None, :]])
        return {g: blocks[0] if len(blocks) == 1 else _stack_blocks(blocks) for g, blocks in out.items()}

    def contrast_df(self, L: np.ndarray) -> np.ndarray:
        """Denominator df of each row ℓ of L for the fit's ``df_method`` (Satterthwaite or KR)."""
        L = np.atleast_2d(np.asarray(L, dtype=float))
        if self.spec.df_method == "kenward-roger":
            from ...inference.kenward_roger import kr_df

            return np.array([kr_df(self.kr_adjustment(), row) for row in L])
        from ...inference.satterthwaite import satterthwaite_df

        return satterthwaite_df(*self.satterthwaite_parts(), L)

    def kr_adjustment(self):
        """The Kenward-Roger adjustment at this fit (cached): Φ, Φ_A, P_r and W."""
        if not hasattr(self, "_kr"):
            from ...inference.kenward_roger import kenward_roger

            obj = self._objective()
            problem, _ = obj.problem(np.r_[self.est.theta, list(self._corr_z())])
            phi = self.est.scale * problem.rx_inverse(problem.factor(self.est.theta))
            self._kr = kenward_roger(self.design, self.est.theta, self.est.scale, phi=phi)
        return self._kr

    def satterthwaite_parts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(Var β̂, ∂Var(β̂)/∂φ, A = 2H⁻¹) at this fit (cached): Satterthwaite's pieces."""
        e = self.est
        if not hasattr(self, "_satt") and e.varpar_cov is not None and e.cov_beta_jac is not None:
            self._satt = (e.cov_beta, e.cov_beta_jac, e.varpar_cov)  # what the fit's own df used
        if not hasattr(self, "_satt"):
            from ...inference.derivatives import hessian, jacobian
            from ...inference.satterthwaite import varpar_covariance

            obj = self._objective()
            varpar = np.r_[self.est.theta, list(self._corr_z()), np.sqrt(self.est.scale)]
            A = varpar_covariance(hessian(obj.varpar_deviance, varpar))
            self._satt = (obj.cov_beta(varpar), jacobian(obj.cov_beta, varpar), A)
        return self._satt

    # ---- the ψ scale ------------------------------------------------------------------------
    def psi_names(self) -> list[str]:
        """Names of the ψ parameters (:meth:`DesignMatrices.variance_names`)."""
        return self.design.variance_names()

    def psi_hat(self) -> np.ndarray:
        sigma = np.sqrt(self.est.scale)
        vals = list(self.design.sd_cor(self.est.theta, sigma))
        vals.extend(self.est.correlation_params.values())
        return np.array(vals + [sigma])

    def psi_bounds(self) -> list[tuple[float, float]]:
        bounds = []
        for t in self.design.terms:
            r, c = tril_colwise(t.k)
            bounds.extend(
                (0.0, np.inf) if i == j else (-1 + 1e-8, 1 - 1e-8) for i, j in zip(r, c, strict=True)
            )
        if self.design.correlation is not None:
            bounds.append((-1 + 1e-8, 1 - 1e-8))
        return bounds + [(1e-12, np.inf)]

    def _psi_to_varpar(self, psi: np.ndarray) -> np.ndarray:
        sigma = psi[-1]
        thetas, pos = [], 0
        for t in self.design.terms:
            n = t.n_theta
            r, c = tril_colwise(t.k)
            sd, C = np.zeros(t.k), np.eye(t.k)
            for v, i, j in zip(psi[pos : pos + n], r, c, strict=True):
                if i == j:
                    sd[i] = v
                else:
                    C[i, j] = C[j, i] = v
            S = C * np.outer(sd, sd) + 1e-14 * np.eye(t.k)
            T = np.linalg.cholesky(S) / sigma
            thetas.extend(T[r, c])
            pos += n
        extra = []
        if self.design.correlation is not None:
            extra = [self.design.correlation.to_z(psi[pos], self.design.corr_layout)]
        return np.array(thetas + extra + [sigma])

    def psi_deviance(self, psi: np.ndarray, objective: LMMObjective | None = None) -> float:
        """The REML criterion / ML deviance at ψ (β profiled, σ not)."""
        obj = objective or self._objective()
        try:
            return float(obj.varpar_deviance(self._psi_to_varpar(psi)))
        except np.linalg.LinAlgError:
            return np.inf

    def _objective(self) -> LMMObjective:
        if not hasattr(self, "_obj"):
            self._obj = LMMObjective(self.design, self.spec.reml)
        return self._obj

    def profile_psi(self, j: int, value: float, start: np.ndarray) -> tuple[float, np.ndarray]:
        """min over the other ψ of the deviance with ψ_j = value; returns (deviance, ψ)."""
        obj = self._objective()
        free = [i for i in range(start.size) if i != j]
        bounds = [self.psi_bounds()[i] for i in free]

        def f(sub):
            psi = start.copy()
            psi[free] = sub
            psi[j] = value
            return self.psi_deviance(psi, obj)

        res = minimize(f, start[free], method="L-BFGS-B", bounds=bounds)
        psi = start.copy()
        psi[free] = res.x
        psi[j] = value
        return float(res.fun), psi

    def profile_beta(self, j: int, value: float) -> float:
        """The criterion minimised over θ with β_j fixed at ``value`` (its column as offset)."""
        d = self.design
        keep = [i for i in range(d.p) if i != j]
        reduced = dataclasses.replace(
            d, X=d.X[:, keep], X_names=[d.X_names[i] for i in keep], offset=d.offset + value * d.X[:, j]
        )
        if d.gram is not None:  # the same move on the cross-products: [X y] ↦ [X_keep, y − v·x_j]
            A = np.zeros((d.p + 1, d.p))
            A[keep, np.arange(d.p - 1)] = 1.0
            A[d.p, d.p - 1], A[j, d.p - 1] = 1.0, -value
            ZtZ, ZtXy, XytXy = d.gram
            reduced = dataclasses.replace(reduced, gram=(ZtZ, ZtXy @ A, A.T @ XytXy @ A))
        obj = LMMObjective(reduced, self.spec.reml)
        x0 = np.r_[self.est.theta, list(self._corr_z())]
        lower = np.r_[d.theta_lower(), [-np.inf] * (x0.size - d.n_theta)]
        bounds = [(lo if np.isfinite(lo) else None, None) for lo in lower]
        res = minimize(obj, x0, method="L-BFGS-B", bounds=bounds)
        return float(res.fun)

    def _corr_z(self):
        d = self.design
        for v in self.est.correlation_params.values():
            yield d.correlation.to_z(v, d.corr_layout)


def gram_result(spec: ModelSpec, design: DesignMatrices, est: LMMFit, n_dropped: int = 0,
                sum_log_w: float = 0.0) -> CrossedLMEResult:
    """:func:`make_result` for a design that may carry only cross-products (a lazy frame): no
    fitted values or residuals, and the criterion less Σ log wᵢ of the prior weights."""
    if design.gram is None:
        return make_result(spec, design, est, n_dropped)
    est.objective -= sum_log_w
    est.fitted = est.resid = None  # no row-level data were collected
    result = make_result(spec, design, est, n_dropped=n_dropped)
    result.engine.sum_log_w = sum_log_w
    result.optimizer_info["solver"] = "exact"
    return result


def _full_ztz(d: DesignMatrices) -> np.ndarray:
    """Z'WZ (dense) from a lazy design's lower block triangle: each term's own block is stored
    whole, each block between two terms once, below the diagonal."""
    L = sp.coo_matrix(d.gram[0])
    term = np.concatenate([np.full(t.q, i) for i, t in enumerate(d.terms)])
    between = term[L.row] != term[L.col]
    mirror = sp.coo_matrix((L.data[between], (L.col[between], L.row[between])), shape=L.shape)
    return (L + mirror).toarray()


def _stack_blocks(blocks: list[np.ndarray]) -> np.ndarray:
    m = blocks[0].shape[0]
    k = sum(b.shape[1] for b in blocks)
    out = np.zeros((m, k, k))
    i = 0
    for b in blocks:
        kb = b.shape[1]
        out[:, i : i + kb, i : i + kb] = b
        i += kb
    return out


def _correlated_noise(d: DesignMatrices, e: LMMFit, white: np.ndarray) -> np.ndarray:
    """Turn iid noise into noise with the fitted residual correlation: ε = R^(1/2) e."""
    value = next(iter(e.correlation_params.values()))
    z = d.correlation.to_z(value, d.corr_layout)
    Linv, _ = d.correlation.whitener(z, d.corr_layout)
    from scipy.sparse.linalg import spsolve

    return spsolve(Linv.tocsc(), white)
