"""clmm with several random intercepts (crossed and nested) against ordinal::clmm.

References: tests/r/make_clmm_multi.R (ordinal::clmm with tight nlminb and inner tolerances) ->
tests/data/clmm/clmm_multi.json and the CSVs beside it.
"""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pandas as pd
import pytest

import interlace
from interlace.backends.reml.clmm_laplace import Blocked, ClmmLaplace, OneTerm

DATA = pathlib.Path(__file__).parent / "data" / "clmm"
REF = json.loads((DATA / "clmm_multi.json").read_text())
CASES = [k for k in REF if k != "meta"]


def _load(case: dict) -> pd.DataFrame:
    d = pd.read_csv(DATA / case["data"])
    resp = case["formula"].split("~")[0].strip()
    d[resp] = pd.Categorical(d[resp], categories=sorted(d[resp].unique()), ordered=True)
    for c in d.columns:
        if c != resp and d[c].dtype != float:
            d[c] = d[c].astype(str)  # factors, as R reads them
    return d


@pytest.fixture(scope="module", params=CASES)
def fitted(request):
    case = REF[request.param]
    return case, interlace.clmm(case["formula"], _load(case), link=case["link"])


def test_estimates_match_ordinal(fitted):
    case, m = fitted
    np.testing.assert_allclose(m.thresholds, list(case["thresholds"].values()), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(m.fe_params, list(case["beta"].values()), rtol=1e-4, atol=1e-5)
    assert m.llf == pytest.approx(case["loglik"], rel=1e-6)
    assert m.aic == pytest.approx(case["aic"], rel=1e-6)
    assert m.nobs == case["nobs"]
    assert m.converged


def test_standard_errors_match_ordinal(fitted):
    case, m = fitted
    # a variance at the boundary (sd 0) carries no curvature: compare with the model without it
    se = case.get("se_boundary", case["se"])
    names = list(case["thresholds"]) + list(case["beta"])
    np.testing.assert_allclose(np.r_[m.threshold_bse, m.fe_bse], [se[n] for n in names], rtol=2e-3)


def test_variance_components_match_ordinal(fitted):
    case, m = fitted
    assert set(m.variance_components) == set(case["sd"])
    for g, sd in case["sd"].items():
        ours = np.sqrt(m.variance_components[g])
        if sd < 1e-4:
            assert ours < 1e-4, g
        else:
            assert ours == pytest.approx(sd, rel=1e-3), g


def test_conditional_modes_match_ordinal(fitted):
    case, m = fitted
    for g, modes in case["ranef"].items():
        if case["sd"][g] < 1e-4:
            continue
        ours = m.random_effects[g]["(Intercept)"]
        ours.index = [str(v) for v in ours.index]
        np.testing.assert_allclose(ours[list(modes)], list(modes.values()), rtol=1e-4, atol=5e-6)


def _laplace(structure_multi: bool, link: str):
    rng = np.random.default_rng(11)
    n = 300
    a, b, c = rng.integers(0, 12, n), rng.integers(0, 7, n), rng.integers(0, 3, n)
    x = rng.normal(size=n)
    lat = 0.5 * x + rng.normal(size=12)[a] + 0.7 * rng.normal(size=7)[b] + rng.logistic(size=n)
    y = np.digitize(lat, [-1.0, 0.2, 1.0])
    df = pd.DataFrame({"y": pd.Categorical(y, ordered=True), "x": x, "a": a.astype(str),
                       "b": b.astype(str), "c": c.astype(str)})
    from interlace.data.design import build_design
    from interlace.model.formula import model_terms
    from interlace.model.spec import ModelSpec

    formula = "y ~ x + (1 | a) + (1 | b) + (1 | a:c)" if structure_multi else "y ~ x + (1 | a)"
    fixed, terms = model_terms(formula, None, None)
    df["y"] = y.astype(float)
    design = build_design(ModelSpec(formula=formula, fixed=fixed, random=tuple(terms), method="ML"), df)
    X = design.X[:, 1:]
    structure = Blocked(design) if structure_multi else OneTerm(design.terms[0].codes, design.terms[0].m)
    codes = [np.asarray(t.codes) for t in design.terms]
    return ClmmLaplace(X, y, 4, link, structure, codes), len(design.terms)


@pytest.mark.parametrize("multi", [True, False])
@pytest.mark.parametrize("link", ["logit", "probit", "cloglog", "loglog"])
def test_exact_gradient_equals_finite_differences(multi, link):
    prob, nt = _laplace(multi, link)
    v = np.r_[-0.9, 0.1, 1.1, 0.4, np.linspace(0.5, 1.2, nt)]  # α (3), β (1), σ per term

    def ll(w):
        return prob.evaluate(w[:3], w[3:4], w[4:], gradient=False)[0]

    _, g = prob.evaluate(v[:3], v[3:4], v[4:])
    h = 1e-5
    fd = np.array([(ll(v + h * e) - ll(v - h * e)) / (2 * h) for e in np.eye(v.size)])
    np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-6)


