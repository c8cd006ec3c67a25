"""F-test tables, contrasts, ranova, drop1 and step against lmerTest / car (issue 21, items 1-2).

References from tests/r/make_anova.R on a simulated, unbalanced crossed design (subjects × items)
with a two-level factor A, a three-level factor B, their interaction and covariates, every model
fitted with treatment contrasts and with contr.sum (``C(f, contr.sum)`` here).
"""

from __future__ import annotations

import json
import pathlib
import warnings

import numpy as np
import pandas as pd
import pytest

import interlace

HERE = pathlib.Path(__file__).parent / "data" / "anova"
REF = json.loads((HERE / "anova.json").read_text())
LMM = {c["name"]: c for c in REF["lmm"]}


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return pd.read_csv(HERE / REF["data"])


_FITS: dict = {}


def _fit(formula: str, data: pd.DataFrame, reml: bool = True):
    key = (formula, reml)
    if key not in _FITS:
        _FITS[key] = interlace.fit(formula, data, method="REML" if reml else "ML")
    return _FITS[key]


def _table(ref: dict) -> pd.DataFrame:
    values = {k: np.atleast_1d(np.array(v, dtype=float)) for k, v in ref["values"].items()}
    return pd.DataFrame(values, index=list(np.atleast_1d(ref["rows"])))


def _close(got, want, rtol, what):
    got, want = np.asarray(got, dtype=float), np.asarray(want, dtype=float)
    assert got.shape == want.shape, what
    assert np.array_equal(np.isnan(got), np.isnan(want)), what
    ok = ~np.isnan(want)
    np.testing.assert_allclose(got[ok], want[ok], rtol=rtol, err_msg=what)


@pytest.mark.parametrize("name", list(LMM))
def test_fits_agree_with_lme4(name, data):
    c = LMM[name]
    m = _fit(c["formula"], data, c["reml"])
    assert m.llf == pytest.approx(c["loglik"], rel=1e-6)
    np.testing.assert_allclose(m.fe_params.to_numpy(), c["fixef"], rtol=1e-4, atol=1e-6)


ANOVA_CASES = [(name, key) for name, c in LMM.items() for key in c["anova"]]


ANOVA_IDS = [f"{n}-{k.replace(' ', '-')}" for n, k in ANOVA_CASES]


@pytest.mark.parametrize(("name", "key"), ANOVA_CASES, ids=ANOVA_IDS)
def test_anova_tables_equal_lmertest(name, key, data):
    c = LMM[name]
    m = _fit(c["formula"], data, c["reml"])
    typ, ddf = key.split()
    got = interlace.anova(m, type=typ, ddf=ddf)
    want = _table(c["anova"][key])
    assert list(got.columns) == ["Sum Sq", "Mean Sq", "NumDF", "DenDF", "F value", "Pr(>F)"]
    if c["coding"] == "treatment":
        assert list(got.index) == list(want.index)
    else:  # the same terms, spelled with C(f, contr.sum)
        plain = [s.replace("C(A, contr.sum)", "A").replace("C(B, contr.sum)", "B") for s in got.index]
        assert plain == list(want.index)
    np.testing.assert_array_equal(got["NumDF"], want["NumDF"])
    _close(got["F value"], want["F value"], 1e-4, "F value")
    _close(got["Sum Sq"], want["Sum Sq"], 1e-4, "Sum Sq")
    _close(got["DenDF"], want["DenDF"], 1e-3, "DenDF")
    _close(got["Pr(>F)"], want["Pr(>F)"], 1e-3, "Pr(>F)")
    roman = {"I": "I", "II": "II", "III": "III"}[typ]
    assert got.heading == f"Type {roman} Analysis of Variance Table with {ddf}'s method"


STRUCTURE_IDS = [c["formula"].split(" + (")[0] for c in REF["structures"]]


@pytest.mark.parametrize("case", REF["structures"], ids=STRUCTURE_IDS)
def test_other_term_structures_equal_lmertest(case, data):
    m = _fit(case["formula"], data)
    assert m.llf == pytest.approx(case["loglik"], rel=1e-6)
    for typ, ref in case["anova"].items():
        got, want = m.anova(type=typ), _table(ref)
        assert list(got.index) == list(want.index), typ
        _close(got["F value"], want["F value"], 1e-4, f"type {typ} F")
        _close(got["DenDF"], want["DenDF"], 1e-3, f"type {typ} DenDF")
        _close(got["Pr(>F)"], want["Pr(>F)"], 1e-3, f"type {typ} p")


