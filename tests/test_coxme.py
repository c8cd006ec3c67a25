"""coxme against R's coxme (rats fixture; strata, several terms, nested, slopes from
tests/r/make_coxme_cases.R), the risk-set algebra against a direct per-event computation, and
formula handling.

The R references are coxme 2.2-22 run with tight control (inner Newton to eps = 1e-11, BFGS to
reltol = 1e-10): the converged optimum. With its default control (BFGS reltol = 1e-5, a few inner
iterations per step) coxme stops up to 2e-3 (relative) away in the variances and 4e-7 in the
coefficients, which is why the tests compare with the tight fits at the project's tolerances.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import EXTRA, FIXTURES
from scipy.optimize import minimize

import interlace
from interlace import datasets
from interlace.backends.reml.cox_risk import GroupKernel, RiskSets
from interlace.backends.reml.coxme import efron

CASES = json.loads((EXTRA / "coxme_cases.json").read_text())["cases"]
R_GROUP = {"ct": "centre:trt", "centre/trt": "centre:trt"}  # R's names for our groups


def _data(case) -> pd.DataFrame:
    return datasets.load("rats") if case["data"] == "rats" else pd.read_csv(EXTRA / "data" / case["data"])


@pytest.fixture(scope="module")
def rats():
    if FIXTURES is None:
        pytest.skip("reference fixtures not found")
    case = json.loads((FIXTURES / "cases" / "rats_coxme_frailty.json").read_text())
    df = pd.read_csv(FIXTURES / "data" / "rats.csv")
    return case, interlace.coxme("Surv(time, status) ~ rx", df, groups="litter")


def test_matches_r_coxme(rats):
    case, r = rats
    assert r.fe_params["rx"] == pytest.approx(case["coef"]["rx"], rel=1e-4)
    assert r.fe_bse["rx"] == pytest.approx(case["se"]["rx"], rel=1e-3)
    assert r.variance_components["litter"] == pytest.approx(case["variance"], rel=2e-3)
    assert r.llf == pytest.approx(case["loglik_integrated"], rel=1e-6)
    assert r.llf_null == pytest.approx(case["loglik_null"], rel=1e-12)
    assert "integrated" in r.summary()
    assert r.random_effects["litter"].shape == (100, 1)
    assert r.n_sparse == 100  # 100 litters of 3 rows: coxme's sparse approximation for all


@pytest.fixture(scope="module", params=CASES, ids=[c["name"] for c in CASES])
def case_fit(request):
    case = request.param
    return case, interlace.coxme(case["formula"], _data(case))


def test_matches_r_tight(case_fit):
    case, m = case_fit
    ref = case["tight"]
    for name, v in ref["coef"].items():
        assert m.fe_params[name] == pytest.approx(v, rel=1e-4, abs=1e-7), name
        assert m.fe_bse[name] == pytest.approx(ref["se"][name], rel=2e-3), name
    assert m.llf == pytest.approx(ref["loglik_integrated"], rel=1e-6)
    assert m.llf_null == pytest.approx(ref["loglik_null"], rel=1e-9)
    assert m.nobs == ref["n"] and m.n_events == ref["events"]
    vc = m.variance_components
    assert len(vc) == len(ref["varcorr"])
    for group, r in ref["varcorr"].items():
        mine = vc[R_GROUP.get(group, group)]
        var = list(r["variance"].values())
        if isinstance(mine, float):
            assert mine == pytest.approx(var[0], rel=2e-3), group
        else:
            S = mine.to_numpy()
            assert np.diag(S) == pytest.approx(var, rel=2e-3), group
            rho = S[1, 0] / np.sqrt(S[0, 0] * S[1, 1])
            assert rho == pytest.approx(np.ravel(r["correlation"])[0], abs=2e-3)


def _case(name):
    return next(c for c in CASES if c["name"] == name)


@pytest.mark.parametrize("strata", ["strata(stage) + strata(sex)", "strata(sex, stage)",
                                    "strata(stage):strata(sex)"])
def test_strata_spellings(strata):
    """Several strata terms or an interaction of them stratify by every combination (coxph)."""
    case = _case("eortc_strata2")
    m = interlace.coxme(f"Surv(time, status) ~ trt + {strata} + (1 | centre)", _data(case))
    ref = case["tight"]
    assert m.fe_params["trt"] == pytest.approx(ref["coef"]["trt"], rel=1e-4)
    assert m.llf == pytest.approx(ref["loglik_integrated"], rel=1e-6)
    assert m.n_strata == 4


def test_nested_without_sparse_is_the_two_term_model():
    """(1 | centre/trt) is (1 | centre) + (1 | centre:trt); only coxme's sparse rule differs: it
    applies to the 59 of the 74 centre:trt levels holding at most 2 % of the rows."""
    df = _data(_case("eortc_nested"))
    nested = interlace.coxme("Surv(time, status) ~ trt + (1 | centre/trt)", df, sparse=None)
    crossed = interlace.coxme("Surv(time, status) ~ trt + (1 | centre) + (1 | centre:trt)", df)
    assert nested.n_sparse == 0 and crossed.n_sparse == 0
    assert nested.llf == pytest.approx(crossed.llf, rel=1e-10)
    assert nested.fe_params["trt"] == pytest.approx(crossed.fe_params["trt"], rel=1e-6)
    sparse = interlace.coxme("Surv(time, status) ~ trt + (1 | centre/trt)", df)
    assert sparse.n_sparse == 59 and abs(sparse.llf - nested.llf) > 1e-3


def test_offset_and_row_order():
    df = _data(_case("eortc_one_term"))
    m = interlace.coxme("Surv(time, status) ~ trt + (1 | centre)", df)
    shifted = interlace.coxme("Surv(time, status) ~ trt + offset(0.5 * trt) + (1 | centre)", df)
    assert shifted.fe_params["trt"] == pytest.approx(m.fe_params["trt"] - 0.5, abs=1e-7)
    assert shifted.llf == pytest.approx(m.llf, rel=1e-10)
    shuffled = interlace.coxme("Surv(time, status) ~ trt + (1 | centre)", df.sample(frac=1, random_state=1))
    assert shuffled.llf == pytest.approx(m.llf, rel=1e-10)
    assert shuffled.fe_params["trt"] == pytest.approx(m.fe_params["trt"], rel=1e-7)


def test_status_spellings_and_covariate_by_stratum():
    df = _data(_case("lung_strata_sex"))  # status 1 = censored, 2 = dead (R's Surv coding)
    f = "Surv(time, {}) ~ age + ph.ecog + strata(sex) + (1 | inst)"
    a = interlace.coxme(f.format("status"), df)
    df = df.assign(dead=df["status"] == 2, d01=df["status"] - 1)
    for s in ("dead", "d01", "status == 2"):
        assert interlace.coxme(f.format(s), df).llf == pytest.approx(a.llf, rel=1e-12)
    by = interlace.coxme("Surv(time, status) ~ age + age:strata(sex) + strata(sex) + (1 | inst)", df)
    same = interlace.coxme("Surv(time, status) ~ age + age:factor(sex) + strata(sex) + (1 | inst)", df)
    assert len(by.fe_params) == 2 and by.llf == pytest.approx(same.llf, rel=1e-12)


def test_breslow_ties_and_summary():
    df = _data(_case("eortc_slope"))
    m = interlace.coxme("Surv(time, status) ~ trt + (1 + trt | centre)", df, ties="breslow")
    e = interlace.coxme("Surv(time, status) ~ trt + (1 + trt | centre)", df)
    assert m.llf < e.llf  # Breslow's approximation with many ties: a lower partial likelihood
    s = e.summary()
    assert "corr" in s and "trt" in s and e.n_params == 4
    assert e.random_effects["centre"].shape == (37, 2)


# ---- the risk-set algebra against a direct computation -----------------------------------------
def _direct(M, eta, time, status, strata, ties):
    """log PL, gradient and information by looping over event times (Efron or Breslow)."""
    ll, g, info = 0.0, np.zeros(M.shape[1]), np.zeros((M.shape[1],) * 2)
    w = np.exp(eta)
    for s in np.unique(strata):
        for t in np.unique(time[(strata == s) & (status == 1)]):
            R = (strata == s) & (time >= t)
            D = R & (time == t) & (status == 1)
            d = D.sum()
            ll += eta[D].sum()
            g += M[D].sum(0)
            for k in range(d):
                c = k / d if ties == "efron" else 0.0
                wk = w * (R - c * D)
                s0, s1 = wk.sum(), wk @ M
                ll -= np.log(s0)
                g -= s1 / s0
                info += (M * wk[:, None]).T @ M / s0 - np.outer(s1, s1) / s0**2
    return ll, g, info


@pytest.mark.parametrize("ties", ["efron", "breslow"])
def test_risk_sets_match_a_direct_computation(ties):
    rng = np.random.default_rng(0)
    n = 150
    time = rng.integers(1, 20, n).astype(float)
    status = (rng.random(n) < 0.7).astype(float)
    strata, g = rng.integers(0, 3, n), rng.integers(0, 8, n)
    M = np.column_stack([rng.normal(size=(n, 2)), np.eye(8)[g]])
    eta = M @ (rng.normal(size=10) * 0.4)
    ll0, g0, i0 = _direct(M, eta, time, status, strata, ties)
    ll, grad, hess = efron(M, eta, time, status, strata, ties)
    assert ll == pytest.approx(ll0, rel=1e-12)
    assert grad == pytest.approx(g0, abs=1e-10)
    assert -hess == pytest.approx(i0, abs=1e-10)
    rs = RiskSets(time, status, strata, ties)
    st = rs.state(eta[rs.order])
    kern = GroupKernel(rs, g[rs.order], 8).diag(st, np.ones(n), rs.suffix(st.g2))
    # diag(Z'RR'Z) = diag(Z' diag(w∘a) Z) − diag(information) for the indicator columns Z
    wa = np.bincount(g[rs.order], weights=st.w * st.a, minlength=8)
    assert kern == pytest.approx(wa - np.diag(i0)[2:], rel=1e-10, abs=1e-12)


def _simulate(seed, groups=30, per=6, frailty_sd=0.0):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(groups), per)
    x = rng.normal(size=g.size)
    rate = np.exp(0.7 * x + frailty_sd * rng.normal(size=groups)[g])
    t = rng.exponential(1 / rate)
    c = rng.exponential(2.0, g.size)
    return pd.DataFrame(
        {
            "time": np.round(np.minimum(t, c), 2),
            "status": (t <= c).astype(int),
            "x": x,
            "g": [f"g{i}" for i in g],
        }
    )


def test_no_frailty_gives_the_plain_cox_model():
    df = _simulate(1, frailty_sd=0.0)
    r = interlace.coxme("Surv(time, status) ~ x", df, groups="g")
    X = df[["x"]].to_numpy()
    res = minimize(lambda b: -efron(X, X @ b, df["time"].to_numpy(), df["status"].to_numpy())[0], [0.0])
    assert r.fe_params["x"] == pytest.approx(res.x[0], abs=0.05)
    # the integrated likelihood can only exceed the plain one by what a tiny variance buys
    assert r.llf >= -res.fun - 0.5


def test_recovers_a_large_frailty_variance():
    df = _simulate(2, groups=60, per=8, frailty_sd=1.0)
    r = interlace.coxme("Surv(time, status) ~ x", df, random=["(1 | g)"])
    assert r.fe_params["x"] == pytest.approx(0.7, abs=3 * r.fe_bse["x"])
    assert 0.4 < r.variance_components["g"] < 2.5


@pytest.mark.parametrize(
    "formula, data_change, exc, match",
    [
        ("time ~ x", None, ValueError, "Surv"),
        ("Surv(time, status) ~ x", {"time": -1.0}, ValueError, "negative"),
        ("Surv(time, status) ~ x", {"status": 2}, ValueError, "0 \\(censored\\) or 1"),
        ("Surv(time, nope) ~ x", None, KeyError, "nope"),
        ("Surv(time, status) ~ zz", None, KeyError, "zz"),
        ("Surv(time, status) ~ x + cluster(g)", None, ValueError, "cluster"),
        ("Surv(time, status) ~ x + frailty(g)", None, ValueError, "frailty"),
        ("Surv(time, status) ~ pspline(x)", None, ValueError, "pspline"),
        ("Surv(time, status) ~ x + tt(x)", None, ValueError, "tt"),
        ("Surv(time, status) ~ x + foo(x)", None, ValueError, "foo"),
        ("Surv(time, status) ~ x + strata(g, na.group = TRUE)", None, ValueError, "na.group"),
        ("Surv(time, time, status) ~ x", None, ValueError, "counting-process"),
        ("Surv(time, status) ~ x + (x | g)", None, ValueError, "slope without"),
        ("Surv(time, status) ~ x + (x || g)", None, ValueError, "'\\|\\|'"),
        ("Surv(time, status) ~ x + (1 + f | g)", None, ValueError, "numeric"),
    ],
)
def test_bad_input(formula, data_change, exc, match):
    df = _simulate(3, groups=5, per=4).assign(f=lambda d: np.where(d["x"] > 0, "a", "b"))
    if data_change:
        for col, value in data_change.items():
            df.loc[0, col] = value
    groups = None if "|" in formula else "g"
    with pytest.raises(exc, match=match):
        interlace.coxme(formula, df, groups=groups)


def test_bad_options():
    df = _simulate(3, groups=5, per=4)
    with pytest.raises(ValueError, match="ties"):
        interlace.coxme("Surv(time, status) ~ x", df, groups="g", ties="exact")
    with pytest.raises(ValueError, match="sparse"):
        interlace.coxme("Surv(time, status) ~ x", df, groups="g", sparse=50)
    with pytest.raises(ValueError, match="random term"):
        interlace.coxme("Surv(time, status) ~ x", df)


def test_indefinite_sparse_approximation_is_stepped_around():
    """With large variances coxme's sparse approximation of the information can be indefinite
    (here at the start σ² = 1 for both terms of (1 | centre/trt)); Newton then steps with the
    exact Hessian preconditioned by H̃ + diag(dropped row sums), and the fit reaches coxme's."""
    import scipy.sparse as sp

    from interlace.backends.reml.coxme import CoxTerm, fit_coxme, sparse_levels

    case = _case("eortc_nested")
    df = _data(case)
    ct = pd.Categorical(df["centre"] + ":" + df["trt"].astype(str)).codes
    cc = pd.Categorical(df["centre"]).codes
    n, m1, m2 = len(df), ct.max() + 1, cc.max() + 1
    Z = sp.csc_matrix((np.ones(2 * n), (np.r_[np.arange(n), np.arange(n)], np.r_[ct, m1 + cc])),
                      shape=(n, m1 + m2))
    sparse = np.flatnonzero(sparse_levels(np.bincount(ct), n, (50, 0.02), strict=True))
    fit = fit_coxme(df[["trt"]].to_numpy(float), Z, [CoxTerm(1, m1, 0), CoxTerm(1, m2, m1)],
                    df["time"].to_numpy(float), df["status"].to_numpy(float), sparse_cols=sparse,
                    theta0=np.zeros(2))
    ref = case["tight"]
    assert fit.loglik_integrated == pytest.approx(ref["loglik_integrated"], rel=1e-6)
    assert fit.beta[0] == pytest.approx(ref["coef"]["trt"], rel=1e-4)


