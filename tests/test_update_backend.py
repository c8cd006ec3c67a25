"""update(backend=...) drops the stored arguments that configure only the other backend."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import interlace
from interlace import datasets

pytest.importorskip("pymc")
pytestmark = pytest.mark.slow  # PyMC sampling: outside the fast lane

SAMPLER = {"draws": 30, "tune": 30, "chains": 1, "random_seed": 1, "progressbar": False}


def _quiet(f, *args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return f(*args, **kw)


def test_pymc_fit_updated_to_reml_equals_the_reml_fit():
    ss = datasets.load("sleepstudy")
    b = _quiet(interlace.fit, "Reaction ~ Days + (1 | Subject)", ss, backend="pymc", **SAMPLER)
    r = b.update(backend="reml")
    ref = interlace.fit("Reaction ~ Days + (1 | Subject)", ss)
    assert r.backend == "reml" and r.call["draws"] == 1000  # the sampler's arguments back at defaults
    np.testing.assert_allclose(r.fe_params, ref.fe_params, rtol=1e-8)
    assert r.llf == pytest.approx(ref.llf, rel=1e-10)
    # an argument written in the update call itself is still refused when meaningless
    with pytest.raises(ValueError, match="draws=10 configures the PyMC sampler"):
        b.update(backend="reml", draws=10)


def test_reml_fit_updated_to_pymc_drops_the_optimiser_arguments():
    ss = datasets.load("sleepstudy")
    m = interlace.fit("Reaction ~ Days + (1 | Subject)", ss, method="ML", optimizer="bobyqa")
    b = _quiet(m.update, backend="pymc", **SAMPLER)
    assert b.backend == "pymc" and b.call["method"] == "REML" and b.call["optimizer"] == "lbfgsb"
    assert len(b.fe_draws) == 30
    with pytest.raises(ValueError, match="optimizer='bobyqa' has no meaning for backend='pymc'"):
        m.update(backend="pymc", optimizer="bobyqa", **SAMPLER)
