"""AnovaTable: a pandas DataFrame with R's column names that prints like R's ``anova`` tables.

The printed form has the heading R shows above the table ("Type III Analysis of Variance Table
with Satterthwaite's method"), every column at full width (never wrapped or elided), numbers
with five significant digits, p-values as R's ``format.pval`` and significance stars.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..results.rformat import format_pvalues

__all__ = ["AnovaTable", "FullWidthFrame"]

_P_COLUMNS = ("Pr(>F)", "Pr(>Chisq)", "Pr(>|t|)", "Pr(>|z|)")
_INT_COLUMNS = ("NumDF", "Df", "npar", "Eliminated")
_STARS = ((0.001, "***"), (0.01, "**"), (0.05, "*"), (0.1, "."))


class FullWidthFrame(pd.DataFrame):
    """A DataFrame that prints every row and column, one line per row (pandas' ``to_string``),
    whatever ``display.width`` / ``display.max_columns`` say: tables such as ``compare`` and
    ``allfit`` are read whole, never with a ``...`` in place of columns."""

    @property
    def _constructor(self):
        return FullWidthFrame

    def __repr__(self) -> str:
        return self.to_string(line_width=None)

    __str__ = __repr__


class AnovaTable(pd.DataFrame):
    """A DataFrame whose ``heading`` is printed above it, as R prints an ``anova`` object.

    ``hypotheses`` (F and Wald tables of terms) maps each row to its hypothesis matrix L, one
    column per fixed effect (lmerTest's ``show_tests``).
    """

    _metadata = ["heading", "hypotheses"]

    @property
    def _constructor(self):
        return AnovaTable

    def __init__(self, *args, heading: str = "", hypotheses: dict | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.heading = heading
        self.hypotheses = hypotheses

    def to_text(self, stars: bool = True) -> str:
        """The table as R prints it: heading, full-width columns, stars and their legend."""
        frame = pd.DataFrame({c: _format_column(c, self[c].to_numpy()) for c in self.columns},
                             index=self.index)
        pcol = next((c for c in _P_COLUMNS if c in self.columns), None)
        show_stars = stars and pcol is not None and np.any(np.asarray(self[pcol], dtype=float) < 0.1)
        if show_stars:
            frame[""] = [_stars(v) for v in np.asarray(self[pcol], dtype=float)]
        body = frame.to_string(na_rep="", line_width=None) if len(frame) else "(no rows)"
        parts = [self.heading, body] if self.heading else [body]
        if show_stars:
            parts.append("---\nSignif. codes:  0 '***' 0.001 '**' 0.01 '*' 0.05 '.' 0.1 ' ' 1")
        return "\n".join(parts)

    def __repr__(self) -> str:
        return self.to_text()

    def __str__(self) -> str:
        return self.to_text()


def _stars(p: float) -> str:
    if not np.isfinite(p):
        return ""
    return next((s for cut, s in _STARS if p < cut), "")


def _format_column(name: str, values: np.ndarray) -> list[str]:
    try:
        x = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        return [str(v) for v in values]
    ok = np.isfinite(x)
    out = [""] * len(x)
    if name in _P_COLUMNS:  # print.anova: format.pval with 4 digits, together
        for i, s in zip(np.flatnonzero(ok), format_pvalues(x[ok], 4), strict=True):
            out[i] = s
        return out
    if name in _INT_COLUMNS and np.all(x[ok] == np.round(x[ok])):
        return [f"{int(v)}" if f else "" for v, f in zip(x, ok, strict=True)]
    if not ok.any():
        return out
    finite = np.abs(x[ok])
    usual = finite[finite >= 1e-4]
    if finite.max() >= 1e15 or usual.size == 0:
        return [f"{v:.4e}" if f else "" for v, f in zip(x, ok, strict=True)]
    # one number of decimals per column: five significant digits of its smallest entry (at most 6)
    decimals = int(min(max(0, 4 - np.floor(np.log10(usual.min()))), 6))
    return [f"{v:.{decimals}f}" if f else "" for v, f in zip(x, ok, strict=True)]
