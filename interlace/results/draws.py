"""Reading posterior draws out of an InferenceData (backend-free: numpy on arviz's arrays)."""

from __future__ import annotations

import numpy as np

from ..data.design import DesignMatrices

__all__ = ["posterior_arrays", "flat_b"]


def posterior_arrays(idata, name: str) -> np.ndarray:
    """Draws of one posterior variable as (chain·draw, ...)."""
    a = idata.posterior[name].to_numpy()
    return a.reshape((a.shape[0] * a.shape[1],) + a.shape[2:])  # also for 0-length θ (GLS)


def flat_b(design: DesignMatrices, layout, idata) -> np.ndarray:
    """(chains, draws, q) from the ``b_<group>`` variables, in Z's column order."""
    post = idata.posterior
    nc, nd = post.sizes["chain"], post.sizes["draw"]
    out = np.empty((nc, nd, design.q))
    for g, idx in layout.groups.items():
        arr = post[f"b_{g}"].to_numpy()
        col = 0
        for i in idx:
            t = design.terms[i]
            out[..., t.z_start : t.z_start + t.q] = arr[..., col : col + t.k].reshape(nc, nd, t.q)
            col += t.k
    return out
