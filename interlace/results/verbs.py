"""lme4's small verbs on a fitted mixed model: ``coef``, ``fixef``, ``ranef``, ``VarCorr``,
``REMLcrit``, ``update``, statsmodels-style aliases, and the ``re_form`` of ``predict``.

Meanings follow lme4 (Bates et al. 2015, *J. Stat. Softw.* 67(1); the package's help pages):
``coef(m)`` is β̂ plus each level's conditional mode, column by column; ``ranef(m, condVar=TRUE)``
carries Var(b | y) at θ̂, β̂; ``as.data.frame(VarCorr(m))`` lists each term's variances, then its
covariances (lower triangle, column by column), then the residual.
"""

from __future__ import annotations

import math
import re
import sys
from typing import Any

import numpy as np
import pandas as pd

from ..model.formula import RandomTerm, _formula_terms, parse_random, split_formula
from ..model.rformula import Node, deparse, parse
from .rformat import format_fixed

__all__ = ["ResultVerbs", "VarCorr", "data_label", "resolve_re_form"]


# ---- the Data: line -------------------------------------------------------------------------
def data_label(data, frame) -> str:
    """What lme4's ``Data:`` line shows for ``data``: R prints the argument as written
    (``deparse(substitute(data))``); Python passes objects, not expressions, so this is the name
    the calling scope ``frame`` binds to this very object (its locals, then its globals; names
    starting with ``_`` skipped), else a description of the frame (type and shape)."""
    while frame is not None and frame.f_code.co_name == "r_arguments_call":  # model/rargs.py's check
        frame = frame.f_back
    try:
        for scope in (frame.f_locals, frame.f_globals) if frame is not None else ():
            for name, value in list(scope.items()):
                if value is data and not name.startswith("_"):
                    return name
    finally:
        del frame
    kind = f"{type(data).__module__.split('.')[0]}.{type(data).__name__}"
    shape = getattr(data, "shape", None)
    if isinstance(shape, tuple) and len(shape) == 2:
        return f"<{kind}: {shape[0]} rows, {shape[1]} columns>"
    return f"<{kind}>"


# ---- re_form --------------------------------------------------------------------------------
def _is_na(value: Any) -> bool:
    if value is pd.NA:
        return True
    return isinstance(value, float) and math.isnan(value)


def _term_key(expr: str, factors: tuple[str, ...], source: str) -> tuple:
    """A random term's identity: its grouping (``a:b`` and ``b:a`` are one grouping), whether it
    has an intercept, and its other columns."""
    parts = _formula_terms(expr, source)
    return frozenset(factors), "1" in parts, frozenset(p for p in parts if p != "1")


class _AllTerms:
    """``predict``'s default ``re_form`` (every random term, as ``re_form=None``), told apart from
    an explicit ``None`` so that ``include_re=False`` can refuse only what conflicts with it."""

    def __repr__(self) -> str:
        return "None"


RE_FORM_DEFAULT = _AllTerms()


def resolve_re_form(design, re_form, include_re: bool = True) -> list | None:
    """The random-effects terms ``predict`` adds: ``None`` all of them, ``[]`` none.

    ``re_form`` as lme4's ``re.form``: ``None`` every term; ``NA`` / ``np.nan`` / ``"~0"`` /
    ``"NA"`` none (the population prediction); a one-sided formula of random terms such as
    ``"~(1 | item)"`` those terms only, each matched to a fitted term by its grouping factor
    and its left-hand side. ``include_re=False`` is ``re_form=NA``: with an explicit ``re_form``
    that keeps a term (``None`` included, which asks for every term) it is refused as conflicting.
    """
    if not isinstance(include_re, bool | np.bool_):
        raise TypeError(f"include_re must be True or False, got {include_re!r}")
    if re_form is RE_FORM_DEFAULT:
        return None if include_re else []
    if not include_re and (re_form is None or resolve_re_form(design, re_form) != []):
        raise ValueError(f"include_re=False (no random terms) conflicts with re_form={re_form!r}; give one "
                         "of them (re_form=NA or '~0' is include_re=False)")
    if re_form is None:
        return None
    if _is_na(re_form):
        return []
    if not isinstance(re_form, str):
        raise TypeError(
            f"re_form must be None, NA/np.nan or a formula string like '~(1 | g)', got {re_form!r}"
        )
    text = re_form.strip()
    if text in ("NA", "~0", "~ 0", "~-1", "~ -1", "~ 0 ", "0"):
        return []
    if not text.startswith("~"):
        raise ValueError(f"re_form={re_form!r} must be a one-sided formula such as '~(1 | g)' or '~0'")
    body = text[1:].strip()
    if re.fullmatch(r"[0\s+]*", body) and "0" in body:
        return []
    _, bars = split_formula("y ~ " + body)
    rest = split_formula("y ~ " + body)[0].split("~", 1)[1].strip()
    if rest not in ("1", "0", ""):
        raise ValueError(
            f"re_form={re_form!r} may hold only random-effects terms such as '(1 | g)'; "
            f"fixed terms ({rest!r}) always enter the prediction"
        )
    wanted = parse_random(bars)
    fitted = {_term_key(t.expr, t.factors, t.group): t for t in design.terms}
    chosen = []
    for w in wanted:
        key = _term_key(w.expr, w.factors, w.source)
        if key not in fitted:
            have = ", ".join(sorted({_show(t) for t in design.terms}))
            raise ValueError(
                f"re_form term {w.source!r} is not a random term of this model; its terms are: {have}"
            )
        chosen.append(fitted[key])
    return _unique(chosen)


