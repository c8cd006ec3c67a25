"""lme4's small verbs and partial ``re_form`` predictions (issue 21, items 3-4).

References from tests/r/make_verbs.R: an unbalanced crossed subject × item design with a two- and
a three-level factor and random slopes (``(1 + x | subj) + (1 + A | item)``), an intercepts-only
model and a binomial GLMM. lme4 1.1-31's own ``predict(re.form = ~(1 + x | subj))`` fails on the
slopes model (a factor slope in the other term); the JSON's partial predictions are computed by
hand in R (Xβ + the kept terms' Zb) and agree with lme4's predict wherever it answers.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pandas as pd
import pytest

import interlace
from interlace.results.verbs import VarCorr

HERE = pathlib.Path(__file__).parent / "data" / "verbs"
REF = json.loads((HERE / "verbs.json").read_text())
LMMS = ["slopes", "intercepts"]


def _r_name(name: str) -> str:
    """interlace's ``A[T.a2]`` → R's ``Aa2``."""
    return name.replace("[T.", "").replace("]", "")


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    d = pd.read_csv(HERE / "crossed.csv")
    d["yb"] = (d["y"] > d["y"].median()).astype(int)
    return d


@pytest.fixture(scope="module")
def newdata() -> pd.DataFrame:
    return pd.read_csv(HERE / "newdata.csv")


_FITS: dict = {}


def _fit(name: str, data: pd.DataFrame):
    if name not in _FITS:
        ref = REF[name]
        _FITS[name] = (interlace.glmer(ref["formula"], data, "binomial") if name == "glmm"
                       else interlace.fit(ref["formula"], data))
    return _FITS[name]


def _r_frame(ref: dict) -> pd.DataFrame:
    return pd.DataFrame({c: ref["values"][c] for c in ref["columns"]}, index=ref["levels"])


@pytest.mark.parametrize("name", [*LMMS, "glmm"])
def test_coef_and_fixef(name, data):
    m, ref = _fit(name, data), REF[name]
    assert [_r_name(c) for c in m.fixef().index] == list(ref["fixef"])
    np.testing.assert_allclose(m.fixef().to_numpy(), list(ref["fixef"].values()), atol=1e-4)
    coef = m.coef()
    assert list(coef) == list(ref["coef"])
    for g, frame in coef.items():
        want = _r_frame(ref["coef"][g])
        assert [_r_name(c) for c in frame.columns] == list(want.columns)
        assert [str(v) for v in frame.index] == list(want.index)
        np.testing.assert_allclose(frame.to_numpy(), want.to_numpy(), atol=1e-4)


@pytest.mark.parametrize("name", LMMS)
def test_ranef_condvar(name, data):
    m, ref = _fit(name, data), REF[name]
    re_ = m.ranef(condVar=True)
    for g, frame in re_.items():
        np.testing.assert_allclose(frame.to_numpy(), _r_frame(ref["ranef"][g]).to_numpy(), atol=1e-4)
        pv = ref["postvar"][g]  # R's k × k × m array, column-major
        want = np.asarray(pv["values"]).reshape(pv["dim"][::-1]).transpose(0, 2, 1)
        got = frame.attrs["condVar"]
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=2e-3, atol=1e-7)
    assert "condVar" not in m.ranef()[next(iter(re_))].attrs


@pytest.mark.parametrize("name", [*LMMS, "glmm"])
def test_varcorr(name, data):
    m, ref = _fit(name, data), REF[name]
    vc = m.VarCorr()
    assert isinstance(vc, VarCorr)
    frame = vc.to_frame()
    assert list(frame.columns) == ["grp", "var1", "var2", "vcov", "sdcor"]
    assert list(frame["grp"]) == ref["varcorr"]["grp"]
    np.testing.assert_allclose(frame["vcov"], ref["varcorr"]["vcov"], rtol=2e-3)
    np.testing.assert_allclose(frame["sdcor"], ref["varcorr"]["sdcor"], rtol=2e-3)
    if "var1" in ref["varcorr"]:
        for col in ("var1", "var2"):
            got = [None if v is None or v != v else _r_name(v) for v in frame[col]]
            assert got == ref["varcorr"][col]
    if name == "intercepts":  # lme4's layout, character for character
        assert str(vc).splitlines() == ref["varcorr_print"]
    if name == "slopes":  # same layout; digits may differ in the last place
        mine = [s.split() for s in str(vc).splitlines()]
        want = [s.split() for s in ref["varcorr_print"]]
        assert mine[0] == want[0] and [len(r) for r in mine] == [len(r) for r in want]
        for got_row, want_row in zip(mine[1:], want[1:], strict=True):
            for a, b in zip(got_row, want_row, strict=True):
                if b[0].isdigit():
                    assert float(a) == pytest.approx(float(b), rel=2e-3)
                else:
                    assert _r_name(a) == b
        assert vc["subj"].shape == (2, 2)


def test_remlcrit_and_aliases(data):
    m, ref = _fit("slopes", data), REF["slopes"]
    assert m.REMLcrit() == pytest.approx(ref["remlcrit"], rel=1e-6)
    ml = m.update(method="ML")
    assert ml.deviance == pytest.approx(ref["deviance_ml"], rel=1e-6)
    with pytest.raises(ValueError, match="REML"):
        ml.REMLcrit()
    with pytest.raises(ValueError, match="REML"):
        _fit("glmm", data).REMLcrit()
    pd.testing.assert_series_equal(m.params, m.fe_params)
    pd.testing.assert_series_equal(m.bse, m.fe_bse)
    pd.testing.assert_series_equal(m.pvalues, m.fe_pvalues)
    np.testing.assert_allclose(m.tvalues, m.fe_tvalues)
    pd.testing.assert_frame_equal(m.conf_int(0.1), m.fe_conf_int(level=0.9))
    with pytest.raises(ValueError, match="alpha"):
        m.conf_int(95)


@pytest.mark.parametrize("name", LMMS)
def test_predict_re_form(name, data, newdata):
    m, ref = _fit(name, data), REF[name]
    for key, p in ref["predictions"].items():
        re_form = {"all": None, "none": np.nan}.get(key, "~" + key)
        np.testing.assert_allclose(m.predict(newdata, re_form=re_form), p["values"], atol=1e-4, err_msg=key)
    if name == "slopes":  # the case lme4 1.1-31 itself cannot predict
        assert ref["predictions"]["(1 + x | subj)"]["lme4_error"]
    none = ref["predictions"]["none"]["values"]
    for spelling in ("~0", "NA", pd.NA, float("nan")):
        np.testing.assert_allclose(m.predict(newdata, re_form=spelling), none, atol=1e-4)
    np.testing.assert_allclose(m.predict(newdata, include_re=False), none, atol=1e-4)
    np.testing.assert_allclose(m.predict(newdata), ref["predictions"]["all"]["values"], atol=1e-4)


def test_predict_re_form_fitted_rows_and_columns(data):
    m = _fit("slopes", data)
    fitted_rows = data.drop(columns=["y"])
    for rf in ("~(1 + x | subj)", "~(1 + A | item)", "~(1 + A | item) + (1 + x | subj)", "~0"):
        np.testing.assert_allclose(m.predict(re_form=rf), m.predict(fitted_rows, re_form=rf), atol=1e-10)
    both = m.predict(re_form="~(1 + A | item) + (1 + x | subj)")
    np.testing.assert_allclose(both, m.fittedvalues, atol=1e-10)
    # only the kept terms' columns are needed: no item column for ~(1 + x | subj)
    nd = data.drop(columns=["item"]).head(5)
    assert np.isfinite(m.predict(nd, re_form="~(1 + x | subj)")).all()
    with pytest.raises(KeyError, match="item"):
        m.predict(nd)


def test_predict_re_form_errors(data, newdata):
    m = _fit("slopes", data)
    with pytest.raises(ValueError, match=r"\(1 \| item\)"):
        m.predict(newdata, re_form="~(1 | item)")  # the fitted term is (1 + A | item)
    with pytest.raises(ValueError, match="not both"):
        m.predict(newdata, re_form="~(1 + A | item)", include_re=False)
    with pytest.raises(ValueError, match="one-sided"):
        m.predict(newdata, re_form="(1 + A | item)")
    with pytest.raises(ValueError, match="fixed terms"):
        m.predict(newdata, re_form="~x + (1 + A | item)")
    with pytest.raises(TypeError, match="re_form"):
        m.predict(newdata, re_form=3)


def test_glmm_predict_re_form(data, newdata):
    g, ref = _fit("glmm", data), REF["glmm"]["predictions"]
    np.testing.assert_allclose(g.predict(newdata, type="link"), ref["all"], atol=1e-4)
    np.testing.assert_allclose(g.predict(newdata, type="link", re_form=np.nan), ref["none"], atol=1e-4)
    item_only = g.predict(newdata, type="link", re_form="~(1 | item)")
    np.testing.assert_allclose(item_only, ref["(1 | item)"], atol=1e-4)
    np.testing.assert_allclose(g.predict(newdata, re_form="~(1|subj)"), ref["(1 | subj) response"], atol=1e-4)


def test_update(data):
    m = _fit("slopes", data)
    m2 = m.update(". ~ . - A:B")
    assert list(m2.fe_params.index) == ["(Intercept)", "A[T.a2]", "B[T.b2]", "B[T.b3]", "x"]
    assert [t.source for t in m2.spec.random] == [t.source for t in m.spec.random]
    m3 = m.update(". ~ . - (1 + A | item) + (1 | item)")
    assert [t.source for t in m3.spec.random] == ["(1 + x | subj)", "(1 | item)"]
    ref = _fit("intercepts", data)
    m4 = m.update("y ~ A + B + x + (1 | subj) + (1 | item)")
    assert m4.llf == pytest.approx(ref.llf, rel=1e-8)
    m5 = ref.update("y ~ A + B")  # random terms kept when the new formula writes none
    assert [t.source for t in m5.spec.random] == ["(1 | subj)", "(1 | item)"]
    half = data.iloc[: len(data) // 2]
    assert m.update(data=half).nobs == len(half)
    assert m.update(data=half).spec.formula == m.spec.formula
    g = _fit("glmm", data).update(". ~ . - x")
    assert list(g.fe_params.index) == ["(Intercept)", "A[T.a2]"] and hasattr(g, "family")
    with pytest.raises(TypeError, match="foo"):
        m.update(foo=1)
    with pytest.raises(ValueError, match="removes"):
        m.update(". ~ . - (1 | zz)")
    assert len(data.columns) == 7  # the caller's frame untouched


@pytest.mark.parametrize("key, method", [("print_reml", "REML"), ("print_ml", "ML")])
def test_summary_and_print_read_as_r(key, method, data):
    """lmerTest's summary and lme4's print, line for line from the criterion on (R's header,
    ``Data:`` and ``Control:`` lines name R objects and are not compared)."""
    ref = REF[key]
    m = interlace.fit(ref["formula"], data, method=method)

    def body(lines):
        start = next(i for i, s in enumerate(lines)
                     if s.startswith("REML crit") or s.strip().startswith("AIC"))
        return [s.replace("‘", "'").replace("’", "'") for s in lines[start:]]

    assert body(str(m.summary()).splitlines()) == body(ref["summary"])
    assert body(str(m).splitlines()) == body(ref["print"])
    assert str(m).startswith("Linear mixed model fit by") and repr(m).startswith("<CrossedLMEResult")


def test_summary_correlation_suppressed_past_12(data):
    d = data.assign(k=[f"k{i % 13}" for i in range(len(data))])
    m = interlace.fit("y ~ k + (1 | subj)", d)
    text = str(m.summary())
    assert "Correlation matrix not shown by default, as p = 13 > 12." in text
    assert "Correlation of Fixed Effects" in str(_fit("slopes", data).summary())


def test_r_format_helpers():
    from interlace.results.rformat import abbreviate, format_pvalues

    assert abbreviate("(Intercept)", 6) == "(Intr)" and abbreviate("Aa2:Bb2", 6) == "A2:Bb2"
    assert format_pvalues([0.63121, 0.035, 0.00508]) == ["0.63121", "0.03500", "0.00508"]
    assert format_pvalues([3.26e-6, 1e-300]) == ["3.26e-06", "< 2e-16"]
