"""Crossed and nested Gaussian LMMs at scale: O(nnz) steps, no dense factor.

Model y = Xβ + Σ_k Z_k b_k + ε with scalar random-effects terms (random intercepts, crossed or
nested), b_k ~ N(0, σ²θ_k² I), ε ~ N(0, σ²W⁻¹). In lme4's scaled form (b = Λu, Λ = diag(θ_k))
the penalized least-squares system has the matrix A = ΛZ'WZΛ + I. The exact engine factors A
densely beyond the first term (O(q₂³)); here every step uses only products with the sparse
Z'WZ (O(nnz) each):

1. **Solves with A** by conjugate gradients on the Schur complement of the first (largest) term,
   whose block of A is diagonal: Sc = A₂₂ − A₂₁A₁₁⁻¹A₁₂, Jacobi-preconditioned with Sc's exact
   diagonal (the block-Jacobi/backfitting preconditioner of Ghosh, Hastie & Owen,
   arXiv:2007.10612, in Krylov form); many right-hand sides share each sparse product.
2. **β by GLS**: with Y = A⁻¹ΛZ'W[X y], S_X = X'WX − (ΛZ'WX)'Y_X = X'V⁻¹X·σ², β̂ = S_X⁻¹(…),
   û = Y_y − Y_Xβ̂ and r² = y'Wy − β̂'X'Wy − û'ΛZ'Wy. Var(β̂) = σ̂²S_X⁻¹ accounts for the crossed
   correlation (p + 1 CG solves; exact up to the CG tolerance, given θ̂).
3. **Variance components by REML** (or ML): the score equations for σ_k² written as Harville's
   (1977, JASA 72) fixed point σ_k² = ‖b̂_k‖² / (m_k − t_k), t_k = tr[(C_u⁻¹)_kk] the trace of
   term k's block of the inverse of the scaled mixed-model matrix (for ML, of A⁻¹), and σ² =
   r²/(n − p). t_k = tr(A⁻¹)_kk + tr(Y_X,k S_X⁻¹ Y_X,k'); the second part is exact, the first
   is estimated by Hutchinson's (1990) estimator with fixed Rademacher probes v (so the fixed
   point is deterministic): for the first term, tr(A₁₁⁻¹) is exact and only
   tr(Sc⁻¹A₂₁A₁₁⁻²A₁₂) is estimated; for the others, tr(Sc⁻¹)_kk. The Monte-Carlo standard
   error of each t_k is reported, and propagated to the variance components
   (δσ_k²/σ_k² ≈ δt_k/(m_k − t_k), amplified by 1/(1 − ρ_k), ρ_k the fixed point's observed
   contraction rate for θ_k). Monte-Carlo REML of this kind: Matilainen et al. (2013),
   PLoS ONE 8:e80821.

What is exact: β̂ and Var(β̂) given the variance components, the conditional modes b̂. What is
estimated: the trace terms in the variance-component equations (to the reported Monte-Carlo
error). Not computed: the REML criterion/log-likelihood (it needs log|A|), the Satterthwaite
df (t-tests use df = ∞, i.e. Wald z, appropriate at the sizes this solver is for).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from ...linalg.pcg import block_pcg

__all__ = [
    "EXACT_MEMORY_BUDGET", "N_PROBES", "IterativeFit", "exact_footprint", "choose_solver",
    "gram_from_design", "symmetric_from_lower", "fit_iterative",
]

EXACT_MEMORY_BUDGET = 2 * 1024**3  # bytes: "auto" leaves the exact factor past this estimate
N_PROBES = (32, 128, 1_000_000)  # Hutchinson probes: 10⁶/q₂ clipped to [32, 128] (cheap when q₂ is small)
CG_RTOL = 1e-8  # relative residual of the CG solves for β̂ and b̂
PROBE_RTOL = 1e-6  # ... and of the probe solves (far below the Monte-Carlo error of the traces)
TOL = 1e-6  # stop when no θ_k moves by more than TOL relatively
MAX_ITER = 500
SOLVERS = ("auto", "exact", "iterative")


def exact_footprint(terms, p: int) -> tuple[int, int]:
    """(q₂, bytes) of the exact engine's dense blocks: the terms after the largest, X and y form
    a q₂ × q₂ Schur complement held about four times (Ω̃, its factor, B W B' and the gradient's
    work array); each factorization costs ≈ q₂³/3 flops."""
    q2 = sum(t.q for t in list(terms)[1:]) + p + 1
    return q2, 4 * 8 * q2 * q2


def _iterative_unsupported(terms) -> str | None:
    for t in terms:
        if t.k != 1:
            return (f"the iterative solver fits scalar random-effects terms (random intercepts, crossed or "
                    f"nested); the term for {t.group!r} has {t.k} columns {t.columns}")
    if not terms:
        return "the iterative solver needs at least one random-effects term"
    return None


def choose_solver(solver: str, terms, p: int) -> str:
    """'exact' or 'iterative' for ``solver`` ('auto' picks 'iterative' when the exact factor's
    dense blocks would exceed EXACT_MEMORY_BUDGET and every term is scalar)."""
    if not isinstance(solver, str) or solver.lower() not in SOLVERS:
        raise ValueError(f"solver must be one of {list(SOLVERS)}, got {solver!r}")
    solver = solver.lower()
    why = _iterative_unsupported(terms)
    if solver == "iterative":
        if why:
            raise ValueError(f"solver='iterative': {why}; use solver='exact'")
        return "iterative"
    if solver == "exact":
        return "exact"
    return "iterative" if why is None and exact_footprint(terms, p)[1] > EXACT_MEMORY_BUDGET else "exact"


def refuse_pymc_at_scale(solver: str, design) -> None:
    """backend='pymc' is refused where fit() would pick the iterative solver (the exact factor is
    too large): NUTS would cost O(nnz) per gradient and mix slowly across huge crossed factors."""
    if choose_solver(solver, design.terms, design.p) != "iterative":
        return
    q2, size = exact_footprint(design.terms, design.p)
    raise ValueError(
        f"backend='pymc' refuses this model: {design.q} random effects, {q2} of them crossed "
        f"with the largest term (the exact factor would need ~{size / 2**30:.1f} GiB). NUTS on such "
        "a posterior costs O(nnz) per gradient and mixes slowly across crossed factors with many "
        "levels (the O(N) collapsed Gibbs sampler of Papaspiliopoulos, Roberts & Zanella, "
        "Biometrika 2020, is not implemented). Fit it with backend='reml', which picks the "
        "iterative solver"
    )


def gram_from_design(design) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    """(Z'WZ, Z'W[X y], [X y]'W[X y]) of an in-memory design (offset subtracted), O(nnz)."""
    w = np.ones(design.n) if design.weights is None else np.asarray(design.weights, dtype=float)
    Xy = np.column_stack([design.X, design.y - design.offset])
    Z = sp.csr_matrix(design.Z)
    Zw = sp.diags(w) @ Z
    return sp.csr_matrix(Z.T @ Zw), np.asarray(Zw.T @ Xy), Xy.T @ (Xy * w[:, None])


def symmetric_from_lower(lower: sp.spmatrix) -> sp.csr_matrix:
    """Z'WZ from its lower block triangle as the lazy path stores it, for scalar terms (whose
    diagonal blocks are diagonal, so everything strictly below the diagonal is stored once)."""
    L = sp.csr_matrix(lower)
    return sp.csr_matrix(L + sp.tril(L, k=-1, format="csr").T)


class _Schur:
    """Solves with A = ΛSΛ + I through the Schur complement of the first term's diagonal block."""

    def __init__(self, S: sp.csr_matrix, terms):
        self.q1 = terms[0].q
        self.col_term = np.concatenate([np.full(t.q, i) for i, t in enumerate(terms)])
        d = S.diagonal()
        self.d1 = d[: self.q1]
        S = sp.csr_matrix(S)
        self.S12 = S[: self.q1, self.q1 :].tocsr()
        self.S21 = self.S12.T.tocsr()
        self.S22 = S[self.q1 :, self.q1 :].tocsr()
        self.S21sq = self.S21.multiply(self.S21).tocsr()
        self.d2 = d[self.q1 :]
        self.q2 = S.shape[0] - self.q1
        first = S[: self.q1, : self.q1]
        if (first - sp.diags(self.d1)).count_nonzero():
            raise ValueError("the first random-effects term's block of Z'WZ is not diagonal")

    def set_theta(self, theta: np.ndarray) -> None:
        lam = np.asarray(theta, dtype=float)[self.col_term]
        self.l1, self.l2 = lam[: self.q1], lam[self.q1 :]
        self.a11 = self.l1**2 * self.d1 + 1.0
        self.c1 = self.l1**2 / self.a11
        self.diag_sc = self.l2**2 * (self.d2 - self.S21sq @ self.c1) + 1.0

    def sc_matvec(self, X2: np.ndarray) -> np.ndarray:
        Y = self.l2[:, None] * X2
        inner = self.S22 @ Y - self.S21 @ (self.c1[:, None] * (self.S12 @ Y))
        return self.l2[:, None] * inner + X2

    def solve(self, R: np.ndarray, X2_0: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, int]:
        """A X = R (R: q × s); returns X, its Schur part (for warm starts) and CG iterations."""
        r1, r2 = R[: self.q1], R[self.q1 :]
        if self.q2 == 0:
            return r1 / self.a11[:, None], np.zeros((0, R.shape[1])), 0
        rhs2 = r2 - self.l2[:, None] * (self.S21 @ ((self.l1 / self.a11)[:, None] * r1))
        res = block_pcg(self.sc_matvec, rhs2, 1.0 / self.diag_sc, X0=X2_0, rtol=CG_RTOL)
        if not res.converged:
            raise RuntimeError(f"conjugate gradients stopped at relative residual {res.max_relres:.1e}")
        X2 = res.X
        x1 = (r1 - self.l1[:, None] * (self.S12 @ (self.l2[:, None] * X2))) / self.a11[:, None]
        return np.vstack([x1, X2]), X2, res.iterations

    def schur_probe_matrix(self, V2: np.ndarray) -> np.ndarray:
        """A₂₁A₁₁⁻²A₁₂ V2 (the first term's share of tr A⁻¹ is tr A₁₁⁻¹ + tr(Sc⁻¹ this))."""
        Y = self.S12 @ (self.l2[:, None] * V2)
        return self.l2[:, None] * (self.S21 @ ((self.l1**2 / self.a11**2)[:, None] * Y))


@dataclass
class IterativeFit:
    theta: np.ndarray
    beta: np.ndarray
    b: np.ndarray
    scale: float
    cov_beta: np.ndarray
    converged: bool
    n_iter: int
    cg_iterations: int
    n_probes: int
    trace_se: np.ndarray  # Monte-Carlo SE of each t_k
    vc_rel_se: np.ndarray  # ≈ Monte-Carlo relative SE of each σ_k²
    message: str
    history: list = field(default_factory=list)


def fit_iterative(S: sp.csr_matrix, ZtXy: np.ndarray, XytXy: np.ndarray, n: int, terms, reml: bool = True,
                  theta0: np.ndarray | None = None, n_probes: int | None = None, seed: int = 20070,
                  verbose: bool = False) -> IterativeFit:
    """REML/ML for scalar random-effects terms from the cross-products (see the module docstring).

    ``S`` = Z'WZ (symmetric, q × q), ``ZtXy`` = Z'W[X y], ``XytXy`` = [X y]'W[X y]; terms in the
    engine's order (largest first).
    """
    why = _iterative_unsupported(terms)
    if why:
        raise ValueError(why)
    p = XytXy.shape[0] - 1
    if reml and n <= p:
        raise ValueError(f"REML needs more observations ({n}) than fixed effects ({p})")
    K = len(terms)
    m = np.array([t.m for t in terms], dtype=float)
    sys_ = _Schur(S, terms)
    col_term = sys_.col_term
    XtX, Xty, yty = XytXy[:p, :p], XytXy[:p, p], XytXy[p, p]
    if n_probes is None:
        lo, hi, budget = N_PROBES
        n_probes = int(np.clip(budget // max(sys_.q2, 1), lo, hi))
    rng = np.random.default_rng(seed)
    V2 = rng.choice([-1.0, 1.0], size=(sys_.q2, n_probes)) if sys_.q2 else np.zeros((0, n_probes))
    theta = np.ones(K) if theta0 is None else np.maximum(np.asarray(theta0, dtype=float), 0.0)
    if theta.shape != (K,):
        raise ValueError(f"theta0 has {theta.size} values but the model has {K} variance parameters")
    warm_g = warm_v = None
    cg_total, converged, history = 0, False, []
    it = 0
    for it in range(1, MAX_ITER + 1):
        sys_.set_theta(theta)
        lam = theta[col_term]
        G = lam[:, None] * ZtXy
        Y, warm_g, k1 = sys_.solve(G, warm_g)
        SX = XtX - G[:, :p].T @ Y[:, :p]
        rhs = Xty - G[:, :p].T @ Y[:, p]
        beta = np.linalg.solve(SX, rhs)
        u = Y[:, p] - Y[:, :p] @ beta
        r2 = float(yty - beta @ Xty - u @ G[:, p])
        scale = r2 / (n - p if reml else n)
        t, t_se, warm_v, k2 = _traces(sys_, V2, warm_v, terms)
        cg_total += k1 + k2
        if reml and p:
            YX = Y[:, :p]
            corr = np.einsum("ij,ij->i", YX @ np.linalg.inv(SX), YX)
            t = t + np.bincount(col_term, weights=corr, minlength=K)
        usq = np.bincount(col_term, weights=u * u, minlength=K)
        edf = np.maximum(m - t, 1e-12)
        new = theta * np.sqrt(np.maximum(usq, 0.0) / (edf * scale))
        history.append((theta.copy(), scale))
        if verbose:
            sys.stderr.write(f"\riterative REML: iteration {it}, θ = {np.round(new, 6)}, CG steps {k1 + k2} ")
        step = np.max(np.abs(new - theta) / np.maximum(np.abs(theta), 1e-3))
        theta = new
        if step < TOL:
            converged = True
            break
    # the estimates at the final θ
    sys_.set_theta(theta)
    lam = theta[col_term]
    G = lam[:, None] * ZtXy
    Y, _, k1 = sys_.solve(G, warm_g)
    cg_total += k1
    SX = XtX - G[:, :p].T @ Y[:, :p]
    beta = np.linalg.solve(SX, Xty - G[:, :p].T @ Y[:, p])
    u = Y[:, p] - Y[:, :p] @ beta
    r2 = float(yty - beta @ Xty - u @ G[:, p])
    scale = r2 / (n - p if reml else n)
    cov_beta = scale * np.linalg.inv(SX)
    cov_beta = 0.5 * (cov_beta + cov_beta.T)
    rel_se = t_se / np.maximum(m - t, 1e-12) / (1.0 - _contraction([h[0] for h in history] + [theta]))
    if verbose:
        sys.stderr.write("\n")
    msg = (f"fixed point converged after {it} iterations" if converged
           else f"fixed point stopped after {MAX_ITER} iterations (last relative step {step:.2e})")
    return IterativeFit(theta=theta, beta=beta, b=lam * u, scale=scale, cov_beta=cov_beta,
                        converged=converged, n_iter=it, cg_iterations=cg_total, n_probes=n_probes,
                        trace_se=t_se, vc_rel_se=rel_se, message=msg, history=history)


def _contraction(thetas: list[np.ndarray]) -> np.ndarray:
    """Per θ_k, the fixed point's rate ρ_k = |Δθ_k(i+1)| / |Δθ_k(i)| over the last steps (≤ 0.99).

    An error δ in one evaluation of the map moves its fixed point by about δ / (1 − ρ), so the
    Monte-Carlo error of a trace estimate is amplified by that factor in the estimate."""
    th = np.asarray(thetas)
    steps = np.abs(np.diff(th, axis=0))
    rho = np.zeros(th.shape[1])
    for k in range(th.shape[1]):
        floor = 1e-5 * max(np.abs(th[-1, k]), 1e-3)  # steps below this are CG-tolerance noise
        ratios = [steps[i + 1, k] / steps[i, k] for i in range(steps.shape[0] - 1) if steps[i, k] > floor]
        if ratios:
            rho[k] = float(np.median(ratios[-3:]))
    return np.clip(rho, 0.0, 0.99)


def _traces(sys_: _Schur, V2: np.ndarray, warm: np.ndarray | None, terms):
    """Hutchinson estimates of tr(A⁻¹)_kk per term, their Monte-Carlo SEs and the probe solves."""
    K = len(terms)
    t = np.zeros(K)
    se = np.zeros(K)
    t[0] = float(np.sum(1.0 / sys_.a11))
    if sys_.q2 == 0:
        return t, se, None, 0
    res = block_pcg(sys_.sc_matvec, V2, 1.0 / sys_.diag_sc, X0=warm, rtol=PROBE_RTOL)
    if not res.converged:
        raise RuntimeError(f"conjugate gradients did not converge (relative residual {res.max_relres:.2e})")
    W2 = res.X
    s = V2.shape[1]
    per = np.einsum("ij,ij->j", W2, sys_.schur_probe_matrix(V2))  # first term: tr(Sc⁻¹ M) per probe
    t[0] += per.mean()
    se[0] = per.std(ddof=1) / np.sqrt(s) if s > 1 else np.inf
    prod = V2 * W2
    pos = 0
    for k, tb in enumerate(terms[1:], start=1):
        per = prod[pos : pos + tb.q].sum(axis=0)
        t[k] = per.mean()
        se[k] = per.std(ddof=1) / np.sqrt(s) if s > 1 else np.inf
        pos += tb.q
    return t, se, W2, res.iterations
