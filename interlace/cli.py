"""Command line: ``interlace fit DATA --formula ...`` and ``interlace demo``.

Formulas are evaluated as Python expressions by formulaic (``I(...)``, function calls):
never pass formulas from untrusted input.
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
    "Formula terms are evaluated as Python expressions (formulaic's I(...), function calls): "
    "never pass formulas from untrusted input."
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


def _fit(args) -> object:
    import interlace

    df = _read(args.data)
    kw: dict = {}
    if args.groups:
        kw["groups"] = args.groups
    if args.random:
        kw["random"] = args.random
    if args.model == "fit":
        kw.update(method=args.method, df_method=args.df_method, backend=args.backend)
    elif args.model == "glmer":
        if not args.family:
            raise CLIError("--model glmer needs --family (binomial, poisson, Gamma, negative_binomial)")
        kw.update(family=args.family, backend=args.backend)
        if args.link:
            kw["link"] = args.link
    if args.link and args.model != "glmer":
        raise CLIError("--link applies to --model glmer")
    if args.weights:
        kw["weights"] = args.weights
    if args.offset:
        if args.model not in ("fit", "glmer"):
            raise CLIError("--offset applies to --model fit and glmer")
        kw["offset"] = args.offset
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


def result_dict(r) -> dict:
    """A JSON-ready summary of a fitted model."""
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
        "formula": getattr(getattr(r, "spec", None), "full_formula", None),
        "method": getattr(r, "method", None),
        "fixed_effects": fixed,
        "variance_components": vcs,
        "residual_variance": _clean(float(getattr(r, "scale", float("nan")))),
        # a posterior has no llf/AIC/BIC (AttributeError): null in the JSON
        **{key: _clean(float(getattr(r, attr, float("nan"))))
           for key, attr in (("logLik", "llf"), ("AIC", "aic"), ("BIC", "bic"))},
        "nobs": int(r.nobs), "converged": bool(getattr(r, "converged", True)),
    }
    return out


def _output(r, args) -> str:
    if args.output == "json":
        return json.dumps(result_dict(r), indent=2)
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
    print(f"\nsampled in {dt:.1f} s\n")
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
    f.add_argument("--method", choices=["REML", "ML"], default="REML")
    f.add_argument("--df-method", choices=["satterthwaite", "kenward-roger"], default="satterthwaite")
    f.add_argument("--backend", choices=["reml", "pymc"], default="reml")
    f.add_argument("--family", help="GLMM family (with --model glmer)")
    f.add_argument("--link", help="GLMM link, e.g. log (with --model glmer; default: the family's)")
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
