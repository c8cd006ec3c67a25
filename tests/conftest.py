"""Shared fixtures: the R reference cases (../shared/fixtures when present, else tests/data)."""

from __future__ import annotations

import json
import pathlib

import pandas as pd
import pytest

HERE = pathlib.Path(__file__).parent
CANDIDATES = [HERE.parent.parent / "shared" / "fixtures", HERE / "data" / "fixtures"]
FIXTURES = next((p for p in CANDIDATES if (p / "cases").is_dir()), None)


EXTRA = HERE / "data" / "extra"  # made by tests/r/make_extra_cases.R


def load_cases(root: pathlib.Path | None = None) -> list[dict]:
    """Reference cases under ``root`` (default: the shared fixtures), each tagged with its folder."""
    root = FIXTURES if root is None else root
    if root is None or not (root / "cases").is_dir():
        return []
    cases = [json.loads(p.read_text()) for p in sorted((root / "cases").glob("*.json"))]
    for c in cases:
        c["_root"] = str(root)
    return cases


def load_data(case: dict) -> pd.DataFrame:
    """The case's CSV with R's factor columns as ordered-level pandas Categoricals."""
    root = pathlib.Path(case.get("_root") or FIXTURES)
    df = pd.read_csv(root / "data" / case["data"])
    for col, levels in (case.get("categorical") or {}).items():
        if col in df:
            df[col] = pd.Categorical(df[col].astype(str), categories=[str(v) for v in levels])
    return df


@pytest.fixture(scope="session")
def sleepstudy() -> pd.DataFrame:
    case = next((c for c in load_cases() if c["data"] == "sleepstudy.csv"), None)
    if case is None:
        pytest.skip("reference fixtures not found")
    return load_data(case)
