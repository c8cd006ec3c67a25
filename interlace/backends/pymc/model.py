"""The PyMC model of a Gaussian LMM, built from the same DesignMatrices as the REML backend.

Parameters: β (fixed effects, sampled at centred predictors when there is an intercept), σ,
and per random-effects term the Cholesky factor L_t of the covariance of its effects —
``pm.LKJCholeskyCov`` for a vector term, one SD for a scalar term (so ``(x || g)`` gets
independent scales). lme4's θ follows as T_t = L_t / σ.

- ``marginal=True``: b is integrated out; a ``pm.Potential`` holds log p(y | θ, σ, β) from
  :class:`~.op.MarginalLogpOp` (the REML engine's blocked Cholesky), so NUTS moves in
  (θ, σ, β) only; b is drawn afterwards, exactly, per posterior draw. When every fixed-effect
  prior is Normal (the default) β is integrated out as well (:class:`~.op.IntegratedLogpOp`):
  NUTS moves in (θ, σ) and β | θ, σ, y is drawn exactly before b.
- a residual correlation structure (AR1, compound symmetry; GLS without terms): the marginal
  density of the whitened problem, with the correlation parameter sampled too (:mod:`.correlated`).
- ``marginal=False``: non-centred b_t = z_t L_t' with z ~ N(0, 1), μ = Xβ + offset + Z b via a
  pytensor sparse product, y ~ N(μ, σ²/w).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pymc as pm
import pytensor.sparse as psparse
import pytensor.tensor as pt

from ...data.design import DesignMatrices, TermBlock, tril_colwise
from .columns import ColumnStats, canonical_design, column_stats
from .dense import DenseMarginalLMM
from .marginal import GaussianPrior, MarginalBase, MarginalLMM
from .op import IntegratedLogpOp, MarginalLogpOp
from .priors import Prior, PriorSet, sd_key
from .single import SingleTermLMM

__all__ = [
    "ModelLayout",
    "TermLayout",
    "build_model",
    "marginal_density",
    "OBS_DIM",
    "FIXED_DIM",
    "THETA_DIM",
    "sampled_effects",
]

OBS_DIM = "obs"
FIXED_DIM = "fixed_effect"
THETA_DIM = "theta_index"


@dataclass
class TermLayout:
    """Names in the PyMC model for one random-effects term."""

    index: int
    group: str
    label: str  # group, or group:col+col when the group has several terms
    columns: list[str]
    effect_dim: str
    sd_name: str
    corr_name: str | None = None
    z_name: str | None = None


@dataclass
class ModelLayout:
    """Where everything lives in the model and its posterior."""

    marginal: bool
    terms: list[TermLayout]
    groups: dict[str, list[int]]  # group → term indices (design order)
    group_effect_dims: dict[str, str]
    group_effects: dict[str, list[str]]
    coords: dict[str, list]
    theta_labels: list[str]
    response: str = "y"
    beta_prior: GaussianPrior | None = None  # set when β is integrated out too
    corr_param: str | None = None  # "phi" / "rho" of a residual correlation structure
    lmm: MarginalBase | None = field(default=None, repr=False)


def _dist(prior: Prior, size: int | None = None, stacked: list[Prior] | None = None):
    """An unregistered distribution from one prior, or a vector one from priors of one family."""
    cls = prior.family()
    if stacked is None:
        return cls.dist(**prior.params)
    names = [p.dist for p in stacked]
    keys = [tuple(sorted(p.params)) for p in stacked]
    if len(set(names)) > 1 or len(set(keys)) > 1:
        raise ValueError(
            "the SDs of one correlated term need priors of one family with the same parameters, "
            f"got {stacked}"
        )
    params = {k: np.asarray([p.params[k] for p in stacked], dtype=float) for k in stacked[0].params}
    return cls.dist(**params, shape=size)


def _labels(design: DesignMatrices) -> tuple[list[str], dict[str, list[int]]]:
    groups: dict[str, list[int]] = {}
    for i, t in enumerate(design.terms):
        groups.setdefault(t.group, []).append(i)
    labels = []
    for t in design.terms:
        if len(groups[t.group]) == 1:
            labels.append(t.group)
        else:
            labels.append(f"{t.group}:{'+'.join(t.columns)}")
    return labels, groups


def _unique(names: list[str]) -> list[str]:
    out, seen = [], {}
    for n in names:
        k = seen.get(n, 0)
        out.append(n if k == 0 else f"{n}.{k}")
        seen[n] = k + 1
    return out


def theta_names(design: DesignMatrices) -> list[str]:
    """lme4-style θ names: ``group.col`` on the diagonal, ``group.colR.colC`` below it."""
    out = []
    for t in design.terms:
        rows, cols = tril_colwise(t.k)
        for r, c in zip(rows, cols, strict=True):
            out.append(f"{t.group}.{t.columns[r]}" if r == c else f"{t.group}.{t.columns[r]}.{t.columns[c]}")
    return _unique(out)


def layout_of(design: DesignMatrices, marginal: bool) -> ModelLayout:
    """Names, dims and coords for ``design`` (no PyMC objects)."""
    labels, groups = _labels(design)
    n_obs = 0 if design.gram is not None else design.n  # a lazy fit has no rows to index
    coords: dict[str, list] = {FIXED_DIM: list(design.X_names), OBS_DIM: list(range(n_obs))}
    terms = []
    group_effect_dims, group_effects = {}, {}
    for g, idx in groups.items():
        t0 = design.terms[idx[0]]
        coords[g] = [str(v) for v in t0.levels]
        dim = f"{g}__effect"
        group_effect_dims[g] = dim
        cols = _unique([c for i in idx for c in design.terms[i].columns])
        group_effects[g] = cols
        coords[dim] = cols
    for i, (t, label) in enumerate(zip(design.terms, labels, strict=True)):
        edim = f"{label}__effect"
        if label != t.group:
            coords[edim] = list(t.columns)
        terms.append(
            TermLayout(
                index=i,
                group=t.group,
                label=label,
                columns=list(t.columns),
                effect_dim=edim,
                sd_name=f"sd_{label}",
                corr_name=f"corr_{label}" if t.k > 1 else None,
                z_name=None if marginal else f"z_{label}",
            )
        )
        if t.k > 1:
            coords[f"{edim}_"] = list(t.columns)
    thetas = theta_names(design)
    coords[THETA_DIM] = thetas
    taken = {"beta", "beta_centered", "sigma", "theta", "marginal_loglik"}
    for tl in terms:
        taken |= {tl.sd_name, f"chol_{tl.label}", f"b_{tl.group}", str(tl.corr_name), str(tl.z_name)}
    response = design.response or "y"
    if response in taken or response in coords:
        response = f"{response}_obs"
    return ModelLayout(
        marginal=marginal,
        terms=terms,
        groups=groups,
        group_effect_dims=group_effect_dims,
        group_effects=group_effects,
        coords=coords,
        theta_labels=thetas,
        response=response,
    )


def marginal_density(design: DesignMatrices) -> MarginalBase:
    """The level-wise evaluator for one grouping factor, a dense factor for a few hundred random
    effects (:mod:`.dense`), else the general blocked one; all read the order-free cross-products
    of :func:`.columns.canonical_design` when the design has them."""
    design = canonical_design(design)
    if SingleTermLMM.applies(design):
        return SingleTermLMM(design)
    return DenseMarginalLMM(design) if DenseMarginalLMM.applies(design) else MarginalLMM(design)


def gaussian_beta_prior(design: DesignMatrices, priors: PriorSet) -> GaussianPrior | None:
    """β ~ N(m₀, S₀) implied by Normal priors on the (centred) coefficients, else None.

    With centring β = Kβ_c (K the identity but for the intercept row, −x̄_j off the diagonal),
    β_c ~ N(μ, diag(s²)) gives m₀ = Kμ, S₀ = K diag(s²) K'.
    """
    plist = [priors.fixed[n] for n in design.X_names]
    if any(q.dist != "Normal" or set(q.params) != {"mu", "sigma"} for q in plist):
        return None
    mu = np.array([float(q.params["mu"]) for q in plist])
    sd = np.array([float(q.params["sigma"]) for q in plist])
    K = np.eye(len(plist))
    if priors.center:
        j0 = priors.intercept
        K[j0] = -np.asarray(priors.x_means, dtype=float)
        K[j0, j0] = 1.0
    return GaussianPrior.from_cov(K @ mu, (K * sd**2) @ K.T)


REAL_LINE = ("Normal", "StudentT", "Cauchy", "Laplace", "Logistic", "Flat", "SkewNormal", "Gumbel")


@dataclass
class Start:
    """Starting values: least squares for β (centred where the model centres), its residual SD
    for σ, and half of σ over each random-effect column's scale for the SDs."""

    beta_raw: np.ndarray
    sigma: float
    sd: dict[str, float]


