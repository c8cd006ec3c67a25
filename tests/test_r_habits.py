"""R formula habits give R's numbers (issue 17): references from tests/r/make_r_habits.R.

Each case is fitted exactly as an R user would write it; estimates, SEs, logLik, fitted values
and predictions (with and without random effects, new levels, beyond the spline's boundary) must
equal lme4's.
"""

from __future__ import annotations

import json
import pathlib
import warnings

import numpy as np
import pandas as pd
import pytest

import interlace

HERE = pathlib.Path(__file__).parent / "data" / "r_habits"
CASES = json.loads((HERE / "cases.json").read_text())


def _frame(case: dict) -> pd.DataFrame:
    df = pd.read_csv(HERE / case["data"])
    for col, levels in (case.get("categorical") or {}).items():
        df[col] = pd.Categorical(df[col].astype(str), categories=levels)
    return df


def _fit(case: dict, df: pd.DataFrame):
    kw = dict(case["interlace"])
    fn = getattr(interlace, kw.pop("fn"))
    formula = kw.pop("formula")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(formula, df, **kw)


def _newdata(case: dict, df: pd.DataFrame) -> pd.DataFrame:
    if case["name"] == "ns_spline":
        return pd.DataFrame({"Time": [0, 5.5, 21, 25], "Chick": [1, 2, 3, 99]})
    n = len(case["predict"])
    return df.head(n)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_estimates_equal_lme4(case):
    df = _frame(case)
    before = df.copy()
    r = _fit(case, df)
    pd.testing.assert_frame_equal(df, before)  # the caller's data are never modified
    assert len(r.fe_params) == len(case["fixef"])
    np.testing.assert_allclose(r.fe_params.to_numpy(), case["fixef"], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(r.fe_bse.to_numpy(), case["se"], rtol=2e-3)
    assert r.llf == pytest.approx(case["loglik"], rel=1e-6)
    fitted = np.asarray(r.fittedvalues)[: len(case["fitted_head"])]
    np.testing.assert_allclose(fitted, case["fitted_head"], rtol=1e-5)


@pytest.mark.parametrize("case", [c for c in CASES if "predict" in c], ids=lambda c: c["name"])
def test_predictions_equal_lme4(case):
    df = _frame(case)
    r = _fit(case, df)
    nd = _newdata(case, df)
    glmm = case["interlace"]["fn"] == "glmer"
    kw = {"type": "link"} if glmm else {}
    np.testing.assert_allclose(r.predict(nd, **kw), case["predict"], rtol=1e-5, atol=1e-6)
    pop = r.predict(nd, include_re=False, **kw)
    np.testing.assert_allclose(pop, case["predict_pop"], rtol=1e-5, atol=1e-6)
    if glmm:
        np.testing.assert_allclose(r.predict(nd), case["predict_response"], rtol=1e-5, atol=1e-6)


def _case(name: str) -> dict:
    return next(c for c in CASES if c["name"] == name)


def test_r_spelling_of_coefficient_names():
    r = _fit(_case("pow_in_I"), _frame(_case("pow_in_I")))
    assert list(r.fe_params.index) == ["(Intercept)", "Days", "I(Days^2)"]
    r = _fit(_case("arith_in_I"), _frame(_case("arith_in_I")))
    assert "I((Days + 1)^-1)" in r.fe_params.index and "I(Days%/%3)" in r.fe_params.index


def test_levels_match_by_value_in_predict():
    case = _case("pow_in_I")
    df = _frame(case)
    r = _fit(case, df)
    nd = df.head(12).copy()
    expected = r.predict(nd)
    for spelling in (nd["Subject"].astype(float), nd["Subject"].astype(str),
                     pd.Categorical(nd["Subject"].astype(str)), nd["Subject"].astype(float).astype(str)):
        other = nd.copy()
        other["Subject"] = spelling
        np.testing.assert_allclose(r.predict(other), expected, rtol=1e-12)
    other = nd.copy()
    other["Subject"] = other["Subject"].astype(float)
    other.loc[3, "Subject"] = np.nan
    pred = r.predict(other)
    assert np.isnan(pred[3]) and np.all(np.isfinite(np.delete(pred, 3)))
    np.testing.assert_allclose(np.delete(pred, 3), np.delete(expected, 3), rtol=1e-12)
    # a missing id does not matter for the population prediction
    assert np.all(np.isfinite(r.predict(other, include_re=False)))


def test_offset_array_needs_offset_in_predict():
    df = _frame(_case("offset_column"))
    r = interlace.fit("Reaction ~ Days", df, groups="Subject", offset=np.full(len(df), 100.0))
    with pytest.raises(ValueError, match="offset= given as an array.*needs offset="):
        r.predict(df.head(2))
    pred = r.predict(df.head(2), offset=np.full(2, 100.0))
    np.testing.assert_allclose(pred, r.fittedvalues[:2], rtol=1e-10)


def test_offset_column_missing_in_newdata():
    case = _case("offset_column")
    df = _frame(case)
    r = _fit(case, df)
    with pytest.raises(KeyError, match="offset column 'off'"):
        r.predict(df.head(2).drop(columns="off"))


SS = _frame(_case("pow_in_I"))


@pytest.mark.parametrize(
    "formula, kw, exc, message",
    [
        ("Reaction ~ Days + 1 | Subject", {}, ValueError,
         r"'1 \| Subject' needs parentheses.*'\(1 \| Subject\)'"),
        ("Reaction ~ ~ Days", {"groups": "Subject"}, ValueError, "exactly one '~'"),
        ("Reaction ~ frobnicate(Days)", {"groups": "Subject"}, ValueError,
         r"function frobnicate\(\) in 'frobnicate\(Days\)' is not supported"),
        ("Reaction ~ Days + Days > 3", {"groups": "Subject"}, ValueError, r"wrap .* in I\(\)"),
        ("Reaction ~ I(Days[1])", {"groups": "Subject"}, ValueError, "indexing"),
        ("Reaction ~ np.log(Days + 1)", {"groups": "Subject"}, ValueError,
         r"np\.log\(\) in 'np\.log\(Days \+ 1\)' is numpy.*write log\(Days \+ 1\)"),
        ("Reaction ~ numpy.cumsum(Days)", {"groups": "Subject"}, ValueError, "compute the column before"),
        ("Reaction ~ I(Days.__class__)", {"groups": "Subject"}, KeyError, r"Days\.__class__"),
        ("Reaction ~ Dayz", {"groups": "Subject"}, KeyError, "Dayz"),
        ("cbind(Reaction, Days) ~ 1", {"groups": "Subject"}, ValueError, "use interlace.glmer"),
        ("Reaction ~ Days", {"groups": "Subject", "weights": np.full(len(SS), np.nan)}, ValueError,
         r"missing value in \['weights'\]"),
    ],
)
def test_messages_name_the_users_term(formula, kw, exc, message):
    with pytest.raises(exc, match=message) as info:
        interlace.fit(formula, SS, **kw)
    assert "\x1b[" not in str(info.value)  # no terminal colour codes


def test_unseen_factor_level_in_predict_names_it():
    df = _frame(_case("factor_call"))
    r = _fit(_case("factor_call"), df)
    nd = df.head(2).copy()
    nd["Diet"] = [1, 7]
    with pytest.raises(ValueError, match=r"level\(s\) \{7\} not seen in fitting.*factor\(Diet\)") as info:
        r.predict(nd)
    assert "cast to nan" not in str(info.value)


def test_dot_leaves_out_grouping_weights_and_offset_columns():
    df = _frame(_case("dot"))
    df["w"] = 1.0
    r = interlace.fit("y ~ .", df, groups="g", weights="w")
    assert list(r.fe_params.index) == ["(Intercept)", "x", "z", "k[T.b]", "k[T.c]"]


def test_dotted_column_names_and_formula_powers():
    """R's dotted names (my.var) predict like any other; (a + b + c)^2 is all pairwise interactions."""
    rng = np.random.default_rng(1)
    n = 240
    df = pd.DataFrame({"g": rng.integers(0, 20, n), "my.var": rng.normal(size=n), "x": rng.uniform(0, 5, n),
                       "k": rng.choice(["a", "b", "c"], n)})
    df["y"] = 1 + df["x"] + df["my.var"] + rng.normal(size=20)[df["g"]] + rng.normal(size=n)
    r = interlace.fit("y ~ my.var + x + (1 + my.var | g)", df)
    np.testing.assert_allclose(r.predict(df.head(5)), r.fittedvalues[:5], rtol=1e-10)
    assert list(r.fe_params.index) == ["(Intercept)", "my.var", "x"]
    p = interlace.fit("y ~ (x + my.var + k)^2", df, groups="g")
    assert {"x:my.var", "x:k[T.b]", "my.var:k[T.c]"} <= set(p.fe_params.index)
    assert len(p.fe_params) == 10


def test_dotted_column_names_inside_functions():
    """log(my.var + 5), I(my.var^2), poly(my.var, 2): a dotted column inside a call, as in R."""
    rng = np.random.default_rng(2)
    n = 200
    df = pd.DataFrame({"g": rng.integers(0, 10, n), "my.var": rng.uniform(0, 4, n)})
    df["y"] = 1 + np.log(df["my.var"] + 5) + rng.normal(size=10)[df["g"]] + rng.normal(size=n)
    r = interlace.fit("y ~ log(my.var + 5) + I(my.var^2) + (1 | g)", df)
    assert list(r.fe_params.index) == ["(Intercept)", "log(my.var + 5)", "I(my.var^2)"]
    made = df.assign(lv=np.log(df["my.var"] + 5), sq=df["my.var"] ** 2)
    same = interlace.fit("y ~ lv + sq + (1 | g)", made)
    np.testing.assert_allclose(r.fe_params.to_numpy(), same.fe_params.to_numpy(), rtol=1e-6)
    np.testing.assert_allclose(r.predict(df.head(4)), r.fittedvalues[:4], rtol=1e-10)
