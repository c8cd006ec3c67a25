"""After-fit diagnostics: R² and ICC (Nakagawa), influence (Cook's distance, leverage), allfit.

With V = σ²(W⁻¹ + ZΛΛ'Z') and P = V⁻¹ = (W − WZBZ'W)/σ², B = Λ(Λ'Z'WZΛ + I)⁻¹Λ' (Woodbury),
variance components held at their estimates:

- leverage hᵢᵢ = 1 − σ² Qᵢᵢ / wᵢ with Q = P − PX(X'PX)⁻¹X'P: the diagonal of the hat matrix
  of the conditional fitted values Xβ̂ + Zb̂ (HLMdiag's "overall" leverage);
- Cook's distance of a set I of rows: Cᵢ = (β̂ − β̂₍I₎)' (X'PX) (β̂ − β̂₍I₎) / p, with the exact
  deletion estimate β̂₍I₎ = (X'PX − Q_I' P_II⁻¹ Q_I)⁻¹ (X'Py − Q_I' P_II⁻¹ r_I), Q_I = P_I·X,
  r_I = P_I·y (the inverse of V without rows I, from P by a Schur complement).
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import pandas as pd

from .inference.table import FullWidthFrame

__all__ = ["r2", "icc", "influence", "allfit"]


def _random_variance(result) -> float:
    """Σ over terms of the mean over observations of zᵢ'Σ_t zᵢ (Johnson 2014)."""
    d = result.design
    total = 0.0
    for t in d.terms:
        Sigma = result._re_scale * (t.T(result.theta) @ t.T(result.theta).T)
        rows = d.term_columns(t)  # the term's model-matrix row for each observation
        total += float(np.mean(np.einsum("ij,jk,ik->i", rows, Sigma, rows)))
    return total


_LATENT_VARIANCE = {"logit": np.pi**2 / 3, "probit": 1.0, "cloglog": np.pi**2 / 6}


def _residual_variance(result) -> float:
    """σ²_ε: σ² for an LMM; for a binomial GLMM the latent-scale variance of the link's
    distribution (π²/3 logit, 1 probit, π²/6 cloglog; Nakagawa et al. 2017)."""
    family = getattr(result, "family", None)
    if family is None:
        return result.scale
    if family.name == "binomial" and family.link.name in _LATENT_VARIANCE:
        return float(_LATENT_VARIANCE[family.link.name])
    raise ValueError(
        f"r2()/icc() for a {family.name} GLMM needs a distribution-specific variance that is not "
        "implemented; they are available for Gaussian LMMs and binomial GLMMs"
    )


def _posterior_parts(result) -> dict[str, np.ndarray] | None:
    """σ²_f, σ²_r, σ²_ε per posterior draw for a PyMC fit (None otherwise); a GLMM's σ²_ε is
    its link's latent variance."""
    if getattr(result, "backend", "reml") != "pymc" or getattr(result, "idata", None) is None:
        return None
    from .results.bayes_after_fit import r2_draws

    v = r2_draws(result)
    if getattr(result, "family", None) is not None:
        v["residual"] = np.full_like(v["fixed"], _residual_variance(result))
    return v


def r2(result, level: float = 0.95) -> dict[str, float]:
    """Nakagawa's marginal and conditional R² (Johnson's extension to random slopes).

    σ²_f = Var(Xβ̂) (n − 1 denominator), σ²_r = Σ_t mean zᵢ'Σ_t zᵢ, σ²_ε = σ² (a binomial
    GLMM: the link's latent variance, π²/3 for logit); marginal = σ²_f / (σ²_f + σ²_r + σ²_ε),
    conditional = (σ²_f + σ²_r) / (same). For a PyMC fit both per posterior draw: the
    posterior means, with ``<key>_lower`` / ``<key>_upper`` equal-tailed ``level`` intervals
    (the same numbers as ``result.r2()``).
    """
    v = _posterior_parts(result)
    if v is not None:
        from .results.bayes_after_fit import summarise_draws

        total = v["fixed"] + v["random"] + v["residual"]
        return summarise_draws(
            {"marginal": v["fixed"] / total, "conditional": (v["fixed"] + v["random"]) / total}, level
        )
    var_f, var_r = _fixed_and_random_variance(result)
    total = var_f + var_r + _residual_variance(result)
    return {"marginal": var_f / total, "conditional": (var_f + var_r) / total}


