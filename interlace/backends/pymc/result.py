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
    fitted = design.X @ beta + design.Z @ b + design.offset if design.gram is None else None
    lmm = layout.lmm if layout.lmm is not None else marginal_density(design)
    var_d = variance_draws(design, theta_d, sigma_d)
    corr_params = {}
    if layout.corr_param is not None:  # the correlation parameter sits before σ (variance_names)
        rho_d = posterior_arrays(idata, layout.corr_param).astype(float)
        corr_params[layout.corr_param] = float(rho_d.mean())
        var_d = np.column_stack([var_d[:, :-1], rho_d, var_d[:, -1]])
        llf = float(lmm.logp(theta, np.sqrt(scale), beta, corr_params[layout.corr_param]))
    else:
        llf = float(lmm.logp(theta, np.sqrt(scale), beta)) + 0.5 * sampler_info.get("sum_log_w", 0.0)
    info = FitInfo(
        theta=theta,
        beta=beta,
        b=b,
        scale=scale,
        llf=llf,
        cov_beta=cov_beta,
        fe_df=np.full(design.p, np.inf),
        fitted=fitted,
        resid=None if fitted is None else design.y - fitted,
        converged=converged,
        is_singular=False,
        optimizer_info=dict(sampler_info),
        correlation_params=corr_params,
    )
    return PyMCResult(
        spec,
        design,
        info,
        n_dropped=n_dropped,
        idata=idata,
        beta_draws=beta_d,
        variance_draws=var_d,
        diagnostics=diag,
        layout=layout,
    )
