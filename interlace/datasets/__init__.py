"""Small example data sets shipped with interlace (as distributed with R packages).

- ``sleepstudy``: reaction times over 10 days of sleep deprivation, 18 subjects
  (Belenky et al. 2003; R's lme4).
- ``penicillin``: diameters of growth-inhibition zones, 24 plates × 6 samples, crossed
  (Davies & Goldsmith 1972; lme4).
- ``pastes``: paste strength, casks nested in batches (Davies & Goldsmith 1972; lme4).
- ``ovary``: ovarian follicle counts of 11 mares over time (Pierson & Ginther 1987; nlme).
- ``orthodont``: pituitary–pterygomaxillary distance of 27 children by age (Potthoff & Roy
  1964; nlme).
- ``cbpp``: contagious bovine pleuropneumonia incidence in 15 herds over 4 periods (Lesnoff
  et al. 2004; lme4).
- ``wine``: bitterness ratings of wines by 9 judges (Randall 1989; ordinal).
- ``rats``: time to tumour in litters of rats (Mantel et al. 1977; survival).
- ``stroop``: a simulated subject × item reaction-time experiment with two conditions
  (made for interlace's tests; 40 subjects, 30 items).
"""

from __future__ import annotations

from importlib import resources

import pandas as pd

__all__ = ["load", "names"]

# grouping/factor columns, with an explicit level order where R's differs from sorting
_FACTORS: dict[str, dict[str, list[str] | None]] = {
    "sleepstudy": {"Subject": None},
    "penicillin": {"plate": None, "sample": None},
    "pastes": {"batch": None, "cask": None, "sample": None},
    "ovary": {"Mare": None},
    "orthodont": {"Subject": None, "Sex": ["Male", "Female"]},
    "cbpp": {"herd": None, "period": None},
    "wine": {"rating": None, "temp": None, "contact": None, "bottle": None, "judge": None},
    "rats": {"litter": None},
    "stroop": {"condition": None, "subject": None, "item": None},
}


def _natural(values) -> list[str]:
    vals = sorted(set(values))
    if all(v.isdigit() for v in vals):
        return sorted(vals, key=int)
    return vals


def names() -> list[str]:
    """The bundled data sets."""
    return sorted(_FACTORS)


def load(name: str) -> pd.DataFrame:
    """Load a bundled data set as pandas; factor columns become Categoricals in R's level order."""
    if name not in _FACTORS:
        raise KeyError(f"no bundled data set {name!r}; available: {names()}")
    factors = _FACTORS[name]
    with resources.files(__package__).joinpath(f"{name}.csv").open() as fh:
        df = pd.read_csv(fh, dtype={c: str for c in factors})
    for col, levels in factors.items():
        ordered = col == "rating"
        df[col] = pd.Categorical(df[col], categories=levels or _natural(df[col]), ordered=ordered)
    return df
