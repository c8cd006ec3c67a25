"""emmeans/contrast with model offsets against R's emmeans (the grid holds the offset at its mean):
tests/r/make_emmeans_offset.R wrote tests/data/extra/emmeans_offset.json."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pandas as pd
import pytest

import interlace
from interlace import datasets

REF = json.loads((pathlib.Path(__file__).parent / "data" / "extra" / "emmeans_offset.json").read_text())
RTOL = 1e-4


@pytest.fixture(scope="module")
def fits():
    wine = datasets.load("wine")
    wine["off"] = np.linspace(0, 10, len(wine))
    cb = datasets.load("cbpp")
    cb["logsize"] = np.log(cb["size"])
    return {
        "lmm_arg": (interlace.fit("response ~ temp + contact + (1|judge)", wine, offset="off"), "temp"),
        "lmm_formula": (interlace.fit("response ~ temp + contact + offset(log(off + 1)) + (1|judge)", wine),
                        "temp"),
        "pois_formula": (interlace.glmer("incidence ~ period + offset(log(size)) + (1|herd)", cb, "poisson"),
                         "period"),
        "pois_arg": (interlace.glmer("incidence ~ period + (1|herd)", cb, "poisson", offset="logsize"),
                     "period"),
    }


def _ref(name, key):
    return pd.DataFrame(REF[name][key])


@pytest.mark.parametrize("name", ["lmm_arg", "lmm_formula", "pois_formula", "pois_arg"])
def test_link_scale_emmeans_include_the_mean_offset(fits, name):
    m, spec = fits[name]
    np.testing.assert_allclose(m.fe_params, REF[name]["fixef"], rtol=1e-5)
    got, want = interlace.emmeans(m, spec).table, _ref(name, "link")
    assert list(got[spec].astype(str)) == list(want[spec])
    np.testing.assert_allclose(got["emmean"], want["emmean"], rtol=RTOL)
    np.testing.assert_allclose(got["SE"], want["SE"], rtol=2e-3)
    low = "asymp.LCL" if name.startswith("pois") else "lower.CL"
    np.testing.assert_allclose(got["lower"], want[low], rtol=2e-3)
    if name.startswith("lmm"):
        np.testing.assert_allclose(got["df"], want["df"], rtol=2e-3)
    # the offset cancels in differences
    c, w = interlace.contrast(interlace.emmeans(m, spec)), _ref(name, "pairs_link")
    np.testing.assert_allclose(c["estimate"], w["estimate"], rtol=RTOL)
    np.testing.assert_allclose(c["SE"], w["SE"], rtol=2e-3)


def test_lmm_offset_is_mean_of_the_fitted_offset_not_offset_of_the_mean(fits):
    m, _ = fits["lmm_formula"]
    assert REF["lmm_formula"]["offset"] == pytest.approx(np.mean(np.log(np.linspace(0, 10, 72) + 1)))
    got = interlace.emmeans(m, "temp").table["emmean"]
    np.testing.assert_allclose(got, _ref("lmm_formula", "link")["emmean"], rtol=RTOL)


@pytest.mark.parametrize("name", ["pois_formula", "pois_arg"])
def test_poisson_rates_and_regrid_include_the_offset(fits, name):
    m, spec = fits[name]
    resp, want = interlace.emmeans(m, spec, type="response").table, _ref(name, "response")
    np.testing.assert_allclose(resp["rate"], want["rate"], rtol=RTOL)  # R: 2.434, 1.046, 0.926, 0.606
    np.testing.assert_allclose(resp["SE"], want["SE"], rtol=2e-3)
    np.testing.assert_allclose(resp["upper"], want["asymp.UCL"], rtol=2e-3)
    ratios, w = interlace.contrast(interlace.emmeans(m, spec, type="response")), _ref(name, "pairs_response")
    np.testing.assert_allclose(ratios["ratio"], w["ratio"], rtol=RTOL)
    emm = interlace.emmeans(m, spec).regrid()
    np.testing.assert_allclose(emm.table["rate"], _ref(name, "regrid")["rate"], rtol=RTOL)
    np.testing.assert_allclose(emm.table["SE"], _ref(name, "regrid")["SE"], rtol=2e-3)
    diffs, w = interlace.contrast(emm), _ref(name, "pairs_regrid")
    np.testing.assert_allclose(diffs["estimate"], w["estimate"], rtol=RTOL)
    np.testing.assert_allclose(diffs["SE"], w["SE"], rtol=2e-3)
    np.testing.assert_allclose(diffs["p_value"], w["p.value"], rtol=1e-3)


@pytest.mark.slow
def test_posterior_emmeans_include_the_offset_and_say_what_they_are():
    pytest.importorskip("pymc")
    cb = datasets.load("cbpp")
    b = interlace.glmer("incidence ~ period + offset(log(size)) + (1|herd)", cb, "poisson", backend="pymc",
                        draws=300, tune=300, chains=2, random_seed=3, progressbar=False)
    emm = interlace.emmeans(b, "period", type="response")
    off = np.mean(np.log(cb["size"]))
    np.testing.assert_allclose(emm.table["rate"], np.exp(b.fe_draws.to_numpy() @ emm.L.T + off).mean(axis=0),
                               rtol=1e-10)
    want = _ref("pois_formula", "response")
    assert np.all(np.abs(emm.table["rate"] - want["rate"]) < 2 * want["SE"])
    text = repr(emm)
    assert "delta-method" not in text and "posterior" in text.lower()
    reg = interlace.emmeans(b, "period").regrid()
    np.testing.assert_allclose(reg.table["rate"], emm.table["rate"], rtol=1e-10)
    diffs = interlace.contrast(reg)  # differences of rates per draw
    rate = emm.table["rate"]
    np.testing.assert_allclose(diffs["estimate"].iloc[0], rate.iloc[0] - rate.iloc[1], rtol=1e-10)
