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
import re

import numpy as np
import pandas as pd
import pytest

import interlace
from interlace import datasets
from interlace.results.verbs import VarCorr

HERE = pathlib.Path(__file__).parent / "data" / "verbs"
REF = json.loads((HERE / "verbs.json").read_text())
PRINTS = json.loads((HERE / "varcorr_print.json").read_text())
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
    both = vc.format(comp=("Variance", "Std.Dev."))
    if name == "intercepts":  # lme4's layout, character for character
        assert both.splitlines() == ref["varcorr_print"]
        # print(VarCorr(m)) and print(VarCorr(m), comp = "Variance") (tests/r/make_varcorr_print.R)
        assert str(vc).splitlines() == PRINTS["intercepts"]["default"]
        assert vc.format(comp="Variance").splitlines() == PRINTS["intercepts"]["variance"]
    if name == "slopes":  # same layout; digits may differ in the last place
        assert str(vc).splitlines()[0].split() == ["Groups", "Name", "Std.Dev.", "Corr"]
        mine = [s.split() for s in both.splitlines()]
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
    # include_re=False is re_form=NA: any other re_form given with it, None included, is refused
    for rf in ("~(1 + A | item)", None):
        msg = "include_re=False .*conflicts with re_form=" + re.escape(repr(rf))
        with pytest.raises(ValueError, match=msg):
            m.predict(newdata, re_form=rf, include_re=False)
        with pytest.raises(ValueError, match="conflicts"):
            m.predict(re_form=rf, include_re=False)
    np.testing.assert_allclose(m.predict(newdata, re_form="~0", include_re=False),
                               m.predict(newdata, include_re=False), atol=1e-12)
    np.testing.assert_allclose(m.predict(newdata, re_form=None), m.predict(newdata), atol=1e-12)
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
    np.testing.assert_allclose(g.predict(newdata, type="link", include_re=False), ref["none"], atol=1e-4)
    with pytest.raises(ValueError, match="conflicts with re_form=None"):
        g.predict(newdata, re_form=None, include_re=False)


def test_update(data):
    m = _fit("slopes", data)
    m2 = m.update(". ~ . - A:B")
    assert list(m2.fe_params.index) == ["(Intercept)", "A[T.a2]", "B[T.b2]", "B[T.b3]", "x"]
    assert m2.spec.full_formula == "y ~ A + B + x + (1 + x | subj) + (1 + A | item)"  # as R's update
    assert m.update(". ~ . - x").spec.fixed == "y ~ A + B + A:B"
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


@pytest.mark.parametrize("key, method", [("print_reml", "REML"), ("print_ml", "ML"), ("print_glmm", None)])
def test_summary_and_print_read_as_r(key, method, data):
    """lmerTest's summary and lme4's print (glmer's for the GLMM), line for line from the
    criterion on, and the ``Data:`` line naming the frame as the caller wrote it (R's header and
    ``Control:`` line name R classes and objects and are not compared)."""
    ref = REF[key]
    d = data.copy()  # R's script names its frame d
    m = (interlace.fit(ref["formula"], d, method=method) if method
         else interlace.glmer(ref["formula"], d, "binomial"))

    def body(lines):
        start = next(i for i, s in enumerate(lines)
                     if s.startswith("REML crit") or s.strip().startswith("AIC"))
        return [s.replace("‘", "'").replace("’", "'") for s in lines[start:]]

    for mine, theirs in ((str(m.summary()), ref["summary"]), (str(m), ref["print"])):
        assert body(mine.splitlines()) == body(theirs)
        data_line = next(s for s in theirs if s.lstrip().startswith("Data:"))
        assert data_line in mine.splitlines()
    kind = "Linear" if method else "Generalized linear"
    assert str(m).startswith(f"{kind} mixed model fit by") and repr(m).startswith("<")


def test_data_line_names_the_frame(data):
    frame = data.copy()
    m = interlace.fit("y ~ x + (1 | subj)", frame)
    assert "   Data: frame" in str(m.summary()).splitlines()
    assert "   Data: frame" in str(m).splitlines()
    assert "   Data: frame" in str(m.update(". ~ . + A").summary())       # kept by update
    half = frame.head(100)
    assert "   Data: half" in str(m.update(data=half).summary())          # the new frame's name
    unnamed = interlace.fit("y ~ x + (1 | subj)", data.head(50))
    assert "   Data: <pandas.DataFrame: 50 rows, 7 columns>" in str(unnamed.summary())


