"""The per-observation pieces PIRLS needs, for one family, response and prior weights.

For a linear predictor η the kernel gives μ = g⁻¹(η), the working weights Wᵢ = wᵢ μ'ᵢ² / V(μᵢ)
and the working residuals rᵢ = wᵢ (yᵢ − μᵢ) μ'ᵢ / V(μᵢ) (−½ the derivative of −2 log f in η), and
the criteria: −2 log f(y | μ) (the deviance for Gamma, as lme4's PIRLS) and the data term of the
Laplace deviance. The constants of the log densities (log binomial coefficients, log y!, the NB
gamma functions) are computed once here, so an evaluation costs a few vector operations instead
of scipy.stats' generic log-pmfs (McCullagh & Nelder 1989, ch. 2; lme4's ``glmFamily``).
"""

from __future__ import annotations

import numpy as np
from scipy import special

from ...model.families import Family

__all__ = ["GLMKernel"]

_EPS = np.finfo(float).eps


class GLMKernel:
    """Fast μ, weights, residuals and log densities of one family at fixed y and prior weights w."""

    def __init__(self, family: Family, y: np.ndarray, w: np.ndarray):
        self.family, self.link = family, family.link
        self.y = np.asarray(y, dtype=float)
        self.w = np.asarray(w, dtype=float)
        self.unit_w = bool(np.all(self.w == 1.0))
        name = family.name
        y, w = self.y, self.w
        if name == "binomial":
            self.k = np.round(y * w)  # successes
            self.fails = np.round(w) - self.k
            self.bernoulli = self.unit_w and bool(np.all((y == 0) | (y == 1)))
            self.ybool = y == 1
            trials = np.round(w)
            lg = special.gammaln
            self.const_i = lg(trials + 1) - lg(self.k + 1) - lg(self.fails + 1)
        elif name == "poisson":
            self.const_i = -w * special.gammaln(y + 1)
        elif name == "negative_binomial":
            th = float(family.nb_theta)
            self.theta = th
            lg = special.gammaln
            self.const_i = w * (lg(y + th) - lg(th) - lg(y + 1) + th * np.log(th))
        else:
            self.const_i = np.zeros_like(y)
        self.const = float(np.sum(self.const_i))

    # ---- the link and the weights ----------------------------------------------------------
    def mu(self, eta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(μ, dμ/dη), with the clipping of :class:`~interlace.model.families.Link`."""
        name = self.link.name
        if name == "logit":
            p = special.expit(eta)
            dmu = p * (1.0 - p)
            np.maximum(dmu, _EPS, out=dmu)
            np.clip(p, _EPS, 1.0 - _EPS, out=p)
            return p, dmu
        if name == "log":
            mu = np.exp(np.minimum(eta, 700.0))
            return mu, np.maximum(mu, _EPS)
        return self.link.inverse(eta), self.link.mu_eta(eta)

    def variance(self, mu: np.ndarray) -> np.ndarray:
        return self.family.variance(mu)

    def weights(self, eta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(μ, W, r): the working weights and residuals at η."""
        mu, dmu = self.mu(eta)
        if self.family.name == "binomial" and self.link.name == "logit":
            # canonical: μ'/V = 1 (both are μ(1 − μ), floored alike)
            W = dmu if self.unit_w else self.w * dmu
            r = self.y - mu if self.unit_w else self.w * (self.y - mu)
            return mu, W, r
        if self.family.name == "poisson" and self.link.name == "log":
            W = dmu if self.unit_w else self.w * dmu
            r = self.y - mu if self.unit_w else self.w * (self.y - mu)
            return mu, W, r
        v = self.variance(mu)
        a = self.w * dmu / v
        return mu, a * dmu, a * (self.y - mu)

    @property
    def canonical(self) -> bool:
        """A canonical link (binomial logit, Poisson log): φ's Hessian weights are W."""
        return (self.family.name, self.link.name) in (("binomial", "logit"), ("poisson", "log"))

    def dweights(self, mu: np.ndarray, W: np.ndarray) -> np.ndarray:
        """dW/dη for a canonical link: W(1 − 2μ) (logit) or W (log)."""
        if self.link.name == "logit":
            return W * (1.0 - 2.0 * mu)
        return W

    # ---- criteria ------------------------------------------------------------------------------
    def ll_terms(self, mu: np.ndarray) -> np.ndarray:
        """log f(yᵢ | μᵢ) per observation (binomial, Poisson, NB; prior weights included)."""
        name = self.family.name
        if name == "binomial":
            return self.const_i + special.xlogy(self.k, mu) + special.xlog1py(self.fails, -mu)
        if name == "poisson":
            return self.const_i + self.w * (special.xlogy(self.y, mu) - mu)
        if name == "negative_binomial":
            th = self.theta
            return self.const_i + self.w * (special.xlogy(self.y, mu) - (self.y + th) * np.log(th + mu))
        raise ValueError(f"per-observation log densities are not available for {name}")

    def pdev(self, mu: np.ndarray) -> float:
        """What PIRLS minimises with ‖u‖²: −2 log f, or for Gamma the deviance (as lme4)."""
        name = self.family.name
        if name == "binomial":
            if self.bernoulli:
                return -2.0 * float(np.sum(np.log(np.where(self.ybool, mu, 1.0 - mu))))
            return -2.0 * (self.const + float(self.k @ np.log(mu) + self.fails @ np.log1p(-mu)))
        if name == "poisson":
            t = special.xlogy(self.y, mu) - mu
            return -2.0 * (self.const + float(np.sum(t) if self.unit_w else self.w @ t))
        if name == "negative_binomial":
            return -2.0 * float(np.sum(self.ll_terms(mu)))
        return self.family.deviance(self.y, mu, self.w)

    def laplace_data(self, mu: np.ndarray) -> float:
        """The data term of the Laplace deviance (−2 log f; for Gamma lme4's aic-based term)."""
        if self.family.has_scale:
            return self.family.laplace_deviance(self.y, mu, self.w)
        return self.pdev(mu)
