"""Links: one class per link, used by glmer, clmm and the PyMC backend."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import interlace


@pytest.mark.parametrize("name", ["logit", "probit", "cloglog", "loglog", "log", "inverse", "identity"])
def test_links_are_consistent(name):
    """Each link's inverse undoes it, dμ/dη is the derivative of the inverse, and where a latent
    distribution exists its F is the inverse link with density f and derivative f'."""
    from interlace.model.families import CUMULATIVE_LINKS, get_link

    link = get_link(name)
    eta = np.linspace(-2.0, 2.0, 9) + (3.0 if name == "inverse" else 0.0)
    np.testing.assert_allclose(link.link(link.inverse(eta)), eta, rtol=1e-8, atol=1e-10)
    h = 1e-6
    numeric = (link.inverse(eta + h) - link.inverse(eta - h)) / (2 * h)
    np.testing.assert_allclose(link.mu_eta(eta), numeric, rtol=1e-5, atol=1e-9)
    if name in CUMULATIVE_LINKS:
        F, f, df = link.cdf_pdf(eta)
        np.testing.assert_allclose(F, link.inverse(eta), rtol=1e-12)
        np.testing.assert_allclose(f, numeric, rtol=1e-5)
        slope = (link.cdf_pdf(eta + h)[1] - link.cdf_pdf(eta - h)[1]) / (2 * h)
        np.testing.assert_allclose(df, slope, rtol=1e-4, atol=1e-9)


def test_unknown_link_is_refused():
    with pytest.raises(ValueError, match="unknown link 'logitt'"):
        interlace.glmer("y ~ x", pd.DataFrame({"y": [0, 1] * 10, "x": range(20), "g": [1, 2] * 10}),
                        "binomial", groups="g", link="logitt")
