"""Bootstrap, power, influence and allfit: checked against exact or analytic values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import interlace
from interlace import datasets, diagnostics


@pytest.fixture(scope="module")
def sleep_fit():
    return interlace.fit("Reaction ~ Days", datasets.load("sleepstudy"), random=["(Days | Subject)"])


def test_bootstrap_reproducible_covering_and_parallel_equal(sleep_fit):
    a = interlace.bootstrap(sleep_fit, nsim=30, seed=5, progressbar=False)
    b = interlace.bootstrap(sleep_fit, nsim=30, seed=5, n_jobs=2, progressbar=False)
    np.testing.assert_array_equal(a.draws.to_numpy(), b.draws.to_numpy())
    ci = a.ci()
    assert np.all(ci.iloc[:, 0] < a.observed) and np.all(a.observed < ci.iloc[:, 1])
    # the bootstrap SE of the slope is near its model-based SE
    assert a.std_error["Days"] == pytest.approx(sleep_fit.fe_bse["Days"], rel=0.35)
    c = interlace.bootstrap(sleep_fit, nsim=5, seed=5, statistic=lambda r: r.fe_params, progressbar=False)
    assert list(c.draws.columns) == ["(Intercept)", "Days"]


def test_power_matches_the_noncentral_t():
    n_s, per = 20, 10
    design = pd.DataFrame(
        {
            "subject": np.repeat([f"s{i}" for i in range(n_s)], per),
            "x": np.tile([0.0] * 5 + [1.0] * 5, n_s),
        }
    )
    beta1, sigma = 0.8, 2.0
    res = interlace.power(
        "y ~ x",
        design,
        fixed={"(Intercept)": 0.0, "x": beta1},
        test="x",
        sigma=sigma,
        groups="subject",
        covariances={"subject": 1.0},
        nsim=200,
        seed=3,
        progressbar=False,
    )
    N = n_s * per
    se = sigma / np.sqrt(N * 0.25)
    df = N - n_s - 1
    crit = stats.t.ppf(0.975, df)
    analytic = stats.nct.sf(crit, df, beta1 / se) + stats.nct.cdf(-crit, df, beta1 / se)
    mc_se = np.sqrt(analytic * (1 - analytic) / 200)
    assert res.power == pytest.approx(analytic, abs=3.5 * mc_se)
    assert res.ci[0] <= res.power <= res.ci[1]
    with pytest.raises(KeyError, match="covariances"):
        interlace.power(
            "y ~ x",
            design,
            fixed={"(Intercept)": 0.0, "x": 1.0},
            test="x",
            sigma=1.0,
            groups="subject",
            nsim=2,
            progressbar=False,
        )


def _refit_fixed_theta_beta(r, keep):
    """β̂ on the rows ``keep`` with the variance components held at the fit (dense GLS)."""
    d = r.design
    lam = np.zeros((d.q, d.q))
    for t in d.terms:
        T = t.T(r.theta)
        for lv in range(t.m):
            s0 = t.z_start + lv * t.k
            lam[s0 : s0 + t.k, s0 : s0 + t.k] = T
    Z = d.Z.toarray()[keep]
    V = r.scale * (np.eye(keep.sum()) + Z @ lam @ lam.T @ Z.T)
    X, y = d.X[keep], d.y[keep]
    Vi = np.linalg.inv(V)
    return np.linalg.solve(X.T @ Vi @ X, X.T @ Vi @ y), X.T @ Vi @ X


def test_cooks_distance_equals_brute_force_deletion(sleep_fit):
    inf = diagnostics.influence(sleep_fit)
    full = np.ones(sleep_fit.nobs, dtype=bool)
    beta, M = _refit_fixed_theta_beta(sleep_fit, full)
    for i in (0, 7, 93, 179):
        keep = full.copy()
        keep[i] = False
        b_i, _ = _refit_fixed_theta_beta(sleep_fit, keep)
        delta = beta - b_i
        assert inf["cooks_distance"][i] == pytest.approx(delta @ M @ delta / 2, rel=1e-6)
    assert np.all((inf["leverage"] > 0) & (inf["leverage"] < 1))
    # leverages sum to the effective number of parameters: p < sum h < p + q
    assert 2 < inf["leverage"].sum() < 2 + 36


def test_group_cooks_distance_equals_brute_force(sleep_fit):
    inf = diagnostics.influence(sleep_fit, group="Subject")
    assert len(inf) == 18
    full = np.ones(sleep_fit.nobs, dtype=bool)
    beta, M = _refit_fixed_theta_beta(sleep_fit, full)
    codes = sleep_fit.design.terms[0].codes
    for lv in (0, 9):
        b_i, _ = _refit_fixed_theta_beta(sleep_fit, codes != lv)
        delta = beta - b_i
        assert inf["cooks_distance"].iloc[lv] == pytest.approx(delta @ M @ delta / 2, rel=1e-6)
    with pytest.raises(KeyError, match="Nobody"):
        diagnostics.influence(sleep_fit, group="Nobody")


def test_allfit_agrees_across_optimizers(sleep_fit):
    tab = interlace.allfit(sleep_fit)
    assert list(tab.index) == ["lbfgsb", "bobyqa"]
    assert tab["logLik"].astype(float).max() - tab["logLik"].astype(float).min() < 1e-6
    np.testing.assert_allclose(tab["Days"].astype(float), sleep_fit.fe_params["Days"], rtol=1e-5)


def test_simulate_shapes_and_seed(sleep_fit):
    a = sleep_fit.simulate(3, seed=2)
    assert a.shape == (180, 3)
    np.testing.assert_array_equal(a, sleep_fit.simulate(3, seed=2))
    cond = sleep_fit.simulate(500, seed=2, include_re=False)
    np.testing.assert_allclose(
        cond.mean(axis=1), sleep_fit.fittedvalues, atol=4 * np.sqrt(sleep_fit.scale / 500) * 1.5
    )


def test_result_methods_delegate(sleep_fit):
    assert sleep_fit.r2() == diagnostics.r2(sleep_fit)
    assert sleep_fit.icc() == diagnostics.icc(sleep_fit)
    assert sleep_fit.influence(group="Subject").shape == (18, 1)
    assert sleep_fit.check_singular() is False
    assert sleep_fit.check_singular(tol=1.0) is True  # θ₃ = 0.23 is within 1 of its bound


def test_bootstrap_counts_failed_and_nonconverged_refits(sleep_fit, monkeypatch):
    engine = sleep_fit.engine
    original = engine.refit
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] % 4 == 0:
            raise np.linalg.LinAlgError("not positive definite")
        r = original(*args, **kwargs)
        if calls["n"] % 5 == 0:
            r.converged = False
        return r

    monkeypatch.setattr(engine, "refit", flaky)
    with pytest.warns(UserWarning, match="5 of 20 refits failed .* 3 did not converge"):
        res = interlace.bootstrap(sleep_fit, nsim=20, seed=1, progressbar=False)
    assert (res.n_failed, res.n_nonconverged, len(res.draws)) == (5, 3, 15)
    assert "5 refit(s) failed" in repr(res)


def test_power_builds_the_design_without_fitting(monkeypatch):
    import interlace.api

    def no_fit(*args, **kwargs):
        raise AssertionError("power must not fit a model to a placeholder response")

    monkeypatch.setattr(interlace.api, "fit", no_fit)
    design = pd.DataFrame({"s": np.repeat([f"s{i}" for i in range(8)], 6), "x": np.tile([0.0, 1.0], 24)})
    res = interlace.power("y ~ x", design, fixed={"(Intercept)": 0.0, "x": 1.0}, test="x", sigma=1.0,
                          groups="s", covariances={"s": 0.5}, nsim=10, seed=2, progressbar=False)
    assert res.nsim == 10 and res.n_failed == 0
