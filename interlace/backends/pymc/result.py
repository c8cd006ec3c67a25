"""The PyMC fit as the unified result: posterior summaries → FitInfo → :class:`PyMCResult`.

What each attribute means on a posterior is documented in :mod:`interlace.results.posterior`.
"""

from __future__ import annotations

import numpy as np

from ...data.design import DesignMatrices
from ...model.spec import ModelSpec
from ...results.lmm import FitInfo
from ...results.posterior import PyMCResult, _mean_theta, variance_draws
from .model import ModelLayout, marginal_density
from .posterior import posterior_arrays
from .sampling import Diagnostics

__all__ = ["make_result"]


def make_result(
    spec: ModelSpec,
    design: DesignMatrices,
    layout: ModelLayout,
    idata,
    diag: Diagnostics,
    converged: bool,
    sampler_info: dict,
    n_dropped: int = 0,
) -> PyMCResult:
    """Posterior summaries → FitInfo → :class:`PyMCResult`."""
    beta_d = posterior_arrays(idata, "beta")
    sigma_d = posterior_arrays(idata, "sigma").astype(float)
    theta_d = posterior_arrays(idata, "theta")
    beta = beta_d.mean(axis=0)
    cov_beta = np.atleast_2d(np.cov(beta_d, rowvar=False))
    scale = float(np.mean(sigma_d**2))
    theta = _mean_theta(design, theta_d, sigma_d, scale)
    b = np.zeros(design.q)
    for g, idx in layout.groups.items():
        arr = idata.posterior[f"b_{g}"].to_numpy()
        mean = arr.reshape((-1,) + arr.shape[2:]).mean(axis=0)  # levels × effects
        col = 0
        for i in idx:
            t = design.terms[i]
            b[t.z_start : t.z_start + t.q] = mean[:, col : col + t.k].ravel()
            col += t.k
    fitted = design.X @ beta + design.Z @ b + design.offset
    lmm = layout.lmm if layout.lmm is not None else marginal_density(design)
    llf = float(lmm.logp(theta, np.sqrt(scale), beta))
    info = FitInfo(
        theta=theta,
        beta=beta,
        b=b,
        scale=scale,
        llf=llf,
        cov_beta=cov_beta,
        fe_df=np.full(design.p, np.inf),
        fitted=fitted,
        resid=design.y - fitted,
        converged=converged,
        is_singular=False,
        optimizer_info=dict(sampler_info),
    )
    return PyMCResult(
        spec,
        design,
        info,
        n_dropped=n_dropped,
        idata=idata,
        beta_draws=beta_d,
        variance_draws=variance_draws(design, theta_d, sigma_d),
        diagnostics=diag,
        layout=layout,
    )
