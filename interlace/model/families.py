"""GLMM families and links: the pieces PIRLS and the Laplace approximation need.

A family gives the mean–variance relation V(μ), the log density log f(y | μ) with prior
weights, and a default (canonical) link; a link gives η = g(μ), μ = g⁻¹(η) and dμ/dη.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special, stats

__all__ = ["Link", "Family", "LINKS", "CUMULATIVE_LINKS", "get_family", "get_link"]

_EPS = np.finfo(float).eps


class Link:
    """A link g: η = g(μ), μ = g⁻¹(η), dμ/dη, the same inverse in pytensor (PyMC backend), and
    for cumulative-link models the latent distribution F = g⁻¹ with its density and derivative.

    One subclass per link; :func:`get_link` returns them by name and refuses unknown names.
    """

    name = ""

    def link(self, mu: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def inverse(self, eta: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def mu_eta(self, eta: np.ndarray) -> np.ndarray:
        """dμ/dη."""
        raise NotImplementedError

    def pt_inverse(self, eta):
        """g⁻¹(η) as a pytensor expression (for the PyMC backend)."""
        raise NotImplementedError

    def cdf_pdf(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """F(x), f(x) = F'(x) and f'(x) of the latent distribution (cumulative links; ±∞ handled)."""
        raise ValueError(f"the {self.name} link has no latent distribution for cumulative-link models")

    def __eq__(self, other) -> bool:
        return isinstance(other, Link) and other.name == self.name

    def __hash__(self) -> int:
        return hash(self.name)

    def __repr__(self) -> str:
        return f"Link({self.name!r})"


def _pt():
    import pytensor.tensor as pt

    return pt


class Logit(Link):
    """g(μ) = log(μ / (1 − μ)); latent F the logistic distribution."""

    name = "logit"

    def link(self, mu):
        return special.logit(mu)

    def inverse(self, eta):
        return np.clip(special.expit(eta), _EPS, 1 - _EPS)

    def mu_eta(self, eta):
        p = special.expit(eta)
        return np.maximum(p * (1 - p), _EPS)

    def pt_inverse(self, eta):
        return _pt().sigmoid(eta)

    def cdf_pdf(self, x):
        F = special.expit(x)
        f = F * (1 - F)
        return F, f, f * (1 - 2 * F)


class Probit(Link):
    """g(μ) = Φ⁻¹(μ); latent F the standard normal."""

    name = "probit"

    def link(self, mu):
        return special.ndtri(mu)

    def inverse(self, eta):
        return np.clip(special.ndtr(eta), _EPS, 1 - _EPS)

    def mu_eta(self, eta):
        return np.maximum(stats.norm.pdf(eta), _EPS)

    def pt_inverse(self, eta):
        return 0.5 * _pt().erfc(-eta / np.sqrt(2.0))

    def cdf_pdf(self, x):
        F = special.ndtr(x)
        f = stats.norm.pdf(x)
        df = -x * f if np.all(np.isfinite(x)) else np.where(np.isfinite(x), -np.nan_to_num(x) * f, 0.0)
        return F, f, df


class Cloglog(Link):
    """g(μ) = log(−log(1 − μ)); latent F(x) = 1 − exp(−eˣ) (the Gumbel minimum)."""

    name = "cloglog"

    def link(self, mu):
        return np.log(-np.log1p(-mu))

    def inverse(self, eta):
        return np.clip(-np.expm1(-np.exp(np.minimum(eta, 700))), _EPS, 1 - _EPS)

    def mu_eta(self, eta):
        e = np.exp(np.minimum(eta, 700))
        return np.maximum(e * np.exp(-e), _EPS)

    def pt_inverse(self, eta):
        pt = _pt()
        return -pt.expm1(-pt.exp(eta))

    def cdf_pdf(self, x):
        e = np.exp(np.minimum(x, 700))
        f = e * np.exp(-e)
        return -np.expm1(-e), f, f * (1 - e)


class Loglog(Link):
    """g(μ) = −log(−log μ); latent F(x) = exp(−e⁻ˣ) (the Gumbel maximum; ordinal's ``loglog``)."""

    name = "loglog"

    def link(self, mu):
        return -np.log(-np.log(mu))

    def inverse(self, eta):
        return np.clip(np.exp(-np.exp(np.minimum(-eta, 700))), _EPS, 1 - _EPS)

    def mu_eta(self, eta):
        e = np.exp(np.minimum(-eta, 700))
        return np.maximum(e * np.exp(-e), _EPS)

    def pt_inverse(self, eta):
        pt = _pt()
        return pt.exp(-pt.exp(-eta))

    def cdf_pdf(self, x):
        e = np.exp(np.minimum(-x, 700))
        F = np.exp(-e)
        f = e * F
        return F, f, f * (e - 1)


class Log(Link):
    """g(μ) = log μ."""

    name = "log"

    def link(self, mu):
        return np.log(mu)

    def inverse(self, eta):
        return np.exp(np.minimum(eta, 700))

    def mu_eta(self, eta):
        return np.maximum(np.exp(np.minimum(eta, 700)), _EPS)

    def pt_inverse(self, eta):
        return _pt().exp(eta)


class Inverse(Link):
    """g(μ) = 1 / μ (the Gamma family's canonical link)."""

    name = "inverse"

    def link(self, mu):
        return 1.0 / mu

    def inverse(self, eta):
        return 1.0 / eta

    def mu_eta(self, eta):
        return -1.0 / eta**2

    def pt_inverse(self, eta):
        return 1.0 / eta


class Identity(Link):
    """g(μ) = μ."""

    name = "identity"

    def link(self, mu):
        return np.asarray(mu, dtype=float)

    def inverse(self, eta):
        return np.asarray(eta, dtype=float)

    def mu_eta(self, eta):
        return np.ones_like(eta, dtype=float)

    def pt_inverse(self, eta):
        return eta


_LINK_TYPES = {cls.name: cls for cls in (Logit, Probit, Cloglog, Loglog, Log, Inverse, Identity)}
LINKS = tuple(_LINK_TYPES)
#: the links of cumulative-link (ordinal) models: those with a latent distribution
CUMULATIVE_LINKS = ("logit", "probit", "cloglog", "loglog")


def get_link(name: str | Link) -> Link:
    """The :class:`Link` called ``name``; raises ``ValueError`` naming the available links."""
    if isinstance(name, Link):
        return name
    if not isinstance(name, str) or name not in _LINK_TYPES:
        raise ValueError(f"unknown link {name!r}; available: {list(LINKS)}")
    return _LINK_TYPES[name]()


@dataclass(frozen=True)
class Family:
    """``binomial`` (0/1, or proportions with weights = trials), ``poisson``, ``Gamma`` or
    ``negative_binomial`` (NB2: V(μ) = μ + μ²/θ; ``nb_theta`` None while θ is being estimated)."""

    name: str
    link: Link
    nb_theta: float | None = None

    @property
    def has_scale(self) -> bool:
        """A dispersion estimated outside the Laplace term (lme4's ``useSc``): Gamma only."""
        return self.name == "Gamma"

    def variance(self, mu: np.ndarray) -> np.ndarray:
        if self.name == "binomial":
            return np.maximum(mu * (1 - mu), _EPS)
        if self.name == "Gamma":
            return np.maximum(mu**2, _EPS)
        if self.name == "negative_binomial":
            return np.maximum(mu + mu**2 / self._theta(), _EPS)
        return np.maximum(mu, _EPS)

    def _theta(self) -> float:
        if self.nb_theta is None:
            raise ValueError("the negative binomial θ is not set")
        return float(self.nb_theta)

    def deviance(self, y: np.ndarray, mu: np.ndarray, w: np.ndarray) -> float:
        """Σ wᵢ d(yᵢ, μᵢ), the unit deviances of the family (R's ``dev.resids`` summed)."""
        if self.name == "Gamma":
            return float(2 * np.sum(w * (-np.log(y / mu) + (y - mu) / mu)))
        if self.name == "negative_binomial":
            th = self._theta()
            ylogy = special.xlogy(y, y / mu)
            return float(2 * np.sum(w * (ylogy - (y + th) * np.log((y + th) / (mu + th)))))
        return -2.0 * self.loglik(y, mu, w) + 2.0 * self.loglik(y, np.clip(y, _EPS, None), w)

    def loglik(self, y: np.ndarray, mu: np.ndarray, w: np.ndarray) -> float:
        """Σ log f(yᵢ | μᵢ): binomial with wᵢ trials (y a proportion), Poisson or NB counts with
        prior weights; Gamma with lme4's dispersion Σ wᵢ d(yᵢ, μᵢ) / Σ wᵢ."""
        if self.name == "binomial":
            k = np.round(y * w)
            return float(np.sum(stats.binom.logpmf(k, np.round(w), mu)))
        if self.name == "Gamma":
            disp = self.deviance(y, mu, w) / np.sum(w)
            return float(np.sum(w * stats.gamma.logpdf(y, 1 / disp, scale=mu * disp)))
        if self.name == "negative_binomial":
            th = self._theta()
            return float(np.sum(w * stats.nbinom.logpmf(y, th, th / (th + mu))))
        return float(np.sum(w * stats.poisson.logpmf(y, mu)))

    def laplace_deviance(self, y: np.ndarray, mu: np.ndarray, w: np.ndarray) -> float:
        """The data term of the Laplace criterion: −2 log f, plus 2 for the Gamma dispersion
        (lme4 uses R's ``family$aic`` there, which counts it)."""
        return -2.0 * self.loglik(y, mu, w) + (2.0 if self.has_scale else 0.0)

    def pirls_deviance(self, y: np.ndarray, mu: np.ndarray, w: np.ndarray) -> float:
        """What PIRLS minimises with ‖u‖²: −2 log f, or for Gamma the deviance (as lme4)."""
        return self.deviance(y, mu, w) if self.has_scale else -2.0 * self.loglik(y, mu, w)

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
        elif self.name in ("poisson", "negative_binomial"):
            if np.any(y < 0) or np.any(np.abs(y - np.round(y)) > 1e-8):
                raise ValueError(f"{self.name} response {response!r} must be non-negative counts")
        elif self.name == "Gamma" and np.any(y <= 0):
            raise ValueError(
                f"Gamma response {response!r} must be positive; found {int(np.sum(y <= 0))} values <= 0"
            )

    def start_mu(self, y: np.ndarray) -> np.ndarray:
        if self.name == "binomial":
            return (
                np.clip((y + 0.5) / 2, 0.05, 0.95) if np.all((y == 0) | (y == 1)) else np.clip(y, 0.05, 0.95)
            )
        if self.name == "Gamma":
            return np.asarray(y, dtype=float)
        return np.maximum(y, 0.1) + 0.1

    def sample(
        self, mu: np.ndarray, w: np.ndarray, rng: np.random.Generator, scale: float = 1.0
    ) -> np.ndarray:
        """Responses drawn given the means: binomial proportions out of wᵢ trials, Poisson or NB2
        counts, Gamma with shape 1/σ² (``scale`` = σ², so Var = σ²μ²)."""
        if self.name == "binomial":
            trials = np.round(w).astype(np.int64)
            return rng.binomial(trials, mu) / np.maximum(trials, 1)
        if self.name == "Gamma":
            return rng.gamma(1.0 / scale, mu * scale)
        if self.name == "negative_binomial":
            th = self._theta()
            return rng.negative_binomial(th, th / (th + mu)).astype(float)
        return rng.poisson(mu).astype(float)

    def with_theta(self, theta: float) -> Family:
        """The negative binomial family with θ fixed."""
        return Family(self.name, self.link, float(theta))

    @property
    def label(self) -> str:
        if self.name == "negative_binomial" and self.nb_theta is not None:
            return f"Negative Binomial({self.nb_theta:.4g})"
        return self.name


_CANONICAL = {"binomial": "logit", "poisson": "log", "Gamma": "inverse", "negative_binomial": "log"}
_ALIASES = {
    "binomial": "binomial",
    "bernoulli": "binomial",
    "poisson": "poisson",
    "gamma": "Gamma",
    "negative_binomial": "negative_binomial",
    "negative.binomial": "negative_binomial",
    "negbin": "negative_binomial",
    "nb": "negative_binomial",
    "nb2": "negative_binomial",
    "nbinom2": "negative_binomial",
}
_NAMES = "binomial, poisson, Gamma, negative_binomial"


def get_family(family, link: str | None = None) -> Family:
    """A :class:`Family` from a name (``"binomial"``, ``"poisson"``, ``"Gamma"``,
    ``"negative_binomial"``, case-insensitive) or a Family object; θ of the NB is estimated."""
    if isinstance(family, Family):
        if link is None:
            return family
        _check_family_link(family.name, get_link(link).name)
        return Family(family.name, get_link(link), family.nb_theta)
    if not isinstance(family, str):
        raise TypeError(f"family must be a string such as 'binomial' or 'poisson', got {family!r}")
    key = family.lower().replace(" ", "_")
    if key not in _ALIASES:
        raise ValueError(f"unknown family {family!r}; available: {_NAMES}")
    name = _ALIASES[key]
    link = link or _CANONICAL[name]
    get_link(link)  # refuses unknown names
    if link == "loglog":
        raise ValueError("the loglog link is for clmm; glmer families take logit, probit, cloglog, log, "
                         "inverse or identity")
    _check_family_link(name, link)
    return Family(name, get_link(link))


#: the links each family takes: R's family objects' links that interlace has (R's poisson and
#: negative binomial also take sqrt, binomial cauchit and log; interlace does not)
_FAMILY_LINKS = {"binomial": ("logit", "probit", "cloglog"), "poisson": ("log", "identity"),
                 "Gamma": ("inverse", "log", "identity"), "negative_binomial": ("log", "identity")}


def _check_family_link(name: str, link: str) -> None:
    """Refuse a link the family does not take, before any fitting (R's ``poisson(link = "logit")``
    is an error too)."""
    ok = _FAMILY_LINKS[name]
    if link in ok:
        return
    if name == "binomial":
        raise ValueError(f"link {link!r} does not keep a binomial mean in (0, 1); use logit, probit or "
                         "cloglog")
    raise ValueError(f"link {link!r} is not a {name} link; {name} takes {', '.join(ok[:-1])} or {ok[-1]} "
                     f"(default {_CANONICAL[name]})")