def test_type3_does_not_depend_on_the_coding(data):
    """lmerTest's type III hypotheses are mapped onto whatever coding the model uses."""
    t = _fit(LMM["ab_x_treatment"]["formula"], data).anova()
    s = _fit(LMM["ab_x_sum"]["formula"], data).anova()
    np.testing.assert_allclose(t["F value"], s["F value"], rtol=1e-5)


@pytest.mark.parametrize("name", list(LMM))
def test_drop1_equals_lmertest(name, data):
    c = LMM[name]
    m = _fit(c["formula"], data, c["reml"])
    for ddf, ref in c["drop1"].items():
        got, want = interlace.drop1(m, ddf=ddf), _table(ref)
        assert len(got) == len(want)
        _close(got["F value"], want["F value"], 1e-4, f"drop1 {ddf} F")
        _close(got["DenDF"], want["DenDF"], 1e-3, f"drop1 {ddf} DenDF")
        _close(got["Pr(>F)"], want["Pr(>F)"], 1e-4, f"drop1 {ddf} p")
        if c["coding"] == "treatment":
            assert list(got.index) == list(want.index)


@pytest.mark.parametrize("i", range(len(REF["contest"])))
def test_contest_equals_lmertest(i, data):
    c = REF["contest"][i]
    m = _fit(LMM["ab_x_treatment"]["formula"], data)
    L = np.array(c["L"], dtype=float)
    got = m.test(L, rhs=c["rhs"], ddf=c["ddf"])
    want = _table(c["table"])
    assert list(got.columns) == list(want.columns)
    for col in want.columns:
        tol = 1e-3 if col in ("df", "DenDF", "Pr(>F)", "Pr(>|t|)") else 1e-4
        _close(got[col], want[col], tol, col)


def test_contest_names_and_joint(data):
    m = _fit(LMM["ab_x_treatment"]["formula"], data)
    by_name = m.test({"B[T.b2]": 1, "B[T.b3]": -1})
    by_vector = m.test([0, 0, 1, -1, 0, 0, 0])
    pd.testing.assert_frame_equal(pd.DataFrame(by_name), pd.DataFrame(by_vector))
    rows = pd.DataFrame([[0, 0, 1, 0, 0, 0, 0], [0, 0, 0, 1, 0, 0, 0]], columns=m.fe_params.index,
                        index=["b2", "b3"])
    each = m.test(rows, joint=False)
    assert list(each.index) == ["b2", "b3"]
    np.testing.assert_allclose(each["Estimate"], m.fe_params[["B[T.b2]", "B[T.b3]"]])
    np.testing.assert_allclose(each["df"], m.fe_df[["B[T.b2]", "B[T.b3]"]], rtol=1e-6)
    # a single row as a joint F test is the t test squared
    one = interlace.contest(m, [0, 0, 1, -1, 0, 0, 0], joint=True)
    assert one["F value"].iloc[0] == pytest.approx(by_vector["t value"].iloc[0] ** 2, rel=1e-10)
    with pytest.raises(KeyError, match="nonexistent"):
        m.test({"nonexistent": 1})
    with pytest.raises(ValueError, match="one entry per fixed effect"):
        m.test([1, 0])
    with pytest.raises(ValueError, match="rhs"):
        m.test(rows, rhs=[1, 2, 3])


# ---- ranova / step ------------------------------------------------------------------------------
@pytest.mark.parametrize("case", REF["ranova"], ids=[c["name"] for c in REF["ranova"]])
def test_ranova_equals_lmertest(case, data):
    m = _fit(case["formula"], data, case["reml"])
    before = data.copy()
    got = interlace.ranova(m, reduce_terms=case["reduce_terms"])
    pd.testing.assert_frame_equal(data, before)
    want = _table(case["table"])
    assert list(got.index) == list(want.index)
    assert list(got.columns) == ["npar", "logLik", "AIC", "LRT", "Df", "Pr(>Chisq)"]
    np.testing.assert_array_equal(got["npar"], want["npar"])
    _close(got["Df"], want["Df"], 0, "Df")
    _close(got["logLik"], want["logLik"], 1e-6, "logLik")
    _close(got["LRT"], want["LRT"], 1e-4, "LRT")
    _close(got["Pr(>Chisq)"], want["Pr(>Chisq)"], 1e-4, "p")


