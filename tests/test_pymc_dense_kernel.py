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


def test_not_positive_definite_gives_minus_inf_on_both_paths():
    from interlace.backends.pymc.marginal import GaussianPrior

    des, fast, slow = _pair(["(1 + x | subj)", "(1 + x | item)"])
    th = np.array([0.8, 0.1, 0.5, 0.6, -0.2, 0.4])
    prior = GaussianPrior.from_cov(np.zeros(2), np.eye(2) * 10.0)
    for lmm in (fast, slow):  # A = I − Λ'M_zzΛ: its elimination meets a non-positive pivot (status 0)
        lmm.Mzz = -lmm.Mzz
    st = fast._kernel_pieces(th)[0]
    assert st == 0
    a, b = fast.logp_integrated(th, 1.0, prior), slow.logp_integrated(th, 1.0, prior)
    assert a.logp == b.logp == -np.inf and not a.g_theta.any() and not b.g_theta.any()
    with pytest.raises(np.linalg.LinAlgError):
        fast.pieces(th)
    for lmm in (fast, slow):
        lmm.Mzz = -lmm.Mzz
    # H = S_XX/σ² + P₀ not positive definite: a prior precision far below −S_XX/σ²
    bad = GaussianPrior(np.zeros(2), -1e9 * np.eye(2), 0.0)
    a, b = fast.logp_integrated(th, 1.0, bad), slow.logp_integrated(th, 1.0, bad)
    assert a.logp == b.logp == -np.inf


def test_blas_bindings_equal_numpy_and_compile_cacheably():
    """dgemm/dsyrk called from numba by symbol name (backends/pymc/blas.py), on row-major arrays
    with offsets and leading dimensions, seen by BLAS as their column-major transposes."""
    from numba import njit

    from interlace.backends.pymc import kernels_dense
    from interlace.backends.pymc.blas import L, N, T, dgemm, dsyrk

    @njit
    def products(A, B, C, K):
        m, k = A.shape
        n = B.shape[1]
        # C[1:, 2:] ← C[1:, 2:] − A B (row-major): column-major (C')' ← C' − B'A'
        dgemm(N, N, n, m, k, -1.0, B, 0, n, A, 0, k, 1.0, C, C.shape[1] + 2, C.shape[1])
        # K ← 2AA': BLAS sees A as A' (k × m), and (A')'A' = AA'
        dgemm(T, N, m, m, k, 2.0, A, 0, k, A, 0, k, 0.0, K, 0, m)
        # upper triangle (row-major) of K[1:, 1:] ← K − A[1:]A[1:]'  (BLAS 'L' = row-major upper)
        dsyrk(L, T, m - 1, k, -1.0, A, k, k, 1.0, K, m + 1, m)

    rng = np.random.default_rng(3)
    A, B = rng.normal(size=(5, 4)), rng.normal(size=(4, 6))
    C = rng.normal(size=(6, 8))
    K = np.zeros((5, 5))
    want_C = C.copy()
    want_C[1:, 2:] -= A @ B
    want_K = 2.0 * A @ A.T
    want_K[1:, 1:] -= A[1:] @ A[1:].T
    products(A, B, C, K)
    np.testing.assert_allclose(C, want_C, rtol=1e-13, atol=1e-13)
    iu = np.triu_indices(4)
    np.testing.assert_allclose(K[1:, 1:][iu], want_K[1:, 1:][iu], rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(K[0], want_K[0], rtol=1e-13)
    # the kernel refers to BLAS by name, not by address: numba may cache it on disk
    des, fast, _ = _pair(["(1 + x | subj)", "(1 + x | item)"])
    fast._kernel_pieces(np.array([0.8, 0.1, 0.5, 0.6, -0.2, 0.4]))
    for sig in kernels_dense.crossed_pieces.signatures:
        assert not kernels_dense.crossed_pieces.overloads[sig].library.has_dynamic_globals
