"""Numbers laid out as R prints them: ``format(x, digits=)``, ``printCoefmat``, ``format.pval``,
``abbreviate`` and named-vector printing (R's *base* and *stats* documentation), so that reports
read like lme4's and lmerTest's."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["sig_decimals", "format_fixed", "format_pvalues", "abbreviate", "coef_table", "named_vector"]


def sig_decimals(x: float, digits: int) -> int:
    """Decimals ``format(x, digits=)`` needs to show ``x`` to ``digits`` significant digits,
    without digits that would be trailing zeros."""
    if x == 0 or not np.isfinite(x):
        return 0
    mag = math.floor(math.log10(abs(x)))
    full = round(x, digits - 1 - mag)
    for s in range(1, digits + 1):
        if round(x, s - 1 - mag) == full:
            return max(0, s - 1 - mag)
    return max(0, digits - 1 - mag)


def format_fixed(values, digits: int, right: bool = True) -> list[str]:
    """R's ``format(values, digits=)``: one number of decimals for all, the most any value needs —
    or, when that is wider than scientific notation (a variance of 2e-20 beside 0.5), scientific
    with one mantissa length for all, as R chooses (``scipen = 0``)."""
    vals = [float(v) for v in values]
    dec = max((sig_decimals(v, digits) for v in vals), default=0)
    out = [f"{v:.{dec}f}" if np.isfinite(v) else ("NaN" if np.isnan(v) else ("Inf" if v > 0 else "-Inf"))
           for v in vals]
    finite = [v for v in vals if np.isfinite(v)]
    if finite:
        sci = iter(_format_sci(finite, digits))
        sci_out = [next(sci) if np.isfinite(v) else s for v, s in zip(vals, out, strict=True)]
        if max(len(s) for s in out) > max(len(s) for s in sci_out):
            out = sci_out
    width = max((len(s) for s in out), default=0)
    return [s.rjust(width) if right else s.ljust(width) for s in out]


def _format_sci(values: list[float], digits: int) -> list[str]:
    mant = 1
    for v in values:
        for s in range(1, digits + 1):
            if float(f"{v:.{s - 1}e}") == float(f"{v:.{digits - 1}e}"):
                mant = max(mant, s)
                break
    return [f"{v:.{mant - 1}e}" for v in values]


def _format_r(values: list[float], digits: int) -> list[str]:
    """R's ``format(x, digits=)`` for positive numbers: fixed notation when it is no wider than
    scientific (``options(scipen = 0)``), else scientific, for the vector as a whole."""
    fixed = [s.strip() for s in format_fixed(values, digits)]
    sci = _format_sci(values, digits)
    return fixed if max(map(len, fixed)) <= max(map(len, sci)) else sci


def format_pvalues(p, digits: int = 3, eps: float = np.finfo(float).eps) -> list[str]:
    """R's ``format.pval``: p with exponent ≥ −3 (≥ −4 when ``digits`` > 1) formatted together,
    the smaller ones together (each group by R's ``format``: fixed notation unless it is wider
    than scientific), p < eps as ``< eps`` with ``digits`` − 2 digits (fewer, and no space,
    when the other entries are narrow)."""
    p = np.asarray(p, dtype=float)
    out = [""] * len(p)
    tiny = p < eps
    expo = np.floor(np.log10(np.where(p > 0, p, 1e-50)))
    fixp = ((expo >= -3) | ((expo == -4) & (digits > 1))) & ~tiny
    for group in (fixp, ~fixp & ~tiny):
        if group.any():
            for i, s in zip(np.flatnonzero(group), _format_r(list(p[group]), digits), strict=True):
                out[i] = s
    if tiny.any():
        d = max(1, digits - 2)
        if (~tiny).any():
            nc = max(len(out[i]) for i in np.flatnonzero(~tiny))
            if d > 1 and d + 6 > nc:
                d = max(1, nc - 7)
            sep = "" if d == 1 and nc <= 6 else " "
        else:
            sep = "" if d == 1 else " "
        e = _format_sci([eps], d)[0]
        for i in np.flatnonzero(tiny):
            out[i] = f"<{sep}{e}"
    return out


def abbreviate(name: str, minlength: int) -> str:
    """R's ``abbreviate``: drop lower-case vowels from the right (never the first character),
    then lower-case letters, then any other characters, until ``minlength`` is reached."""
    chars = list(name)
    for keep in (lambda c: c not in "aeiou", lambda c: not c.islower(), lambda c: False):
        i = len(chars) - 1
        while len(chars) > minlength and i > 0:
            if not keep(chars[i]):
                del chars[i]
            i -= 1
    return "".join(chars)


def _stars(p: float) -> str:
    return "***" if p < 0.001 else "**" if p < 0.01 else "*" if p < 0.05 else "." if p < 0.1 else " "


def coef_table(names: list[str], cs: np.ndarray, headers: list[str], tst: np.ndarray, tst_header: str,
               p: np.ndarray, p_header: str, digits: int = 4) -> list[str]:
    """R's ``printCoefmat`` (stars on): the ``cs`` columns (estimate, SE and, for lmerTest, df)
    rounded together to max(1, digits − 1 − ⌊log10 min|x|⌋) decimals and formatted with
    ``digits``; the test statistic rounded to ``digits − 1`` decimals; p by ``format.pval``."""
    cs = np.atleast_2d(np.asarray(cs, dtype=float))
    acs = np.abs(cs[np.isfinite(cs) & (cs != 0)])
    lo = 1 + math.floor(math.log10(acs.min())) if acs.size else 1
    hi = 1 + math.floor(math.log10(acs.max())) if acs.size else 1
    r = max(1, digits - lo, digits - hi)
    rounded = np.round(cs, r)
    dec = max((sig_decimals(v, digits) for v in rounded.ravel()), default=0)
    cols = []
    for j in range(cs.shape[1]):
        col = []
        for x, v in zip(cs[:, j], rounded[:, j], strict=True):
            s = f"{v:.{dec}f}"
            if x != 0 and float(s) == 0:  # R re-formats a value that would print as zero
                s = _format_sci([x], max(1, digits - 1))[0]
            col.append(s)
        cols.append(col)
    dig_tst = max(1, min(5, digits - 1))
    cols.append([s.strip() for s in format_fixed(np.round(tst, dig_tst), digits)])
    cols.append(format_pvalues(p, dig_tst))
    heads = [*headers, tst_header, p_header]
    widths = [max(len(h), *(len(s) for s in c)) for h, c in zip(heads, cols, strict=True)]
    wn = max(len(n) for n in names)
    stars = [_stars(float(x)) for x in p]
    ws = max(len(s) for s in stars)
    head = "".join(" " + h.rjust(w) for h, w in zip(heads, widths, strict=True))
    lines = [" " * wn + head + " " + " " * ws]
    for i, n in enumerate(names):
        cells = "".join(" " + c[i].rjust(w) for c, w in zip(cols, widths, strict=True))
        lines.append(n.ljust(wn) + cells + " " + stars[i].ljust(ws))
    lines.append("---")
    lines.append("Signif. codes:  0 '***' 0.001 '**' 0.01 '*' 0.05 '.' 0.1 ' ' 1")
    return lines


def named_vector(names: list[str], values: list[str], width: int = 80, gap: int = 2) -> list[str]:
    """A named vector as R prints it: equal right-justified fields, wrapped at ``width``."""
    w = max(max(len(n) for n in names), max(len(v) for v in values))
    per = max(1, width // (w + gap))
    lines = []
    for i in range(0, len(names), per):
        lines.append("".join(n.rjust(w) + " " * gap for n in names[i : i + per]))
        lines.append("".join(v.rjust(w) + " " * gap for v in values[i : i + per]))
    return lines
