"""Command line: ``interlace fit DATA --formula ...`` and ``interlace demo``.

Formulas are read with R's grammar and R's formula functions (docs/coming-from-r.md); any other
function (numpy's included) is refused.
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import sys
import time

__all__ = ["main"]

SECURITY_NOTE = (
    "Formulas are read as R reads them (docs/coming-from-r.md): only R's formula functions (log, "
    "poly, ns, factor, ...) are evaluated, any other function is refused. A formula can still ask "
    "for a very large design matrix: do not run formulas from untrusted input unattended."
)


class CLIError(Exception):
    """A user mistake: printed as one line, exit status 2."""


def _read(path: str):
    p = pathlib.Path(path)
    if not p.exists():
        raise CLIError(f"data file {path!r} does not exist")
    suffix = p.suffix.lower()
    import pandas as pd

    try:
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(p)
        if suffix in (".csv", ".txt"):
            return pd.read_csv(p)
        if suffix == ".tsv":
            return pd.read_csv(p, sep="\t")
    except Exception as ex:
        raise CLIError(f"cannot read {path!r}: {ex}") from ex
    raise CLIError(f"unsupported data file type {suffix!r}: use .csv, .tsv or .parquet")


# options that only some --model values take: option -> (models, why the others refuse it)
_ONLY_FOR = {
    "method": (("fit",), {
        "glmer": "glmer fits by maximum likelihood (Laplace), as lme4's glmer",
        "clmm": "clmm fits by maximum likelihood (Laplace), as ordinal::clmm",
        "coxme": "coxme maximises the integrated partial likelihood, as coxme::coxme",
    }),
    "df_method": (("fit",), {
        "glmer": "glmer reports Wald z tests with no denominator df, as lme4's glmer",
        "clmm": "clmm reports Wald z tests with no denominator df, as ordinal::clmm",
        "coxme": "coxme reports Wald z tests with no denominator df, as coxme::coxme",
    }),
    "family": (("glmer",), {}),
    "link": (("glmer", "clmm"), {}),
    "weights": (("fit", "glmer"), {
        "clmm": "interlace.clmm takes no prior weights (ordinal::clmm's weights= is not supported)",
        "coxme": "interlace.coxme takes no case weights (coxme's weights= is not supported)",
    }),
    "offset": (("fit", "glmer"), {
        "clmm": "ordinal::clmm has no offset either",
        "coxme": "interlace.coxme takes no offset",
    }),
}
# the PyMC sampler's options: CLI flag -> keyword of fit/glmer/clmm/coxme
_SAMPLER = {"draws": "draws", "tune": "tune", "chains": "chains", "seed": "random_seed"}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _refuse_unused(args) -> None:
    """Every option is honoured or refused for the chosen --model and --backend (one line, exit 2)."""
    for name, (models, why) in _ONLY_FOR.items():
        if getattr(args, name) is not None and args.model not in models:
            reason = why.get(args.model, "")
            takes = " and ".join(models)
            raise CLIError(
                f"{_flag(name)} applies to --model {takes}, not --model {args.model}"
                + (f": {reason}" if reason else "") + f"; drop {_flag(name)}"
            )
    if args.backend == "pymc":
        for name in ("method", "df_method"):
            if getattr(args, name) is not None:
                raise CLIError(f"{_flag(name)} has no meaning for --backend pymc: it samples the posterior, "
                               f"with no REML/ML optimisation or t-test df; drop {_flag(name)}")
    else:
        for name in _SAMPLER:
            if getattr(args, name) is not None:
                raise CLIError(f"{_flag(name)} configures the PyMC sampler and has no meaning for "
                               f"--backend reml; drop it, or pass --backend pymc")


def _fit(args) -> object:
    import interlace

    _refuse_unused(args)
    if args.model == "glmer" and not args.family:
        raise CLIError("--model glmer needs --family (binomial, poisson, Gamma, negative_binomial)")
    df = _read(args.data)
    kw: dict = {"backend": args.backend}
    for name in ("groups", "random", "method", "df_method", "family", "link", "weights", "offset"):
        if getattr(args, name):
            kw[name] = getattr(args, name)
    for flag, key in _SAMPLER.items():
        if getattr(args, flag) is not None:
            kw[key] = getattr(args, flag)
    from interlace.extras import MissingExtraError

    fn = getattr(interlace, args.model, None)
    if fn is None:
        raise CLIError(f"--model {args.model} is not available in this version of interlace")
    try:
        return fn(args.formula, df, **kw)
    except (ValueError, TypeError, KeyError, NotImplementedError, MissingExtraError) as ex:
        msg = ex.args[0] if isinstance(ex, KeyError) and ex.args else str(ex)
        raise CLIError(str(msg)) from ex


def _clean(x):
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def result_dict(r, formula: str | None = None) -> dict:
    """A JSON-ready summary of a fitted model; ``formula`` (the whole model formula) names the model
    when the result does not carry its random terms (clmm, coxme)."""
    fixed = {}
    for name in r.fe_params.index:
        entry = {"estimate": float(r.fe_params[name]), "std_error": float(r.fe_bse[name])}
        for attr, key in (("fe_df", "df"), ("fe_pvalues", "p_value")):
            series = getattr(r, attr, None)
            if series is not None:
                entry[key] = _clean(float(series[name]))
        fixed[name] = entry
    vcs = {}
    for g, v in r.variance_components.items():
        vcs[g] = float(v) if not hasattr(v, "to_numpy") else {
            "columns": [str(c) for c in v.columns], "covariance": v.to_numpy().tolist()
        }
    out = {
        "formula": _formula(r) if formula is None else formula,
        # clmm and coxme fits maximise a (Laplace-approximated) likelihood: ML, as glmer
        "method": getattr(r, "method", "ML"),
        "fixed_effects": fixed,
        "variance_components": vcs,
        "residual_variance": _clean(float(getattr(r, "scale", float("nan")))),
        # a posterior has no llf/AIC/BIC (AttributeError): null in the JSON
        **{key: _clean(float(getattr(r, attr, float("nan"))))
           for key, attr in (("logLik", "llf"), ("AIC", "aic"), ("BIC", "bic"))},
        "nobs": int(r.nobs), "converged": bool(getattr(r, "converged", True)),
    }
    alpha = _thresholds(r)
    if alpha is not None:  # clmm: the cut points α_j of the j|j+1 boundaries, as ordinal's summary
        out["thresholds"] = {name: {"estimate": float(est), "std_error": _clean(float(se))}
                             for name, est, se in zip(alpha.index, alpha["estimate"], alpha["std_error"],
                                                      strict=True)}
    return out


def _formula(r) -> str | None:
    spec = getattr(r, "spec", None)
    if spec is not None:
        return getattr(spec, "full_formula", None)
    return getattr(r, "formula", None)


def _whole_formula(args) -> str:
    """--formula with the --random terms and --groups intercepts written into it."""
    extra = list(args.random or []) + [f"(1 | {g})" for g in args.groups or []]
    return " + ".join([args.formula, *extra])


def _thresholds(r):
    """A clmm fit's thresholds (estimate, std_error), None for other models."""
    import pandas as pd

    if getattr(r, "threshold_bse", None) is not None:
        return pd.DataFrame({"estimate": r.thresholds, "std_error": r.threshold_bse})
    draws = getattr(r, "threshold_draws", None)
    if draws is None:
        return None
    alpha = r.thresholds  # a posterior: means and SDs of the draws
    sd = draws.std(axis=0, ddof=1) if len(draws) > 1 else [float("nan")] * len(alpha)
    return pd.DataFrame({"estimate": alpha.to_numpy(), "std_error": sd}, index=alpha.index)


