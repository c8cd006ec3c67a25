"""GLMM families and links: the pieces PIRLS and the Laplace approximation need.

A family gives the mean–variance relation V(μ), the log density log f(y | μ) with prior
weights, and a default (canonical) link; a link gives η = g(μ), μ = g⁻¹(η) and dμ/dη.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special, stats

__all__ = ["Link", "Family", "LINKS", "get_family"]

_EPS = np.finfo(float).eps


@dataclass(frozen=True)
class Link:
    name: str

    def link(self, mu: np.ndarray) -> np.ndarray:
        n = self.name
        if n == "logit":
            return special.logit(mu)
        if n == "probit":
            return special.ndtri(mu)
        if n == "cloglog":
            return np.log(-np.log1p(-mu))
        if n == "log":
            return np.log(mu)
        if n == "inverse":
            return 1.0 / mu
        return np.asarray(mu, dtype=float)

    def inverse(self, eta: np.ndarray) -> np.ndarray:
        n = self.name
        if n == "logit":
            return np.clip(special.expit(eta), _EPS, 1 - _EPS)
        if n == "probit":
            return np.clip(special.ndtr(eta), _EPS, 1 - _EPS)
        if n == "cloglog":
            return np.clip(-np.expm1(-np.exp(np.minimum(eta, 700))), _EPS, 1 - _EPS)
        if n == "log":
            return np.exp(np.minimum(eta, 700))
        if n == "inverse":
            return 1.0 / eta
        return np.asarray(eta, dtype=float)

    def mu_eta(self, eta: np.ndarray) -> np.ndarray:
        """dμ/dη."""
        n = self.name
        if n == "logit":
            p = special.expit(eta)
            return np.maximum(p * (1 - p), _EPS)
        if n == "probit":
            return np.maximum(stats.norm.pdf(eta), _EPS)
        if n == "cloglog":
            e = np.exp(np.minimum(eta, 700))
            return np.maximum(e * np.exp(-e), _EPS)
        if n == "log":
            return np.maximum(np.exp(np.minimum(eta, 700)), _EPS)
        if n == "inverse":
            return -1.0 / eta**2
        return np.ones_like(eta, dtype=float)


LINKS = ("logit", "probit", "cloglog", "log", "inverse", "identity")


@dataclass(frozen=True)
class Family:
    """``binomial`` (proportions with weights = trials, or 0/1) or ``poisson``."""

    name: str
    link: Link

    def variance(self, mu: np.ndarray) -> np.ndarray:
        if self.name == "binomial":
            return np.maximum(mu * (1 - mu), _EPS)
        return np.maximum(mu, _EPS)

    def loglik(self, y: np.ndarray, mu: np.ndarray, w: np.ndarray) -> float:
        """Σ log f(yᵢ | μᵢ): binomial with wᵢ trials (y a proportion), or Poisson counts."""
        if self.name == "binomial":
            k = np.round(y * w)
            return float(np.sum(stats.binom.logpmf(k, np.round(w), mu)))
        return float(np.sum(w * stats.poisson.logpmf(y, mu)))

    def validate(self, y: np.ndarray, w: np.ndarray, response: str) -> None:
        if self.name == "binomial":
            if np.any((y < 0) | (y > 1)):
                raise ValueError(
                    f"binomial response {response!r} must lie in [0, 1] (0/1 outcomes, or proportions "
                    "with weights = number of trials)"
                )
            if np.any(np.abs(y * w - np.round(y * w)) > 1e-6):
                raise ValueError(
                    f"binomial response {response!r} times its weights must be whole numbers of "
                    "successes: give proportions with weights = trials"
                )
        elif self.name == "poisson":
            if np.any(y < 0) or np.any(np.abs(y - np.round(y)) > 1e-8):
                raise ValueError(f"poisson response {response!r} must be non-negative counts")

    def start_mu(self, y: np.ndarray) -> np.ndarray:
        if self.name == "binomial":
            return (
                np.clip((y + 0.5) / 2, 0.05, 0.95) if np.all((y == 0) | (y == 1)) else np.clip(y, 0.05, 0.95)
            )
        return np.maximum(y, 0.1) + 0.1


_CANONICAL = {"binomial": "logit", "poisson": "log"}
_ALIASES = {"binomial": "binomial", "poisson": "poisson", "bernoulli": "binomial"}


def get_family(family, link: str | None = None) -> Family:
    """A :class:`Family` from a name (``"binomial"``, ``"poisson"``) or a Family object."""
    if isinstance(family, Family):
        return family if link is None else Family(family.name, Link(link))
    if not isinstance(family, str):
        raise TypeError(f"family must be a string such as 'binomial' or 'poisson', got {family!r}")
    key = family.lower()
    if key in ("gamma", "negative_binomial", "negbin", "nb2"):
        raise ValueError(f"family {family!r} is not available yet; available: binomial, poisson")
    if key not in _ALIASES:
        raise ValueError(f"unknown family {family!r}; available: binomial, poisson")
    name = _ALIASES[key]
    link = link or _CANONICAL[name]
    if link not in LINKS:
        raise ValueError(f"unknown link {link!r}; available: {list(LINKS)}")
    if name == "binomial" and link not in ("logit", "probit", "cloglog"):
        raise ValueError(
            f"link {link!r} does not keep a binomial mean in (0, 1); use logit, probit or cloglog"
        )
    return Family(name, Link(link))