def test_step_equals_lmertest(data):
    ref = REF["step"]
    m = _fit(ref["formula"], data)
    s = interlace.step(m)
    for part in ("random", "fixed"):
        got, want = getattr(s, part), _table(ref[part])
        assert list(got.index) == list(want.index), part
        _close(got["Eliminated"], want["Eliminated"], 0, f"{part} Eliminated")
        col = "Pr(>Chisq)" if part == "random" else "Pr(>F)"
        _close(got[col], want[col], 1e-4, f"{part} p")
    terms = {t.strip() for t in s.formula.split("~")[1].split("+")}
    assert terms == {t.strip() for t in ref["final"].split("~")[1].split("+")}
    assert s.model.llf == pytest.approx(ref["final_fit"]["loglik"], rel=1e-6)
    assert "Model found:" in repr(s)


def test_step_keep_and_switches(data):
    m = _fit(REF["step"]["formula"], data)
    kept = interlace.step(m, keep=["z"], reduce_random=False)
    assert "z" in kept.fixed.index and (kept.fixed["Eliminated"] == 0).all()
    assert "(1 + z | subj)" in kept.formula
    with pytest.raises(KeyError, match="nope"):
        interlace.step(m, keep=["nope"])
    with pytest.raises(ValueError, match="alpha_fixed"):
        interlace.step(m, alpha_fixed=2)


# ---- GLMM: car::Anova ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def glmms(data):
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for c in REF["glmm"]:
            out[c["coding"]] = interlace.glmer(c["formula"], data, family="binomial")
    return out


@pytest.mark.parametrize("case", REF["glmm"], ids=[c["coding"] for c in REF["glmm"]])
@pytest.mark.parametrize("typ", [2, 3])
def test_glmm_wald_tables_equal_car(case, typ, glmms):
    g = glmms[case["coding"]]
    want = _table(case[f"type{typ}"])
    got = g.anova(type=typ)
    assert list(got.columns) == ["Chisq", "Df", "Pr(>Chisq)"]
    np.testing.assert_array_equal(got["Df"], want["Df"])
    # the hypotheses exactly: with lme4's β̂ and Var(β̂) the statistics are car's
    exact = interlace.anova(_with_lme4_estimates(g, case), type=typ)
    _close(exact["Chisq"], want["Chisq"], 1e-8, "Chisq with lme4's estimates")
    _close(exact["Pr(>Chisq)"], want["Pr(>Chisq)"], 1e-8, "p with lme4's estimates")
    # end to end: interlace's own Hessian-based SEs agree with lme4's to about 0.5% here
    _close(got["Chisq"], want["Chisq"], 2e-2, "Chisq")
    assert f"Type {'II' if typ == 2 else 'III'} Wald chisquare tests" in got.heading


def test_glmm_linear_hypothesis_equals_car(glmms):
    ref = REF["glmm_contest"]
    case = next(c for c in REF["glmm"] if c["coding"] == "treatment")
    got = interlace.contest(_with_lme4_estimates(glmms["treatment"], case), np.array(ref["L"]))
    assert got["Chisq"].iloc[0] == pytest.approx(ref["chisq"], rel=1e-8)
    assert got["Df"].iloc[0] == ref["df"]
    z = glmms["treatment"].test([0, 0, 1, 0, 0, 0, 0])
    assert z["z value"].iloc[0] == pytest.approx(glmms["treatment"].fe_zvalues.iloc[2], rel=1e-10)
    with pytest.raises(ValueError, match="ddf"):
        glmms["treatment"].anova(ddf="Satterthwaite")
    with pytest.raises(ValueError, match="type=2 or 3"):
        glmms["treatment"].anova(type=1)
    with pytest.raises(TypeError, match="linear mixed models"):
        interlace.ranova(glmms["treatment"])