def test_one_term_keeps_its_attributes_and_predicts_with_every_term():
    case = REF["soup_resp_prodid"]
    d = _load(case)
    m = interlace.clmm(case["formula"], d)
    assert m.n_params == 5 + 1 + 2
    assert m.groups == ["RESP", "PRODID"]
    assert m.sigma == pytest.approx(np.sqrt(m.variance_components["RESP"]))
    np.testing.assert_allclose(m.b, m.random_effects["RESP"]["(Intercept)"])
    p_all = m.predict(d.head(4))
    p_fixed = m.predict(d.head(4), include_re=False)
    # both terms shift the linear predictor: dropping one column of the new data drops its term only
    p_resp = m.predict(d.head(4).drop(columns="PRODID"))
    assert not np.allclose(p_all, p_fixed) and not np.allclose(p_all, p_resp)
    eta = m.fe_params.iloc[0] * (d["DAY"].head(4) == "2").to_numpy()
    eta = eta + m.random_effects["RESP"].loc[d["RESP"].head(4), "(Intercept)"].to_numpy()
    eta = eta + m.random_effects["PRODID"].loc[d["PRODID"].head(4), "(Intercept)"].to_numpy()
    F = 1 / (1 + np.exp(-(m.thresholds.to_numpy()[None, :] - eta[:, None])))
    np.testing.assert_allclose(p_all.iloc[:, 0], F[:, 0], rtol=1e-10)
    text = str(m.summary())
    assert "RESP (Intercept)" in text and "PRODID (Intercept)" in text


def test_random_slopes_are_refused_with_the_term_named():
    d = _load(REF["soup_resp_day"])
    with pytest.raises(ValueError, match=r"random intercepts only.*\(PROD \| RESP\)"):
        interlace.clmm("SURENESS ~ PROD + (PROD | RESP)", d)
    with pytest.raises(ValueError, match="at least one random intercept"):
        interlace.clmm("SURENESS ~ PROD", d)


def test_result_from_the_single_term_spelling_predicts_as_the_fit():
    from interlace.results.ordinal import OrdinalResult

    d = _load(REF["wine_judge_bottle"])
    m = interlace.clmm("rating ~ temp + contact + (1 | judge)", d)
    r = OrdinalResult(
        formula=m.formula, response_levels=m.response_levels, X_names=list(m.fe_params.index),
        alpha=m.thresholds.to_numpy(), beta=m.fe_params.to_numpy(), cov=m.vcov.to_numpy(), sigma=m.sigma,
        b=m.b, group="judge", group_levels=list(m.random_effects["judge"].index), loglik=m.llf,
        nobs=m.nobs, n_dropped=0, link="logit", fixed_spec=m._fixed_spec, converged=True,
    )
    np.testing.assert_allclose(r.predict(d.head(6)), m.predict(d.head(6)))
    assert r.variance_components == m.variance_components and r.n_params == m.n_params
    with pytest.raises(TypeError, match="sigmas= and terms="):
        OrdinalResult(
            formula=m.formula, response_levels=m.response_levels, X_names=[], alpha=m.thresholds.to_numpy(),
            beta=np.zeros(0), cov=np.eye(4), b=m.b, loglik=0.0, nobs=1, n_dropped=0, link="logit",
            fixed_spec=None, converged=True,
        )


def test_leverages_by_slices_of_levels_equal_the_whole(monkeypatch):
    import interlace.backends.reml.clmm_laplace as cl

    prob, nt = _laplace(True, "logit")
    v = np.r_[-0.9, 0.1, 1.1, 0.4, np.linspace(0.5, 1.2, nt)]
    whole = prob.evaluate(v[:3], v[3:4], v[4:])
    monkeypatch.setattr(cl, "V_ENTRIES", 30)  # a few levels of the first term at a time
    sliced = prob.evaluate(v[:3], v[3:4], v[4:])
    assert sliced[0] == pytest.approx(whole[0], rel=1e-13)
    np.testing.assert_allclose(sliced[1], whole[1], rtol=1e-10, atol=1e-12)
