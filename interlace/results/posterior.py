"""Posterior results (PyMC backend): posterior summaries in the unified results' attributes.

- ``fe_params`` / ``fe_bse``: posterior means / SDs of β; ``fe_cov``: their posterior covariance;
  ``fe_conf_int(level)``: equal-tailed posterior intervals; ``fe_df`` is infinite.
- ``scale`` = E[σ²] and ``theta`` chosen so that ``variance_components`` and ``varcov`` are the
  posterior means of each term's covariance σ²T T' (T = chol(E[σ²TT'] / E[σ²])).
- ``random_effects``: posterior means of b. ``fittedvalues`` use the posterior means.
- ``llf``, ``aic``, ``bic``, ``deviance`` do not exist (AttributeError): a posterior has no
  maximised likelihood. Posteriors are compared by their expected log predictive density
  (``loo()``, ``interlace.anova(b1, b2)`` = arviz's ELPD-LOO comparison). The plug-in value
  log p(y | posterior means) is kept under its own name, ``plugin_llf``.
- ``idata``: arviz InferenceData (posterior, sample_stats, observed_data, log_likelihood —
  per observation, and for a Gaussian LMM per group: see :mod:`interlace.backends.pymc.logo`);
  ``diagnostics``: R-hat and ESS per parameter.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..data.design import DesignMatrices, tril_colwise
from ..model.correlation import series_crossing
from .bayes_models import NoTestsNoLikelihood
from .bayes_predict import PosteriorPredict
from .draws import posterior_arrays
from .glmm import GLMMResult
from .lmm import CrossedLMEResult

__all__ = ["PosteriorFixedEffects", "PyMCResult", "PyMCGLMMResult", "variance_draws", "variance_names",
           "GROUP_LOGLIK_PREFIX"]

GROUP_LOGLIK_PREFIX = "marginal_"  # idata.log_likelihood[GROUP_LOGLIK_PREFIX + group]: per level of group


def variance_names(design: DesignMatrices) -> list[str]:
    """lme4 ``confint`` names of the variance parameters (:meth:`DesignMatrices.variance_names`)."""
    return design.variance_names()


def _term_covariances(design: DesignMatrices, theta: np.ndarray, sigma: np.ndarray) -> list[np.ndarray]:
    """Per term, draws (S, k, k) of σ²TT'."""
    out = []
    S = theta.shape[0]
    for t in design.terms:
        rows, cols = tril_colwise(t.k)
        T = np.zeros((S, t.k, t.k))
        T[:, rows, cols] = theta[:, t.theta_slice]
        T *= sigma[:, None, None]
        out.append(T @ np.swapaxes(T, 1, 2))
    return out