def start_values(design: DesignMatrices, priors: PriorSet) -> Start:
    """Sampler starting values: β by weighted least squares on y − offset, σ from its residuals,
    each random-effect SD a fraction of σ (inside the priors' support)."""
    st = column_stats(design)
    sigma = float(np.sqrt(max(st.rss, 0.0) / max(1, design.n - design.p)))
    if not sigma > 0:
        sigma = 1.0
    return start_from(design, priors, st.beta_ls, sigma, st)


def start_from(design: DesignMatrices, priors: PriorSet, beta: np.ndarray, sigma: float,
               stats: ColumnStats | None = None) -> Start:
    """Start at β (re-expressed at centred predictors when the model centres them) and σ, with
    each random-effect SD half of σ over its column's scale."""
    raw = beta.copy()
    if priors.center:
        raw[priors.intercept] = float(
            beta @ np.where(np.arange(design.p) == priors.intercept, 1.0, priors.x_means)
        )
    z_scales = (stats or column_stats(design)).z_scales
    sd = {sd_key(t.group, c): 0.5 * sigma / z_scales[(t.group, c)] for t in design.terms for c in t.columns}
    return Start(beta_raw=raw, sigma=sigma, sd=sd)


def _fixed_effects(design: DesignMatrices, priors: PriorSet, start: Start):
    """β as a pytensor vector (registering the RVs); centred parameterisation with an intercept."""
    names = design.X_names
    plist = [priors.fixed[n] for n in names]
    same = len({(q.dist, tuple(sorted(q.params))) for q in plist}) == 1
    raw_name = "beta_centered" if priors.center else "beta"
    if same:
        params = {k: np.asarray([q.params[k] for q in plist], dtype=float) for k in plist[0].params}
        init = {"initval": start.beta_raw} if plist[0].dist in REAL_LINE else {}
        raw = plist[0].family()(raw_name, **params, dims=FIXED_DIM, **init)
    else:
        parts = [
            q.family()(f"{raw_name}[{n}]", **q.params, **({"initval": v} if q.dist in REAL_LINE else {}))
            for n, q, v in zip(names, plist, start.beta_raw, strict=True)
        ]
        raw = pt.stack(parts)
        if not priors.center:
            return pm.Deterministic("beta", raw, dims=FIXED_DIM)
    if not priors.center:
        return raw
    j0 = priors.intercept
    shift = np.asarray(priors.x_means, dtype=float).copy()
    shift[j0] = 0.0
    beta = pt.set_subtensor(raw[j0], raw[j0] - pt.dot(raw, shift))
    return pm.Deterministic("beta", beta, dims=FIXED_DIM)


