"""``coxme(..., backend="pymc")``: the Cox model with Gaussian random effects sampled with NUTS.

η = Xβ + Zb + offset, with b non-centred from the design's Z (one block per random term, as in
:mod:`.glmm`; the frailty variance is σ² = L_t L_t'). The data enter through Cox's partial
likelihood, added as a ``pm.Potential`` (Cox 1972; ties after Breslow 1974 or Efron 1977, as
``survival::coxph``/``coxme``): for an event i at time tᵢ in stratum s, with the risk set
R(tᵢ) = {j in s: tⱼ ≥ tᵢ} and its sum Rᵢ = Σ_{j∈R(tᵢ)} exp ηⱼ,

    Breslow: ℓ = Σ_events [ηᵢ − log Rᵢ];
    Efron:   ℓ = Σ_events [ηᵢ − log(Rᵢ − (k_i/d_i) Dᵢ)],

where the d_i tied events of i's (stratum, time) block are numbered k_i = 0 … d_i − 1 and Dᵢ is
their Σ exp η. Rᵢ is a cumulative sum of exp η over the rows sorted by stratum and decreasing
time, read at the end of each (stratum, time) block, minus the sum before the stratum.

Priors (keys of ``priors=``): the GLMM defaults on the log-hazard scale, β_j ~ Normal(0, 2.5/s_j)
and each random-effect SD ~ HalfNormal(2.5/s_c). No pointwise log-likelihood is stored: the
partial likelihood does not split into independent observations.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt

from ...data.design import DesignMatrices
from ...model.families import get_family
from ...results.bayes_models import PosteriorModelResult
from ...results.draws import posterior_arrays
from ...results.posterior import variance_draws, variance_names
from .model import layout_of, sampled_effects, start_from
from .ordinal import linear_predictor, random_effect_means, run_info
from .priors import resolve_priors
from .sampling import SamplerOptions, check_options, diagnostics, run_sampler, warn_if_unconverged

__all__ = ["fit_coxme_pymc", "RiskSets", "partial_loglik_numpy"]


@dataclasses.dataclass
class RiskSets:
    """Index arrays of the partial likelihood (see the module docstring)."""

    order: np.ndarray  # rows by stratum, then decreasing time
    events: np.ndarray  # rows with an event
    end: np.ndarray  # per event: position (in ``order``) of the end of its (stratum, time) block
    before: np.ndarray  # per event: position just before its stratum starts (−1: none)
    block: np.ndarray  # per event: its tie block, 0 … n_blocks − 1
    frac: np.ndarray  # per event: k/d (Efron), or 0 (Breslow)
    n_blocks: int

    @classmethod
    def build(cls, time_: np.ndarray, status: np.ndarray, strata: np.ndarray | None, ties: str) -> RiskSets:
        n = time_.size
        s = np.zeros(n, dtype=np.int64) if strata is None else np.asarray(strata, dtype=np.int64)
        order = np.lexsort((-time_, s))
        st, tt = s[order], time_[order]
        new_block = np.r_[True, (st[1:] != st[:-1]) | (tt[1:] != tt[:-1])]
        block_of_pos = np.cumsum(new_block) - 1
        last = np.r_[np.flatnonzero(new_block)[1:] - 1, n - 1]  # per block: its last position
        new_stratum = np.r_[True, st[1:] != st[:-1]]
        stratum_start = np.maximum.accumulate(np.where(new_stratum, np.arange(n), 0))
        pos = np.empty(n, dtype=np.int64)
        pos[order] = np.arange(n)
        events = np.flatnonzero(status > 0)
        ep = pos[events]
        blk = block_of_pos[ep]
        _, blocks = np.unique(blk, return_inverse=True)
        frac = np.zeros(events.size)
        if ties == "efron":
            counts = np.bincount(blocks)
            k = np.zeros(events.size, dtype=np.int64)
            seen = np.zeros(counts.size, dtype=np.int64)
            for i, bl in enumerate(blocks):
                k[i] = seen[bl]
                seen[bl] += 1
            frac = k / counts[blocks]
        return cls(order, events, last[blk], stratum_start[ep] - 1, blocks, frac, int(blocks.max()) + 1)

    def loglik(self, eta):
        """The partial log-likelihood at η (pytensor or numpy vector)."""
        is_np = isinstance(eta, np.ndarray)
        lib = np if is_np else pt
        e = lib.exp(eta)
        C = lib.concatenate([lib.zeros(1), lib.cumsum(e[self.order])])  # C[k] = Σ of the first k
        risk = C[self.end + 1] - C[self.before + 1]
        ee = e[self.events]
        if is_np:
            D = np.bincount(self.block, ee, self.n_blocks)
        else:
            D = pt.inc_subtensor(pt.zeros(self.n_blocks)[self.block], ee)
        return lib.sum(eta[self.events]) - lib.sum(lib.log(risk - self.frac * D[self.block]))


def partial_loglik_numpy(eta, time_, status, strata=None, ties: str = "efron") -> float:
    """Cox's partial log-likelihood at η (numpy; the same formula as the model's Potential)."""
    return float(RiskSets.build(np.asarray(time_, float), np.asarray(status), strata, ties).loglik(
        np.asarray(eta, dtype=float)))


def fit_coxme_pymc(formula: str, design: DesignMatrices, keep: list[int], time_: np.ndarray,
                   status: np.ndarray, strata: np.ndarray | None, ties: str, n_dropped: int = 0, *,
                   draws: int = 1000, tune: int = 1000, chains: int = 4, cores: int | None = None,
                   random_seed: int | None = None, progressbar: bool = True, sampler: str = "nutpie",
                   priors: dict | None = None, target_accept: float = 0.8) -> PosteriorModelResult:
    """Sample the coxme posterior (see the module docstring) on the Laplace fit's design."""
    opts = check_options(SamplerOptions(draws=draws, tune=tune, chains=chains, cores=cores,
                                        random_seed=random_seed, progressbar=progressbar, sampler=sampler,
                                        target_accept=float(target_accept)))
    t0 = time.perf_counter()
    d = dataclasses.replace(design, X=design.X[:, keep], X_names=[design.X_names[j] for j in keep])
    ps = resolve_priors(d, priors, get_family("binomial"))
    start = start_from(d, ps, np.zeros(d.p), 1.0)
    risk = RiskSets.build(np.asarray(time_, dtype=float), np.asarray(status), strata, ties)
    layout = layout_of(d, marginal=False)
    with pm.Model(coords=layout.coords) as model:
        eta = linear_predictor(d, ps, start) + sampled_effects(d, layout, ps, start) + d.offset
        pm.Potential("partial_loglik", risk.loglik(eta))
    idata, used, seconds = run_sampler(model, opts)
    beta_d = posterior_arrays(idata, "beta") if d.p else np.zeros((opts.draws * opts.chains, 0))
    theta_d = posterior_arrays(idata, "theta")
    var = variance_draws(d, theta_d, np.ones(theta_d.shape[0]))[:, :-1]
    var = pd.DataFrame(var, columns=variance_names(d)[:-1])
    names = (["beta"] if d.p else []) + [tl.sd_name for tl in layout.terms]
    names += [tl.corr_name for tl in layout.terms if tl.corr_name is not None]
    diag = diagnostics(idata, names)
    converged = warn_if_unconverged(diag, opts.chains)
    info = run_info(used, opts, seconds, diag, converged, t0, priors=ps, ties=ties)
    effects = random_effect_means(d, layout, idata)
    return PosteriorModelResult("coxme", formula, d.X_names, beta_d, var, effects, idata, diag, info,
                                nobs=d.n, n_dropped=n_dropped)