def test_summary_correlation_suppressed_past_12(data):
    d = data.assign(k=[f"k{i % 13}" for i in range(len(data))])
    m = interlace.fit("y ~ k + (1 | subj)", d)
    text = str(m.summary())
    assert "Correlation matrix not shown by default, as p = 13 > 12." in text
    assert "Correlation of Fixed Effects" in str(_fit("slopes", data).summary())


def test_r_format_helpers():
    from interlace.results.rformat import abbreviate, format_fixed, format_pvalues

    # R 4.2's format(x, digits = 4): scientific when fixed notation would be wider
    assert format_fixed([2.239e-20, 0.5], 4) == ["2.239e-20", "5.000e-01"]
    assert format_fixed([0.0, 1.2e-10], 4) == ["0.0e+00", "1.2e-10"]
    assert format_fixed([612.09, 35.07, 654.94], 4) == ["612.09", " 35.07", "654.94"]

    assert abbreviate("(Intercept)", 6) == "(Intr)" and abbreviate("Aa2:Bb2", 6) == "A2:Bb2"
    assert format_pvalues([0.63121, 0.035, 0.00508]) == ["0.63121", "0.03500", "0.00508"]
    assert format_pvalues([3.26e-6, 1e-300]) == ["3.26e-06", "< 2e-16"]
    # R 4.2: format.pval(c(0.001068, 0.000474, 0.000182, 1.47e-9), digits = 3) and friends
    assert format_pvalues([0.001068, 0.000474, 0.000182, 1.47e-9]) == ["0.001068", "0.000474", "0.000182",
                                                                        "1.47e-09"]
    assert format_pvalues([0.00012345, 0.0000012]) == ["0.000123", "1.2e-06"]
    assert format_pvalues([0.5, 1e-300]) == ["0.5", "<2e-16"]
    assert format_pvalues([0.0010677, 0.0004745, 0.0001818, 1.468e-9], 4) == [
        "0.0010677", "0.0004745", "0.0001818", "1.468e-09"]


def test_one_interval_spelling(data):
    """Every interval interlace reports has the columns lower and upper, whatever the level."""
    m, g = _fit("intercepts", data), _fit("glmm", data)
    tables = {
        "fe_conf_int": m.fe_conf_int(0.9), "conf_int": m.conf_int(0.1), "glmm fe_conf_int": g.fe_conf_int(),
        "confint wald": m.confint("wald", level=0.8),
        "bootstrap ci": interlace.bootstrap(m, nsim=3, seed=1, progressbar=False).ci(0.5),
        "emmeans": interlace.emmeans(m, "B").table,
        "contest": m.test([0, 0, 1, -1, 0]),
    }
    for what, table in tables.items():
        assert {"lower", "upper"} <= set(table.columns), what
        assert not any("%" in str(c) or "CL" in str(c) for c in table.columns), what
    stats = set(interlace.compare(m).columns.get_level_values("statistic"))
    assert stats == {"estimate", "se", "lower", "upper", "interval"}  # interval: its kind
    wald = m.confint("wald")
    np.testing.assert_allclose(wald.loc[m.fe_params.index, "lower"],
                               m.fe_params - 1.959963984540054 * m.fe_bse, rtol=1e-12)


def test_update_simplifies_as_r():
    """R 4.2's update(f, . ~ .) (terms.formula with simplify = TRUE) for each case."""
    from interlace.results.verbs import _simplified

    cases = {
        "y ~ B:A + A": "y ~ A + B:A",
        "y ~ (a + b + c)^2": "y ~ a + b + c + a:b + a:c + b:c",
        "y ~ a/b": "y ~ a + a:b",
        "y ~ (x - 1) + 1": "y ~ x",
        "y ~ (A * B + x) - B": "y ~ A + x + A:B",
        "y ~ 0 + x": "y ~ x - 1",
        "Reaction ~ (Days) - Days": "Reaction ~ 1",
        "y ~ poly(x, 2) * A": "y ~ poly(x, 2) + A + poly(x, 2):A",
    }
    for given, want in cases.items():
        assert _simplified(given) == want, given


REPORTS = json.loads((HERE / "reports.json").read_text())


def _body(lines):
    start = next(i for i, s in enumerate(lines) if s.startswith("REML crit") or s.strip().startswith("AIC"))
    return [s.replace("‘", "'").replace("’", "'") for s in lines[start:]]