def icc(result, level: float = 0.95) -> dict[str, float]:
    """Adjusted ICC σ²_r / (σ²_r + σ²_ε) and the unadjusted σ²_r / (σ²_f + σ²_r + σ²_ε);
    per posterior draw for a PyMC fit (as :func:`r2`)."""
    v = _posterior_parts(result)
    if v is not None:
        from .results.bayes_after_fit import summarise_draws

        total = v["fixed"] + v["random"] + v["residual"]
        return summarise_draws({"adjusted": v["random"] / (v["random"] + v["residual"]),
                                "unadjusted": v["random"] / total}, level)
    var_f, var_r = _fixed_and_random_variance(result)
    var_e = _residual_variance(result)
    return {"adjusted": var_r / (var_r + var_e), "unadjusted": var_r / (var_f + var_r + var_e)}


def _fixed_and_random_variance(result) -> tuple[float, float]:
    """σ²_f and σ²_r; for a fit from a lazy frame from its cross-products (unweighted, with an
    intercept): σ²_f = (β'X'Xβ − (1'Xβ)²/n)/(n − 1), σ²_r = Σ_t tr(Σ_t Σ_j D_tj)/n with D_tj the
    diagonal blocks of Z_t'Z_t (Σ_j D_tj = Σ_i z_i z_i')."""
    d = result.design
    if getattr(d, "gram", None) is None:
        fixed = d.X @ result.fe_params.to_numpy()
        return float(np.var(fixed, ddof=1)), _random_variance(result)
    if result.spec.has_weights or "(Intercept)" not in d.X_names:
        _need_rows(result, "r2()/icc() of a weighted fit or one without an intercept (the gathered "
                           "sums are weighted, or lack Σx)")
    beta, n = result.fe_params.to_numpy(), d.n
    XtX = np.asarray(d.gram[2], dtype=float)[: d.p, : d.p]
    total = float(XtX[d.X_names.index("(Intercept)")] @ beta)
    var_f = (float(beta @ XtX @ beta) - total * total / n) / (n - 1)
    var_r = 0.0
    for t in d.terms:
        G = d.gram[0][t.z_start : t.z_start + t.q, t.z_start : t.z_start + t.q].tocoo()
        same = (G.row // t.k) == (G.col // t.k)
        S = np.zeros((t.k, t.k))
        np.add.at(S, (G.row[same] % t.k, G.col[same] % t.k), G.data[same])
        T = t.T(result.theta)
        var_r += float(np.trace(result._re_scale * (T @ T.T) @ S)) / n
    return var_f, var_r


def _need_rows(result, what: str) -> None:
    """Var(Xβ̂) and the mean zᵢ'Σzᵢ are averages over the fitted rows, which a lazy fit lacks."""
    if getattr(result.design, "gram", None) is not None:
        from .results.refusals import needs_rows_error

        raise needs_rows_error(f"{what} (averages over the fitted rows)")


def _precision_parts(result, max_q: int = 20000):
    d = result.design
    _need_rows(result, "influence()")
    if getattr(result, "family", None) is not None:
        raise ValueError(
            "influence() (Cook's distance, leverage) is implemented for Gaussian LMMs from "
            "interlace.fit, not for GLMMs"
        )
    if d.correlation is not None:
        raise ValueError("influence diagnostics are not available with a residual correlation structure")
    if d.q > max_q:
        raise ValueError(f"influence needs a dense {d.q} × {d.q} matrix; q exceeds max_q={max_q}")
    w = np.ones(d.n) if d.weights is None else d.weights
    s2 = result.scale
    WZ = d.Z.multiply(w[:, None]).tocsr()
    D = (d.Z.T @ WZ).toarray()
    Lam = d.lambda_dense(result.theta)
    B = Lam @ np.linalg.solve(Lam.T @ D @ Lam + np.eye(d.q), Lam.T)
    y = d.y - d.offset

    def apply_P(M):
        M = np.asarray(M, dtype=float)
        WM = M * w[:, None] if M.ndim == 2 else M * w
        return (WM - WZ @ (B @ (WZ.T @ M))) / s2

    return d, w, s2, WZ, B, y, apply_P


def influence(result, group: str | None = None) -> pd.DataFrame:
    """Cook's distance and leverage per observation, or Cook's distance per level of ``group``.

    Variance components are held at their estimates (the one-step deletion of HLMdiag /
    influence.ME with fixed θ).
    """
    d, w, s2, WZ, B, y, apply_P = _precision_parts(result)
    X = d.X
    PX, Py = apply_P(X), apply_P(y)
    M = X.T @ PX
    beta = np.linalg.solve(M, X.T @ Py)
    p = d.p
    if group is None:
        # diag(P): w − w² zᵢ'Bzᵢ
        wzBzw = np.asarray(WZ.multiply(WZ @ B).sum(axis=1)).ravel()  # wᵢ² zᵢ'Bzᵢ
        Pii = (w - wzBzw) / s2
        Minv = np.linalg.inv(M)
        Qii = Pii - np.einsum("ij,jk,ik->i", PX, Minv, PX)
        lev = 1 - s2 * Qii / w
        cook = np.empty(d.n)
        for i in range(d.n):
            q_i, r_i, p_ii = PX[i], Py[i], Pii[i]
            Mi = M - np.outer(q_i, q_i) / p_ii
            b_i = np.linalg.solve(Mi, X.T @ Py - q_i * r_i / p_ii)
            delta = beta - b_i
            cook[i] = float(delta @ M @ delta) / p
        return pd.DataFrame({"cooks_distance": cook, "leverage": lev})
    terms = [t for t in d.terms if t.group == group]
    if not terms:
        raise KeyError(f"no grouping factor {group!r}; groups: {sorted({t.group for t in d.terms})}")
    t = terms[0]
    out = []
    for lv in range(t.m):
        idx = np.flatnonzero(t.codes == lv)
        E = np.zeros((d.n, idx.size))
        E[idx, np.arange(idx.size)] = 1.0
        P_I = apply_P(E).T  # rows I of P (P symmetric)
        P_II = P_I[:, idx]
        Q_I, r_I = P_I @ X, P_I @ y
        Mi = M - Q_I.T @ np.linalg.solve(P_II, Q_I)
        b_i = np.linalg.solve(Mi, X.T @ Py - Q_I.T @ np.linalg.solve(P_II, r_I))
        delta = beta - b_i
        out.append(float(delta @ M @ delta) / p)
    return pd.DataFrame({"cooks_distance": out}, index=pd.Index(t.levels, name=group))


def allfit(result, optimizers: tuple[str, ...] = ("lbfgsb", "bobyqa")) -> pd.DataFrame:
    """Refit with every optimizer and tabulate logLik, θ, fixed effects, convergence and time."""
    engine = getattr(result, "engine", None)
    if engine is None:
        raise TypeError("allfit needs a REML/ML fit from interlace.fit (backend='reml')")
    rows = {}
    for opt in optimizers:
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r = engine.refit(optimizer=opt)
        row = {"logLik": r.llf, "converged": r.converged, "seconds": time.perf_counter() - t0}
        row.update({f"theta[{i}]": v for i, v in enumerate(r.theta)})
        row.update(r.fe_params.to_dict())
        rows[opt] = row
    return FullWidthFrame(pd.DataFrame(rows).T)
