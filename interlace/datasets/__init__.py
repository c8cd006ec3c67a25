"""Small example data sets shipped with interlace.

- ``sleepstudy``: reaction times over 10 days of sleep deprivation, 18 subjects
  (Belenky et al. 2003, J. Sleep Research; as distributed with R's lme4).
- ``penicillin``: diameters of growth-inhibition zones, 24 plates × 6 samples, crossed
  (Davies & Goldsmith 1972; R's lme4).
- ``pastes``: paste strength, casks nested in batches (Davies & Goldsmith 1972; R's lme4).
"""

from __future__ import annotations

from importlib import resources

import pandas as pd

__all__ = ["load", "names"]

_FACTORS = {
    "sleepstudy": ["Subject"],
    "penicillin": ["plate", "sample"],
    "pastes": ["batch", "cask", "sample"],
}


def names() -> list[str]:
    """The bundled data sets."""
    return sorted(_FACTORS)


def load(name: str) -> pd.DataFrame:
    """Load a bundled data set as pandas, grouping columns as Categoricals (sorted levels)."""
    if name not in _FACTORS:
        raise KeyError(f"no bundled data set {name!r}; available: {names()}")
    with resources.files(__package__).joinpath(f"{name}.csv").open() as fh:
        df = pd.read_csv(fh, dtype={c: str for c in _FACTORS[name]})
    for c in _FACTORS[name]:
        df[c] = pd.Categorical(df[c], categories=sorted(df[c].unique()))
    return df
