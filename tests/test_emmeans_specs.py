"""emmeans formula specs, contrast methods and p-value adjustments against R's emmeans:
tests/r/make_emmeans_specs.R wrote tests/data/extra/emmeans_specs.json."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pandas as pd
import pytest

import interlace
from interlace import datasets

REF = json.loads((pathlib.Path(__file__).parent / "data" / "extra" / "emmeans_specs.json").read_text())


@pytest.fixture(scope="module")
def fits():
    ss = datasets.load("sleepstudy")
    phase = np.array(["early", "mid", "late"])[np.minimum(ss["Days"].to_numpy() // 4, 2)]
    ss["phase"] = pd.Categorical(phase, categories=["early", "late", "mid"])
    cb = datasets.load("cbpp")
    wine = datasets.load("wine")
    return {
        "lmm": (interlace.fit("Reaction ~ phase + (1 | Subject)", ss), "phase"),
        "glmm": (interlace.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", cb, "binomial"),
                 "period"),
        "wine": interlace.fit("response ~ temp * contact + (1 | judge)", wine),
    }


def _check(got: pd.DataFrame, want: pd.DataFrame, what: str):
    assert list(got["contrast"]) == list(want["contrast"]), what
    np.testing.assert_allclose(got["estimate"], want["estimate"], rtol=1e-4, err_msg=what)
    np.testing.assert_allclose(got["SE"], want["SE"], rtol=2e-3, err_msg=what)
    np.testing.assert_allclose(got["p_value"], want["p.value"], rtol=2e-3, atol=1e-9, err_msg=what)


@pytest.mark.parametrize("name", ["lmm", "glmm"])
@pytest.mark.parametrize("method", ["pairwise", "revpairwise", "trt.vs.ctrl"])
def test_contrast_methods_and_adjustments_are_emmeans(fits, name, method):
    m, spec = fits[name]
    emm = interlace.emmeans(m, spec)
    _check(interlace.contrast(emm, method=method), pd.DataFrame(REF[name][f"{method}:default"]),
           f"{method} default")
    for adjust in ("sidak", "bonferroni", "none", "holm", "dunnettx"):
        got = interlace.contrast(emm, method=method, adjust=adjust)
        _check(got, pd.DataFrame(REF[name][f"{method}:{adjust}"]), f"{method} {adjust}")
        assert got.attrs["adjust"] == adjust


def test_tukey_on_treatment_contrasts_becomes_sidak(fits):
    m, spec = fits["glmm"]
    with pytest.warns(UserWarning, match="sidak"):
        got = interlace.contrast(interlace.emmeans(m, spec), method="trt.vs.ctrl", adjust="tukey")
    _check(got, pd.DataFrame(REF["glmm"]["trt.vs.ctrl:sidak"]), "tukey -> sidak")


def test_formula_specs(fits):
    m, _ = fits["lmm"]
    emm = interlace.emmeans(m, "pairwise ~ phase")
    want = pd.DataFrame(REF["lmm"]["emmeans"])
    np.testing.assert_allclose(emm.table["emmean"], want["emmean"], rtol=1e-4)
    _check(emm.contrasts, pd.DataFrame(REF["lmm"]["pairwise_formula"]), "pairwise ~ phase")
    assert "$contrasts" in repr(emm)
    np.testing.assert_allclose(interlace.emmeans(m, "~ phase").table["emmean"], want["emmean"], rtol=1e-4)
    assert interlace.emmeans(m, "~ phase").contrasts is None
    w = fits["wine"]
    by = interlace.emmeans(w, "pairwise ~ temp | contact")
    assert by.specs == ["temp"] and by.by == ["contact"]
    want = pd.DataFrame(REF["wine_by"]["emmeans"])
    np.testing.assert_allclose(by.table["emmean"], want["emmean"], rtol=1e-4)
    want = pd.DataFrame(REF["wine_by"]["contrasts"])
    assert list(by.contrasts["contact"]) == list(want["contact"])
    _check(by.contrasts, want, "pairwise ~ temp | contact")
    two = interlace.emmeans(w, "~ temp + contact").table
    want = pd.DataFrame(REF["wine_by"]["two"])
    assert list(two["temp"]) == list(want["temp"]) and list(two["contact"]) == list(want["contact"])
    np.testing.assert_allclose(two["emmean"], want["emmean"], rtol=1e-4)
    pd.testing.assert_frame_equal(interlace.emmeans(w, "~ temp | contact").table,
                                  interlace.emmeans(w, "temp", by="contact").table)


def test_spec_and_method_errors(fits):
    w = fits["wine"]
    with pytest.raises(ValueError, match="either after '\\|'"):
        interlace.emmeans(w, "~ temp | contact", by="contact")
    with pytest.raises(ValueError, match="left side"):
        interlace.emmeans(w, "tukey ~ temp")
    with pytest.raises(KeyError, match="'tmp'"):
        interlace.emmeans(w, "~ tmp")
    with pytest.raises(ValueError, match="must name factors"):
        interlace.emmeans(w, "~ temp |")
    emm = interlace.emmeans(w, "temp")
    with pytest.raises(ValueError, match="method must be one of"):
        interlace.contrast(emm, method="poly")
    with pytest.raises(ValueError, match="adjust must be one of"):
        interlace.contrast(emm, adjust="mvt")


def test_at_sets_grid_values_as_emmeans():
    cb = datasets.load("cbpp")
    g = interlace.glmer("cbind(incidence, size - incidence) ~ period + size + (1 | herd)", cb, "binomial")
    ref = REF["at"]
    np.testing.assert_allclose(g.fe_params, ref["fixef"], rtol=1e-4)
    for got, key in ((interlace.emmeans(g, "period", at={"size": [10, 25]}), "avg"),
                     (interlace.emmeans(g, "~ size | period", at={"size": [10, 25]}), "spec"),
                     (interlace.emmeans(g, "period", at={"period": ["3", "1"]}), "subset")):
        want = pd.DataFrame(ref[key])
        assert list(got.table["period"].astype(str)) == list(want["period"]), key
        np.testing.assert_allclose(got.table["emmean"], want["emmean"], rtol=1e-4, err_msg=key)
        np.testing.assert_allclose(got.table["SE"], want["SE"], rtol=2e-3, err_msg=key)
    _check(interlace.contrast(interlace.emmeans(g, "period", at={"period": ["3", "1", "4"]})),
           pd.DataFrame(ref["subset_pairs"]), "at subset pairs")
    with pytest.raises(ValueError, match="levels \\['9'\\] of 'period'"):
        interlace.emmeans(g, "period", at={"period": ["1", "9"]})
    with pytest.raises(KeyError, match="at= names 'sise'"):
        interlace.emmeans(g, "period", at={"sise": [1]})
    with pytest.raises(ValueError, match="at=\\{'size'"):
        interlace.emmeans(g, "size")
