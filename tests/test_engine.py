"""The blocked PLS engine against brute-force dense linear algebra, and its analytic
derivatives against finite differences (no timing assertions: speed is benchmarks/run.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from interlace.backends.reml.lmm import LMMObjective, _deviance_from_factor
from interlace.backends.reml.optimize import scaled_grad_norm
from interlace.data.design import build_design
from interlace.inference.derivatives import hessian, jacobian
from interlace.linalg.gradient import factor_derivatives, modes
from interlace.linalg.gram import WeightedGram
from interlace.linalg.pls import PLSProblem
from interlace.model.formula import parse_random
from interlace.model.spec import ModelSpec


def crossed_frame(seed: int = 0, n: int = 400, weights: bool = False) -> pd.DataFrame:
    """Three crossed factors (30 × 12 × 4 levels), a covariate and, optionally, weights."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "a": rng.integers(0, 30, n).astype(str),
            "b": rng.integers(0, 12, n).astype(str),
            "c": rng.integers(0, 4, n).astype(str),
            "x": rng.normal(size=n),
        }
    )
    ea = rng.normal(0, 0.8, 30)[df.a.astype(int)]
    eb = rng.normal(0, 0.5, 12)[df.b.astype(int)]
    ec = rng.normal(0, 0.3, 4)[df.c.astype(int)]
    sa = rng.normal(0, 0.4, 30)[df.a.astype(int)]
    df["y"] = 1 + 0.5 * df.x + ea + sa * df.x + eb + ec + rng.normal(0, 1, n)
    if weights:
        df["w"] = rng.uniform(0.5, 2.0, n)
    return df


def make_design(df: pd.DataFrame, fixed: str, random: list[str], weights: bool = False):
    spec = ModelSpec(formula=fixed, fixed=fixed, random=tuple(parse_random(random)))
    w = df["w"].to_numpy() if weights else None
    return build_design(spec, df, w, None)


MODELS = {
    "scalar": ("y ~ x", ["(1|a)", "(1|b)", "(1|c)"]),
    "first_vector": ("y ~ x", ["(1 + x|a)", "(1|b)", "(1|c)"]),
    "second_vector": ("y ~ x", ["(1|a)", "(1 + x|b)"]),
    "uncorrelated": ("y ~ x", ["(x || a)", "(1|b)"]),
    "single": ("y ~ x", ["(1 + x|a)"]),
}


def random_theta(design, rng) -> np.ndarray:
    lower = design.theta_lower()
    th = rng.uniform(0.3, 1.5, design.n_theta)
    return np.where(np.isfinite(lower), th, rng.normal(0, 0.4, design.n_theta))


def dense_reference(design, theta: np.ndarray, reml: bool) -> dict:
    """log|L_Z|², log|R_X|², r², β̂, b̂ from dense matrices (the definitions in engine.md)."""
    n, p, q = design.n, design.p, design.q
    w = np.ones(n) if design.weights is None else design.weights
    sw = np.sqrt(w)
    Z = design.Z.toarray() * sw[:, None]
    X = design.X * sw[:, None]
    y = (design.y - design.offset) * sw
    Lam = np.zeros((q, q))
    for t in design.terms:
        T = t.T(theta)
        for lv in range(t.m):
            s0 = t.z_start + lv * t.k
            Lam[s0 : s0 + t.k, s0 : s0 + t.k] = T
    ZL = Z @ Lam
    A = ZL.T @ ZL + np.eye(q)
    RZX = np.linalg.solve(np.linalg.cholesky(A), ZL.T @ X)
    XtVX = X.T @ X - RZX.T @ RZX
    big = np.block([[A, ZL.T @ X], [X.T @ ZL, X.T @ X]])
    sol = np.linalg.solve(big, np.r_[ZL.T @ y, X.T @ y])
    u, beta = sol[:q], sol[q:]
    r = y - X @ beta - ZL @ u
    r2 = float(r @ r + u @ u)
    logdet_LZ = float(np.linalg.slogdet(A)[1])
    logdet_RX = float(np.linalg.slogdet(XtVX)[1])
    nmp = n - p if reml else n
    dev = logdet_LZ + (logdet_RX if reml else 0) + nmp * (1 + np.log(2 * np.pi * r2 / nmp)) - np.log(w).sum()
    return dict(logdet_LZ=logdet_LZ, logdet_RX=logdet_RX, r2=r2, beta=beta, b=Lam @ u, dev=dev,
                rx_inv=np.linalg.inv(XtVX))