@pytest.mark.parametrize("key", ["orthodont_ml", "sleepstudy_weighted"])
def test_reports_on_datasets_read_as_r(key):
    """lmerTest's summary and lme4's print, line for line: R's rounding of the residual quantiles
    (zapsmall to 5 − log10(max) decimals), a weighted fit, an ML fit, p-values < 2e-16."""
    ref = REPORTS[key]
    frame = datasets.load(ref["data"])
    kw = {"method": "ML"} if key == "orthodont_ml" else {"weights": np.tile([1.0, 2.0], 90)}
    m = interlace.fit(ref["formula"], frame, **kw)
    assert _body(str(m.summary()).splitlines()) == _body(ref["summary"])
    assert _body(str(m).splitlines()) == _body(ref["print"])
    assert "   Data: frame" in str(m.summary()).splitlines()


def test_summary_ddf_reads_as_lmertest():
    """lmerTest's summary(m, ddf = "Kenward-Roger") of a Satterthwaite fit: KR's df and adjusted SEs."""
    ref = REPORTS["orthodont_kr"]
    m = interlace.fit(ref["formula"], datasets.load("orthodont"))
    text = str(m.summary(ddf="Kenward-Roger"))
    assert text.startswith("Linear mixed model fit by REML. t-tests use Kenward-Roger's method")
    mine, want = _body(text.splitlines()), _body(ref["summary"])
    a, b = mine.index("Random effects:"), want.index("Random effects:")
    assert mine[:a] == want[:b] and mine[a + 5 :] == want[b + 5 :]  # criterion, residuals, fixed effects
    for got_row, want_row in zip(mine[a : a + 5], want[b : b + 5], strict=True):  # variances: last digit
        for x, y in zip(got_row.split(), want_row.split(), strict=True):
            assert x == y or float(x) == pytest.approx(float(y), rel=1e-4)
    assert "Satterthwaite's method" in str(m.summary())
    assert str(m.summary(ddf="satterthwaite")) == str(m.summary())
    with pytest.raises(ValueError, match="ddf must be"):
        m.summary(ddf="lme4")
    with pytest.raises(ValueError, match="REML"):
        interlace.fit(ref["formula"], datasets.load("orthodont"), method="ML").summary(ddf="Kenward-Roger")


def test_gamma_glmm_report_reads_as_r():
    """glmer's Gamma report: residual quantiles, 't value' with a dispersion, p from z. (The
    variance rows differ on purpose: lme4 1.1-31 prints θσ-scaled variances, see glmer.md.)"""
    ref = REPORTS["sleepstudy_gamma"]
    g = interlace.glmer(ref["formula"], datasets.load("sleepstudy"), "Gamma", link="log")
    mine, want = _body(str(g.summary()).splitlines()), _body(ref["summary"])
    assert mine[:7] == want[:7]  # AIC table and scaled residuals
    fe = want.index("Fixed effects:")
    assert mine[mine.index("Fixed effects:") + 1] == want[fe + 1]  # Estimate Std. Error t value Pr(>|z|)
    for got_row, want_row in zip(mine[fe + 2 : fe + 4], want[fe + 2 : fe + 4], strict=True):
        a, b = got_row.split(), want_row.split()
        assert a[0] == b[0] and a[-2:] == b[-2:]
        np.testing.assert_allclose([float(x) for x in a[1:4]], [float(x) for x in b[1:4]], rtol=2e-3)


RE_FORM = json.loads((HERE / "re_form.json").read_text())


RE_FORM_IDS = [f"{c['model'][:12]}{c['re_form']}" for c in RE_FORM["cases"]]


@pytest.mark.parametrize("case", RE_FORM["cases"], ids=RE_FORM_IDS)
def test_predict_re_form_other_structures(case):
    """A double-bar term, a nested term, a three-level factor slope (where lme4's own predict
    fails: its reference is Xβ + the item intercepts, computed in R by hand)."""
    if case["newdata"] == "anova":
        data = pd.read_csv(HERE.parent / "anova" / "crossed.csv")
        newdata = data.iloc[::7]
    else:
        data = datasets.load("pastes")
        newdata = pd.concat([data.iloc[::3], pd.DataFrame({"strength": 0.0, "batch": ["A", "Z"],
                                                          "cask": ["z", "a"], "sample": "x"})])
    m = _fit_formula(case["model"], data)
    np.testing.assert_allclose(m.predict(newdata, re_form=case["re_form"]), case["values"], atol=1e-5)
    if case["re_form"] == "~(1 | cask:batch)":  # one grouping, either order
        np.testing.assert_allclose(m.predict(newdata, re_form="~(1 | batch:cask)"), case["values"], atol=1e-5)
    if not case["lme4_predict"]:
        assert case["re_form"] == "~(1 | item)" and "(1 + B | subj)" in case["model"]


def _fit_formula(formula, data):
    key = ("formula", formula)
    if key not in _FITS:
        _FITS[key] = interlace.fit(formula, data)
    return _FITS[key]