def _unique(terms: list) -> list:
    out = []
    for t in terms:
        if not any(t is u for u in out):
            out.append(t)
    return out


def _show(t) -> str:
    return f"({t.expr} | {':'.join(t.factors)})"


# ---- VarCorr --------------------------------------------------------------------------------
class VarCorr:
    """Variances, standard deviations and correlations of the random effects (lme4's ``VarCorr``).

    ``print(vc)`` shows lme4's ``print(VarCorr(m))`` (Groups, Name, Std.Dev., Corr);
    ``vc.format(comp="Variance")`` or ``comp=("Variance", "Std.Dev.")`` as its ``comp=``.
    ``vc.to_frame()`` is R's ``as.data.frame(VarCorr(m))``: columns grp, var1, var2, vcov, sdcor
    (NaN where R has NA). ``vc[name]`` is a term's covariance matrix.
    """

    def __init__(self, blocks: list[tuple[str, list[str], np.ndarray]], residual: float | None):
        self.blocks = blocks
        self.residual = residual

    def __getitem__(self, name: str) -> pd.DataFrame:
        for grp, cols, S in self.blocks:
            if grp == name:
                return pd.DataFrame(S, index=cols, columns=cols)
        raise KeyError(f"no random term {name!r}; the terms are {[b[0] for b in self.blocks]}")

    def to_frame(self) -> pd.DataFrame:
        rows = []
        for grp, cols, S in self.blocks:
            sd = np.sqrt(np.diag(S))
            for i, c in enumerate(cols):
                rows.append((grp, c, np.nan, S[i, i], sd[i]))
            for j in range(len(cols)):
                for i in range(j + 1, len(cols)):
                    denom = sd[i] * sd[j]
                    rows.append((grp, cols[j], cols[i], S[i, j], S[i, j] / denom if denom > 0 else np.nan))
        if self.residual is not None:
            rows.append(("Residual", np.nan, np.nan, self.residual, math.sqrt(self.residual)))
        return pd.DataFrame(rows, columns=["grp", "var1", "var2", "vcov", "sdcor"])

    def format(self, digits: int = 5, comp: str | tuple[str, ...] = ("Std.Dev.",)) -> str:
        """lme4's ``formatVC``: ``comp`` among "Variance" and "Std.Dev.", each column with
        ``digits`` significant digits (R's ``format``), correlations to ``digits − 2`` decimals."""
        comp = (comp,) if isinstance(comp, str) else tuple(comp)
        bad = [c for c in comp if c not in ("Variance", "Std.Dev.")]
        if bad or not comp:
            raise ValueError(f"comp must hold 'Variance' and/or 'Std.Dev.', got {comp!r}")
        kmax = max((len(c) for _, c, _ in self.blocks), default=1)
        cdec = max(1, digits - 2)
        rows, var, corr = [], [], []
        for grp, cols, S in self.blocks:
            sd = np.sqrt(np.diag(S))
            for i, c in enumerate(cols):
                rows.append((grp if i == 0 else "", c))
                var.append(float(S[i, i]))
                corr.append([f"{S[i, j] / (sd[i] * sd[j]):.{cdec}f}" if sd[i] * sd[j] > 0 else "NaN"
                             for j in range(i)])
        if self.residual is not None:
            rows.append(("Residual", ""))
            var.append(self.residual)
            corr.append([])
        columns = [["Groups"] + [r[0] for r in rows], ["Name"] + [r[1] for r in rows]]
        for c in comp:
            vals = var if c == "Variance" else [math.sqrt(v) for v in var]
            columns.append([c] + format_fixed(vals, digits))
        for j in range(kmax - 1):
            columns.append(["Corr" if j == 0 else ""] + [c[j] if j < len(c) else "" for c in corr])
        widths = [max(len(s) for s in col) for col in columns]
        return "\n".join(" " + " ".join(col[r].ljust(w) for col, w in zip(columns, widths, strict=True))
                         for r in range(len(rows) + 1))

    def __str__(self) -> str:
        return self.format()

    __repr__ = __str__


