"""Priors of the PyMC backend: weakly informative defaults scaled to the data, and overrides.

With s_y the SD of the response (offset removed), s_j the SD of fixed-effect column j and s_c
the SD of random-effect column c (1 for an intercept), the defaults are

- fixed effects: with an intercept the predictors are centred, the intercept at the predictor
  means gets Normal(mean(y), 2.5 s_y), each slope Normal(0, 2.5 s_y / s_j);
- residual SD σ: HalfStudentT(ν = 4, s_y);
- SD of each random-effect column: HalfNormal(2.5 s_y / s_c);
- correlations of a vector term (1 + x | g): LKJ(η = 1), uniform over correlation matrices.

For a GLMM (``family`` given) the scale is the link's: s_y = 1 (for identity and inverse links
|g(ȳ)|), the intercept is centred at g(ȳ) − mean(offset), and the family parameter has its own
key: ``"sigma"`` for the Gamma σ (Var = σ²μ², HalfStudentT(4, 1)), ``"nb_theta"`` for the
negative binomial θ (Var = μ + μ²/θ, HalfCauchy(1)); binomial and Poisson have neither.
``priors=`` overrides any of them: keys are fixed-effect names (``"(Intercept)"`` is the
intercept at the predictor means), ``"sigma"``, a group (``"Subject"``: every SD of that
group) or ``"group:column"`` (one SD), and ``"eta"`` (a number, the LKJ shape); values are
:class:`Prior` objects such as ``Prior("StudentT", nu=3, mu=0, sigma=10)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...data.design import DesignMatrices
from .columns import column_stats

__all__ = ["Prior", "PriorSet", "default_priors", "resolve_priors", "POSITIVE_FAMILIES"]

POSITIVE_FAMILIES = (
    "HalfNormal",
    "HalfStudentT",
    "HalfCauchy",
    "Exponential",
    "Gamma",
    "InverseGamma",
    "LogNormal",
    "Weibull",
    "ChiSquared",
    "HalfFlat",
)


class Prior:
    """A PyMC distribution by name with its parameters, e.g. ``Prior("Normal", mu=0, sigma=5)``."""

    def __init__(self, dist: str, **params: Any):
        if not isinstance(dist, str):
            raise TypeError(f"Prior takes the name of a PyMC distribution, e.g. 'Normal', got {dist!r}")
        self.dist = dist
        self.params = {k: v for k, v in params.items()}
        self._check_params()

    def _check_params(self) -> None:
        """Each keyword must be one of the distribution's parameters (PyMC's ``dist`` signature);
        checked here, not deep inside the sampler. Without PyMC installed, checked when sampling."""
        import importlib.util
        import inspect

        if importlib.util.find_spec("pymc") is None:
            return
        try:
            cls = self.family()
        except ValueError:  # an unknown name is reported where the prior is used (resolve_priors)
            return
        names = [n for n, p in inspect.signature(cls.dist).parameters.items()
                 if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        bad = [k for k in self.params if k not in names]
        if bad:
            plural, given = "s" if len(bad) > 1 else "", ", ".join(repr(k) for k in bad)
            raise ValueError(
                f"{self!r}: {self.dist} has no parameter{plural} {given}; its parameters "
                f"are {', '.join(names) or 'none'} (PyMC's names, e.g. Prior('Normal', mu=0, sigma=10))"
            )

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"Prior({self.dist!r}{', ' if args else ''}{args})"

    def __eq__(self, other) -> bool:
        return isinstance(other, Prior) and self.dist == other.dist and self.params == other.params

    def family(self):
        """The PyMC distribution class; ValueError if PyMC has no such distribution."""
        import pymc as pm

        cls = getattr(pm, self.dist, None)
        if not (isinstance(cls, type) and issubclass(cls, pm.Continuous)):
            raise ValueError(
                f"{self!r}: {self.dist!r} is not a continuous PyMC distribution "
                "(use a name such as 'Normal', 'StudentT', 'HalfNormal')"
            )
        return cls


@dataclass
class PriorSet:
    """The priors of one model, resolved per coefficient, per random-effect column and for σ."""

    fixed: dict[str, Prior]
    sigma: Prior
    sd: dict[str, Prior]  # key "group:column"
    eta: float = 1.0
    sigma_key: str | None = "sigma"  # the key of ``sigma``: "nb_theta" for NB, None if no such parameter
    center: bool = False  # intercept present: predictors centred
    x_means: np.ndarray = field(default_factory=lambda: np.zeros(0))
    intercept: int | None = None


def sd_key(group: str, column: str) -> str:
    """The ``priors=`` key of one random-effect SD: ``"group:column"``."""
    return f"{group}:{column}"


UNIT_FREE_LINKS = ("logit", "probit", "cloglog", "loglog", "log")


def link_scale(design: DesignMatrices, family) -> tuple[float, float, Prior | None, str | None]:
    """(prior centre of the intercept, s_y, prior of the family parameter, its key) for a GLMM."""
    w = np.ones(design.n) if design.weights is None else design.weights
    mu0 = float(np.average(design.y, weights=w))
    mu0 = min(max(mu0, 0.01), 0.99) if family.name == "binomial" else max(mu0, 0.01)
    eta0 = float(family.link.link(np.array([mu0]))[0]) - float(np.mean(design.offset))
    s_y = 1.0  # logit, probit, log, …: the link scale is unit-free
    if family.link.name not in UNIT_FREE_LINKS:
        # identity, inverse, …: the response's spread carried to the link scale at its mean
        # (delta method: sd(y)·|dη/dμ|), e.g. sd(y)/ȳ² for Gamma's inverse link
        sd_y = float(np.sqrt(np.average((design.y - mu0) ** 2, weights=w)))
        slope = 1.0 / abs(float(family.link.mu_eta(np.array([eta0 + float(np.mean(design.offset))]))[0]))
        s_y = sd_y * slope if sd_y > 0 and np.isfinite(slope) else max(1.0, abs(eta0))
    if family.name == "Gamma":
        return eta0, s_y, Prior("HalfStudentT", nu=4.0, sigma=1.0), "sigma"
    if family.name == "negative_binomial":
        return eta0, s_y, Prior("HalfCauchy", beta=1.0), "nb_theta"
    return eta0, s_y, None, None


def default_priors(design: DesignMatrices, family=None) -> PriorSet:
    """The documented weakly informative defaults for ``design`` (see the module docstring);
    ``family`` (an :class:`~interlace.model.families.Family`) for a GLMM."""
    st = column_stats(design)
    s_y = st.y_sd
    if not s_y > 0:
        s_y = max(1.0, abs(st.y_mean))  # a constant response
    center_y = st.y_mean
    sigma_prior, sigma_key = Prior("HalfStudentT", nu=4.0, sigma=s_y), "sigma"
    if family is not None:
        center_y, s_y, sigma_prior, sigma_key = link_scale(design, family)
    intercept, means = st.intercept, st.x_means
    fixed: dict[str, Prior] = {}
    for j, name in enumerate(design.X_names):
        if j == intercept:
            fixed[name] = Prior("Normal", mu=center_y, sigma=2.5 * s_y)
        else:
            fixed[name] = Prior("Normal", mu=0.0, sigma=2.5 * s_y / st.x_scales[j])
    sd: dict[str, Prior] = {}
    for t in design.terms:
        for col in t.columns:
            sd[sd_key(t.group, col)] = Prior("HalfNormal", sigma=2.5 * s_y / st.z_scales[(t.group, col)])
    return PriorSet(
        fixed=fixed,
        sigma=sigma_prior,
        sd=sd,
        eta=1.0,
        sigma_key=sigma_key,
        center=intercept is not None,
        x_means=means,
        intercept=intercept,
    )


def _check_prior(key: str, value, positive: bool) -> Prior:
    if not isinstance(value, Prior):
        raise TypeError(
            f"priors[{key!r}] must be interlace.Prior(...), e.g. Prior('Normal', mu=0, sigma=10); "
            f"got {value!r}"
        )
    value.family()
    if positive and value.dist not in POSITIVE_FAMILIES:
        raise ValueError(
            f"priors[{key!r}] = {value!r} is a prior for a standard deviation and needs positive "
            f"support: use one of {list(POSITIVE_FAMILIES)}"
        )
    return value


def resolve_priors(design: DesignMatrices, priors: dict | None, family=None) -> PriorSet:
    """Defaults with the user's ``priors=`` overrides applied; unknown keys raise KeyError."""
    ps = default_priors(design, family)
    if priors is None:
        return ps
    if not isinstance(priors, dict):
        raise TypeError(
            f"priors= must be a dict such as {{'sigma': Prior('HalfNormal', sigma=10)}}, got {priors!r}"
        )
    groups = {t.group for t in design.terms}
    for key, value in priors.items():
        if key == "eta":
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ValueError(
                    f"priors['eta'] is the LKJ shape and must be a positive number, got {value!r}"
                )
            ps.eta = float(value)
        elif key in ps.fixed:
            ps.fixed[key] = _check_prior(key, value, positive=False)
        elif key is not None and key == ps.sigma_key:
            ps.sigma = _check_prior(key, value, positive=True)
        elif key in ps.sd:
            ps.sd[key] = _check_prior(key, value, positive=True)
        elif key in groups:
            prior = _check_prior(key, value, positive=True)
            for k in ps.sd:
                if k.startswith(f"{key}:") and k[len(key) + 1 :] in _group_columns(design, key):
                    ps.sd[k] = prior
        else:
            extra = [ps.sigma_key] if ps.sigma_key else []
            valid = list(ps.fixed) + extra + sorted(groups) + list(ps.sd) + ["eta"]
            raise KeyError(f"priors has an unknown key {key!r}; valid keys: {valid}")
    return ps


def _group_columns(design: DesignMatrices, group: str) -> list[str]:
    return [c for t in design.terms if t.group == group for c in t.columns]