PREDICT = json.loads((EXTRA / "coxme_predict.json").read_text())["cases"]


@pytest.mark.parametrize("case", PREDICT, ids=[c["name"] for c in PREDICT])
def test_predict_matches_r(case):
    """predict(type="lp"/"risk") as coxme's (tight control; random effects included, uncentred),
    and Xβ without random effects; newdata = the fitted rows gives the same."""
    data = _data(case)
    m = interlace.coxme(case["formula"], data)
    assert m.converged is True and m.optimizer_info["message"]
    lp, risk = m.predict(), m.predict(type="risk")
    assert lp == pytest.approx(case["lp"], rel=1e-4, abs=1e-5)
    assert risk == pytest.approx(case["risk"], rel=1e-4)
    assert m.predict(include_re=False) == pytest.approx(case["lp_fixed"], rel=1e-4, abs=1e-7)
    assert m.predict(re_form="~0") == pytest.approx(case["lp_fixed"], rel=1e-4, abs=1e-7)
    assert m.predict(newdata=data) == pytest.approx(lp, rel=1e-12, abs=1e-12)
    assert m.predict(newdata=data, type="risk") == pytest.approx(risk, rel=1e-12)


def test_predict_terms_new_levels_and_errors():
    case = next(c for c in PREDICT if c["name"] == "eortc_two_terms")
    data = _data(case)
    m = interlace.coxme(case["formula"], data)
    b = m.random_effects["centre"]
    centre_only = m.predict(re_form="~(1 | centre)")
    expect = m.fe_params["trt"] * data["trt"].to_numpy() + b.loc[data["centre"]].to_numpy()[:, 0]
    assert centre_only == pytest.approx(expect, rel=1e-12, abs=1e-12)
    new = data.iloc[:4].assign(centre="unseen")  # a new centre: b = 0 for it (and for centre:trt)
    assert m.predict(newdata=new) == pytest.approx(m.fe_params["trt"] * new["trt"].to_numpy(), abs=1e-12)
    with pytest.raises(ValueError, match="type must be 'lp'"):
        m.predict(type="response")
    with pytest.raises(ValueError, match="offset= applies to newdata"):
        m.predict(offset=np.zeros(len(data)))


