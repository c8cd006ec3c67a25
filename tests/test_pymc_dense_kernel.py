"""The compiled dense-factor kernel (backends/pymc/kernels_dense.py) against the numpy evaluator
of the same density: log p(y | θ, σ[, β]) and its gradient, on crossed designs."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from interlace.data.build import lmm_model

pytest.importorskip("numba")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


def _design(formula, df, random):
    return lmm_model(formula, df, None, random, "REML", "lbfgsb", None, None, None, "satterthwaite", None,
                     False)[1]


def _pair(random):
    from designs import subject_item_slopes

    from interlace.backends.pymc.dense import DenseMarginalLMM

    d = subject_item_slopes(seed=3, n_subj=14, n_item=9)
    des = _design(d.formula, d.data, random)
    fast, slow = DenseMarginalLMM(des), DenseMarginalLMM(des)
    slow._kernel = False
    assert fast._kernel
    return des, fast, slow


@pytest.mark.parametrize("random", [
    ["(1 + x | subj)", "(1 + x | item)"],
    ["(1 + x | subj)", "(1 | item)", "(0 + x | item)"],  # a scalar term after the dense rest
    ["(1 | item)", "(1 + x | subj)"],
])
def test_compiled_dense_density_equals_the_numpy_one(random):
    from interlace.backends.pymc.marginal import GaussianPrior

    des, fast, slow = _pair(random)
    prior = GaussianPrior.from_cov(np.array([0.5, 0.0]), np.diag([4.0, 9.0]))
    rng = np.random.default_rng(7)
    diag = np.concatenate([(r == c) for r, c in (fast._tri[t.k] for t in des.terms)])
    for _ in range(10):
        th = rng.normal(size=des.n_theta) * 0.7
        th[diag] = np.abs(th[diag]) + 0.01
        sigma = float(rng.uniform(0.5, 2.0))
        a, b = fast.logp_integrated(th, sigma, prior), slow.logp_integrated(th, sigma, prior)
        assert a.logp == pytest.approx(b.logp, rel=1e-12)
        np.testing.assert_allclose(a.g_theta, b.g_theta, rtol=1e-9, atol=1e-9 * np.abs(b.g_theta).max())
        assert a.g_sigma == pytest.approx(b.g_sigma, rel=1e-10)
        beta = rng.normal(size=des.p)
        c, d = fast.logp_and_grad(th, sigma, beta), slow.logp_and_grad(th, sigma, beta)
        assert c.logp == pytest.approx(d.logp, rel=1e-12)
        np.testing.assert_allclose(c.g_theta, d.g_theta, rtol=1e-9, atol=1e-9 * np.abs(d.g_theta).max())
        np.testing.assert_allclose(c.g_beta, d.g_beta, rtol=1e-9)


def test_tiny_diagonal_of_T_falls_back_to_the_numpy_path():
    from interlace.backends.pymc.marginal import GaussianPrior

    des, fast, slow = _pair(["(1 + x | subj)", "(1 + x | item)"])
    prior = GaussianPrior.from_cov(np.zeros(2), np.eye(2) * 10.0)
    th = np.array([0.5, 0.2, 1e-9, 0.4, -0.1, 0.3])  # the subject slope's SD ~ 0: T⁻¹ unusable
    a, b = fast.logp_integrated(th, 1.0, prior), slow.logp_integrated(th, 1.0, prior)
    assert a.logp == b.logp and np.array_equal(a.g_theta, b.g_theta)


@pytest.mark.parametrize("given_beta", [False, True])
def test_one_factorization_per_draw_gives_the_base_class_draws(given_beta):
    """DenseMarginalLMM.draw_conditionals (one factor of A per draw for β and b) equals the
    generic two-step draws of MarginalBase: same deviates, same conditional distributions."""
    from interlace.backends.pymc.marginal import GaussianPrior, MarginalBase

    des, fast, _ = _pair(["(1 + x | subj)", "(1 + x | item)"])
    prior = GaussianPrior.from_cov(np.array([0.5, 0.0]), np.diag([4.0, 9.0]))
    rng = np.random.default_rng(11)
    diag = np.concatenate([(r == c) for r, c in (fast._tri[t.k] for t in des.terms)])
    th = rng.normal(size=(25, des.n_theta)) * 0.5
    th[:, diag] = np.abs(th[:, diag]) + 0.05
    sigma = 0.8 + rng.uniform(size=25)
    beta = rng.normal(size=(25, des.p)) if given_beta else None
    ours = fast.draw_conditionals(th, sigma, beta, prior, np.random.default_rng(5))
    base = MarginalBase.draw_conditionals(fast, th, sigma, beta, prior, np.random.default_rng(5))
    for a, b in zip(ours, base, strict=True):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    other = fast.draw_conditionals(th, sigma, beta, prior, np.random.default_rng(6))
    assert not np.allclose(other[1], ours[1])
