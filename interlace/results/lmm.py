"""CrossedLMEResult: the one result type every backend returns, with lme4-style attributes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from ..data.design import DesignMatrices, evaluate_expr, level_keys, model_variables, rebuild_matrix
from ..data.frames import to_pandas
from ..model.rargs import r_arguments
from ..model.rformula import r_labels
from ..model.spec import ModelSpec
from .base import FitResult
from .refusals import needs_rows_error, refuse_iterative
from .verbs import RE_FORM_DEFAULT, ResultVerbs, resolve_re_form

__all__ = ["CrossedLMEResult", "FitInfo", "needs_rows_error", "refuse_iterative"]


@dataclass
class FitInfo:
    """Numbers a backend produced; the result derives everything else from these."""

    theta: np.ndarray
    beta: np.ndarray
    b: np.ndarray
    scale: float
    llf: float
    cov_beta: np.ndarray
    fe_df: np.ndarray
    fitted: np.ndarray
    resid: np.ndarray
    converged: bool
    is_singular: bool
    optimizer_info: dict[str, Any] = field(default_factory=dict)
    correlation_params: dict[str, float] = field(default_factory=dict)


class CrossedLMEResult(ResultVerbs, FitResult):
    """A fitted linear mixed model.

    Fixed effects: ``fe_params``, ``fe_bse``, ``fe_df``, ``fe_tvalues``, ``fe_pvalues``,
    ``fe_conf_int``, ``fe_cov``. Variance: ``theta``, ``scale`` (σ²), ``variance_components``,
    ``varcov``, ``random_effects``. Fit: ``llf``, ``aic``, ``bic``, ``deviance``, ``nobs``,
    ``n_dropped``, ``ngroups``, ``converged``, ``is_singular``. Also ``fittedvalues``, ``resid``,
    ``predict()`` and ``summary()``; lme4's verbs ``coef()``, ``fixef()``, ``ranef()``,
    ``VarCorr()``, ``REMLcrit()``, ``update()`` and statsmodels' ``params`` … ``conf_int()``.
    """

    def __init__(
        self,
        spec: ModelSpec,
        design: DesignMatrices,
        info: FitInfo,
        *,
        backend: str = "reml",
        n_dropped: int = 0,
        idata: Any = None,
        engine: Any = None,
    ):
        self.spec = spec
        self.design = design
        self._info = info
        self.backend = backend
        self.n_dropped = int(n_dropped)
        self.idata = idata
        names = design.X_names
        self.fe_params = pd.Series(info.beta, index=names, name="estimate")
        self.fe_cov = pd.DataFrame(info.cov_beta, index=names, columns=names)
        self.fe_bse = pd.Series(np.sqrt(np.diag(info.cov_beta)), index=names, name="std_error")
        self.fe_df = pd.Series(info.fe_df, index=names, name="df")
        self.theta = np.asarray(info.theta, dtype=float)
        self.scale = float(info.scale)
        self.llf = float(info.llf)
        self.converged = bool(info.converged)
        self.is_singular = bool(info.is_singular)
        # None for fits from a lazy frame (no row-level data were collected): the properties raise
        self._fitted = None if info.fitted is None else np.asarray(info.fitted)
        self._resid = None if info.resid is None else np.asarray(info.resid)
        self.optimizer_info = dict(info.optimizer_info)
        self.correlation_params = dict(info.correlation_params)
        self.engine = engine  # the REML backend's REMLEngine (refit, simulate, profile), else None
        self.model_frame = design.frame  # the complete-case rows fitted (None for lazy frames)
        self.input_namespace = design.input_namespace

    # ---- row-level quantities ------------------------------------------------------------
    @property
    def fittedvalues(self) -> np.ndarray | None:
        """Fitted values of the fitted rows (a fit from a lazy frame has none: ValueError)."""
        if self._fitted is None and self.design.gram is not None:
            raise needs_rows_error("fittedvalues")
        return self._fitted

    @fittedvalues.setter
    def fittedvalues(self, value) -> None:
        self._fitted = value

    @property
    def resid(self) -> np.ndarray | None:
        """Residuals of the fitted rows (a fit from a lazy frame has none: ValueError)."""
        if self._resid is None and self.design.gram is not None:
            raise needs_rows_error("resid (residuals)")
        return self._resid

    @resid.setter
    def resid(self, value) -> None:
        self._resid = value

    # ---- fixed effects -------------------------------------------------------------------
    @property
    def method(self) -> str:
        return self.spec.method

    @property
    def df_method(self) -> str:
        return self.spec.df_method

    @property
    def fe_tvalues(self) -> pd.Series:
        return (self.fe_params / self.fe_bse).rename("t_value")

    @property
    def fe_pvalues(self) -> pd.Series:
        t = np.abs(self.fe_tvalues.to_numpy())
        p = 2 * stats.t.sf(t, self.fe_df.to_numpy())
        return pd.Series(p, index=self.fe_params.index, name="p_value")

    def fe_conf_int(self, level: float = 0.95) -> pd.DataFrame:
        """t-based intervals with the fit's denominator df (Wald with ``df_method`` df)."""
        q = stats.t.ppf(0.5 + level / 2, self.fe_df.to_numpy())
        half = q * self.fe_bse.to_numpy()
        est = self.fe_params.to_numpy()
        return pd.DataFrame({"lower": est - half, "upper": est + half}, index=self.fe_params.index)

    # ---- fit statistics ------------------------------------------------------------------
    @property
    def nobs(self) -> int:
        return self.design.n

    @property
    def n_params(self) -> int:
        """Parameters counted by AIC/BIC: fixed effects, θ, correlation parameters and σ."""
        return self.design.p + self.design.n_theta + len(self.correlation_params) + 1

    @property
    def deviance(self) -> float:
        """−2 logLik: the ML deviance, or the REML criterion for a REML fit."""
        return -2.0 * self.llf

    @property
    def aic(self) -> float:
        return -2.0 * self.llf + 2.0 * self.n_params

    @property
    def bic(self) -> float:
        """−2 logLik + log(n)·npar, as lme4 counts it.

        Models with a residual correlation structure are nlme's (``lme``/``gls``), and for
        their REML fits nlme uses log(n − p): so does this, for parity.
        """
        n_eff = self.nobs
        if self.correlation_params and self.method == "REML":
            n_eff = self.nobs - self.design.p
        return -2.0 * self.llf + np.log(n_eff) * self.n_params

    @property
    def ngroups(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.design.terms:
            out[t.group] = t.m
        return out

    # ---- variance components -------------------------------------------------------------
    def _group_terms(self) -> dict[str, list]:
        groups: dict[str, list] = {}
        for t in self.design.terms:
            groups.setdefault(t.group, []).append(t)
        return groups

    def term_names(self) -> list[str]:
        """lme4's name for each term: its group, with ``.1``, ``.2`` … for repeats of a group."""
        seen: dict[str, int] = {}
        names = []
        for t in self.design.terms:
            k = seen.get(t.group, 0)
            names.append(t.group if k == 0 else f"{t.group}.{k}")
            seen[t.group] = k + 1
        return names

    @property
    def _re_scale(self) -> float:
        """σ², the factor between ΛΛ' and the random-effects covariance (1 for GLMMs)."""
        return self.scale

    @property
    def variance_components(self) -> dict[str, float | pd.DataFrame]:
        """Term → σ² for a scalar term, or the covariance DataFrame of a vector term's columns.

        Keys are lme4's ``VarCorr`` names: the group, and ``group.1``, ``group.2`` … when several
        terms share a group (``(x || g)`` gives ``g`` and ``g.1``).
        """
        out: dict[str, float | pd.DataFrame] = {}
        for name, t in zip(self.term_names(), self.design.terms, strict=True):
            T = t.T(self.theta)
            S = self._re_scale * (T @ T.T)
            out[name] = float(S[0, 0]) if t.k == 1 else pd.DataFrame(S, index=t.columns, columns=t.columns)
        return out

    @property
    def varcov(self) -> pd.DataFrame:
        """Covariance of all random-effect columns (one level's worth), indexed ``group:column``."""
        labels, blocks = [], []
        for group, terms in self._group_terms().items():
            for t in terms:
                T = t.T(self.theta)
                blocks.append(self._re_scale * (T @ T.T))
                labels.extend(f"{group}:{c}" for c in t.columns)
        return pd.DataFrame(_block_diag(blocks), index=labels, columns=labels)

    @property
    def random_effects(self) -> dict[str, pd.DataFrame]:
        """Group → conditional modes (BLUPs), one row per level, one column per term column."""
        b = self._info.b
        out: dict[str, pd.DataFrame] = {}
        for group, terms in self._group_terms().items():
            frames = []
            for t in terms:
                vals = b[t.z_start : t.z_start + t.q].reshape(t.m, t.k)
                frames.append(pd.DataFrame(vals, index=pd.Index(t.levels, name=group), columns=t.columns))
            out[group] = frames[0] if len(frames) == 1 else pd.concat(frames, axis=1)
        return out

    def residuals(self, type: str | None = None, scaled: bool = False) -> np.ndarray:
        """lme4's ``residuals(m, type, scaled)``: an LMM ``"response"`` (default, = ``resid``) or
        ``"pearson"``; a GLMM ``"deviance"`` (default), ``"pearson"``, ``"response"`` or
        ``"working"``. See :mod:`interlace.results.residuals`."""
        from .residuals import residuals

        return residuals(self, type, scaled)

    # ---- prediction ----------------------------------------------------------------------
    @r_arguments
    def predict(
        self, newdata=None, include_re: bool = True, offset=None, re_form=RE_FORM_DEFAULT
    ) -> np.ndarray:
        """Predictions Xβ (+ Zb with ``include_re``) for ``newdata`` (default: the fitted data).

        ``re_form`` as lme4's ``re.form``: ``None`` all random terms, ``NA``/``np.nan``/``"~0"``
        none, ``"~(1 | item)"`` only those terms (see :func:`.verbs.resolve_re_form`). Group
        levels not seen in fitting get a zero random effect (lme4's ``allow.new.levels=TRUE``).
        """
        terms = resolve_re_form(self.design, re_form, include_re)
        d = self.design
        if d.n_rows is not None:
            raise ValueError(
                "this model was fitted from a lazy frame's cross-products: predict needs row-level "
                "data; collect the frame and fit it eagerly"
            )
        if newdata is None:
            if terms is None:
                return self.fittedvalues.copy()
            return d.X @ self._info.beta + d.offset + fitted_random_part(d, self._info.b, terms)
        frame, _ = to_pandas(newdata)
        return new_linear_predictor(d, frame, self._info.beta, self._info.b, offset=offset, terms=terms)

    @r_arguments
    def confint(self, method: str | None = None, level: float = 0.95, nsim: int = 500, seed=None):
        """Intervals for variance parameters and fixed effects: ``"wald"``, ``"profile"`` (the
        default) or ``"boot"``; credible intervals (``"quantile"``) for a PyMC fit.

        See :func:`interlace.inference.confint.confint`.
        """
        from ..inference.confint import confint

        return confint(self, method=method, level=level, nsim=nsim, seed=seed)

    def anova(self, type=None, ddf: str | None = None):
        """Per-term F tests (lmerTest's ``anova``) or, for a GLMM, Wald χ² tests (car's ``Anova``).

        See :func:`interlace.inference.ftable.single_anova`.
        """
        from ..inference.ftable import single_anova

        return single_anova(self, type=type, ddf=ddf)

    def test(self, L, rhs=0.0, ddf: str | None = None, joint: bool | None = None, level: float = 0.95):
        """Test Lβ = rhs (lmerTest's ``contest``); see :func:`interlace.inference.contest.contest`."""
        from ..inference.contest import contest

        return contest(self, L, rhs=rhs, ddf=ddf, joint=joint, level=level)

    def r2(self) -> dict[str, float]:
        """Nakagawa's marginal and conditional R² (see :mod:`interlace.diagnostics`)."""
        from ..diagnostics import r2

        return r2(self)

    def icc(self) -> dict[str, float]:
        """Adjusted and unadjusted intraclass correlation (see :mod:`interlace.diagnostics`)."""
        from ..diagnostics import icc

        return icc(self)

    def influence(self, group: str | None = None) -> pd.DataFrame:
        """Cook's distance and leverage per observation, or per level of ``group``."""
        from ..diagnostics import influence

        return influence(self, group=group)

    def check_singular(self, tol: float = 1e-4) -> bool:
        """lme4's ``isSingular``: is any θ with a lower bound of 0 within ``tol`` of it?"""
        return self.design.is_singular(self.theta, tol)

    def simulate(self, nsim: int = 1, seed=None, include_re: bool = True) -> np.ndarray:
        """Responses drawn from the fitted model, shape (nobs, nsim) (lme4's ``simulate``)."""
        engine = self.engine
        refuse_iterative(self, "simulate", "simulate")
        if engine is None:
            raise TypeError("simulate needs a fit with a REML/ML engine")
        return engine.simulate(nsim, seed=seed, include_re=include_re)

    def to_frame(self):
        """Tidy fixed-effects table: term, estimate, std_error, df, statistic, p_value.

        pandas, or polars when the model was fitted to a polars frame.
        """
        table = pd.DataFrame({
            "term": list(self.fe_params.index),
            "estimate": self.fe_params.to_numpy(),
            "std_error": self.fe_bse.to_numpy(),
            "df": self.fe_df.to_numpy(),
            "statistic": self.fe_tvalues.to_numpy(),
            "p_value": self.fe_pvalues.to_numpy(),
        })
        if self.input_namespace == "polars":
            import polars as pl

            return pl.from_pandas(table)
        return table

    # ---- reporting -----------------------------------------------------------------------
    @r_arguments
    def summary(self, ddf: str | None = None):
        """lmerTest's report; ``ddf`` ("Satterthwaite" or "Kenward-Roger") overrides ``df_method``."""
        from .summary import ModelSummary

        return ModelSummary(self, ddf=ddf)

    def __str__(self) -> str:
        """lme4's short ``print(m)`` for a REML/ML or Laplace/AGQ fit (the one-line repr otherwise)."""
        if self.backend != "reml" or (self.engine is None and not hasattr(self, "family")):
            return repr(self)
        from .summary import short_print

        return short_print(self)

    def __repr__(self) -> str:
        return (
            f"<CrossedLMEResult {self.spec.formula!r} {self.method} backend={self.backend} "
            f"nobs={self.nobs} llf={self.llf:.4f}>"
        )


def _block_diag(blocks: list[np.ndarray]) -> np.ndarray:
    size = sum(b.shape[0] for b in blocks)
    out = np.zeros((size, size))
    i = 0
    for b in blocks:
        k = b.shape[0]
        out[i : i + k, i : i + k] = b
        i += k
    return out


def _required_columns(model_spec, frame: pd.DataFrame, what: str, known=()) -> list[str]:
    needed = model_variables(model_spec, list(known) or list(frame.columns))
    missing = [v for v in needed if v not in frame.columns]
    if missing:
        raise KeyError(f"newdata lacks column(s) {missing} needed for the {what}")
    return needed


def _known(d: DesignMatrices) -> list[str]:
    """The fitted model frame's columns (the names formulaic's variables abbreviate)."""
    return [] if d.frame is None else [str(c) for c in d.frame.columns]


def _complete(frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    keep = np.ones(len(frame), dtype=bool)
    for c in dict.fromkeys(columns):
        keep &= ~frame[c].isna().to_numpy()
    return keep


def _new_fixed_matrix(d: DesignMatrices, frame: pd.DataFrame) -> np.ndarray:
    """X for new rows, columns in the fitted order; rows with a missing predictor are NaN."""
    keep = _complete(frame, _required_columns(d.fixed_spec, frame, "fixed effects", _known(d)))
    out = np.full((len(frame), d.p), np.nan)
    if keep.any():
        mm = rebuild_matrix(d.fixed_spec, frame.loc[keep].reset_index(drop=True), "fixed effects")
        names = r_labels(["(Intercept)" if c == "Intercept" else str(c) for c in mm.columns], d.labels)
        pos = {n: i for i, n in enumerate(names)}
        out[keep] = np.asarray(mm, dtype=float)[:, [pos[n] for n in d.X_names]]
    return out


def _new_offset(d: DesignMatrices, frame: pd.DataFrame, offset) -> np.ndarray:
    """The offset for new rows, rebuilt the way the fit built it.

    ``offset=`` given here wins; otherwise the fitted offset column is read from ``newdata``; a
    fit whose offset was an array needs ``offset=``. ``offset()`` terms of the formula are
    evaluated on ``newdata`` and added.
    """
    n = len(frame)
    if offset is not None:
        off = np.asarray(offset.to_numpy() if hasattr(offset, "to_numpy") else offset, dtype=float)
        if off.ndim == 0:
            off = np.full(n, float(off))
        if off.shape != (n,):
            raise ValueError(f"offset= must have one value per row of newdata ({n}), got shape {off.shape}")
    elif d.offset_column is not None:
        if d.offset_column not in frame.columns:
            raise KeyError(
                f"newdata lacks the offset column {d.offset_column!r} the model was fitted with "
                "(or pass offset= with one value per row)"
            )
        off = frame[d.offset_column].to_numpy(dtype=float)
    elif d.offset_array:
        raise ValueError(
            "this model was fitted with offset= given as an array, so predict(newdata) needs "
            "offset= too: one value per row of newdata"
        )
    else:
        off = np.zeros(n)
    for py_expr, r_text in d.formula_offsets:
        off = off + evaluate_expr(py_expr, frame, r_text, na_action="ignore")
    return off


def _new_random_part(d: DesignMatrices, frame: pd.DataFrame, b: np.ndarray, terms=None) -> np.ndarray:
    """Zb for new rows: levels matched by value (see :func:`level_keys`), unseen levels 0, rows
    with a missing grouping value or slope covariate NaN."""
    out = np.zeros(len(frame))
    for t in d.terms if terms is None else terms:
        missing = [f for f in t.factors if f not in frame.columns]
        if missing:
            raise KeyError(f"newdata lacks grouping column(s) {missing} for the term on {t.group!r}")
        needed = _required_columns(t.model_spec, frame, f"random term on {t.group!r}", _known(d))
        keep = _complete(frame, needed)
        keys = level_keys(frame, t.factors)
        index = {k: i for i, k in enumerate(t.keys)}
        idx = np.array([-2 if k is None else index.get(k, -1) for k in keys], dtype=np.int64)
        out[(idx == -2) | ~keep] = np.nan
        seen = (idx >= 0) & keep
        if seen.any():
            sub = frame.loc[seen].reset_index(drop=True)
            Xt = np.asarray(rebuild_matrix(t.model_spec, sub, f"random term on {t.group!r}"), dtype=float)
            B = b[t.z_start : t.z_start + t.q].reshape(t.m, t.k)
            out[seen] += np.einsum("ij,ij->i", Xt, B[idx[seen]])
    return out


def fitted_random_part(d: DesignMatrices, b: np.ndarray, terms: list) -> np.ndarray:
    """Σ Z_t b_t over ``terms`` for the fitted rows."""
    out = np.zeros(d.n)
    for t in terms:
        out += d.Z[:, t.z_start : t.z_start + t.q] @ b[t.z_start : t.z_start + t.q]
    return out


def new_linear_predictor(d: DesignMatrices, frame: pd.DataFrame, beta: np.ndarray, b: np.ndarray,
                         include_re: bool = True, offset=None, terms: list | None = None) -> np.ndarray:
    """Xβ + offset (+ Zb) for the rows of ``frame``, shape (n,); NaN where a needed value is missing.

    ``terms`` limits Zb to those random terms (``[]``: none); only their columns are needed."""
    eta = _new_fixed_matrix(d, frame) @ beta + _new_offset(d, frame, offset)
    if include_re and (terms is None or terms):
        eta = eta + _new_random_part(d, frame, b, terms)
    return eta
