"""Tests of linear hypotheses Lβ = rhs on the fixed effects (lmerTest's ``contest``).

For a linear mixed model:

- one row ℓ: t = (ℓ'β̂ − rhs) / √(ℓ'Vℓ) with Satterthwaite's df ν = 2(ℓ'Vℓ)² / (g'Ag),
  gᵢ = ℓ'(∂V/∂φᵢ)ℓ (lmerTest's ``contest1D``), or with Kenward–Roger's adjusted V_A and df;
- several rows (Satterthwaite, lmerTest's ``contestMD``): eigen-decompose LVL' = PDP', keep the
  q eigenvalues above √ε·d₁, and form q independent t-statistics tₘ = (PᵀL)ₘβ̂/√dₘ with df νₘ;
  F = Σ tₘ² / q on q and ν numerator/denominator df, where ν = 2E/(E − q), E = Σ νₘ/(νₘ − 2)
  (ν = 2 when any νₘ ≤ 2; the mean when all νₘ agree);
- several rows (Kenward–Roger, pbkrtest's ``KRmodcomp``): the Wald statistic on V_A divided by
  q, scaled by λ = ν(1 − A₂/q)/(ν − 2) and referred to F(q, ν) with ν = 4 + (q + 2)/(qρ − 1)
  (Kenward & Roger 1997, eq. 4–5, 11–12);

``Sum Sq`` = q·σ²F_unscaled and ``Mean Sq`` = σ²F_unscaled, as lmerTest reports them.

For a GLMM the tests are Wald tests (car's ``linearHypothesis``): z for one row,
χ² = (Lβ̂ − rhs)'(LVL')⁻¹(Lβ̂ − rhs) on rank(L) df for several.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from .kenward_roger import kr_ddf_scale
from .table import AnovaTable

__all__ = ["contest", "ftest", "wald_chisq", "ddf_method"]

_F_COLUMNS = ["Sum Sq", "Mean Sq", "NumDF", "DenDF", "F value", "Pr(>F)"]
_DDF = {"satterthwaite": "Satterthwaite", "kenward-roger": "Kenward-Roger", "kr": "Kenward-Roger"}


def backend_note(result) -> str:
    """`` (backend='pymc')`` for a result sampled by another backend than REML, else nothing."""
    backend = getattr(result, "backend", "reml")
    return f" (backend={backend!r})" if backend != "reml" else ""


def _is_glmm(result) -> bool:
    """A frequentist GLMM (Wald tests); a sampled fit is refused: its tests are posterior summaries."""
    if getattr(result, "backend", "reml") != "reml" or not hasattr(result, "fe_params"):
        raise TypeError(
            f"these tests need a frequentist fit (interlace.fit / interlace.glmer with backend='reml'), "
            f"got {type(result).__name__}{backend_note(result)}"
        )
    return hasattr(result, "family")


def ddf_method(result, ddf: str | None) -> str:
    """``"Satterthwaite"`` or ``"Kenward-Roger"``: ``ddf`` (any case) or the fit's ``df_method``."""
    from ..results.refusals import refuse_iterative

    refuse_iterative(result, "an F or t test with denominator df (anova, drop1, test)", "df",
                     "β̂ and Var(β̂) are exact: the Wald z tests of summary() and emmeans() are available. ")
    if getattr(result, "engine", None) is None:
        raise TypeError(
            f"F and t tests with Satterthwaite/Kenward-Roger df need a REML/ML fit from interlace.fit, "
            f"got {type(result).__name__}{backend_note(result)}"
        )
    if ddf is None:
        ddf = result.df_method
    if not isinstance(ddf, str) or ddf.strip().lower().replace("_", "-").replace(" ", "-") not in _DDF:
        raise ValueError(f"ddf must be 'Satterthwaite' or 'Kenward-Roger', got {ddf!r}"
                         + ("; lmerTest's ddf='lme4' (tests without df) is not offered" if
                            str(ddf).lower() == "lme4" else ""))
    method = _DDF[ddf.strip().lower().replace("_", "-").replace(" ", "-")]
    if method == "Kenward-Roger":
        if result.method != "REML":
            raise ValueError("ddf='Kenward-Roger' needs a REML fit (as pbkrtest); refit with method='REML'")
        if result.design.correlation is not None:
            raise ValueError("ddf='Kenward-Roger' is not available with correlation=; use 'Satterthwaite'")
        if result.design.n_rows is not None:
            raise ValueError("ddf='Kenward-Roger' needs row-level data; collect the lazy frame and refit")
    return method