def problems(design):
    """The problem with the cost model's split, and with every other split of the other terms."""
    yield "auto", PLSProblem(design)
    n_rest = len(design.terms) - 1
    for mask in range(2**n_rest):
        sparse_terms = [i for i in range(n_rest) if mask >> i & 1]
        prob = PLSProblem(design)
        g = prob.gram
        B = sp.csr_matrix(np.vstack([_full_rows(g)[: g.n_sparse_rows]]))
        prob.gram = WeightedGram(
            B, _full_rows(g)[g.n_sparse_rows :], [(a, b) for a, b, *_ in prob.rest.blocks], prob.k1,
            sparse_terms=sparse_terms,
        )
        yield f"sparse{sparse_terms}", prob


def _full_rows(g: WeightedGram) -> np.ndarray:
    """B (N × m·k) as a dense array, rows in their original order."""
    out = np.zeros((g.N, g.BD.shape[1]))
    out[g.D] = g.BD
    if g.S.size:
        out[g.S] = g.BS.toarray()
    return out


@pytest.mark.parametrize("model", list(MODELS))
@pytest.mark.parametrize("reml", [True, False])
def test_factor_matches_dense_linear_algebra(model, reml):
    df = crossed_frame(1, weights=True)
    design = make_design(df, *MODELS[model], weights=True)
    rng = np.random.default_rng(2)
    for _ in range(2):
        theta = random_theta(design, rng)
        ref = dense_reference(design, theta, reml)
        for label, prob in problems(design):
            f = prob.factor(theta)
            assert f.logdet_LZ == pytest.approx(ref["logdet_LZ"], rel=1e-10), label
            assert f.logdet_RX == pytest.approx(ref["logdet_RX"], rel=1e-10), label
            assert f.r2 == pytest.approx(ref["r2"], rel=1e-10), label
            assert _deviance_from_factor(prob, f, reml) == pytest.approx(ref["dev"], rel=1e-11), label
            beta, b = prob.solve(f)
            np.testing.assert_allclose(beta, ref["beta"], rtol=1e-9, atol=1e-11, err_msg=label)
            np.testing.assert_allclose(b, ref["b"], rtol=1e-8, atol=1e-10, err_msg=label)
            np.testing.assert_allclose(prob.rx_inverse(f), ref["rx_inv"], rtol=1e-9, err_msg=label)


@pytest.mark.parametrize("k", [1, 2])
def test_weighted_gram_and_its_adjoint(k):
    rng = np.random.default_rng(3)
    m, N_sparse, N_dense = 40, 25, 3
    B_sparse = sp.random(N_sparse, m * k, density=0.15, random_state=4, format="csr")
    B_dense = rng.normal(size=(N_dense, m * k))
    term_rows = [(0, 10), (10, 18), (18, 25)]
    B = np.vstack([B_sparse.toarray(), B_dense])
    L = rng.normal(size=(m, k, k))
    W = L @ np.swapaxes(L, 1, 2)
    Wfull = sp.block_diag(list(W)).toarray()
    Pi = rng.normal(size=(30, 30))
    Pi = Pi + Pi.T
    for sparse_terms in ([], [0], [1], [0, 2], [1, 2], [0, 1, 2]):
        g = WeightedGram(B_sparse, B_dense, term_rows, k, sparse_terms=sparse_terms)
        np.testing.assert_allclose(g.gram(W), B @ Wfull @ B.T, rtol=1e-12, atol=1e-12)
        for na in (25, 27):  # ML- and REML-sized leading blocks
            full = B[:na].T @ Pi[:na, :na] @ B[:na]
            want = np.array([full[j * k : (j + 1) * k, j * k : (j + 1) * k] for j in range(m)])
            np.testing.assert_allclose(g.adjoint(Pi[:na, :na]), want, rtol=1e-11, atol=1e-12)
        if not sparse_terms:  # all rows dense: the adjoint from a Cholesky factor, Π never formed
            for na in (25, 27):
                S = rng.normal(size=(na, na))
                Lc = np.linalg.cholesky(S @ S.T + na * np.eye(na))
                lam = rng.uniform(0.5, 2.0, na)
                Pi_c = lam[:, None] * np.linalg.inv(Lc @ Lc.T) * lam[None, :]
                got = g.adjoint_chol(Lc, lambda X, lam=lam: X * lam[:, None], na)
                np.testing.assert_allclose(got, g.adjoint(Pi_c), rtol=1e-10, atol=1e-12)
        V = rng.normal(size=(B.shape[0], 2))
        np.testing.assert_allclose(g.tmul(V), B.T @ V, rtol=1e-12, atol=1e-12)
        U = rng.normal(size=(m * k, 2))
        np.testing.assert_allclose(g.mul(U), B @ U, rtol=1e-12, atol=1e-12)