def test_converged_is_reported_honestly():
    """converged comes from the variance search: True at its criterion, False when it stops
    before (here: one iteration allowed from a poor start)."""
    from interlace.backends.reml import coxme as cx

    rats = datasets.load("rats")
    m = interlace.coxme("Surv(time, status) ~ rx + (1 | litter)", rats)
    assert m.converged is True
    rs = RiskSets(rats["time"].to_numpy(float), rats["status"].to_numpy(float))
    assert rs.n_events == m.n_events
    codes = pd.factorize(rats["litter"], sort=True)[0]
    import scipy.sparse as sp

    Z = sp.csr_matrix((np.ones(len(rats)), (np.arange(len(rats)), codes)))
    prob = cx.PenalizedCox(rats[["rx"]].to_numpy(float), Z, [cx.CoxTerm(k=1, m=100, z_start=0)],
                           rats["time"].to_numpy(float), rats["status"].to_numpy(float), None, None,
                           "efron", None)
    theta, ok, msg = cx._maximize_theta(cx._Objective(prob), np.array([np.log(0.01)]),
                                        np.array([-18.0]), np.array([9.0]), max_iter=1)
    assert not ok and "iteration limit" in msg
    theta, ok, msg = cx._maximize_theta(cx._Objective(prob), np.array([np.log(0.01)]),
                                        np.array([-18.0]), np.array([9.0]))
    exact = interlace.coxme("Surv(time, status) ~ rx + (1 | litter)", rats, sparse=None)
    assert ok and exact.converged is True
    assert np.exp(theta[0]) == pytest.approx(exact.variance_components["litter"], rel=1e-3)