def _output(r, args) -> str:
    if args.output == "json":
        whole = None if getattr(r, "spec", None) is not None else _whole_formula(args)
        return json.dumps(result_dict(r, whole), indent=2)
    if args.output == "csv":
        import pandas as pd

        table = pd.DataFrame({
            "term": r.fe_params.index, "estimate": r.fe_params.to_numpy(), "std_error": r.fe_bse.to_numpy(),
        })
        if hasattr(r, "fe_df"):
            table["df"] = r.fe_df.to_numpy()
        if hasattr(r, "fe_pvalues"):
            table["statistic"] = (r.fe_params / r.fe_bse).to_numpy()
            table["p_value"] = r.fe_pvalues.to_numpy()
        alpha = _thresholds(r)
        if alpha is not None:  # clmm: thresholds first, as ordinal's coef(); z but no p, as its summary
            cut = pd.DataFrame({"term": alpha.index, "estimate": alpha["estimate"].to_numpy(),
                                "std_error": alpha["std_error"].to_numpy()})
            if "statistic" in table:
                cut["statistic"] = cut["estimate"] / cut["std_error"]
            table = pd.concat([cut, table], ignore_index=True)
        return table.to_csv(index=False)
    return str(r.summary())


def _demo() -> int:
    import interlace
    from interlace import datasets

    df = datasets.load("sleepstudy")
    model = dict(formula="Reaction ~ Days", data=df, random=["(Days | Subject)"])
    print("interlace demo: sleepstudy, Reaction ~ Days + (Days | Subject)\n")
    print("== REML (backend='reml') ==")
    t0 = time.perf_counter()
    reml = interlace.fit(**model)
    dt = time.perf_counter() - t0
    print(reml.summary())
    print(f"\nfitted in {dt:.3f} s ({reml.optimizer_info['n_evals']} deviance evaluations)\n")
    print("== Bayesian (backend='pymc': NUTS, 2 chains x 500 draws) ==")
    t0 = time.perf_counter()
    try:
        bayes = interlace.fit(**model, backend="pymc", chains=2, draws=500, tune=500, random_seed=1,
                              progressbar=False)
    except ImportError as ex:
        print(f"(skipped: the PyMC backend needs the 'pymc' extra: {ex})")
        return 0
    dt = time.perf_counter() - t0
    print(bayes.summary())
    sampled = bayes.optimizer_info["sampling_seconds"]
    print(f"\nsampled in {sampled:.1f} s ({dt:.1f} s in all, the first import of PyMC included)\n")
    print("== compare(reml, pymc) ==")
    print(interlace.compare(reml, bayes).round(3).to_string())
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``interlace`` command line: ``fit``, ``glmer`` and ``demo`` (docs/cli.md)."""
    parser = argparse.ArgumentParser(
        prog="interlace", description="Mixed-effects models with lme4-grade answers.", epilog=SECURITY_NOTE
    )
    parser.add_argument("--debug", action="store_true", help="show Python tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="fit a bundled data set with REML and with PyMC, and compare")
    f = sub.add_parser("fit", help="fit a model to a CSV or Parquet file", epilog=SECURITY_NOTE)
    f.add_argument("data", help="a .csv, .tsv or .parquet file")
    f.add_argument("--formula", required=True, help='fixed effects, e.g. "y ~ x" (lme4 terms allowed)')
    f.add_argument("--groups", nargs="+", help="grouping columns for crossed random intercepts")
    f.add_argument("--random", nargs="+", help='lme4 random terms, e.g. "(1 + x | g)"')
    f.add_argument("--model", choices=["fit", "glmer", "clmm", "coxme"], default="fit")
    f.add_argument("--method", choices=["REML", "ML"], help="--model fit only (default REML)")
    f.add_argument("--df-method", choices=["satterthwaite", "kenward-roger"],
                   help="t-test df, --model fit only (default satterthwaite)")
    f.add_argument("--backend", choices=["reml", "pymc"], default="reml")
    f.add_argument("--family", help="GLMM family (with --model glmer)")
    f.add_argument("--link", help="link: glmer's (e.g. log; default: the family's) or clmm's "
                   "(logit, probit, cloglog, loglog; default logit)")
    for name, what in (("draws", "posterior draws per chain"), ("tune", "tuning steps per chain"),
                       ("chains", "chains"), ("seed", "random seed")):
        f.add_argument(f"--{name}", type=int, help=f"PyMC sampler: {what} (with --backend pymc)")
    f.add_argument("--weights", help="column of prior weights")
    f.add_argument("--offset", help="column added to the linear predictor (e.g. log exposure)")
    f.add_argument("--output", choices=["text", "json", "csv"], default="text")
    f.add_argument("--out", help="write the output to this file instead of standard output")
    f.add_argument("--debug", action="store_true", help="show Python tracebacks on errors")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 2 for a user error, printed as one line)."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "demo":
            return _demo()
        r = _fit(args)
        text = _output(r, args)
        if args.out:
            pathlib.Path(args.out).write_text(text if text.endswith("\n") else text + "\n")
        else:
            print(text)
        return 0
    except CLIError as ex:
        if args.debug:
            raise
        print(f"interlace: error: {ex}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