# ---- the verbs ------------------------------------------------------------------------------
class ResultVerbs:
    """lme4's accessor verbs and statsmodels' names for a result with the LMM attributes."""

    def fixef(self) -> pd.Series:
        """β̂ (lme4's ``fixef``), a copy of ``fe_params``."""
        return self.fe_params.copy()

    def ranef(self, condVar: bool = False) -> dict[str, pd.DataFrame]:  # noqa: N803 (lme4's name)
        """Conditional modes per grouping factor (lme4's ``ranef``), one row per level.

        With ``condVar=True`` each frame's ``attrs["condVar"]`` holds Var(b | y), shape
        (levels, k, k) — lme4's ``postVar`` attribute with the level axis first.
        """
        if not isinstance(condVar, bool | np.bool_):
            raise TypeError(f"condVar must be True or False, got {condVar!r}")
        out = {g: f.copy() for g, f in self.random_effects.items()}
        if condVar:
            from .refusals import refuse_iterative

            refuse_iterative(self, "ranef(condVar=True)", "condvar")
            engine = getattr(self, "engine", None)
            if engine is None or not hasattr(engine, "conditional_variances"):
                raise TypeError(
                    "ranef(condVar=True) needs a linear mixed model fitted by interlace.fit with the "
                    f"REML/ML engine; this is {type(self).__name__} "
                    f"(backend={getattr(self, 'backend', '?')!r})"
                )
            for g, v in engine.conditional_variances().items():
                out[g].attrs["condVar"] = np.asarray(v)
        return out

    def coef(self) -> dict[str, pd.DataFrame]:
        """β̂ + b̂ per level, per grouping factor (lme4's ``coef``): every fixed-effect column, the
        level's conditional mode added to the columns it has; random columns absent from the
        fixed effects come first with a fixed part of 0, as in lme4."""
        fe = self.fe_params
        out = {}
        for g, re_ in self.random_effects.items():
            extra = [c for c in re_.columns if c not in fe.index]
            cols = extra + list(fe.index)
            base = pd.Series([0.0] * len(extra) + list(fe.to_numpy()), index=cols)
            frame = pd.DataFrame(np.tile(base.to_numpy(), (len(re_), 1)), index=re_.index, columns=cols)
            for c in re_.columns:
                frame[c] = frame[c].to_numpy() + re_[c].to_numpy()
            out[g] = frame
        return out

    def VarCorr(self) -> VarCorr:  # noqa: N802 (lme4's name)
        """Random-effects variances and correlations, printable as lme4 prints them; see :class:`VarCorr`."""
        blocks = []
        comps = self.variance_components
        for (name, v), t in zip(comps.items(), self.design.terms, strict=True):
            S = np.array([[v]]) if not isinstance(v, pd.DataFrame) else v.to_numpy()
            blocks.append((name, list(t.columns), S))
        family = getattr(self, "family", None)
        residual = self.scale if family is None or family.has_scale else None
        return VarCorr(blocks, residual)

    def REMLcrit(self) -> float:  # noqa: N802 (lme4's name)
        """The REML criterion at the optimum, −2 × REML log-likelihood (lme4's ``REMLcrit``)."""
        if getattr(self, "family", None) is not None or self.method != "REML":
            raise ValueError(
                f"REMLcrit() is the criterion of a REML fit; this model was fitted by "
                f"{getattr(self, 'method', '?')}{' (a GLMM)' if hasattr(self, 'family') else ''}: "
                "use .deviance, or refit with method='REML'"
            )
        return -2.0 * self.llf

    # statsmodels' names
    @property
    def params(self) -> pd.Series:
        """statsmodels' name for ``fe_params``."""
        return self.fe_params

    @property
    def bse(self) -> pd.Series:
        """statsmodels' name for ``fe_bse``."""
        return self.fe_bse

    @property
    def tvalues(self) -> pd.Series:
        """β̂ / SE (t for an LMM, z for a GLMM)."""
        return (self.fe_params / self.fe_bse).rename("statistic")

    @property
    def pvalues(self) -> pd.Series:
        """statsmodels' name for ``fe_pvalues``."""
        return self.fe_pvalues

    def conf_int(self, alpha: float = 0.05) -> pd.DataFrame:
        """statsmodels' spelling of ``fe_conf_int(level=1 − alpha)``: columns lower, upper."""
        if not isinstance(alpha, float | int) or not 0 < alpha < 1:
            raise ValueError(f"alpha must be between 0 and 1 (0.05 for 95% intervals), got {alpha!r}")
        return self.fe_conf_int(level=1.0 - float(alpha))

    def update(self, formula: str | None = None, data=None, **kwargs):
        """Refit with changes (R's ``update``): a new ``formula``, ``data`` or any argument of the
        fitting function. In ``formula``, ``.`` stands for the old left- or right-hand side
        (``". ~ . + x"``, ``". ~ . - x"``, ``"log(.) ~ ."``); random terms are kept unless the new
        formula writes random terms without ``.``, and ``- (1 | g)`` removes one."""
        call = getattr(self, "call", None)
        if call is None:
            raise TypeError(f"update() needs a model fitted by interlace.fit or interlace.glmer; "
                            f"{type(self).__name__} keeps no call")
        args = dict(call)
        func = args.pop("call_function")
        data_name = args.pop("data_name", None)
        unknown = [k for k in kwargs if k not in args]
        if unknown:
            raise TypeError(f"update() got argument(s) {unknown} that "
                            f"interlace.{func.__name__} does not take")
        if data is not None:
            args["data"] = data
        if formula is not None:
            args["formula"] = _updated_formula(self.spec, formula)
            args["groups"] = None
            args["random"] = None
        if "backend" in kwargs and kwargs["backend"] != args.get("backend"):
            _reset_other_backend(func, args, kwargs["backend"], given=kwargs)
        args.update(kwargs)
        result = func(**args)
        if getattr(result, "call", None) is not None:  # the Data: line names what the user gave
            result.call["data_name"] = data_name if data is None else data_label(data, sys._getframe(1))
        return result


