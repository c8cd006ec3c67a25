"""Conformance with R: every reference case in the fixtures, at the project's tolerances."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest
from conftest import EXTRA, load_cases, load_data

import interlace

CASES = load_cases() + load_cases(EXTRA)
LMM_CASES = [c for c in CASES if c["interlace"]["fn"] == "fit" and "correlation" not in c["interlace"]]
# glmer, clmm and coxme cases are checked in test_glmm.py, test_clmm.py and test_coxme.py


def norm(name: str) -> str:
    name = re.sub(r"\[(?:T\.)?([^\]]*)\]", r"\1", str(name))
    return "(Intercept)" if name == "Intercept" else name


def by_name(series: pd.Series, names: list[str]) -> np.ndarray:
    table = {norm(k): v for k, v in series.items()}
    return np.array([table[n] for n in names], dtype=float)


def values(x) -> list[float]:
    """A fixture vector: R writes named vectors as dicts, length-one ones as bare numbers."""
    return list(x.values()) if isinstance(x, dict) else list(np.atleast_1d(x))


def assert_rel(got, want, tol, what):
    got, want = np.atleast_1d(np.asarray(got, dtype=float)), np.atleast_1d(np.asarray(want, dtype=float))
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    err = np.max(np.abs(got - want) / np.maximum(np.abs(want), 1e-8))
    assert err <= tol, f"{what}: relative error {err:.3g} > {tol:g}\n got {got}\nwant {want}"


def fit_case(case: dict, **extra) -> interlace.CrossedLMEResult:
    df = load_data(case)
    kw = {k: v for k, v in case["interlace"].items() if k not in ("fn", "formula")}
    for k in ("weights", "offset"):
        if k in kw:
            kw[k] = df[kw[k]].to_numpy(dtype=float)
    return interlace.fit(case["interlace"]["formula"], df, **kw, **extra)


@pytest.fixture(scope="module", params=LMM_CASES, ids=[c["name"] for c in LMM_CASES])
def lmm(request):
    case = request.param
    return case, fit_case(case)


def test_fixtures_present():
    if not CASES:
        pytest.skip("reference fixtures not found")
    assert len(LMM_CASES) >= 8


def test_fixed_effects(lmm):
    case, r = lmm
    names = list(case["fixef"])
    assert_rel(by_name(r.fe_params, names), values(case["fixef"]), 1e-4, "fixef")
    assert_rel(by_name(r.fe_bse, names), values(case["se"]), 2e-3, "se")
    if "vcov" not in case:
        return
    vcov = np.atleast_2d(np.asarray(case["vcov"], dtype=float))
    order = [list(map(norm, r.fe_params.index)).index(n) for n in names]
    got = r.fe_cov.to_numpy()[np.ix_(order, order)]
    np.testing.assert_allclose(got, vcov, rtol=4e-3, atol=1e-6 * np.abs(vcov).max())


def test_likelihood(lmm):
    case, r = lmm
    assert_rel([r.llf], [case["loglik"]], 1e-6, "loglik")
    assert_rel([r.aic], [case["aic"]], 1e-6, "aic")
    assert_rel([r.bic], [case["bic"]], 1e-6, "bic")
    crit = case.get("reml_criterion", case.get("deviance"))
    if crit is not None:
        assert_rel([r.deviance], [crit], 1e-6, "deviance / REML criterion")
    assert r.nobs == case["nobs"]
    assert r.method == case["method"]


def test_variance_parameters(lmm):
    case, r = lmm
    assert_rel([math.sqrt(r.scale)], [case["sigma"]], 1e-3, "sigma")
    assert r.is_singular == case["singular"]
    if not case["singular"]:
        assert_rel(r.theta, values(case["theta"]), 2e-3, "theta")
    else:
        np.testing.assert_allclose(r.theta, values(case["theta"]), atol=1e-4)
    for row in case["varcorr"]:
        if row["grp"] == "Residual":
            assert_rel([r.scale], [row["vcov"]], 2e-3, "residual variance")
            continue
        grp = row["grp"]
        vc = r.variance_components.get(grp, r.variance_components.get(":".join(grp.split(":")[::-1])))
        if isinstance(vc, float):
            got = vc
        else:
            cols = {norm(c): c for c in vc.columns}
            a = cols[row["var1"]]
            b = cols[row["var2"]] if row["var2"] else a
            got = vc.loc[a, b]
            if row["var2"]:
                got = got / math.sqrt(vc.loc[a, a] * vc.loc[b, b])
        want = row["sdcor"] if row["var2"] else row["vcov"]
        if abs(want) < 1e-6:
            assert abs(got) < 1e-6
        else:
            assert_rel([got], [want], 5e-3, f"varcorr {row}")
    assert {k: v for k, v in r.ngroups.items()} == pytest.approx(
        {_our_group(r, g): m for g, m in case["ngrps"].items()}
    )


def _our_group(r, grp: str) -> str:
    return grp if grp in r.ngroups else ":".join(grp.split(":")[::-1])


def test_satterthwaite(lmm):
    case, r = lmm
    names = list(case["fixef"])
    assert_rel(by_name(r.fe_df, names), values(case["df_satterthwaite"]), 1e-2, "Satterthwaite df")
    want_p = np.asarray(values(case["p_satterthwaite"]))
    got_p = by_name(r.fe_pvalues, names)
    np.testing.assert_allclose(got_p, want_p, rtol=5e-2, atol=1e-12)


def test_conditional_modes(lmm):
    case, r = lmm
    for grp, d in case["ranef"].items():
        ours = r.random_effects[_our_group(r, grp)]
        index = {str(k): i for i, k in enumerate(ours.index)}
        index.update({":".join(str(k).split(":")[::-1]): i for i, k in enumerate(ours.index)})
        rows = [index[str(lv)] for lv in d["levels"]]
        cols = {norm(c): c for c in ours.columns}
        for term, want in d["columns"].items():
            got = ours[cols[term]].to_numpy()[rows]
            want = np.asarray(want)
            if np.max(np.abs(want)) < 1e-6:
                assert np.max(np.abs(got)) < 1e-4
            else:
                np.testing.assert_allclose(got, want, rtol=5e-3, atol=5e-3 * np.abs(want).max())


def test_fitted_and_residuals(lmm):
    case, r = lmm
    if "fitted_head" not in case:
        pytest.skip("case has no fitted values reference")
    k = len(case["fitted_head"])
    np.testing.assert_allclose(r.fittedvalues[:k], case["fitted_head"], rtol=1e-5)
    np.testing.assert_allclose(r.resid[:k], case["resid_head"], rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(r.predict(), r.fittedvalues)


def test_predict_newdata(lmm):
    case, r = lmm
    if "predict" not in case:
        pytest.skip("case has no prediction reference")
    nd = pd.DataFrame(case["predict"]["newdata"])
    np.testing.assert_allclose(r.predict(nd), case["predict"]["re_form_default"], rtol=1e-6)
    np.testing.assert_allclose(r.predict(nd, include_re=False), case["predict"]["re_form_na"], rtol=1e-6)


def test_kenward_roger(lmm):
    case, _ = lmm
    if "df_kenward_roger" not in case:
        pytest.skip("no Kenward-Roger reference for this case (ML fit)")
    kr = fit_case(case, df_method="kenward-roger")
    names = list(case["fixef"])
    assert kr.df_method == "kenward-roger"
    assert_rel(by_name(kr.fe_df, names), values(case["df_kenward_roger"]), 1e-2, "KR df")
    assert_rel(by_name(kr.fe_bse, names), values(case["se_kenward_roger"]), 2e-3, "KR SE")


def test_kenward_roger_refuses_ml(sleepstudy):
    with pytest.raises(ValueError, match="kenward-roger.*REML"):
        interlace.fit("Reaction ~ Days", sleepstudy, groups="Subject", method="ML", df_method="kenward-roger")


def test_bobyqa_reaches_same_optimum(lmm):
    case, r = lmm
    b = fit_case(case, optimizer="bobyqa")
    assert_rel([b.llf], [r.llf], 1e-7, "loglik lbfgsb vs bobyqa")
    assert_rel(b.fe_params.to_numpy(), r.fe_params.to_numpy(), 1e-5, "fixef lbfgsb vs bobyqa")


CORR_CASES = [c for c in CASES if "correlation" in c["interlace"]]


def _structure(spec: dict):
    spec = dict(spec)
    kind = spec.pop("type")
    return getattr(interlace, kind)(**spec)


@pytest.mark.parametrize("case", CORR_CASES, ids=[c["name"] for c in CORR_CASES])
def test_residual_correlation_matches_nlme(case):
    kw = {k: v for k, v in case["interlace"].items() if k not in ("fn", "formula", "correlation")}
    r = interlace.fit(
        case["interlace"]["formula"],
        load_data(case),
        correlation=_structure(case["interlace"]["correlation"]),
        **kw,
    )
    names = list(case["fixef"])
    assert_rel(by_name(r.fe_params, names), values(case["fixef"]), 1e-4, "fixef")
    assert_rel(by_name(r.fe_bse, names), values(case["se"]), 2e-3, "se")
    assert_rel([r.llf, r.aic, r.bic], [case["loglik"], case["aic"], case["bic"]], 1e-6, "logLik/AIC/BIC")
    assert_rel([math.sqrt(r.scale)], [case["sigma"]], 1e-3, "sigma")
    for key in ("phi", "rho"):
        if key in case:
            assert_rel([r.correlation_params[key]], [case[key]], 1e-3, key)
    for grp, sd in (case.get("sd_groups") or {}).items():
        assert_rel([math.sqrt(r.variance_components[grp])], [sd], 2e-3, f"sd {grp}")
    assert np.all(np.isfinite(r.fe_df)) and np.all(r.fe_df > 0)
    b = interlace.fit(
        case["interlace"]["formula"],
        load_data(case),
        correlation=_structure(case["interlace"]["correlation"]),
        optimizer="bobyqa",
        **kw,
    )
    assert_rel([b.llf], [r.llf], 1e-7, "loglik lbfgsb vs bobyqa")


def test_correlation_with_gaps_equals_explicit_gls():
    """AR1 with irregular integer times: compare with a dense GLS likelihood computed directly."""
    rng = np.random.default_rng(3)
    rows = []
    for g in range(12):
        times = np.sort(rng.choice(np.arange(1, 15), size=8, replace=False))
        e = np.zeros(8)
        for i in range(8):
            e[i] = rng.normal() if i == 0 else 0.6 ** (times[i] - times[i - 1]) * e[i - 1] + rng.normal()
        for t, ei in zip(times, e, strict=True):
            rows.append({"g": f"g{g}", "t": t, "x": rng.normal(), "e": ei})
    df = pd.DataFrame(rows)
    df["y"] = 1.0 + 0.5 * df["x"] + df["e"]
    r = interlace.fit("y ~ x", df, method="ML", correlation=interlace.AR1(time="t", group="g"))
    phi, s2 = r.correlation_params["phi"], r.scale
    X = np.column_stack([np.ones(len(df)), df["x"]])
    ll = 0.0
    resid = df["y"].to_numpy() - X @ r.fe_params.to_numpy()
    for _, idx in df.groupby("g").indices.items():
        t = df["t"].to_numpy()[idx]
        V = s2 * phi ** np.abs(t[:, None] - t[None, :])
        sign, logdet = np.linalg.slogdet(V)
        ll += -0.5 * (logdet + resid[idx] @ np.linalg.solve(V, resid[idx]) + len(idx) * np.log(2 * np.pi))
    assert r.llf == pytest.approx(ll, rel=1e-9)
    assert 0.3 < phi < 0.85
