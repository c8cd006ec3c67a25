"""After-fit tools against R (emmeans, performance): tests/r/make_after_fit.R made the JSON."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pandas as pd
import pytest
from conftest import FIXTURES

import interlace
from interlace import diagnostics

REF = json.loads((pathlib.Path(__file__).parent / "data" / "after_fit.json").read_text())


def _fit(name, **kw):
    if FIXTURES is None:
        pytest.skip("reference fixtures not found")
    ref = REF[name]
    df = pd.read_csv(FIXTURES / "data" / ref["data"])
    for col, levels in (ref.get("categorical") or {}).items():
        df[col] = pd.Categorical(df[col].astype(str), categories=[str(v) for v in levels])
    return interlace.fit(ref["formula"], df, random=ref["random"], **kw), ref


def _records(x):
    return pd.DataFrame(x)


@pytest.mark.parametrize("name", ["stroop", "wine", "cbpp_lmm"])
def test_emmeans_match_r(name):
    r, ref = _fit(name)
    want = _records(ref["emmeans_satterthwaite"])
    keys = [c for c in want.columns if c not in ("emmean", "SE", "df", "lower.CL", "upper.CL")]
    got = interlace.emmeans(r, keys).table
    assert [tuple(map(str, row)) for row in got[keys].itertuples(index=False)] == [
        tuple(map(str, row)) for row in want[keys].itertuples(index=False)
    ]
    np.testing.assert_allclose(got["emmean"], want["emmean"], rtol=1e-4)
    np.testing.assert_allclose(got["SE"], want["SE"], rtol=1e-4)
    np.testing.assert_allclose(got["df"], want["df"], rtol=1e-3)
    np.testing.assert_allclose(got["lower"], want["lower.CL"], rtol=1e-4)


@pytest.mark.parametrize(
    "name, key, adjust",
    [
        ("stroop", "pairs_satterthwaite", "tukey"),
        ("wine", "pairs_tukey", "tukey"),
        ("wine", "pairs_holm", "holm"),
        ("cbpp_lmm", "pairs_tukey", "tukey"),
        ("cbpp_lmm", "pairs_bonferroni", "bonferroni"),
    ],
)
def test_pairwise_contrasts_match_r(name, key, adjust):
    r, ref = _fit(name)
    want = _records(ref[key])
    specs = [
        c
        for c in _records(ref["emmeans_satterthwaite"]).columns
        if c not in ("emmean", "SE", "df", "lower.CL", "upper.CL")
    ]
    got = interlace.contrast(interlace.emmeans(r, specs), adjust=adjust)
    assert list(got["contrast"]) == list(want["contrast"])
    np.testing.assert_allclose(got["estimate"], want["estimate"], rtol=1e-4, atol=1e-8)
    np.testing.assert_allclose(got["SE"], want["SE"], rtol=1e-4)
    np.testing.assert_allclose(got["df"], want["df"], rtol=1e-3)
    np.testing.assert_allclose(got["t_ratio"], want["t.ratio"], rtol=1e-4)
    np.testing.assert_allclose(got["p_value"], want["p.value"], rtol=1e-3, atol=1e-10)


def test_emmeans_by_and_kenward_roger():
    r, ref = _fit("wine")
    by = interlace.emmeans(r, "temp", by="contact")
    want = _records(ref["emmeans_by"])
    np.testing.assert_allclose(by.table["emmean"], want["emmean"], rtol=1e-4)
    pairs = interlace.contrast(by, adjust="bonferroni")
    want_p = _records(ref["pairs_by_bonferroni"])
    assert list(pairs["contact"]) == list(want_p["contact"])
    np.testing.assert_allclose(pairs["p_value"], want_p["p.value"], rtol=1e-3)
    kr, _ = _fit("wine", df_method="kenward-roger")
    got = interlace.emmeans(kr, ["temp", "contact"]).table
    want_kr = _records(ref["emmeans_kenward_roger"])
    np.testing.assert_allclose(got["SE"], want_kr["SE"], rtol=1e-4)
    np.testing.assert_allclose(got["df"], want_kr["df"], rtol=1e-3)


@pytest.mark.parametrize("name", ["stroop", "wine", "cbpp_lmm", "sleepstudy"])
def test_r2_and_icc_match_performance(name):
    r, ref = _fit(name)
    got_r2, got_icc = diagnostics.r2(r), diagnostics.icc(r)
    assert got_r2["conditional"] == pytest.approx(ref["r2"]["R2_conditional.Conditional R2"], rel=1e-4)
    assert got_r2["marginal"] == pytest.approx(ref["r2"]["R2_marginal.Marginal R2"], rel=1e-3)
    assert got_icc["adjusted"] == pytest.approx(ref["icc"]["ICC_adjusted"], rel=1e-4)
    assert got_icc["unadjusted"] == pytest.approx(ref["icc"]["ICC_unadjusted"], rel=1e-4)


def test_emmeans_errors():
    r, _ = _fit("wine")
    with pytest.raises(KeyError, match="nope"):
        interlace.emmeans(r, "nope")
    with pytest.raises(ValueError, match="adjust"):
        interlace.contrast(interlace.emmeans(r, "temp"), adjust="scheffe")
