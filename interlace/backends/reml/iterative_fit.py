"""The iterative solver's results: from an in-memory design or from a lazy frame's aggregates."""

from __future__ import annotations

import numpy as np

from ...data.design import DesignMatrices
from ...model.spec import ModelSpec
from ...results.lmm import CrossedLMEResult, FitInfo
from .iterative import fit_iterative, gram_from_design

__all__ = ["check_iterative_spec", "fit_iterative_design", "iterative_result"]

EXACT_PARTS = "β̂, Var(β̂) = σ̂²(X'V⁻¹X)⁻¹ (crossed correlation included) and b̂, given the variance components"
ESTIMATED_PARTS = "variance components: REML score equations with Hutchinson trace estimates"


def check_iterative_spec(spec: ModelSpec, correlation=None) -> None:
    """Refuse what the iterative solver cannot honour, naming the argument."""
    if correlation is not None:
        raise ValueError("solver='iterative' fits no residual correlation structure; use solver='exact'")
    if spec.df_method == "kenward-roger":
        raise ValueError("df_method='kenward-roger' needs the exact solver; use solver='exact' "
                         "(the iterative solver reports Wald z-tests, df = ∞)")
    if spec.optimizer != "lbfgsb":
        raise ValueError(f"optimizer={spec.optimizer!r} configures the exact solver; the iterative solver "
                         "solves the REML equations by a fixed point: drop optimizer= or use solver='exact'")


def fit_iterative_design(spec: ModelSpec, design: DesignMatrices, n_dropped: int = 0) -> CrossedLMEResult:
    """The iterative fit of an in-memory design (fitted values and residuals included)."""
    S, ZtXy, XytXy = gram_from_design(design)
    return iterative_result(spec, design, S, ZtXy, XytXy, design.n, n_dropped, rows=True)


def iterative_result(spec: ModelSpec, design: DesignMatrices, S, ZtXy, XytXy, n: int, n_dropped: int,
                     rows: bool, sum_log_w: float = 0.0) -> CrossedLMEResult:
    est = fit_iterative(S, ZtXy, XytXy, n, design.terms, reml=spec.reml,
                        theta0=None if spec.theta0 is None else np.asarray(spec.theta0, dtype=float),
                        verbose=bool(spec.options.get("verbose")))
    fitted = resid = None
    if rows:
        fitted = design.X @ est.beta + design.Z @ est.b + design.offset
        resid = design.y - fitted
    groups = [t.group for t in design.terms]
    vc_se = {(t.group if groups.count(t.group) == 1 else f"{t.group} {t.columns[0]}"): float(s)
             for t, s in zip(design.terms, est.vc_rel_se, strict=True)}
    info = FitInfo(
        theta=est.theta, beta=est.beta, b=est.b, scale=est.scale, llf=float("nan"), cov_beta=est.cov_beta,
        fe_df=np.full(design.p, np.inf), fitted=fitted, resid=resid, converged=est.converged,
        is_singular=design.is_singular(est.theta),
        optimizer_info={
            "solver": "iterative", "optimizer": "REML fixed point + preconditioned CG", "n_evals": est.n_iter,
            "cg_iterations": est.cg_iterations, "message": est.message, "probes": est.n_probes,
            "vc_mc_rel_se": vc_se, "exact": EXACT_PARTS, "estimated": ESTIMATED_PARTS,
            "not_computed": "log-likelihood / REML criterion (llf is NaN), Satterthwaite df (df = ∞)",
        },
    )
    return CrossedLMEResult(spec, design, info, backend="reml", n_dropped=n_dropped)