def numeric_gradient(fun, x):
    return jacobian(lambda v: np.array([fun(v)]), x, d=1e-3, eps=1e-4, r=4)[0]


@pytest.mark.parametrize("model", list(MODELS))
@pytest.mark.parametrize("reml", [True, False])
def test_gradient_matches_finite_differences(model, reml):
    df = crossed_frame(5, weights=True)
    design = make_design(df, *MODELS[model], weights=True)
    obj = LMMObjective(design, reml)
    rng = np.random.default_rng(6)
    for _ in range(2):
        theta = random_theta(design, rng)
        dev, g = obj.value_and_grad(theta)
        assert dev == pytest.approx(obj(theta), rel=1e-13)
        num = numeric_gradient(obj, theta)
        np.testing.assert_allclose(g, num, rtol=1e-6, atol=1e-6 * np.abs(num).max())


def test_gradient_at_a_zero_variance_is_zero_and_finite():
    design = make_design(crossed_frame(7), *MODELS["scalar"])
    obj = LMMObjective(design, True)
    theta = np.array([0.7, 0.0, 0.4])
    _, g = obj.value_and_grad(theta)
    assert np.all(np.isfinite(g)) and g[1] == 0.0
    num = numeric_gradient(obj, theta)
    np.testing.assert_allclose(g, num, rtol=1e-6, atol=1e-6 * np.abs(num).max())


def test_derivatives_leave_the_factor_untouched():
    design = make_design(crossed_frame(8), "y ~ 1", ["(1|a)"])
    prob = PLSProblem(design)
    f = prob.factor(np.array([0.8]))
    before = (f.LRR.copy(), f.Mt.copy(), f.W.copy())
    factor_derivatives(prob, f, True)
    modes(prob, f)
    for a, b in zip(before, (f.LRR, f.Mt, f.W), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("model", ["scalar", "first_vector", "second_vector"])
@pytest.mark.parametrize("reml", [True, False])
def test_satterthwaite_parts_match_numerical_derivatives(model, reml):
    """H (analytic σ parts, differenced analytic gradients) and J (analytic) against
    Richardson-extrapolated derivatives of the deviance and of Var(β̂) (lmerTest's route)."""
    design = make_design(crossed_frame(9), *MODELS[model])
    obj = LMMObjective(design, reml)
    theta = random_theta(design, np.random.default_rng(10))
    scale = 1.3
    H, J = obj.satterthwaite_parts(theta, scale)
    varpar = np.r_[theta, np.sqrt(scale)]
    H_num = hessian(obj.varpar_deviance, varpar)
    J_num = jacobian(obj.cov_beta, varpar)
    np.testing.assert_allclose(H, H_num, rtol=1e-6, atol=1e-6 * np.abs(H_num).max())
    np.testing.assert_allclose(J, J_num, rtol=1e-6, atol=1e-8 * np.abs(J_num).max())


def test_scaled_gradient_norm_is_lme4s_statistic():
    H = np.array([[4.0, 1.0], [1.0, 9.0]])
    g = np.array([0.5, -3.0])
    R = np.linalg.cholesky(H).T
    want = np.max(np.minimum(np.abs(g), np.abs(np.linalg.solve(R, g))))
    assert scaled_grad_norm(g, np.array([1.0, 1.0]), np.array([0.0, 0.0]), H) == pytest.approx(want)
    # a parameter at its bound pushed outward is not counted
    assert scaled_grad_norm(np.array([5.0, 0.0]), np.array([0.0, 1.0]), np.array([0.0, 0.0]), H) == 0.0


def test_no_dense_array_grows_with_the_first_terms_levels_squared():
    """Memory linear in n: nothing of size q₁ × q₁ (q₁ = 3,000 levels here) is stored."""
    rng = np.random.default_rng(11)
    n = 12000
    df = pd.DataFrame(
        {"g": (rng.permutation(n) % 3000).astype(str), "h": rng.integers(0, 40, n).astype(str),
         "y": rng.normal(size=n)}
    )
    design = make_design(df, "y ~ 1", ["(1|g)", "(1|h)"])
    prob = PLSProblem(design)
    q1 = prob.q1
    assert q1 == 3000
    f = prob.factor(np.array([0.5, 0.5]))
    fd = factor_derivatives(prob, f, True)
    arrays = [v for obj in (prob, prob.gram, f, fd) for v in vars(obj).values()]
    sizes = [a.size if isinstance(a, np.ndarray) else getattr(a, "nnz", 0) for a in arrays]
    assert max(sizes) < q1 * q1 / 10
