"""ModelSpec: the backend-agnostic description of a mixed model (no data, no numerics)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .formula import RandomTerm

__all__ = ["ModelSpec", "METHODS", "OPTIMIZERS", "DF_METHODS", "BACKENDS"]

METHODS = ("REML", "ML")
OPTIMIZERS = ("lbfgsb", "bobyqa")
DF_METHODS = ("satterthwaite", "kenward-roger")
BACKENDS = ("reml", "pymc")


@dataclass(frozen=True)
class ModelSpec:
    """What to fit: fixed formula, random terms, family, estimator and options.

    ``fixed`` is a formulaic formula ``"y ~ x"``; ``random`` the parsed lme4 terms in the
    order written (the design sorts them as lme4 does).
    """

    formula: str
    fixed: str
    random: tuple[RandomTerm, ...]
    method: str = "REML"
    family: str = "gaussian"
    optimizer: str = "lbfgsb"
    df_method: str = "satterthwaite"
    has_weights: bool = False
    has_offset: bool = False
    correlation: Any = None
    theta0: tuple[float, ...] | None = None
    options: dict[str, Any] = field(default_factory=dict)
    # the fixed part read as R reads it (interlace.model.rformula.FixedFormula); None = parse `fixed`
    fixed_formula: Any = None
    offset_column: str | None = None  # offset= given as the name of a column

    @property
    def full_formula(self) -> str:
        """The model in lme4's one-formula spelling, e.g. ``y ~ x + (1 + x | g)``."""
        sources = list(dict.fromkeys(t.source for t in self.random))
        parts = [s if s.startswith("(") else f"({s})" for s in sources]
        return " + ".join([self.fixed, *parts])

    @property
    def reml(self) -> bool:
        return self.method == "REML"