def _reset_other_backend(func, args: dict, backend, given: dict) -> None:
    """update(backend=...) switches backend: the stored arguments that configure only the other
    backend (the sampler's for 'reml', the optimiser's for 'pymc') go back to their defaults unless
    given in this update call, so that they are not refused as meaningless on the new backend."""
    import inspect

    from ..model.arguments import REML_ONLY, SAMPLER_ONLY

    other = SAMPLER_ONLY if str(backend).lower() == "reml" else REML_ONLY
    params = inspect.signature(func).parameters
    for name in other & set(args):
        if name not in given and name in params and params[name].default is not inspect.Parameter.empty:
            args[name] = params[name].default


def _updated_formula(spec, new: str) -> str:
    """R's ``update.formula`` for the fixed part; random terms kept, added or removed."""
    if not isinstance(new, str) or "~" not in new:
        raise ValueError(f"formula must be a string such as '. ~ . + x', got {new!r}")
    old_lhs, _, old_rhs = spec.fixed.partition("~")
    lhs, _, rhs = new.partition("~")
    removed = [m.group(1) for m in re.finditer(r"-\s*(\([^()]*\|[^()]*\))", rhs)]
    rhs = re.sub(r"-\s*\([^()]*\|[^()]*\)", "", rhs)
    dot = re.compile(r"(?<![\w.])\.(?![\w.])")
    lhs = dot.sub(lambda _: old_lhs.strip(), lhs).strip() or old_lhs.strip()
    has_dot = bool(dot.search(rhs))
    rhs = dot.sub(lambda _: f"({old_rhs.strip()})", rhs)
    fixed, bars = split_formula(f"{lhs} ~ {rhs}" if rhs.strip() else f"{lhs} ~ 1")
    fixed = _simplified(fixed)
    new_terms = parse_random(bars)
    # `.` keeps the old terms and adds the written ones; without `.`, written terms replace them
    terms: list[RandomTerm] = list(spec.random) + new_terms if has_dot else (new_terms or list(spec.random))
    gone = {_term_key(t.expr, t.factors, t.source) for t in parse_random(removed)}
    missing = gone - {_term_key(t.expr, t.factors, t.source) for t in terms}
    if missing:
        raise ValueError(f"formula {new!r} removes random term(s) {removed} that the model does not have")
    kept = [t for t in terms if _term_key(t.expr, t.factors, t.source) not in gone]
    sources = list(dict.fromkeys(t.source for t in kept))
    return " + ".join([fixed] + [s if s.startswith("(") else f"({s})" for s in sources])


