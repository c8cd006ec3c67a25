"""``result.residuals(type=...)`` against lme4's ``residuals.merMod``:
tests/r/make_residuals.R wrote tests/data/extra/residuals.json."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest

import interlace
from interlace import datasets

REF = json.loads((pathlib.Path(__file__).parent / "data" / "extra" / "residuals.json").read_text())


@pytest.fixture(scope="module")
def fits():
    cb = datasets.load("cbpp")
    ss = datasets.load("sleepstudy")
    ss["w"] = np.linspace(0.5, 2, len(ss))
    return {
        "binomial": interlace.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", cb,
                                    "binomial"),
        "poisson": interlace.glmer("incidence ~ period + offset(log(size)) + (1 | herd)", cb, "poisson"),
        "lmm_weighted": interlace.fit("Reaction ~ Days + (Days | Subject)", ss, weights="w"),
    }


@pytest.mark.parametrize("name", ["binomial", "poisson"])
def test_glmm_residual_types_are_lme4s(fits, name):
    m, ref = fits[name], REF[name]
    np.testing.assert_allclose(m.fe_params, ref["fixef"], rtol=1e-5)
    np.testing.assert_allclose(m.residuals(), ref["deviance"], rtol=1e-4, atol=1e-6)  # R's default
    for kind in ("deviance", "pearson", "response", "working"):
        np.testing.assert_allclose(m.residuals(type=kind), ref[kind], rtol=1e-4, atol=1e-6, err_msg=kind)
    np.testing.assert_allclose(m.resid, ref["response"], rtol=1e-4, atol=1e-6)  # resid stays y − μ̂
    w = np.ones(m.nobs) if m.design.weights is None else m.design.weights
    dev = m.family.deviance(m.design.y, m.fittedvalues, w)
    assert np.sum(m.residuals() ** 2) == pytest.approx(dev, rel=1e-10)


def test_lmm_residual_types_are_lme4s(fits):
    """lme4's default tolerances leave its residuals ~6e-4 from the optimum (σ̂ ≈ 27)."""
    m, ref = fits["lmm_weighted"], REF["lmm_weighted"]
    np.testing.assert_allclose(m.residuals(), ref["response"], atol=2e-3)
    np.testing.assert_allclose(m.residuals(), m.resid, atol=1e-12)
    np.testing.assert_allclose(m.residuals(type="pearson"), ref["pearson"], atol=2e-3)
    np.testing.assert_allclose(m.residuals(type="pearson", scaled=True), ref["pearson_scaled"], atol=1e-4)
    np.testing.assert_allclose(m.residuals(type="pearson"), np.sqrt(m.design.weights) * m.resid, rtol=1e-12)


def test_residual_type_errors(fits):
    with pytest.raises(ValueError, match="linear mixed model, got 'deviance'"):
        fits["lmm_weighted"].residuals(type="deviance")
    with pytest.raises(ValueError, match="type must be one of .*'working'.*GLMM, got 'raw'"):
        fits["binomial"].residuals(type="raw")
    with pytest.raises(TypeError, match="scaled"):
        fits["poisson"].residuals(scaled="yes")