def variance_draws(design: DesignMatrices, theta: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Draws (S, len(variance_names)) of the SDs, correlations and σ."""
    cols = []
    for t, C in zip(design.terms, _term_covariances(design, theta, sigma), strict=True):
        sd = np.sqrt(np.einsum("sii->si", C))
        rows, cc = tril_colwise(t.k)
        for i, j in zip(rows, cc, strict=True):
            if i == j:
                cols.append(sd[:, i])
            else:
                with np.errstate(invalid="ignore", divide="ignore"):
                    cols.append(np.where(sd[:, i] * sd[:, j] > 0, C[:, i, j] / (sd[:, i] * sd[:, j]), 0.0))
    cols.append(sigma)
    return np.column_stack(cols)


def _mean_theta(design: DesignMatrices, theta: np.ndarray, sigma: np.ndarray, scale: float) -> np.ndarray:
    """θ with scale·T T' equal to the posterior mean of every term's covariance."""
    out = np.zeros(design.n_theta)
    for t, C in zip(design.terms, _term_covariances(design, theta, sigma), strict=True):
        M = C.mean(axis=0) / scale
        try:
            T = np.linalg.cholesky(M)
        except np.linalg.LinAlgError:  # semidefinite: factor through the eigen-decomposition
            w, V = np.linalg.eigh(M)
            _, R = np.linalg.qr((V * np.sqrt(np.clip(w, 0, None))).T)
            T = R.T * np.sign(np.where(np.diag(R) == 0, 1.0, np.diag(R)))
        rows, cols = tril_colwise(t.k)
        out[t.theta_slice] = T[rows, cols]
    return out


class PosteriorFixedEffects(NoTestsNoLikelihood):
    """What every PyMC result (LMM or GLMM) has from its draws of β (``_beta_draws``)."""

    @property
    def fe_draws(self) -> pd.DataFrame:
        """Posterior draws of β, one column per coefficient (chains stacked)."""
        return pd.DataFrame(self._beta_draws, columns=self.fe_params.index)

    def fe_conf_int(self, level: float = 0.95) -> pd.DataFrame:
        """Equal-tailed posterior intervals of the fixed effects."""
        lo, hi = _quantiles(self._beta_draws, level)
        return pd.DataFrame({"lower": lo, "upper": hi}, index=self.fe_params.index)

    def influence(self, group: str | None = None):
        raise ValueError(
            "influence() (Cook's distance, leverage) is for REML fits; for a PyMC fit use "
            "az.loo(result.idata, pointwise=True): its Pareto k flags influential observations"
        )

    _PLUGIN = "; the plug-in log p(y | posterior means) is result.plugin_llf"

    @property
    def llf(self):
        raise AttributeError(self._NO_LIKELIHOOD.format(name="maximised log-likelihood (llf)") + self._PLUGIN)

    @llf.setter
    def llf(self, value: float) -> None:  # the shared constructor stores the plug-in value here
        self.plugin_llf = float(value)

    @property
    def method(self) -> str:
        """What was done: ``"posterior (NUTS, <sampler> <version>)"`` — not a REML or ML fit."""
        info = self.optimizer_info
        return f"posterior (NUTS, {info.get('sampler_version') or info.get('sampler', 'pymc')})"

    def loo(self, group: str | None = None, pointwise: bool = False):
        """PSIS leave-one-out ELPD (``az.loo``): per observation (conditional on the fitted
        random effects), or with ``group`` leave-one-group-out, each level of that grouping
        factor left out with its random effects integrated out (Gaussian LMMs; see
        :mod:`interlace.backends.pymc.logo`). With AR1 / compound-symmetry residuals the pointwise
        terms are the exact non-factorized ones (:mod:`interlace.backends.pymc.corr_loglik`)."""
        import arviz as az

        return az.loo(self.idata, var_name=self.loglik_name(group), pointwise=pointwise)

    def loglik_name(self, group: str | None = None) -> str:
        """The ``idata.log_likelihood`` variable per observation (``group=None``) or per level of
        ``group``."""
        ll = getattr(self.idata, "log_likelihood", None)
        if ll is None and getattr(self.design, "gram", None) is not None:
            from .refusals import needs_rows_error

            raise needs_rows_error("loo() and ELPD comparison (the pointwise log-likelihood)")
        if ll is None:
            raise ValueError("this posterior has no log_likelihood group (too many draws × observations)")
        if group is None:
            return self.layout.response
        name = f"{GROUP_LOGLIK_PREFIX}{group}"
        if name not in ll:
            d = self.design
            codes = next((t.codes for t in d.terms if t.group == group), None)
            why = None if d.correlation is None or codes is None else series_crossing(
                d.correlation, d.corr_layout, codes, group)
            if why is not None:
                raise ValueError(f"no leave-one-group-out log-likelihood for {group!r}: {why}")
            k = len(GROUP_LOGLIK_PREFIX)
            have = sorted(n[k:] for n in ll.data_vars if n.startswith(GROUP_LOGLIK_PREFIX))
            raise KeyError(
                f"no group-level log-likelihood for {group!r}: it exists for the grouping factors of a "
                f"Gaussian LMM ({', '.join(have) or 'none here'})"
            )
        return name

    def to_frame(self, level: float = 0.95) -> pd.DataFrame:
        """Posterior table of the fixed effects: term, posterior mean, posterior SD, equal-tailed
        ``level`` interval, and R-hat / bulk ESS from the sampler's diagnostics (no p-values)."""
        ci = self.fe_conf_int(level)
        table = pd.DataFrame({
            "term": list(self.fe_params.index),
            "mean": self.fe_params.to_numpy(),
            "sd": self.fe_bse.to_numpy(),
            "lower": ci["lower"].to_numpy(),
            "upper": ci["upper"].to_numpy(),
        })
        diag = getattr(self, "diagnostics", None)
        if diag is not None:
            rows = [f"beta[{t}]" for t in self.fe_params.index]
            for col in ("r_hat", "ess_bulk"):
                if col in diag.columns:
                    table[col] = [float(diag.loc[r, col]) if r in diag.index else np.nan for r in rows]
        return table


class PyMCResult(PosteriorPredict, PosteriorFixedEffects, CrossedLMEResult):
    """A Bayesian fit: the unified result plus the posterior (see the module docstring)."""

    def __init__(
        self,
        spec,
        design,
        info,
        *,
        n_dropped=0,
        idata=None,
        beta_draws=None,
        variance_draws=None,
        diagnostics=None,
        layout=None,
    ):
        super().__init__(spec, design, info, backend="pymc", n_dropped=n_dropped, idata=idata)
        self._beta_draws = beta_draws
        self._var_draws = variance_draws
        self.diagnostics = None if diagnostics is None else diagnostics.table
        self.layout = layout

    @property
    def variance_draws(self) -> pd.DataFrame:
        """Posterior draws of the SDs, correlations and σ (lme4 ``confint`` names)."""
        return pd.DataFrame(self._var_draws, columns=variance_names(self.design))

    def confint(self, method: str = "quantile", level: float = 0.95, **_ignored) -> pd.DataFrame:
        """Equal-tailed posterior intervals for the variance parameters and the fixed effects,
        in the layout of the REML fit's ``confint``."""
        if method != "quantile":
            raise ValueError(
                f"a PyMC fit has posterior intervals: use method='quantile' (got {method!r}; "
                "profile, Wald and bootstrap intervals belong to backend='reml')"
            )
        if not 0 < level < 1:
            raise ValueError(f"level must be between 0 and 1, got {level!r}")
        draws = np.column_stack([self._var_draws, self._beta_draws])
        lo, hi = _quantiles(draws, level)
        names = variance_names(self.design) + list(self.fe_params.index)
        return pd.DataFrame({"lower": lo, "upper": hi}, index=names)

    # ---- the after-fit toolkit on the posterior (see :mod:`.after_fit`) -------------------
    def simulate(self, nsim: int = 1, seed=None, include_re: bool = True) -> np.ndarray:
        """Posterior predictive responses, shape (nobs, nsim): simulation s takes a posterior
        draw (β, θ, σ) and, with ``include_re``, new b ~ N(0, σ²ΛΛ') (else that draw's b), then
        y = Xβ + Zb + offset + ε, ε ~ N(0, σ²/w)."""
        from .bayes_after_fit import posterior_simulate

        sigma = posterior_arrays(self.idata, "sigma").astype(float)
        w = np.ones(self.design.n) if self.design.weights is None else self.design.weights

        def sample_y(mean, k, rng):
            return mean + sigma[k] * rng.standard_normal(mean.size) / np.sqrt(w)

        return posterior_simulate(self, nsim, seed, include_re, sample_y)

    def r2(self, level: float = 0.95) -> dict[str, float]:
        """Nakagawa's marginal and conditional R² per posterior draw: posterior means under the
        REML keys, and ``<key>_lower`` / ``<key>_upper`` equal-tailed intervals."""
        from .bayes_after_fit import r2_draws, summarise_draws

        v = r2_draws(self)
        total = v["fixed"] + v["random"] + v["residual"]
        return summarise_draws(
            {"marginal": v["fixed"] / total, "conditional": (v["fixed"] + v["random"]) / total}, level
        )

    def icc(self, level: float = 0.95) -> dict[str, float]:
        """Adjusted and unadjusted ICC per posterior draw (means, and ``_lower`` / ``_upper``)."""
        from .bayes_after_fit import r2_draws, summarise_draws

        v = r2_draws(self)
        return summarise_draws(
            {
                "adjusted": v["random"] / (v["random"] + v["residual"]),
                "unadjusted": v["random"] / (v["fixed"] + v["random"] + v["residual"]),
            },
            level,
        )

    def summary(self):
        from .bayes_report import BayesSummary

        return BayesSummary(self)

    def __repr__(self) -> str:
        info = self.optimizer_info
        return (
            f"<CrossedLMEResult {self.spec.formula!r} backend=pymc sampler={info.get('sampler')} "
            f"{info.get('chains')}×{info.get('draws')} draws nobs={self.nobs}>"
        )


def _quantiles(draws: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    a = (1.0 - level) / 2.0
    return np.quantile(draws, a, axis=0), np.quantile(draws, 1.0 - a, axis=0)


class PyMCGLMMResult(PosteriorPredict, PosteriorFixedEffects, GLMMResult):
    """A Bayesian GLMM: GLMMResult attributes from posterior summaries, plus ``idata``."""

    def __init__(self, spec, design, info, family, eta, *, n_dropped=0, idata=None, beta_draws=None,
                 diagnostics=None, layout=None, family_param: str | None = None):
        super().__init__(spec, design, info, family, eta, nagq=1, n_dropped=n_dropped)
        self.backend = "pymc"
        self.idata = idata
        self._beta_draws = beta_draws
        self.diagnostics = None if diagnostics is None else diagnostics.table
        self.layout = layout
        self._family_param = family_param

    def simulate(self, nsim: int = 1, seed=None, include_re: bool = True) -> np.ndarray:
        """Posterior predictive responses, shape (nobs, nsim): each simulation takes a posterior
        draw (β, θ, the family parameter) and, with ``include_re``, new b ~ N(0, ΛΛ') (else that
        draw's b), then y ~ family(g⁻¹(η))."""
        from .bayes_after_fit import posterior_simulate

        d, fam = self.design, self.family
        w = np.ones(d.n) if d.weights is None else d.weights
        extra = None if self._family_param is None else posterior_arrays(self.idata, self._family_param)

        def sample_y(eta, k, rng):
            if fam.name == "Gamma":
                return fam.sample(fam.link.inverse(eta), w, rng, float(extra[k]) ** 2)
            f = fam.with_theta(float(extra[k])) if fam.name == "negative_binomial" else fam
            return f.sample(f.link.inverse(eta), w, rng)

        return posterior_simulate(self, nsim, seed, include_re, sample_y)

    @property
    def variance_draws(self) -> pd.DataFrame:
        """Posterior draws of the SDs and correlations (lme4 ``confint`` names) and of the
        family parameter (``sigma`` for Gamma, ``nb_theta`` for the negative binomial)."""
        theta = posterior_arrays(self.idata, "theta")
        d = variance_draws(self.design, theta, np.ones(theta.shape[0]))[:, :-1]
        names = variance_names(self.design)[:-1]
        if self._family_param is not None:
            d = np.column_stack([d, posterior_arrays(self.idata, self._family_param)])
            names.append(self._family_param)
        return pd.DataFrame(d, columns=names)

    def summary(self):
        from .bayes_report import BayesSummary

        return BayesSummary(self)

    def __repr__(self) -> str:
        info = self.optimizer_info
        return (
            f"<GLMMResult {self.spec.formula!r} {self.family.name}({self.family.link.name}) backend=pymc "
            f"{info.get('chains')}×{info.get('draws')} draws nobs={self.nobs}>"
        )