def _term_factor(design: DesignMatrices, t: TermBlock, tl: TermLayout, priors: PriorSet, start: Start):
    """L_t (k × k lower Cholesky factor of the term's covariance) and its SD vector."""
    ps = [priors.sd[sd_key(t.group, c)] for c in t.columns]
    sd0 = np.array([start.sd[sd_key(t.group, c)] for c in t.columns])
    if t.k == 1:
        sd = ps[0].family()(tl.sd_name, **ps[0].params, initval=float(sd0[0]))
        return sd.reshape((1, 1)), sd
    packed = np.diag(sd0)[np.tril_indices(t.k)]  # PyMC packs the lower triangle row by row
    chol, corr, stds = pm.LKJCholeskyCov(
        f"chol_{tl.label}",
        n=t.k,
        eta=priors.eta,
        sd_dist=_dist(ps[0], t.k, ps),
        compute_corr=True,
        store_in_trace=False,
        initval=packed,
    )
    pm.Deterministic(tl.sd_name, stds, dims=tl.effect_dim)
    pm.Deterministic(tl.corr_name, corr, dims=(tl.effect_dim, f"{tl.effect_dim}_"))
    return chol, stds


def build_model(design: DesignMatrices, priors: PriorSet, marginal: bool) -> tuple[pm.Model, ModelLayout]:
    """The PyMC model of ``design`` with ``priors``: marginalised or non-centred (see module doc)."""
    layout = layout_of(design, marginal)
    if design.correlation is not None and not marginal:
        raise ValueError("correlation= with backend='pymc' needs marginalize=True (the default)")
    if marginal and design.correlation is None:
        layout.beta_prior = gaussian_beta_prior(design, priors)
    start = start_values(design, priors)
    with pm.Model(coords=layout.coords) as model:
        beta = _fixed_effects(design, priors, start) if layout.beta_prior is None else None
        sigma = priors.sigma.family()("sigma", **priors.sigma.params, initval=start.sigma)
        chols = [
            _term_factor(design, t, tl, priors, start)[0]
            for t, tl in zip(design.terms, layout.terms, strict=True)
        ]
        theta_parts = []
        for t, L in zip(design.terms, chols, strict=True):
            rows, cols = tril_colwise(t.k)
            theta_parts.append(L[rows, cols] / sigma)
        theta = pt.concatenate(theta_parts) if theta_parts else pt.zeros((0,))
        theta = pm.Deterministic("theta", theta, dims=THETA_DIM)
        if design.correlation is not None:
            _correlated_likelihood(design, layout, theta, sigma, beta)
        elif marginal:
            lmm = marginal_density(design)
            layout.lmm = lmm
            if layout.beta_prior is None:
                logp = MarginalLogpOp(lmm)(theta, sigma, beta)[0]
            else:
                logp = IntegratedLogpOp(lmm, layout.beta_prior)(theta, sigma)[0]
            pm.Potential("marginal_loglik", logp)
        else:
            _noncentered_likelihood(design, layout, beta, sigma, chols)
    return model, layout