def _with_lme4_estimates(g, case):
    """A copy of the fit carrying lme4's β̂ and Var(β̂), to check the hypotheses themselves."""
    import copy

    h = copy.copy(g)
    names = g.fe_params.index
    h.fe_params = pd.Series(case["fixef"], index=names)
    h.fe_cov = pd.DataFrame(np.array(case["vcov"], dtype=float), index=names, columns=names)
    return h


# ---- API ----------------------------------------------------------------------------------------
def test_anova_api(data):
    m = _fit(LMM["ab_x_treatment"]["formula"], data)
    default = interlace.anova(m)
    assert default.heading == "Type III Analysis of Variance Table with Satterthwaite's method"
    pd.testing.assert_frame_equal(pd.DataFrame(default), pd.DataFrame(m.anova(type="III")))
    pd.testing.assert_frame_equal(pd.DataFrame(m.anova(type=1)), pd.DataFrame(m.anova(type="I")))
    kr = interlace.fit(LMM["ab_x_treatment"]["formula"], data, df_method="kenward-roger")
    assert "Kenward-Roger" in kr.anova().heading
    small = interlace.fit("y ~ A + B + x + (1 + x | subj) + (1 | item)", data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lrt = interlace.anova(small, m)
    assert "Chisq" in lrt.columns and len(lrt) == 2
    with pytest.raises(ValueError, match="type= and ddf="):
        interlace.anova(small, m, type=3)
    with pytest.raises(ValueError, match="type must be"):
        m.anova(type=4)
    with pytest.raises(ValueError, match="ddf must be"):
        m.anova(ddf="lme4")
    ml = _fit(LMM["ab_x_ml_treatment"]["formula"], data, reml=False)
    with pytest.raises(ValueError, match="REML"):
        ml.anova(ddf="Kenward-Roger")
    with pytest.raises(ValueError, match="cannot be dropped"):
        interlace.drop1(m, scope=["A"])
    assert list(interlace.drop1(m, scope=["x"]).index) == ["x"]


def test_tables_print_in_full_width(data):
    m = _fit(LMM["ab_x_sum"]["formula"], data)
    with pd.option_context("display.width", 40, "display.max_columns", 3):
        text = repr(m.anova())
    lines = text.splitlines()
    assert lines[0] == "Type III Analysis of Variance Table with Satterthwaite's method"
    header = lines[1]
    for col in ["Sum Sq", "Mean Sq", "NumDF", "DenDF", "F value", "Pr(>F)"]:
        assert col in header
    assert "..." not in text
    assert "C(A, contr.sum):C(B, contr.sum)" in text
    assert "Signif. codes" in text


def test_lrt_compare_and_allfit_print_in_full_width(data):
    """anova(m0, m1), compare and allfit print whole at any display width; anova's rows carry the
    names the models were passed with, its heading R's Data: and Models: lines."""
    m0 = _fit("y ~ A + B + x + (1 | subj) + (1 | item)", data)
    m1 = _fit(LMM["ab_x_treatment"]["formula"], data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        named = interlace.anova(m1=m1, small=m0)
        by_formula = interlace.anova(m0, m1)
    assert list(named.index) == ["small", "m1"]  # ordered by npar, never relabelled
    assert named.heading.splitlines() == ["Data: data", "Models:", f"small: {m0.spec.full_formula}",
                                          f"m1: {m1.spec.full_formula}"]
    assert list(by_formula.index) == [m0.spec.full_formula, m1.spec.full_formula]
    assert "Models:" not in by_formula.heading
    with pd.option_context("display.width", 30, "display.max_columns", 2):
        texts = [repr(named), str(by_formula), repr(interlace.compare(m0, m1)), repr(interlace.allfit(m0))]
    for text in texts:
        assert "..." not in text
    for col in ["npar", "AIC", "BIC", "logLik", "deviance", "Chisq", "Df", "Pr(>Chisq)"]:
        assert col in texts[0]
    assert texts[0].splitlines()[0] == "Data: data"
    assert "B[T.b2]" in texts[2] and "upper" in texts[2]
    assert "bobyqa" in texts[3] and "theta[1]" in texts[3] and "x" in texts[3].splitlines()[0]