# ---- R's terms.formula, for update's simplify = TRUE ------------------------------------------
def _chain(node: Node, sign: int = 1):
    """The signed summands of a +/- chain, parentheses looked through."""
    if node.kind == "bin" and node.value in ("+", "-"):
        yield from _chain(node.args[0], sign)
        yield from _chain(node.args[1], sign if node.value == "+" else -sign)
    elif node.kind == "un" and node.value in ("+", "-"):
        yield from _chain(node.args[0], sign if node.value == "+" else -sign)
    elif node.kind == "paren":
        yield from _chain(node.args[0], sign)
    else:
        yield sign, node


def _sum_terms(node: Node) -> tuple[list[frozenset], bool]:
    """(terms, intercept) of a formula side: ``+`` adds, ``-`` removes, ``1``/``0`` set the intercept."""
    terms: list[frozenset] = []
    intercept = True
    for sign, part in _chain(node):
        if part.kind == "num" and part.value in ("0", "1"):
            intercept = (part.value == "1") == (sign > 0)
            continue
        for t in _product_terms(part):
            if sign > 0 and t not in terms:
                terms.append(t)
            elif sign < 0 and t in terms:
                terms.remove(t)
    return terms, intercept


def _cross(a: list[frozenset], b: list[frozenset]) -> list[frozenset]:
    return list(dict.fromkeys(x | y for x in a for y in b))


def _product_terms(node: Node) -> list[frozenset]:
    """R's expansion of ``:``/``%in%`` (crossing), ``*`` (a + b + a:b), ``/`` (a + all of a : b)
    and ``^n`` (crossings up to order n); any other expression is one variable."""
    if node.kind == "bin" and node.value in (":", "%in%", "*", "/"):
        a, b = _product_terms(node.args[0]), _product_terms(node.args[1])
        if node.value in (":", "%in%"):
            return _cross(a, b)
        if node.value == "*":
            return list(dict.fromkeys(a + b + _cross(a, b)))
        return list(dict.fromkeys(a + _cross([frozenset().union(*a)], b)))
    if node.kind == "bin" and node.value == "^" and node.args[1].kind == "num":
        base = _product_terms(node.args[0])
        out = list(base)
        for _ in range(int(float(node.args[1].value.rstrip("L"))) - 1):
            out = list(dict.fromkeys(out + _cross(out, base)))
        return out
    if node.kind in ("paren", "un") or (node.kind == "bin" and node.value in ("+", "-")):
        return _sum_terms(node)[0]
    if node.kind == "num":  # an intercept inside a product adds no variable
        return []
    return [frozenset([deparse(node)])]


def _first_seen(node: Node, out: dict[str, int]) -> None:
    """Each variable's position of first appearance (R's order of ``variables``)."""
    if node.kind == "bin" and node.value in _R_FORMULA_OPS or node.kind in ("paren", "un"):
        for a in node.args:
            _first_seen(a, out)
    elif node.kind != "num":
        out.setdefault(deparse(node), len(out))


_R_FORMULA_OPS = {"+", "-", ":", "%in%", "*", "/", "^"}


def _simplified(fixed: str) -> str:
    """``lhs ~ rhs`` with the right side written as R's ``update.formula`` writes it
    (``simplify = TRUE``): its terms expanded, those removed with ``-`` gone, ordered by degree
    then appearance, ``- 1`` for a removed intercept. Text it cannot read is returned unchanged
    (the fit then names the problem)."""
    lhs, _, rhs = fixed.partition("~")
    try:
        node = parse(rhs if rhs.strip() else "1", "formula")
        terms, intercept = _sum_terms(node)
    except ValueError:
        return fixed
    seen: dict[str, int] = {}
    _first_seen(node, seen)
    ordered = sorted(terms, key=lambda t: (len(t), terms.index(t)))
    labels = [":".join(sorted(t, key=lambda v: seen.get(v, len(seen)))) for t in ordered]
    if not labels:
        body = "1" if intercept else "0"
    else:
        body = " + ".join(labels) + ("" if intercept else " - 1")
    return f"{lhs.strip()} ~ {body}"