def _as_matrix(result, L) -> tuple[np.ndarray, bool, list[str] | None]:
    """L as a (k, p) array over the fixed effects; whether it was one vector; row names."""
    names = list(result.fe_params.index)
    p = len(names)
    rows = None
    if isinstance(L, dict):
        L = pd.Series(L, dtype=float)
    if isinstance(L, pd.Series | pd.DataFrame):
        cols = L.index if isinstance(L, pd.Series) else L.columns
        unknown = [str(c) for c in cols if c not in names]
        if unknown:
            raise KeyError(f"L names coefficient(s) {unknown} that the model does not have; it has {names}")
        if isinstance(L, pd.DataFrame):
            rows = [str(r) for r in L.index]
            return L.reindex(columns=names, fill_value=0.0).to_numpy(dtype=float), False, rows
        return L.reindex(names, fill_value=0.0).to_numpy(dtype=float)[None, :], True, rows
    try:
        arr = np.asarray(L, dtype=float)
    except (TypeError, ValueError) as ex:
        raise TypeError("L must be numbers: a vector or a matrix with one column per fixed effect") from ex
    if arr.ndim not in (1, 2) or arr.shape[-1] != p or arr.size == 0:
        raise ValueError(
            f"L must have one entry per fixed effect ({p}: {names}), as a vector or a k × {p} matrix; "
            f"got shape {arr.shape}"
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError("L has missing or infinite entries")
    return np.atleast_2d(arr), arr.ndim == 1, rows


def _rhs(rhs, k: int) -> np.ndarray:
    r = np.atleast_1d(np.asarray(rhs, dtype=float))
    if r.size == 1:
        r = np.full(k, float(r[0]))
    if r.shape != (k,) or not np.all(np.isfinite(r)):
        raise ValueError(f"rhs must be one number or one per row of L ({k}), got {rhs!r}")
    return r


def contest(result, L, rhs=0.0, ddf: str | None = None, joint: bool | None = None, level: float = 0.95):
    """Test Lβ = rhs: a t-test per row (lmerTest's ``contest1D``) or one F test (``contestMD``).

    ``L`` is a vector (one contrast), a matrix with one column per fixed effect, or a pandas
    Series/DataFrame (or dict) indexed by coefficient names, missing names being 0. By default a
    vector gets a t-test (``Estimate``, ``Std. Error``, ``df``, ``t value``, ``lower``, ``upper``,
    ``Pr(>|t|)``) and a matrix a joint F test (``Sum Sq`` … ``Pr(>F)``); ``joint=True`` asks for the
    F test of a single row, ``joint=False`` for a t-test of each row. ``ddf`` is
    ``"Satterthwaite"`` or ``"Kenward-Roger"`` (default: the fit's ``df_method``). For a GLMM the
    tests are Wald z / χ² tests (car's ``linearHypothesis``) and ``ddf`` is refused.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1, got {level!r}")
    Lm, vector, rows = _as_matrix(result, L)
    r = _rhs(rhs, Lm.shape[0])
    joint = (not vector and Lm.shape[0] > 1) if joint is None else bool(joint)
    if _is_glmm(result):
        if ddf is not None:
            raise ValueError("ddf= applies to linear mixed models; a GLMM's tests are Wald z / chi-square")
        if joint:
            return wald_chisq(result, {"L": Lm}, rhs=r, heading="Linear hypothesis test (Wald chi-square)")
        return _ztable(result, Lm, r, level, rows)
    method = ddf_method(result, ddf)
    if joint:
        row = ftest(result, Lm, method, r)
        return AnovaTable([row], columns=_F_COLUMNS, index=["L"],
                          heading=f"F test of L beta = rhs with {method}'s method")
    out = [_ttest(result, ell, rr, method, level) for ell, rr in zip(Lm, r, strict=True)]
    index = rows if rows is not None else (["L"] if len(out) == 1 else [f"L{i + 1}" for i in range(len(out))])
    return AnovaTable(out, columns=["Estimate", "Std. Error", "df", "t value", "lower", "upper", "Pr(>|t|)"],
                      index=index, heading=f"t test of L beta = rhs with {method}'s method")


def _ttest(result, ell: np.ndarray, rhs: float, method: str, level: float) -> list[float]:
    beta = result.fe_params.to_numpy()
    est = float(ell @ beta)
    if method == "Kenward-Roger":
        from .kenward_roger import kr_df

        adj = result.engine.kr_adjustment()
        var, df = float(ell @ adj.phi_adj @ ell), kr_df(adj, ell)
    else:
        from .satterthwaite import satterthwaite_df

        V, J, A = result.engine.satterthwaite_parts()
        var, df = float(ell @ V @ ell), float(satterthwaite_df(V, J, A, ell)[0])
    se = np.sqrt(var)
    t = (est - rhs) / se
    half = stats.t.ppf(0.5 + level / 2, df) * se
    return [est, se, df, t, est - half, est + half, 2 * stats.t.sf(abs(t), df)]


def _ztable(result, Lm: np.ndarray, r: np.ndarray, level: float, rows) -> AnovaTable:
    beta, V = result.fe_params.to_numpy(), result.fe_cov.to_numpy()
    q = stats.norm.ppf(0.5 + level / 2)
    out = []
    for ell, rr in zip(Lm, r, strict=True):
        est, se = float(ell @ beta), float(np.sqrt(ell @ V @ ell))
        z = (est - rr) / se
        out.append([est, se, z, est - q * se, est + q * se, 2 * stats.norm.sf(abs(z))])
    index = rows if rows is not None else (["L"] if len(out) == 1 else [f"L{i + 1}" for i in range(len(out))])
    return AnovaTable(out, columns=["Estimate", "Std. Error", "z value", "lower", "upper", "Pr(>|z|)"],
                      index=index, heading="Wald z test of L beta = rhs")


# ---- F tests ----------------------------------------------------------------------------------
def ftest(result, L: np.ndarray, method: str, rhs: np.ndarray | None = None) -> list[float]:
    """One row of an F table for Lβ = rhs: Sum Sq, Mean Sq, NumDF, DenDF, F value, Pr(>F)."""
    L = np.atleast_2d(L)
    if L.shape[0] == 0:
        return [np.nan] * 6
    beta = result.fe_params.to_numpy()
    if rhs is not None and np.any(rhs != 0):
        beta = beta - np.linalg.pinv(L) @ rhs  # lmerTest: shift β so the hypothesis is Lβ = 0
    sigma2 = result.scale
    if method == "Kenward-Roger":
        F_unscaled, q, ddf, scale = _kr_f(result.engine.kr_adjustment(), L, beta)
    else:
        F_unscaled, q, ddf = _satterthwaite_f(result.engine.satterthwaite_parts(), L, beta)
        scale = 1.0
    if q == 0:
        return [np.nan] * 6
    F = scale * F_unscaled
    ms = F_unscaled * sigma2
    return [ms * q, ms, float(q), float(ddf), F, float(stats.f.sf(F, q, ddf))]


def _satterthwaite_f(parts, L: np.ndarray, beta: np.ndarray) -> tuple[float, int, float]:
    V, J, A = parts

    def df_of(ell: np.ndarray) -> float:
        g = np.einsum("i,ijk,j->k", ell, J, ell)
        return 2 * float(ell @ V @ ell) ** 2 / float(g @ A @ g)

    if L.shape[0] == 1:
        ell = L[0]
        return float((ell @ beta) ** 2 / (ell @ V @ ell)), 1, df_of(ell)
    d, P = np.linalg.eigh(L @ V @ L.T)
    d, P = d[::-1], P[:, ::-1]
    pos = d > max(np.sqrt(np.finfo(float).eps) * d[0], 0.0)
    q = int(pos.sum())
    if q == 0:
        return np.nan, 0, np.nan
    PtL = P[:, :q].T @ L
    t2 = (PtL @ beta) ** 2 / d[:q]
    nu = np.array([2 * d[m] ** 2 / float(_g(J, PtL[m]) @ A @ _g(J, PtL[m])) for m in range(q)])
    if q == 1:  # lmerTest recomputes the 1-D case from the rotated row
        return float(t2[0]), 1, df_of(PtL[0])
    return float(t2.sum() / q), q, _fstat_ddf(nu)


def _g(J: np.ndarray, ell: np.ndarray) -> np.ndarray:
    return np.einsum("i,ijk,j->k", ell, J, ell)


def _fstat_ddf(nu: np.ndarray, tol: float = 1e-8) -> float:
    """Denominator df of an F built from independent t's with df ν (lmerTest's ``get_Fstat_ddf``)."""
    if nu.size == 1:
        return float(nu[0])
    if np.all(np.abs(np.diff(nu)) < tol):
        return float(nu.mean())
    if np.any(nu <= 2):
        return 2.0
    E = float(np.sum(nu / (nu - 2)))
    return 2 * E / (E - nu.size)


def _kr_f(adj, L: np.ndarray, beta: np.ndarray) -> tuple[float, int, float, float]:
    """(Wald/q on Φ_A, q, ν, λ) of Kenward & Roger for Lβ = 0 (pbkrtest's ``.KR_adjust``)."""
    q = int(np.linalg.matrix_rank(L))
    if q < L.shape[0]:  # a basis of the row space (pbkrtest's force_full_rank)
        Q, _ = np.linalg.qr(L.T)
        L = Q[:, :q].T
    ddf, scale = kr_ddf_scale(adj, L)
    Lb = L @ beta
    wald = float(Lb @ np.linalg.solve(L @ adj.phi_adj @ L.T, Lb))
    return wald / q, q, float(ddf), float(scale)


# ---- Wald chi-square (GLMMs) --------------------------------------------------------------------
def wald_chisq(result, Ls: dict[str, np.ndarray], rhs: np.ndarray | None = None,
               heading: str = "") -> AnovaTable:
    """One row per entry of ``Ls``: Chisq, Df, Pr(>Chisq) of the Wald test Lβ = rhs."""
    beta, V = result.fe_params.to_numpy(), result.fe_cov.to_numpy()
    rows = []
    for L in Ls.values():
        L = np.atleast_2d(L)
        if L.shape[0] == 0:
            rows.append([np.nan, 0.0, np.nan])
            continue
        d = L @ beta - (0.0 if rhs is None else rhs)
        q = int(np.linalg.matrix_rank(L @ V @ L.T))
        chisq = float(d @ np.linalg.pinv(L @ V @ L.T) @ d)
        rows.append([chisq, float(q), float(stats.chi2.sf(chisq, q))])
    return AnovaTable(rows, columns=["Chisq", "Df", "Pr(>Chisq)"], index=list(Ls), heading=heading)
