"""GLMMResult: the unified result for generalized linear mixed models (``interlace.glmer``)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from ..data.design import DesignMatrices
from ..data.frames import to_pandas
from ..model.families import Family
from ..model.spec import ModelSpec
from .lmm import CrossedLMEResult, FitInfo, fitted_random_part, new_linear_predictor
from .verbs import RE_FORM_DEFAULT, resolve_re_form
from .wald import WaldZ

__all__ = ["GLMMResult"]


class GLMMResult(WaldZ, CrossedLMEResult):
    """A fitted GLMM. Like :class:`CrossedLMEResult`, with ``family``, Wald z tests.

    ``scale`` is 1 except for Gamma, where it is lme4's σ² (Σ Pearson residuals² + ‖u‖²) / n;
    ``variance_components`` are Var(b) on the link scale, never multiplied by it. A negative
    binomial's estimated θ is ``family.nb_theta``.

    ``fittedvalues`` are on the response scale (μ̂); ``resid`` are response residuals y − μ̂
    (R's ``residuals(m)`` are deviance residuals: ``residuals()``); ``predict(type="link")`` gives η̂.
    """

    def __init__(
        self,
        spec: ModelSpec,
        design: DesignMatrices,
        info: FitInfo,
        family: Family,
        eta: np.ndarray,
        nagq: int,
        n_dropped: int = 0,
    ):
        super().__init__(spec, design, info, backend="reml", n_dropped=n_dropped)
        self.family = family
        self.nagq = nagq
        self.linear_predictor = eta

    @property
    def _re_scale(self) -> float:
        return 1.0  # b = Λu on the link scale: Var(b) = ΛΛ', whatever the family's dispersion

    @property
    def n_params(self) -> int:
        """β, θ and a family parameter: the Gamma dispersion or the negative binomial θ (as lme4)."""
        extra = self.family.has_scale or self.family.name == "negative_binomial"
        return self.design.p + self.design.n_theta + int(extra)

    def fe_conf_int(self, level: float = 0.95) -> pd.DataFrame:
        q = stats.norm.ppf(0.5 + level / 2)
        est, se = self.fe_params.to_numpy(), self.fe_bse.to_numpy()
        return pd.DataFrame({"lower": est - q * se, "upper": est + q * se}, index=self.fe_params.index)

    def predict(
        self, newdata=None, include_re: bool = True, offset=None, type: str = "response",
        re_form=RE_FORM_DEFAULT,
    ) -> np.ndarray:
        """η̂ (``type="link"``) or μ̂ = g⁻¹(η̂) (``"response"``); unseen levels get b = 0.

        ``re_form`` as lme4's ``re.form`` (see :meth:`CrossedLMEResult.predict`)."""
        if type not in ("response", "link"):
            raise ValueError(f"type must be 'response' or 'link', got {type!r}")
        terms = resolve_re_form(self.design, re_form, include_re)
        d = self.design
        if newdata is None:
            beta = self.fe_params.to_numpy()
            eta = (self.linear_predictor if terms is None
                   else d.X @ beta + d.offset + fitted_random_part(d, self._info.b, terms))
        else:
            frame, _ = to_pandas(newdata)
            eta = new_linear_predictor(d, frame, self.fe_params.to_numpy(), self._info.b, offset=offset,
                                       terms=terms)
        return eta if type == "link" else self.family.link.inverse(eta)

    def simulate(self, nsim: int = 1, seed=None, include_re: bool = True) -> np.ndarray:
        """Responses drawn from the fitted GLMM, shape (nobs, nsim) (lme4's ``simulate``).

        With ``include_re`` new random effects b ~ N(0, ΛΛ') are drawn for each simulation,
        otherwise the conditional modes are kept; then y ~ family(g⁻¹(Xβ + Zb + offset)).
        Binomial responses are proportions of the prior-weight trials, as the fitted response.
        """
        rng = np.random.default_rng(seed)
        d = self.design
        w = np.ones(d.n) if d.weights is None else d.weights
        fixed = d.X @ self.fe_params.to_numpy() + d.offset
        out = np.empty((d.n, int(nsim)))
        for s in range(int(nsim)):
            b = d.draw_b(self.theta, rng) if include_re else self._info.b
            mu = self.family.link.inverse(fixed + d.Z @ b)
            out[:, s] = self.family.sample(mu, w, rng, self.scale)
        return out

    def summary(self):
        from .summary import GLMMSummary

        return GLMMSummary(self)

    def __repr__(self) -> str:
        return (
            f"<GLMMResult {self.spec.formula!r} {self.family.name}({self.family.link.name}) "
            f"nAGQ={self.nagq} nobs={self.nobs} llf={self.llf:.4f}>"
        )
