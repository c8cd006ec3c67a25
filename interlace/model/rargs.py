"""R's argument names given to interlace's functions: a TypeError that says what to write instead.

One table for every entry point (fit, glmer, clmm, coxme, anova, and the fits' predict, confint,
summary): lme4/lmerTest/ordinal spellings such as ``REML=FALSE`` or ``control=`` are not
interlace's, and a plain "unexpected keyword argument" does not say what is.
"""

from __future__ import annotations

import difflib
import functools
import inspect
from collections.abc import Callable
from typing import Any

__all__ = ["R_ARGUMENTS", "unexpected_keywords", "r_arguments"]

#: R argument name -> what interlace takes instead (and what it does)
R_ARGUMENTS: dict[str, str] = {
    "REML": 'write method="REML" or method="ML" (lme4\'s REML = FALSE is method="ML")',
    "control": 'the optimiser is chosen with optimizer= ("lbfgsb" or "bobyqa"); '
               "lme4's lmerControl/glmerControl settings have no interlace equivalent",
    "parm": "confint() gives every parameter; select rows of its table, e.g. m.confint().loc[['Days']]",
    "allow_new_levels": "interlace always predicts new levels with zero random effects "
                        "(lme4's allow.new.levels = TRUE); to leave random effects out use re_form=np.nan",
    "allow.new.levels": "interlace always predicts new levels with zero random effects "
                        "(lme4's allow.new.levels = TRUE); to leave random effects out use re_form=np.nan",
    "refit": "interlace's likelihood-ratio test refits REML fits by ML, as lme4's anova (refit = TRUE); "
             'to avoid the refit, fit the models with method="ML"',
    "ddf": 'write ddf="Satterthwaite" or ddf="Kenward-Roger" (lmerTest\'s ddf="lme4", tests without df, '
           "is not offered)",
    "nsim": "nsim= belongs to confint(method='boot') and interlace.bootstrap",
    "subset": "select the rows before fitting (data[data.x > 0])",
    "na.action": "rows with missing values in used columns are always dropped (R's na.omit)",
    "na_action": "rows with missing values in used columns are always dropped (R's na.omit)",
    "contrasts": "write the contrast in the formula, e.g. C(f, contr.sum)",
    "family": 'family= belongs to interlace.glmer (fit is the linear mixed model)',
}


def unexpected_keywords(fn_name: str, unexpected: list[str], accepted: list[str]) -> TypeError:
    """The TypeError for keywords ``fn_name`` does not take: R's spelling explained, else the
    closest accepted name."""
    parts = []
    for key in unexpected:
        if key == "REML" and "method" not in accepted:
            parts.append(f"REML= is R's argument: {fn_name} fits by maximum likelihood (Laplace) only, "
                         "as lme4's glmer; drop it")
        elif key in R_ARGUMENTS:
            parts.append(f"{key}= is R's argument: {R_ARGUMENTS[key]}")
        else:
            near = difflib.get_close_matches(key, accepted, n=1)
            parts.append(f"unknown keyword {key}=" + (f" (did you mean {near[0]}=?)" if near else ""))
    return TypeError(f"{fn_name}(): " + "; ".join(parts) + f"; it takes: {', '.join(accepted)}")


def r_arguments(fn: Callable) -> Callable:
    """Check a call's keywords against ``fn``'s signature first; unknown ones raise
    :func:`unexpected_keywords` (R's names explained) instead of Python's bare TypeError."""
    sig = inspect.signature(fn)
    names = [p.name for p in sig.parameters.values()
             if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and p.name != "self"]
    takes_any = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())

    @functools.wraps(fn)
    def r_arguments_call(*args: Any, **kwargs: Any):
        if not takes_any:
            bad = [k for k in kwargs if k not in sig.parameters]
            if bad:
                raise unexpected_keywords(fn.__name__, bad, names)
        return fn(*args, **kwargs)

    return r_arguments_call