def _correlated_likelihood(design: DesignMatrices, layout: ModelLayout, theta, sigma, beta) -> None:
    """The marginal likelihood with a residual correlation structure (:mod:`.correlated`); its
    parameter gets a uniform prior on its interval."""
    from .correlated import CorrelatedLMM, CorrelatedLogpOp

    lmm = CorrelatedLMM(design)
    layout.lmm, layout.corr_param = lmm, design.correlation.name
    mid = 0.5 * (lmm.lower + lmm.upper)
    rho = pm.Uniform(layout.corr_param, lower=lmm.lower, upper=lmm.upper, initval=mid)
    pm.Potential("marginal_loglik", CorrelatedLogpOp(lmm)(theta, sigma, beta, rho)[0])


def _noncentered_likelihood(design: DesignMatrices, layout: ModelLayout, beta, sigma, chols) -> None:
    mu = pt.dot(design.X, beta) + design.offset + noncentered_effects(design, layout, chols)
    sd = sigma if design.weights is None else sigma / np.sqrt(design.weights)
    pm.Normal(layout.response, mu=mu, sigma=sd, observed=design.y, dims=OBS_DIM)


def sampled_effects(design: DesignMatrices, layout, priors, start):
    """Zb (non-centred, registering ``b_<group>``) and θ = the entries of each term's L_t."""
    chols = [_term_factor(design, t, tl, priors, start)[0]
             for t, tl in zip(design.terms, layout.terms, strict=True)]
    parts = []
    for t, L in zip(design.terms, chols, strict=True):
        rows, cols = tril_colwise(t.k)
        parts.append(L[rows, cols])
    pm.Deterministic("theta", pt.concatenate(parts) if parts else pt.zeros((0,)), dims=THETA_DIM)
    return noncentered_effects(design, layout, chols) if design.terms else pt.zeros(design.n)


def noncentered_effects(design: DesignMatrices, layout: ModelLayout, chols):
    """Zb with non-centred b_t = z_t L_t' (z ~ N(0, 1)), registering ``b_<group>``; a pytensor
    vector of length n built with a sparse product."""
    b_terms = []
    for t, tl, L in zip(design.terms, layout.terms, chols, strict=True):
        z = pm.Normal(tl.z_name, 0.0, 1.0, dims=(t.group, tl.effect_dim))
        b_terms.append(pt.dot(z, L.T))  # row l: L z_l
    for g, idx in layout.groups.items():
        val = b_terms[idx[0]] if len(idx) == 1 else pt.concatenate([b_terms[i] for i in idx], axis=1)
        pm.Deterministic(f"b_{g}", val, dims=(g, layout.group_effect_dims[g]))
    b_flat = pt.concatenate([b.reshape((-1,)) for b in b_terms])
    Z = psparse.as_sparse_variable(design.Z.tocsr())
    return psparse.structured_dot(Z, b_flat[:, None])[:, 0]
