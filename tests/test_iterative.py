"""The iterative (O(nnz)) REML solver against the exact blocked-Cholesky fit, and the solver choice.

The iterative solver solves the same REML (or ML) estimating equations as the exact engine; its
only stochastic error is in the Hutchinson estimates of the trace terms, whose Monte-Carlo
standard error the fit reports (``optimizer_info['vc_mc_rel_se']``, relative, per variance
component). Conjugate gradients run to a relative residual of 1e-8 (1e-6 for the probes) and
the fixed point to a relative step of 1e-6. So the tolerances below are: variance components
within 6 Monte-Carlo SEs plus 3e-4 (the exact optimizer's own tolerance on θ); β within 0.02 of
its SE; SE(β) within half the largest variance tolerance plus 1e-4 — Var(β̂) = (X'V⁻¹X)⁻¹ is
homogeneous of degree 1 in the variances, so |δ log SE| ≤ ½ max_k |δ log σ_k²|.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl
import pytest
import scipy.sparse as sp

import interlace
from interlace.backends.reml import iterative
from interlace.linalg.pcg import block_pcg


def _crossed(seed=0, n=4000, levels=(300, 60, 0), sd=(0.8, 0.5, 0.4)) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"x": rng.normal(size=n), "z": rng.normal(size=n)})
    y = 1 + 0.5 * df["x"] - 0.2 * df["z"] + rng.normal(size=n)
    for name, m, s in zip("abc", levels, sd, strict=True):
        if m:
            codes = rng.integers(0, m, n)
            df[name] = [f"{name}{i}" for i in codes]
            y = y + s * rng.normal(size=m)[codes]
    df["y"] = y
    return df


def _variances(r) -> np.ndarray:
    return np.r_[r.theta**2 * r.scale, r.scale]


def _assert_close(it, ex):
    assert it.optimizer_info["solver"] == "iterative" and ex.optimizer_info["solver"] == "exact"
    assert it.converged
    mc = np.array(list(it.optimizer_info["vc_mc_rel_se"].values()))
    rel = np.abs(_variances(it) / _variances(ex) - 1)
    tol = np.r_[6 * mc, 0.0] + 3e-4
    np.testing.assert_array_less(rel, tol)
    assert np.all(np.abs(it.fe_params - ex.fe_params) <= 0.02 * ex.fe_bse)
    np.testing.assert_allclose(it.fe_bse, ex.fe_bse, rtol=0.5 * tol.max() + 1e-4)
    assert np.all(np.isinf(it.fe_df)) and np.isnan(it.llf)


@pytest.mark.parametrize("random, levels", [
    (["(1 | a)", "(1 | b)"], (300, 60, 0)),
    (["(1 | a)", "(1 | b)", "(1 | c)"], (400, 90, 25)),
])
@pytest.mark.parametrize("method", ["REML", "ML"])
def test_iterative_equals_exact_on_crossed_designs(random, levels, method):
    df = _crossed(levels=levels)
    ex = interlace.fit("y ~ x + z", df, random=random, method=method, solver="exact")
    it = interlace.fit("y ~ x + z", df, random=random, method=method, solver="iterative")
    _assert_close(it, ex)
    np.testing.assert_allclose(it.fittedvalues, ex.fittedvalues, atol=1e-3 * df["y"].std())


def test_iterative_equals_exact_nested_and_weighted():
    rng = np.random.default_rng(5)
    n = 3000
    school = rng.integers(0, 40, n)
    klass = rng.integers(0, 6, n)
    df = pd.DataFrame({"school": school, "klass": klass, "x": rng.normal(size=n),
                       "w": rng.uniform(0.5, 2.0, n)})
    effects = rng.normal(size=40)[school] * 0.7 + rng.normal(size=240)[school * 6 + klass] * 0.5
    df["y"] = 2 + df["x"] + effects + rng.normal(size=n) / np.sqrt(df["w"])
    for kw in ({}, {"weights": "w"}):
        ex = interlace.fit("y ~ x", df, random=["(1 | school/klass)"], solver="exact", **kw)
        it = interlace.fit("y ~ x", df, random=["(1 | school/klass)"], solver="iterative", **kw)
        _assert_close(it, ex)


def test_uncorrelated_scalar_slopes():
    """(x || b) is two scalar terms on one factor: each observation still has one level per term."""
    df = _crossed(seed=6)
    ex = interlace.fit("y ~ x + z", df, random=["(1 | a)", "(x || b)"], solver="exact")
    it = interlace.fit("y ~ x + z", df, random=["(1 | a)", "(x || b)"], solver="iterative")
    _assert_close(it, ex)
    assert len(it.optimizer_info["vc_mc_rel_se"]) == 3


@pytest.mark.parametrize("engine", ["polars", "duckdb"])
def test_iterative_from_a_lazy_frame_equals_the_eager_iterative_fit(engine):
    df = _crossed(seed=2)
    frame = pl.from_pandas(df).lazy() if engine == "polars" else pytest.importorskip("duckdb").from_df(df)
    eager = interlace.fit("y ~ x + z", df, random=["(1 | a)", "(1 | b)"], solver="iterative")
    lazy = interlace.fit("y ~ x + z", frame, random=["(1 | a)", "(1 | b)"], solver="iterative")
    np.testing.assert_allclose(lazy.fe_params, eager.fe_params, rtol=1e-10)
    np.testing.assert_allclose(lazy.fe_bse, eager.fe_bse, rtol=1e-10)
    np.testing.assert_allclose(lazy.theta, eager.theta, rtol=1e-10)
    assert lazy.optimizer_info["solver"] == "iterative"
    with pytest.raises(ValueError, match="lazy frame"):
        lazy.fittedvalues  # noqa: B018 (the property raises)
    assert "Solver: iterative" in str(eager.summary()) and "Monte-Carlo" in str(eager.summary())


def test_auto_picks_the_iterative_solver_past_the_memory_budget(monkeypatch):
    df = _crossed(seed=3)
    assert interlace.fit("y ~ x", df, random=["(1 | a)", "(1 | b)"]).optimizer_info["solver"] == "exact"
    q2, size = iterative.exact_footprint(
        interlace.fit("y ~ x", df, random=["(1 | a)", "(1 | b)"]).design.terms, 2)
    assert q2 == 60 + 2 + 1 and size == 4 * 8 * q2 * q2
    monkeypatch.setattr(iterative, "EXACT_MEMORY_BUDGET", size - 1)
    auto = interlace.fit("y ~ x", df, random=["(1 | a)", "(1 | b)"])
    assert auto.optimizer_info["solver"] == "iterative"
    lazy = interlace.fit("y ~ x", pl.from_pandas(df).lazy(), random=["(1 | a)", "(1 | b)"])
    assert lazy.optimizer_info["solver"] == "iterative"
    # random slopes: the iterative solver does not fit them, so "auto" stays exact
    slopes = interlace.fit("y ~ x", df, random=["(1 + x | a)", "(1 | b)"])
    assert slopes.optimizer_info["solver"] == "exact"
    # the PyMC backend refuses the model at that scale, naming the reason
    with pytest.raises(ValueError, match="backend='pymc' refuses.*Gibbs"):
        interlace.fit("y ~ x", df, random=["(1 | a)", "(1 | b)"], backend="pymc")


@pytest.mark.parametrize("kwargs, exc, match", [
    ({"random": ["(1 + x | a)", "(1 | b)"]}, ValueError, "term for 'a' has 2 columns"),
    ({"df_method": "kenward-roger"}, ValueError, "kenward-roger"),
    ({"optimizer": "bobyqa"}, ValueError, "optimizer='bobyqa'"),
    ({"correlation": interlace.CompoundSymmetry(group="b")}, ValueError, "correlation"),
    ({"backend": "pymc"}, ValueError, "solver='iterative' has no meaning for backend='pymc'"),
    ({"solver": "fast"}, ValueError, "solver must be one of"),
])
def test_iterative_refusals(kwargs, exc, match):
    df = _crossed(seed=4, n=600, levels=(40, 10, 0))
    kw = {"random": ["(1 | a)", "(1 | b)"], "solver": "iterative", **kwargs}
    with pytest.raises(exc, match=match):
        interlace.fit("y ~ x", df, **kw)


def test_block_pcg_solves_each_column():
    rng = np.random.default_rng(0)
    M = sp.random(200, 200, density=0.02, random_state=1)
    A = (M @ M.T + sp.eye(200)).tocsr()
    B = rng.normal(size=(200, 5))
    B[:, 2] = 0.0
    res = block_pcg(lambda X: A @ X, B, 1.0 / A.diagonal(), rtol=1e-10)
    assert res.converged
    np.testing.assert_allclose(res.X, np.linalg.solve(A.toarray(), B), atol=1e-8)
